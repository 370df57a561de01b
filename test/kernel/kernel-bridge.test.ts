// The kernel bridge against the real kernel: ct list equals conntrack -L, NAT decodes, batched writes read back,
// upsert/delete take their errno paths, FTP expectations round-trip, an overrun is survived and resynced exactly.
import { afterAll, beforeAll, beforeEach, describe, expect, test, vi } from 'vitest';
import { flowKey } from '../../src/state/key.js';
import { Lab } from '../../src/lab/netns.js';
import { routerLab, type NatMode, type RouterLab } from '../../src/lab/topology.js';
import * as traffic from '../../src/lab/traffic.js';
import { Conntrack } from '../../src/kernel/conntrack.js';
import { flowFromJson } from '../../src/kernel/json.js';
import { Ips, TcpState, type Flow } from '../../src/kernel/types.js';
import { KernelMirror } from '../../src/state/mirror.js';
import { systemClock } from '../../src/state/clock.js';
import { silentLogger } from '../../src/daemon/log.js';
import { spawn } from 'node:child_process';
import { listDocument } from '../../src/kernel/flow-file.js';
import {
  comparableKey,
  expectationModelToComparable,
  expectationToComparable,
  flowToComparable,
  listExpectations,
  listFlows,
  toComparable,
  type ComparableFlow,
} from '../helpers/conntrack-cli.js';
import { CTSYNC_BIN, cannotRun, runCtsync } from '../helpers/env.js';

const PREFIX = 'ctsk-';
const reason = cannotRun(['ip', 'nft', 'conntrack', 'python3'], true);
if (reason) console.warn(`[kernel-bridge] NOT RUN: ${reason}`);

function byKey(list: ComparableFlow[]): Map<string, ComparableFlow> {
  return new Map(list.map((c) => [comparableKey(c), c]));
}

/** `ctsync ct list --json` in a namespace, parsed back into flows. */
async function ctList(ns: string, extra: string[] = []): Promise<Flow[]> {
  const r = await runCtsync(['ct', 'list', '--json', '--netns', ns, ...extra]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const doc = JSON.parse(r.stdout) as { count: number; flows: unknown[] };
  expect(doc.flows).toHaveLength(doc.count);
  return doc.flows.map((j) => {
    const f = flowFromJson(j);
    if (Array.isArray(f)) throw new Error(`ct list printed a flow it cannot read back: ${JSON.stringify(f)}`);
    return f;
  });
}

/** Our view and conntrack's view of one table, entry by entry. */
async function expectSameTable(lab: Lab, ns: string): Promise<ComparableFlow[]> {
  const ours = (await ctList(ns)).map(flowToComparable);
  const theirs = (await listFlows(lab, ns)).map(toComparable);
  const a = byKey(ours);
  const b = byKey(theirs);
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  for (const [k, c] of a) expect(c, k).toEqual(b.get(k));
  return ours;
}

function udpFlow(i: number, extra: Partial<Flow> = {}): Flow {
  return {
    family: 2,
    orig: { src: `10.88.${(i >> 8) & 255}.${i & 255}`, dst: '10.89.0.1', proto: 17, sport: 1024 + (i % 60000), dport: 53 },
    reply: { src: '10.89.0.1', dst: `10.88.${(i >> 8) & 255}.${i & 255}`, proto: 17, sport: 53, dport: 1024 + (i % 60000) },
    status: Ips.SeenReply | Ips.Assured,
    timeout: 300,
    mark: i % 7,
    ...extra,
  };
}

function tcpFlow6(i: number): Flow {
  return {
    family: 10,
    orig: { src: `fd88::${(i + 1).toString(16)}`, dst: 'fd89::1', proto: 6, sport: 2000 + i, dport: 443 },
    reply: { src: "fd89::1", dst: `fd88::${(i + 1).toString(16)}`, proto: 6, sport: 443, dport: 2000 + i },
    status: Ips.SeenReply | Ips.Assured,
    timeout: 3600,
    zone: 3,
    protoinfo: { tcp: { state: TcpState.Established, wscaleOrig: 7, wscaleReply: 7, flagsOrig: 0x01, flagsReply: 0x01 } },
  };
}

describe.skipIf(reason !== undefined)('kernel bridge (real kernel)', () => {
  beforeAll(() => Lab.sweep(PREFIX));

  describe('flows through a router', () => {
    let lab: Lab;
    let r: RouterLab;
    let stream: traffic.TcpStream;
    let ftp: traffic.FtpSession;

    beforeAll(async () => {
      lab = new Lab({ prefix: PREFIX });
      r = await routerLab(lab, { ftpPorts: [21] });
      const e4 = { clientNs: r.client.ns, serverNs: r.server.ns, host: r.server.v4, port: 5000 };
      const e6 = { ...e4, host: r.server.v6, port: 5001 };
      stream = await traffic.tcpStream(lab, e4);
      await stream.waitForEchoes(3);
      await traffic.tcpShort(lab, { ...e4, port: 5002 });
      await traffic.udpRequestReply(lab, { ...e4, port: 5003 });
      await traffic.ping(lab, r.client.ns, r.server.v4);
      await traffic.ping(lab, r.client.ns, r.server.v6);
      await traffic.sctpAssociation(lab, { ...e4, port: 5004 });
      await traffic.sctpAssociation(lab, { ...e6, port: 5005 });
      await traffic.udpRequestReply(lab, { ...e6, port: 5006 });
      ftp = await traffic.ftpSession(lab, { ...e4, port: 21, advertise: r.server.v4 });
    });
    afterAll(async () => {
      await stream?.stop();
      await ftp?.stop();
      await lab?.teardown();
    });

    test('ct list --json shows exactly the entries and fields conntrack -L -o extended shows', async () => {
      const ours = await expectSameTable(lab, r.router.ns);
      const has = (p: (c: ComparableFlow) => boolean) => expect(ours.some(p)).toBe(true);
      has((c) => c.proto === 6 && c.state === 'ESTABLISHED' && c.assured && c.family === 2);
      has((c) => c.proto === 6 && c.state === 'TIME_WAIT');
      has((c) => c.proto === 17 && c.family === 10);
      has((c) => c.proto === 1 && c.orig.icmpType === 8);
      has((c) => c.proto === 58 && c.orig.icmpType === 128);
      has((c) => c.proto === 132 && c.state === 'ESTABLISHED' && c.family === 2);
      has((c) => c.proto === 132 && c.family === 10);
      has((c) => c.proto === 6 && c.helper === 'ftp');
    });

    test('filters: --family and --proto narrow the list the way conntrack -f / -p do', async () => {
      const v6 = await ctList(r.router.ns, ['--family', 'ipv6']);
      expect(v6.length).toBeGreaterThan(0);
      expect(v6.every((f) => f.family === 10)).toBe(true);
      const sctp = await ctList(r.router.ns, ['--proto', 'sctp']);
      expect(sctp.map((f) => f.orig.proto)).toEqual([132, 132]);
    });

    test('the FTP helper expectation is seen, and can be re-created after it is gone', async () => {
      const ct = new Conntrack({ netns: r.router.ns });
      try {
        const exps = await ct.dumpExpectations();
        const cli = await listExpectations(lab, r.router.ns);
        expect(exps.length).toBe(1);
        expect(exps.map(expectationModelToComparable)).toEqual(cli.map(expectationToComparable));
        expect(exps[0].helper).toBe('ftp');
        await lab.exec(r.router.ns, ['conntrack', '-F', 'expect']);
        expect(await listExpectations(lab, r.router.ns)).toEqual([]);
        expect(await ct.writeExpectations(exps)).toEqual([0]);
        expect((await listExpectations(lab, r.router.ns)).map(expectationToComparable)).toEqual(cli.map(expectationToComparable));
      } finally {
        ct.close();
      }
    });
  });

  for (const nat of ['masquerade', 'snat', 'dnat'] as NatMode[]) {
    test(`NAT (${nat}): the reply tuple decodes with the translated address`, async () => {
      const lab = new Lab({ prefix: PREFIX });
      try {
        const r = await routerLab(lab, { nat, dnatPort: 8080 });
        const e = { clientNs: r.client.ns, serverNs: r.server.ns, host: r.serverVia.v4, port: 8080 };
        await traffic.tcpShort(lab, e);
        await traffic.udpRequestReply(lab, e);
        const ours = await expectSameTable(lab, r.router.ns);
        const natted = ours.filter((c) => c.proto === 6 || c.proto === 17);
        expect(natted.length).toBe(2);
        for (const c of natted) {
          if (nat === 'dnat') expect(c.reply.src).toBe(r.server.v4);
          else expect(c.reply.dst).toBe(r.natSource.v4);
        }
      } finally {
        await lab.teardown();
      }
    });
  }

  describe('batched writes in an empty table', () => {
    let lab: Lab;
    let ns: string;
    let ct: Conntrack;
    beforeAll(async () => {
      lab = new Lab({ prefix: PREFIX });
      ns = await lab.addNamespace('w');
      ct = new Conntrack({ netns: ns });
    });
    afterAll(async () => {
      ct?.close();
      await lab?.teardown();
    });
    // each test starts from an empty table, so one failure does not cascade into the next
    beforeEach(async () => ct.flush());

    test('entries written in a batch read back equal; upsert and delete take their EEXIST/ENOENT paths', async () => {
      const flows = [...Array.from({ length: 3000 }, (_, i) => udpFlow(i)), ...Array.from({ length: 500 }, (_, i) => tcpFlow6(i))];
      const created = await ct.write(flows.map((flow) => ({ op: 'upsert', flow })));
      expect(created.counts).toMatchObject({ created: flows.length, failed: 0 });

      const back = byKey((await ct.dump()).map(flowToComparable));
      expect(back.size).toBe(flows.length);
      for (const f of flows) expect(back.get(comparableKey(flowToComparable(f)))).toEqual(flowToComparable(f));
      // and conntrack agrees with our decoding of what we wrote
      await expectSameTable(lab, ns);

      const again = await ct.write(flows.map((flow) => ({ op: 'upsert', flow: { ...flow, mark: 42 } })));
      expect(again.counts).toMatchObject({ created: 0, updated: flows.length, failed: 0 });
      expect((await ct.dump()).every((f) => f.mark === 42)).toBe(true);

      const dup = await ct.write(flows.slice(0, 10).map((flow) => ({ op: 'create', flow })));
      expect(dup.counts.failed).toBe(10);
      expect(dup.failedByErrno).toEqual({ EEXIST: 10 });

      const del = await ct.write(flows.map((flow) => ({ op: 'delete', flow })));
      expect(del.counts).toMatchObject({ deleted: flows.length, failed: 0 });
      const del2 = await ct.write(flows.slice(0, 100).map((flow) => ({ op: 'delete', flow })));
      expect(del2.counts).toMatchObject({ absent: 100, failed: 0 });
      expect(await ct.dump()).toEqual([]);
    });

    test('replace removes a stray entry that clashes on the reply tuple, and NAT is set at create', async () => {
      const wanted: Flow = {
        family: 2,
        orig: { src: '10.70.0.2', dst: '10.71.0.2', proto: 6, sport: 40000, dport: 22 },
        reply: { src: '10.71.0.2', dst: '10.71.0.1', proto: 6, sport: 22, dport: 61000 },
        status: Ips.SeenReply | Ips.Assured,
        timeout: 600,
        protoinfo: { tcp: { state: TcpState.Established } },
      };
      // a stray un-NATed entry for the same original tuple, as traffic arriving before a commit would make
      const stray: Flow = { ...wanted, reply: { src: '10.71.0.2', dst: '10.70.0.2', proto: 6, sport: 22, dport: 40000 } };
      expect((await ct.write([{ op: 'create', flow: stray }])).counts.created).toBe(1);
      const rep = await ct.write([{ op: 'replace', flow: wanted }]);
      expect(rep.counts).toMatchObject({ replaced: 1, failed: 0 });
      const [got] = await ct.dump();
      expect(flowToComparable(got)).toEqual(flowToComparable(wanted));
      expect(got.status! & Ips.SrcNat).toBeTruthy();
      await ct.flush();
      expect(await ct.dump()).toEqual([]);
    });

    test('ct load: a bad line is named and nothing of the file is written; a good file loads', async () => {
      const good = listDocument([udpFlow(1), udpFlow(2)]).split('\n');
      const bad = [...good.slice(0, 2), '{"family": 2, "orig": {"src": "10.0.0.1", "dst": "nope", "proto": 17}},', ...good.slice(2)].join('\n');
      const r1 = await runCtsync(['ct', 'load', '-', '--netns', ns], bad);
      expect(r1.code).toBe(1);
      expect(r1.stderr).toMatch(/line 3: orig\.dst must be an IPv4 address/);
      expect(r1.stderr).toMatch(/nothing written/);
      expect(await ct.dump()).toEqual([]);
      const r2 = await runCtsync(['ct', 'load', '-', '--netns', ns, '--json'], good.join('\n'));
      expect(r2.code).toBe(0);
      expect(JSON.parse(r2.stdout)).toMatchObject({ entries: 2, counts: { created: 2 } });
      expect((await ct.dump()).length).toBe(2);
      await ct.flush();
    });

    test('a timeout changed while events were not heard is reported as drift by the resync that follows, not only by a refresh', async () => {
      const mirror = new KernelMirror({ netns: ns, clock: systemClock, log: silentLogger });
      const writer = new Conntrack({ netns: ns });
      const drifts: { key: string; timeout: number }[][] = [];
      mirror.onDrift = (d) => drifts.push([...d]);
      try {
        const flows = Array.from({ length: 5 }, (_, i) => udpFlow(i));
        expect((await writer.write(flows.map((flow) => ({ op: 'create', flow })))).counts.created).toBe(5);
        await mirror.start(); // our copy: 300 s
        expect(drifts).toEqual([]);
        // unheard, as during a commit (or lost in an overrun): the kernel's timeout moves to 3000 s
        const release = mirror.pauseEvents();
        expect((await writer.write([{ op: 'update', flow: udpFlow(2, { timeout: 3000 }) }])).counts.updated).toBe(1);
        await release(); // its dump-and-diff takes the kernel's 3000 s into our copy
        expect(drifts.length).toBe(1);
        expect(drifts[0]!.map((d) => d.timeout > 2900 && d.timeout <= 3000)).toEqual([true]);
        // so a refresh has nothing left to find: that resync was the only chance to tell the replicas
        expect(await mirror.refresh()).toEqual([]);
        expect(drifts.length).toBe(1);
      } finally {
        mirror.close();
        writer.close();
      }
    });

    test.each([
      ['', 0],
      [' with accounting and timestamps on (counters and start times in every line)', 1],
    ])("a refresh reads the kernel's lines in place%s: no Flow for an entry unchanged but for its timeout, and changes still seen", async (_, figures) => {
      const sysctl = (v: number) => lab.exec(ns, ['sysctl', '-qw', `net.netfilter.nf_conntrack_acct=${v}`, `net.netfilter.nf_conntrack_timestamp=${v}`]);
      await sysctl(figures); // per namespace, for entries created from now on
      const mirror = new KernelMirror({ netns: ns, clock: systemClock, log: silentLogger });
      const writer = new Conntrack({ netns: ns });
      try {
        const flows = [...Array.from({ length: 40 }, (_, i) => udpFlow(i)), ...Array.from({ length: 10 }, (_, i) => tcpFlow6(i))];
        expect((await writer.write(flows.map((flow) => ({ op: 'create', flow })))).counts.created).toBe(flows.length);
        expect((await writer.dump()).every((f) => (f.countersOrig !== undefined && f.timestampStart !== undefined) === (figures === 1))).toBe(true);
        await mirror.start();
        const inPlace = vi.spyOn(mirror.local, 'resyncPlain');
        const decoded = vi.spyOn(mirror.local, 'resyncFlow');
        const before = { ...mirror.local.counters };
        expect(await mirror.refresh()).toEqual([]);
        expect(inPlace).toHaveBeenCalledTimes(flows.length);
        expect(decoded).not.toHaveBeenCalled();
        const c = mirror.local.counters;
        expect([c.unchanged - before.unchanged, c.refreshed - before.refreshed, c.changed - before.changed]).toEqual([flows.length, 0, 0]);
        // unheard (as during a commit): a new mark on one flow, a far longer timeout on another
        const changes: string[] = [];
        mirror.onChange = (key, change) => changes.push(`${change} ${key === flowKey(udpFlow(3)) ? 'udp3' : key}`);
        const release = mirror.pauseEvents();
        expect((await writer.write([{ op: 'update', flow: udpFlow(3, { mark: 99 }) }, { op: 'update', flow: udpFlow(4, { timeout: 3000 }) }])).counts.updated).toBe(2);
        await release();
        expect(changes).toEqual(['replaced udp3']); // the daemon's name for "send it again"
        expect(mirror.local.get(flowKey(udpFlow(3)))!.mark).toBe(99);
        expect(await mirror.refresh()).toEqual([]); // the release's dump took the 3000 s already (and told onDrift)
        expect(mirror.local.get(flowKey(udpFlow(4)))!.timeout).toBeGreaterThan(2900);
      } finally {
        mirror.close();
        writer.close();
        await sysctl(0);
      }
    });

    test('an event overrun under a flood is survived and the resynced view equals conntrack -L', async () => {
      const mirror = new KernelMirror({ netns: ns, rcvbuf: 4096, clock: systemClock, log: silentLogger });
      const writer = new Conntrack({ netns: ns });
      let overrunResyncs = 0;
      mirror.onResync = (_d, reason) => reason === 'overrun' && overrunResyncs++;
      try {
        await mirror.start();
        const flows = Array.from({ length: 20_000 }, (_, i) => udpFlow(i));
        // churn from another writer (not ours, so the mirror must follow it), while the tiny buffer overflows
        expect((await writer.write(flows.map((flow) => ({ op: 'create', flow })))).counts.created).toBe(flows.length);
        expect((await writer.write(flows.filter((_, i) => i % 3 === 0).map((flow) => ({ op: 'delete', flow })))).counts.deleted).toBe(6667);
        await new Promise((r) => setTimeout(r, 300));
        await mirror.settled();
        expect(mirror.events.stats.overruns).toBeGreaterThan(0);
        expect(overrunResyncs).toBeGreaterThan(0);
        const kernel = byKey((await listFlows(lab, ns)).map(toComparable));
        const mine = new Map<string, ComparableFlow>();
        mirror.local.forEach((k) => {
          const c = flowToComparable(mirror.local.get(k)!);
          mine.set(comparableKey(c), c);
        });
        expect(kernel.size).toBe(flows.length - 6667);
        expect([...mine.keys()].sort()).toEqual([...kernel.keys()].sort());
        for (const [k, c] of mine) expect(c).toEqual(kernel.get(k));
      } finally {
        mirror.close();
        writer.close();
      }
    });

    test('ct watch prints events as JSON lines and survives an overrun with a resync line', async () => {
      const child = spawn(process.execPath, [CTSYNC_BIN, 'ct', 'watch', '--json', '--netns', ns, '--rcvbuf', '4096'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (text += d));
      try {
        await new Promise((r) => setTimeout(r, 500));
        const flows = Array.from({ length: 5000 }, (_, i) => udpFlow(i));
        await ct.write(flows.map((flow) => ({ op: 'create', flow })));
        const until = Date.now() + 10_000;
        while (!text.includes('"event":"resync"') && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
        // only complete lines: the last one may still be arriving
        const lines = text.slice(0, text.lastIndexOf('\n')).split('\n').map((l) => JSON.parse(l) as { event: string; origin?: string; flow?: { l4: string } });
        expect(lines.some((l) => l.event === 'new' && l.flow?.l4 === 'udp')).toBe(true);
        // the first events, before the overrun, are the kernel's, each as it came
        expect(lines[0]).toMatchObject({ event: 'new', origin: 'kernel' });
        expect(lines.some((l) => l.event === 'resync')).toBe(true);
      } finally {
        child.kill('SIGTERM');
      }
      expect(await new Promise((r) => child.on('close', r))).toBe(0);
    });
  });
});
