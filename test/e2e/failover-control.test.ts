// The failover lab's control runs: without state sync a TCP stream dies at failover; with entries copied by hand it survives.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { failoverLab, type FailoverLab, type FwName } from '../../src/lab/failover.js';
import { Lab } from '../../src/lab/netns.js';
import { tcpStream, udpStream, type TcpStream, type UdpStream } from '../../src/lab/traffic.js';
import { cannotRun, CTSYNC_BIN, runCtsync } from '../helpers/env.js';

const PREFIX = 'ctsf-';
/** How long a dead stream is watched after takeover: covers several of the client's TCP retransmissions. */
const OBSERVE_MS = 6000;

const reason = cannotRun(['ip', 'nft', 'conntrack', 'python3', 'keepalived']);
if (reason) console.warn(`[failover-control] NOT RUN: ${reason}`);
const noCli = existsSync(CTSYNC_BIN) ? undefined : `needs the built CLI at ${CTSYNC_BIN} (npm run build)`;
if (!reason && noCli) console.warn(`[failover-control] hand-copy test NOT RUN: ${noCli}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Run {
  lab: Lab;
  fl: FailoverLab;
  tcp: TcpStream;
  udp: UdpStream;
}

/** A fresh lab with fw1 active, a TCP echo stream and a server-to-client UDP stream flowing through it. */
async function startRun(hooks: Parameters<typeof failoverLab>[1] = {}): Promise<Run> {
  const lab = new Lab({ prefix: PREFIX });
  current = { lab };
  const fl = await failoverLab(lab, hooks);
  current.fl = fl;
  const e = { clientNs: fl.client.ns, serverNs: fl.server.ns, host: fl.server.v4 };
  const tcp = await tcpStream(lab, { ...e, port: 7001, intervalMs: 100 });
  const udp = await udpStream(lab, { ...e, port: 7002, intervalMs: 50 });
  await tcp.waitForEchoes(10);
  await udp.waitForDatagrams(10);
  return { lab, fl, tcp, udp };
}
let current: { lab: Lab; fl?: FailoverLab } | undefined;

/** Packets a firewall dropped per reason, from the strict ruleset's counters. */
async function dropCounters(fl: FailoverLab, fw: FwName): Promise<{ invalid: number; notSyn: number }> {
  const r = await fl.lab.exec(fl.fw[fw].ns, ['nft', 'list', 'chain', 'inet', 'ctslab', 'forward']);
  const count = (re: RegExp): number => Number(re.exec(r.stdout)?.[1] ?? NaN);
  return {
    invalid: count(/ct state invalid counter packets (\d+)/),
    notSyn: count(/tcp flags != syn[^\n]* counter packets (\d+)/),
  };
}

/** The lab's client flows on `from`, written into `to` with `ctsync ct load` (BE_LIBERAL by default): a manual ctsync. */
async function copyFlows(fl: FailoverLab, from: FwName, to: FwName): Promise<{ copied: number; report: string }> {
  const list = await runCtsync(['ct', 'list', '--json', '--netns', fl.fw[from].ns]);
  if (list.code !== 0) throw new Error(`ct list failed: ${list.stderr}`);
  const doc = JSON.parse(list.stdout) as { flows: { l4: string; orig: { src: string } }[] };
  // Only the client's flows: VRRP between the firewalls is each node's own (and clashes by tuple with the peer's).
  const flows = doc.flows.filter((f) => (f.l4 === 'tcp' || f.l4 === 'udp') && f.orig.src === fl.client.v4);
  const load = await runCtsync(['ct', 'load', '-', '--netns', fl.fw[to].ns], flows.map((f) => JSON.stringify(f)).join('\n') + '\n');
  if (load.code !== 0) throw new Error(`ct load failed (${load.code}): ${load.stdout} ${load.stderr}`);
  return { copied: flows.length, report: load.stdout.trim() };
}

describe.skipIf(reason !== undefined)('failover lab (e2e, control runs without ctsync)', () => {
  beforeAll(() => {
    const stale = Lab.sweep(PREFIX);
    if (stale.length) console.warn(`[failover-control] removed leftovers of an earlier run: ${stale.join(' ')}`);
  });

  afterEach(async () => {
    // Runs also when the test failed: nothing of the lab may outlive it.
    if (!current) return;
    const { lab, fl } = current;
    const names = [...lab.names];
    current = undefined;
    await fl?.close();
    await lab.teardown();
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    expect(names.filter((n) => left.includes(n))).toEqual([]);
    if (fl) expect(existsSync(fl.dir)).toBe(false);
  });

  it('without state sync the standby takes over the VIPs and the TCP and UDP streams die', async () => {
    const { fl, tcp, udp } = await startRun();
    expect(await fl.whoIsMaster()).toBe('fw1');
    const before = await dropCounters(fl, 'fw2');

    const lossAt = await fl.powerLoss('fw1');
    const masterAt = await fl.waitForMaster('fw2');
    const echoedAtTakeover = tcp.stats.echoed;
    const receivedAtTakeover = udp.stats.received;
    await sleep(OBSERVE_MS);
    const after = await dropCounters(fl, 'fw2');
    console.log(
      `[failover-control] no sync: takeover ${masterAt - lossAt} ms after power loss; ` +
        `TCP echoes ${echoedAtTakeover} → ${tcp.stats.echoed} in ${OBSERVE_MS} ms after takeover (error ${tcp.stats.error ?? 'none'}); ` +
        `UDP datagrams ${receivedAtTakeover} → ${udp.stats.received}; fw2 dropped ${after.invalid - before.invalid} INVALID, ` +
        `${after.notSyn - before.notSyn} new-without-SYN`,
    );
    // The stream is dead: not one more echo, no RST either (a strict firewall drops silently).
    expect(tcp.stats.echoed).toBe(echoedAtTakeover);
    expect(tcp.stats.error).toBeUndefined();
    // The client's retransmissions reached fw2 and were dropped there as INVALID (tcp_loose=0), not lost elsewhere.
    expect(after.invalid).toBeGreaterThan(before.invalid);
    // Server-to-client UDP is a new flow from the outside on fw2: policy drop.
    expect(udp.stats.received).toBe(receivedAtTakeover);

    // Failback: fw1 comes back empty and, with preempt on, takes the VIPs back; the lab routes new flows again.
    await fl.powerOn('fw1');
    const onAt = Date.now();
    const backAt = await fl.waitForMaster('fw1');
    console.log(`[failover-control] failback: fw1 master again ${backAt - onAt} ms after power-on`);
    const again = await tcpStream(fl.lab, { clientNs: fl.client.ns, serverNs: fl.server.ns, host: fl.server.v4, port: 7003 });
    await again.waitForEchoes(3);
    await again.stop();
    await tcp.stop();
    await udp.stop();
  });

  it.skipIf(noCli !== undefined)('with the entries copied by hand before the power loss both streams survive failover and failback', async () => {
    // The manual stand-in for ctsync's resync at boot: fw1 gets fw2's flows before its keepalived starts.
    const copies: string[] = [];
    const { fl, tcp, udp } = await startRun({
      beforeKeepalived: async (fw, boot) => {
        if (boot === 'power-on' && current?.fl) copies.push((await copyFlows(current.fl, 'fw2', fw.name)).report);
      },
    });
    const toFw2 = await copyFlows(fl, 'fw1', 'fw2');
    expect(toFw2.copied).toBe(2); // the TCP stream and the UDP stream

    const lossAt = await fl.powerLoss('fw1');
    const echoedAtLoss = tcp.stats.echoed;
    const receivedAtLoss = udp.stats.received;
    const masterAt = await fl.waitForMaster('fw2');
    await tcp.waitForEchoes(echoedAtLoss + 20, 15_000);
    await udp.waitForDatagrams(receivedAtLoss + 20, 15_000);
    const failover = { tcpGap: tcp.stats.maxGapMs, udpGap: udp.stats.maxGapMs, udpLost: udp.stats.lastSeq - udp.stats.received };
    console.log(
      `[failover-control] hand copy (${toFw2.report}): takeover ${masterAt - lossAt} ms; ` +
        `TCP max gap ${failover.tcpGap} ms; UDP max gap ${failover.udpGap} ms, ${failover.udpLost} datagrams lost`,
    );
    expect(tcp.stats.error).toBeUndefined();
    expect(tcp.stats.closed).toBe(false);

    // Measure the failback on its own.
    tcp.stats.maxGapMs = 0;
    udp.stats.maxGapMs = 0;
    const lostBefore = udp.stats.lastSeq - udp.stats.received;
    await fl.powerOn('fw1');
    const onAt = Date.now();
    const backAt = await fl.waitForMaster('fw1');
    const echoedAtBack = tcp.stats.echoed;
    const receivedAtBack = udp.stats.received;
    await tcp.waitForEchoes(echoedAtBack + 20, 15_000);
    await udp.waitForDatagrams(receivedAtBack + 20, 15_000);
    console.log(
      `[failover-control] failback with hand copy (${copies.join('; ')}): fw1 master ${backAt - onAt} ms after power-on; ` +
        `TCP max gap ${tcp.stats.maxGapMs} ms; UDP max gap ${udp.stats.maxGapMs} ms, ` +
        `${udp.stats.lastSeq - udp.stats.received - lostBefore} datagrams lost`,
    );
    expect(copies).toHaveLength(1);
    expect(tcp.stats.error).toBeUndefined();
    expect(tcp.stats.closed).toBe(false);
    await tcp.stop();
    await udp.stop();
  });
});
