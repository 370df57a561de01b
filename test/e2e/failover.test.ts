// Issue 4's acceptance test: with ctsync on both strict firewalls, wired through keepalived (notify FIFO + track
// file), a long-lived TCP echo stream and a server-to-client UDP stream survive the active's power loss and the
// failback; the same run without ctsync kills the TCP stream (also shown, by other means, in
// failover-control.test.ts, which runs in the same e2e suite).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CtsyncLab, describePhase, describeTransition, runPhase, startStreams, streamFlows, type PhaseResult, type Streams } from '../../src/lab/demo.js';
import { Lab } from '../../src/lab/netns.js';
import { cannotRun, CTSYNC_BIN } from '../helpers/env.js';

const PREFIX = 'ctsf-';
const TAG = '[failover]';

const reason = cannotRun(['ip', 'nft', 'conntrack', 'python3', 'keepalived'], true);
if (reason) console.warn(`${TAG} NOT RUN: ${reason}`);

let current: { lab: Lab; cl?: CtsyncLab; streams?: Streams } | undefined;

/** A fresh lab (with or without ctsync), fw1 master, both streams flowing through it. */
async function startRun(sync: boolean, warm: ('fw1' | 'fw2')[] = []): Promise<{ cl: CtsyncLab; s: Streams }> {
  const lab = new Lab({ prefix: PREFIX });
  current = { lab };
  const cl = await CtsyncLab.build(lab, { bin: CTSYNC_BIN, sync, warm });
  current.cl = cl;
  const s = await startStreams(cl);
  current.streams = s;
  return { cl, s };
}

/** Every failure message says what both daemons and keepalived were last saying. */
function logs(cl: CtsyncLab): string {
  return (['fw1', 'fw2'] as const)
    .map((fw) => `${fw} ctsync: ${cl.nodes[fw]?.log.slice(-5).join(' | ') ?? '(none)'}\n${fw} keepalived: ${cl.fl.keepalivedLog(fw).slice(-5).join(' | ')}`)
    .join('\n');
}

function expectSurvived(p: PhaseResult, cl: CtsyncLab): void {
  const ctx = `${describePhase(p)}\n${logs(cl)}`;
  expect(p.tcp.error, ctx).toBeUndefined(); // "104" would be a RST (ECONNRESET)
  expect(p.tcp.closed, ctx).toBe(false);
  expect(p.tcp.outOfOrder, ctx).toBe(0); // every line echoed, in order
  expect(p.tcp.survived, ctx).toBe(true);
  expect(p.udp.survived, ctx).toBe(true);
  // The new master committed the peer's table (the two streams at least) and said so in its stats.
  expect(p.transition, `no MASTER transition recorded on ${p.to}\n${ctx}`).toBeDefined();
  expect(p.transition!.result, ctx).toBe('ok');
  const c = p.transition!.commit;
  expect(c, ctx).toBeDefined();
  expect(c!.counts.failed, ctx).toBe(0);
  // A warm standby had the streams' flows in its kernel already (the streams surviving is the proof): its commit
  // writes only what changed since its last round, maybe nothing. A cold one writes them now.
  if (!c!.warm) expect(c!.counts.created + c!.counts.replaced + c!.counts.updated, ctx).toBeGreaterThanOrEqual(2);
}

describe.skipIf(reason !== undefined)('failover with ctsync (e2e acceptance, issue 4)', () => {
  beforeAll(() => {
    const stale = Lab.sweep(PREFIX);
    if (stale.length) console.warn(`${TAG} removed leftovers of an earlier run: ${stale.join(' ')}`);
  });

  afterEach(async () => {
    // Runs also when the test failed: nothing of the lab may outlive it.
    if (!current) return;
    const { lab, cl, streams } = current;
    const names = [...lab.names];
    current = undefined;
    await streams?.tcp.stop().catch(() => {});
    await streams?.udp.stop().catch(() => {});
    await cl?.close();
    await lab.teardown();
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    expect(names.filter((n) => left.includes(n))).toEqual([]);
    if (cl) expect(existsSync(cl.fl.dir)).toBe(false);
  });

  it('both streams survive the active losing power and the failback; a node not in sync never takes the VIPs', async () => {
    const { cl, s } = await startRun(true);
    expect(await cl.fl.whoIsMaster()).toBe('fw1');
    // The standby must hold both streams before the plug is pulled.
    const { peerFlows } = await cl.waitInSync('fw2', streamFlows(s));
    console.log(`${TAG} fw2 in sync before the power loss: holds ${peerFlows} of fw1's flows`);

    // 1. The active loses power.
    const failover = await runPhase(cl, s, 'failover');
    console.log(`${TAG} ${describePhase(failover)}`);
    if (failover.transition) console.log(`${TAG} fw2 ctsync ${describeTransition(failover.transition)}`);
    expectSurvived(failover, cl);

    // 2. fw1 comes back empty. Its daemon resyncs from fw2; only then does its track file say 0 and keepalived let
    //    it preempt. fw1 holding the VIPs earlier would commit nothing and the streams would die.
    const failback = await runPhase(cl, s, 'failback');
    console.log(`${TAG} ${describePhase(failback)}`);
    if (failback.transition) console.log(`${TAG} fw1 ctsync ${describeTransition(failback.transition)}`);
    console.log(`${TAG} fw1 track file after power-on: ${failback.trackTimeline!.map((x) => `${x.value || '-'}@${x.atMs}ms`).join(' ')}`);
    expect(failback.masterWhileNotReady, logs(cl)).toBe(false);
    expect(failback.trackTimeline!.at(-1)?.value).toBe('0');
    expectSurvived(failback, cl);
    expect((await cl.stats('fw1')).ha?.role).toBe('master');
    // fw2's BACKUP comes through its own FIFO, independently of fw1's takeover: give it a moment on a busy machine.
    const until = Date.now() + 10_000;
    while ((await cl.stats('fw2')).ha?.role !== 'backup' && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    expect((await cl.stats('fw2')).ha?.role, logs(cl)).toBe('backup');
  }, 180_000);

  it('a powered-on node whose sync link comes up late stays out of the election until it holds the peer table (fw2 a warm standby)', async () => {
    const { cl, s } = await startRun(true, ['fw2']);
    await cl.waitInSync('fw2', streamFlows(s));
    const failover = await runPhase(cl, s, 'failover');
    console.log(`${TAG} warm standby: ${describePhase(failover)}`);
    expectSurvived(failover, cl);
    expect(failover.transition?.commit?.warm, logs(cl)).toBe(true);
    // fw1 boots with its keepalived links up but no peer link for 8 s: it has no state and must not preempt fw2.
    const failback = await runPhase(cl, s, 'failback', { syncLinkDelayMs: 8000 });
    console.log(`${TAG} slow sync link: ${describePhase(failback)}`);
    if (failback.transition) console.log(`${TAG} fw1 ctsync ${describeTransition(failback.transition)}`);
    console.log(`${TAG} fw1 track file after power-on: ${failback.trackTimeline!.map((x) => `${x.value || '-'}@${x.atMs}ms`).join(' ')}`);
    console.log(`${TAG} fw1 ctsync readiness since power-on:\n  ${cl.nodes.fw1!.log.filter((l) => /ready|stale/.test(l)).slice(-6).join('\n  ')}`);
    expect(failback.masterWhileNotReady, logs(cl)).toBe(false);
    expectSurvived(failback, cl);
  }, 180_000);

  it('control: the same run without ctsync kills the TCP stream at failover (and the UDP stream)', async () => {
    const { cl, s } = await startRun(false);
    const failover = await runPhase(cl, s, 'failover', { resumeTimeoutMs: 6000 });
    console.log(`${TAG} control (no ctsync): ${describePhase(failover)}; fw2 dropped ${failover.dropped.invalid} INVALID, ${failover.dropped.notSyn} new-without-SYN`);
    expect(failover.tcp.survived).toBe(false);
    expect(failover.tcp.echoedAfter).toBe(0); // not one more echo
    expect(failover.tcp.error).toBeUndefined(); // a strict firewall drops silently: no RST either
    expect(failover.dropped.invalid).toBeGreaterThan(0); // the client's retransmissions died on fw2 as INVALID
    expect(failover.udp.survived).toBe(false);
  }, 120_000);
});
