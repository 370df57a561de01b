// Kernel tests of the netns lab: each traffic generator leaves the expected conntrack entries on the router, and teardown always cleans up.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, MAX_NAME_LEN, withLab } from '../../src/lab/netns.js';
import { routerLab, type RouterLab } from '../../src/lab/topology.js';
import * as traffic from '../../src/lab/traffic.js';
import { listExpectations, listFlows, waitForFlow, type CliFlow } from '../helpers/conntrack-cli.js';

const PREFIX = 'ctsh-';

/** Why this file cannot run here, or undefined. Printed, never skipped silently. */
function cannotRun(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (creates network namespaces and nft rulesets)';
  for (const bin of ['ip', 'nft', 'conntrack', 'python3']) {
    try {
      execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    } catch {
      return `needs ${bin} on PATH`;
    }
  }
  return undefined;
}

const reason = cannotRun();
if (reason) console.warn(`[lab-harness] NOT RUN: ${reason}`);

const nsList = (): string[] =>
  execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);

/** The root namespace's addresses and routes: the lab must never change them. */
const rootNetState = (): string =>
  ['-o addr', 'route', '-6 route', 'rule'].map((a) => execFileSync('sh', ['-c', `ip ${a}`], { encoding: 'utf8' })).join('\n');

/** Alive = exists and is not a zombie (a killed orphan may wait for an init that reaps slowly). */
const pidAlive = (pid: number): boolean => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

describe.skipIf(reason !== undefined)('lab harness (kernel)', () => {
  beforeAll(() => {
    Lab.sweep(PREFIX);
  });

  describe('router lab without NAT', () => {
    let lab: Lab;
    let r: RouterLab;
    let rootBefore: string;
    let e4: traffic.Endpoints;
    let e6: traffic.Endpoints;
    const byOrigSport = (proto: number, sport: number) => (f: CliFlow) => f.proto === proto && f.orig.sport === sport;

    beforeAll(async () => {
      rootBefore = rootNetState();
      lab = new Lab({ prefix: PREFIX });
      r = await routerLab(lab, { ftpPorts: [21] });
      e4 = { clientNs: r.client.ns, serverNs: r.server.ns, host: r.server.v4, port: 5000 };
      e6 = { ...e4, host: r.server.v6 };
    });
    afterAll(async () => {
      await lab?.teardown();
    });

    it('names namespaces within the interface-name limit and leaves the root namespace alone', () => {
      expect(lab.names).toHaveLength(3);
      for (const n of lab.names) {
        expect(n.startsWith(PREFIX)).toBe(true);
        expect(n.length).toBeLessThanOrEqual(MAX_NAME_LEN);
      }
      expect(rootNetState()).toBe(rootBefore);
    });

    it('long-lived TCP: ESTABLISHED and ASSURED', async () => {
      const s = await traffic.tcpStream(lab, { ...e4, intervalMs: 50 });
      try {
        await s.waitForEchoes(3);
        const f = await waitForFlow(lab, r.router.ns, byOrigSport(6, s.stats.local!.port));
        expect(f).toMatchObject({ family: 2, state: 'ESTABLISHED', orig: { src: r.client.v4, dst: r.server.v4, dport: 5000 } });
        expect(f.flags).toContain('ASSURED');
        expect(f.reply).toMatchObject({ src: r.server.v4, dst: r.client.v4 });
      } finally {
        await s.stop();
      }
    });

    it('short TCP: TIME_WAIT', async () => {
      const { sport } = await traffic.tcpShort(lab, { ...e4, port: 5002 });
      const f = await waitForFlow(lab, r.router.ns, byOrigSport(6, sport));
      expect(f.state).toBe('TIME_WAIT');
    });

    it('UDP request/reply: replied entry', async () => {
      const { sport } = await traffic.udpRequestReply(lab, { ...e4, port: 5003 });
      const f = await waitForFlow(lab, r.router.ns, byOrigSport(17, sport));
      expect(f.flags).not.toContain('UNREPLIED');
      expect(f.orig.dport).toBe(5003);
    });

    it('ICMP echo', async () => {
      const { id } = await traffic.ping(lab, r.client.ns, r.server.v4);
      const f = await waitForFlow(lab, r.router.ns, (x) => x.proto === 1 && x.orig.icmpId === id);
      expect(f.orig).toMatchObject({ icmpType: 8, icmpCode: 0 });
      expect(f.reply).toMatchObject({ icmpType: 0, icmpCode: 0 });
    });

    it('SCTP association over raw sockets: ESTABLISHED', async () => {
      const { sport } = await traffic.sctpAssociation(lab, { ...e4, port: 3868 });
      const f = await waitForFlow(lab, r.router.ns, byOrigSport(132, sport));
      expect(f).toMatchObject({ protoName: 'sctp', state: 'ESTABLISHED' });
      expect(f.flags).toContain('ASSURED');
    });

    it('IPv6: TCP, UDP, ICMPv6 and SCTP', async () => {
      const s = await traffic.tcpStream(lab, { ...e6, port: 5001 });
      try {
        await s.waitForEchoes(2);
        const { sport: usport } = await traffic.udpRequestReply(lab, { ...e6, port: 5003 });
        const { id } = await traffic.ping(lab, r.client.ns, r.server.v6);
        const { sport: ssport } = await traffic.sctpAssociation(lab, { ...e6, port: 3868 });
        await waitForFlow(lab, r.router.ns, byOrigSport(6, s.stats.local!.port));
        const v6 = await listFlows(lab, r.router.ns, { family: 'ipv6' });
        expect(v6.every((f) => f.family === 10)).toBe(true);
        expect(v6.find(byOrigSport(6, s.stats.local!.port))).toMatchObject({ state: 'ESTABLISHED', orig: { src: r.client.v6, dst: r.server.v6 } });
        expect(v6.find(byOrigSport(17, usport))?.reply.src).toBe(r.server.v6);
        expect(v6.find((f) => f.proto === 58 && f.orig.icmpId === id)?.orig.icmpType).toBe(128);
        expect(v6.find(byOrigSport(132, ssport))?.state).toBe('ESTABLISHED');
      } finally {
        await s.stop();
      }
    });

    it('FTP PASV makes the helper create an expectation, and the data connection becomes a flow', async () => {
      const ftp = await traffic.ftpSession(lab, { ...e4, port: 21, advertise: r.server.v4, dataPort: 50000 });
      try {
        expect(ftp.pasv).toEqual({ host: r.server.v4, port: 50000 });
        const exps = await listExpectations(lab, r.router.ns);
        const e = exps.find((x) => x.tuple.dport === 50000);
        expect(e).toMatchObject({ proto: 6, helper: 'ftp', tuple: { src: r.client.v4, dst: r.server.v4 }, master: { dport: 21 } });
        const control = (await listFlows(lab, r.router.ns)).find((f) => f.orig.dport === 21 && f.orig.sport === e!.master.sport);
        expect(control?.helper).toBe('ftp');
      } finally {
        await ftp.stop();
      }
      const withData = await traffic.ftpSession(lab, { ...e4, port: 21, advertise: r.server.v4, dataPort: 50001, openData: true });
      try {
        const data = await waitForFlow(lab, r.router.ns, (f) => f.proto === 6 && f.orig.dport === 50001);
        expect(data.orig.src).toBe(r.client.v4);
      } finally {
        await withData.stop();
      }
    });

    it('UDP flood: one new entry per datagram, bounded', async () => {
      const { sent } = await traffic.udpFlood(lab, { clientNs: r.client.ns, host: r.server.v4, count: 500, basePort: 20000, ports: 500 });
      expect(sent).toBe(500);
      const flows = (await listFlows(lab, r.router.ns, { family: 'ipv4' })).filter(
        (f) => f.proto === 17 && f.orig.dport! >= 20000 && f.orig.dport! < 20500,
      );
      expect(flows).toHaveLength(500);
      await expect(traffic.udpFlood(lab, { clientNs: r.client.ns, host: r.server.v4, count: 10_000_000 })).rejects.toThrow(/count/);
    });
  });

  describe('router lab with NAT', () => {
    it('masquerade: the reply tuple shows the router wan address', async () => {
      await withLab({ prefix: PREFIX }, async (lab) => {
        const r = await routerLab(lab, { nat: 'masquerade' });
        const { sport } = await traffic.udpRequestReply(lab, { clientNs: r.client.ns, serverNs: r.server.ns, host: r.server.v4, port: 5003 });
        const f = await waitForFlow(lab, r.router.ns, (x) => x.proto === 17 && x.orig.sport === sport);
        expect(f.orig).toMatchObject({ src: r.client.v4, dst: r.server.v4 });
        expect(f.reply).toMatchObject({ src: r.server.v4, dst: r.router.wan.v4 });
        expect(r.natSource.v4).toBe(r.router.wan.v4);
      });
    });

    it('snat (v4 and v6): the reply tuple shows the SNAT address', async () => {
      await withLab({ prefix: PREFIX }, async (lab) => {
        const r = await routerLab(lab, { nat: 'snat' });
        const s = await traffic.tcpStream(lab, { clientNs: r.client.ns, serverNs: r.server.ns, host: r.server.v6, port: 5000 });
        try {
          await s.waitForEchoes(2);
          const f = await waitForFlow(lab, r.router.ns, (x) => x.proto === 6 && x.orig.sport === s.stats.local!.port);
          expect(f.reply.dst).toBe(r.natSource.v6);
          expect(r.natSource.v6).not.toBe(r.router.wan.v6);
        } finally {
          await s.stop();
        }
      });
    });

    it('dnat: the client talks to the router, the reply comes from the server', async () => {
      await withLab({ prefix: PREFIX }, async (lab) => {
        const r = await routerLab(lab, { nat: 'dnat', dnatPort: 8080 });
        const e = { clientNs: r.client.ns, serverNs: r.server.ns, host: r.serverVia.v4, port: r.serverVia.port! };
        const s = await traffic.tcpStream(lab, e);
        try {
          await s.waitForEchoes(2);
          const f = await waitForFlow(lab, r.router.ns, (x) => x.proto === 6 && x.orig.sport === s.stats.local!.port);
          expect(f.orig).toMatchObject({ dst: r.router.lan.v4, dport: 8080 });
          expect(f.reply).toMatchObject({ src: r.server.v4, dst: r.client.v4, sport: 8080 });
        } finally {
          await s.stop();
        }
      });
    });

    it('strict firewall passes new flows from the client side with conntrack tracking them', async () => {
      await withLab({ prefix: PREFIX }, async (lab) => {
        const r = await routerLab(lab, { firewall: 'strict' });
        const s = await traffic.tcpStream(lab, { clientNs: r.client.ns, serverNs: r.server.ns, host: r.server.v4, port: 5000 });
        try {
          await s.waitForEchoes(2);
          expect((await lab.exec(r.router.ns, ['sysctl', '-n', 'net.netfilter.nf_conntrack_tcp_loose'])).stdout.trim()).toBe('0');
          // The server side cannot open flows towards the client: forward policy drop.
          const back = await lab.exec(r.server.ns, ['python3', traffic.trafficScript(), 'udp-once', '--host', r.client.v4, '--port', '9', '--connect-timeout', '0.5'], { allowFail: true });
          expect(back.code).not.toBe(0);
        } finally {
          await s.stop();
        }
      });
    });
  });

  describe('teardown', () => {
    it('removes every namespace and process even when the test body throws', async () => {
      let names: string[] = [];
      let pids: number[] = [];
      await expect(
        withLab({ prefix: PREFIX }, async (lab) => {
          const r = await routerLab(lab, {});
          names = [...lab.names];
          const s = await traffic.tcpStream(lab, { clientNs: r.client.ns, serverNs: r.server.ns, host: r.server.v4, port: 5000 });
          await s.waitForEchoes(1);
          pids = [lab.spawn(r.server.ns, ['sleep', '300']).pid];
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      expect(names).toHaveLength(3);
      const left = nsList();
      for (const n of names) expect(left).not.toContain(n);
      for (const pid of pids) expect(pidAlive(pid)).toBe(false);
    });

    it('is idempotent and refuses new work afterwards', async () => {
      const lab = new Lab({ prefix: PREFIX });
      const ns = await lab.addNamespace('one');
      await lab.teardown();
      await lab.teardown();
      expect(nsList()).not.toContain(ns);
      await expect(lab.addNamespace('two')).rejects.toThrow(/torn down/);
    });

    it('kills processes that left the process group (daemons) by emptying the namespace', async () => {
      const lab = new Lab({ prefix: PREFIX });
      const ns = await lab.addNamespace('dmn');
      // setsid: the grandchild leaves our process group, like a daemon would.
      const r = await lab.exec(ns, ['sh', '-c', 'setsid sleep 300 >/dev/null 2>&1 & echo $!']);
      const pid = Number(r.stdout.trim());
      expect(pidAlive(pid)).toBe(true);
      await lab.teardown();
      // SIGKILL is delivered asynchronously: give a loaded machine a moment to let the process die
      for (let i = 0; i < 50 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
      expect(pidAlive(pid)).toBe(false);
    });

    it('cleans up when the owning process gets SIGTERM', async () => {
      const script = fileURLToPath(new URL('./lab-harness.child.ts', import.meta.url));
      const viteNode = fileURLToPath(new URL('../../node_modules/.bin/vite-node', import.meta.url));
      const child = spawn(viteNode, [script, PREFIX], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
      const names = await new Promise<string[]>((resolve, reject) => {
        let buf = '';
        child.stdout.on('data', (d: Buffer) => {
          buf += d.toString();
          const m = /^ready (.+)$/m.exec(buf);
          if (m) resolve(m[1]!.split(','));
        });
        child.once('exit', (code) => reject(new Error(`child exited early (${code})`)));
      });
      expect(nsList()).toEqual(expect.arrayContaining(names));
      const exited = new Promise<NodeJS.Signals | null>((res) => child.once('exit', (_c, sig) => res(sig)));
      process.kill(child.pid!, 'SIGTERM');
      expect(await exited).toBe('SIGTERM');
      const left = nsList();
      for (const n of names) expect(left).not.toContain(n);
    });

    it('sweep deletes only stale namespaces with the given prefix', async () => {
      const lab = new Lab({ prefix: PREFIX });
      try {
        const live = await lab.addNamespace('live');
        const stale = `${PREFIX}zz-${lab.suffix}`;
        const other = `${PREFIX}yy-${lab.suffix}`;
        execFileSync('ip', ['netns', 'add', stale]);
        execFileSync('ip', ['netns', 'add', other]);
        try {
          expect(Lab.sweep(`${PREFIX}zz`)).toEqual([stale]);
          expect(nsList()).toEqual(expect.arrayContaining([live, other]));
          expect(nsList()).not.toContain(stale);
          expect(Lab.sweep(PREFIX)).toEqual([other]); // the live lab's namespace is spared
          expect(nsList()).toContain(live);
        } finally {
          for (const n of [stale, other]) if (nsList().includes(n)) execFileSync('ip', ['netns', 'del', n]);
        }
        expect(() => Lab.sweep('')).toThrow(/refusing/);
      } finally {
        await lab.teardown();
      }
    });
  });
});

// Visible in the report when the suite above is skipped: the reason, as a (trivially) passing test.
if (reason !== undefined) {
  describe('lab harness (kernel) not run', () => {
    it(`reports why: ${reason}`, () => {
      expect(reason).toBeTruthy();
    });
  });
}
