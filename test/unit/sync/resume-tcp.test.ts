// The sync engine over the real TCP/TLS link on 127.0.0.1, where the link's per-peer queue cap (maxQueuedBytes)
// matters: more to send than the cap holds goes out paced by backpressure (a resume) or coalesces until the link
// drains (changes for a slow standby), where sent at once it would pass the cap, drop the link, and start over.
import pino from 'pino';
import { describe, expect, test } from 'vitest';
import { SyncEngine } from '../../../src/sync/engine.js';
import { LocalTable } from '../../../src/state/local-table.js';
import { flowKey } from '../../../src/state/key.js';
import { systemClock } from '../../../src/state/clock.js';
import { TcpTransport } from '../../../src/transport/tcp/index.js';
import { freePort, freshPskFile, loopbackRelay, perTest } from '../../contract/tcp-fixtures.js';
import { waitFor } from '../../contract/transport-contract.js';
import { tcpFlow } from '../state/flows.js';
import { WARN, captureLogger } from '../transport/log-capture.js';

const log = pino({ level: process.env.LOG ?? 'silent' });
const FAST = { clusterId: 'lab', heartbeatMs: 100, deadAfterMs: 400, connectTimeoutMs: 1000, helloTimeoutMs: 1000, backoff: { initialMs: 20, maxMs: 200 }, dialStaggerMs: 50 };

const scratch = perTest();

/** A TLS link for `me` on `port` to `peers` ([node id, port]), queue cap 256 KiB. */
function tlsLink(me: string, port: number, peers: [string, number][], pskFile: string, deadAfterMs = FAST.deadAfterMs) {
  const link = new TcpTransport({ ...FAST, deadAfterMs, nodeId: me, listen: { host: '127.0.0.1', port }, peers: peers.map(([nodeId, p]) => ({ nodeId, addresses: [`127.0.0.1:${p}`] })), tls: { pskFile }, maxQueuedBytes: 256 << 10 });
  scratch.defer(() => link.stop());
  return link;
}

/** A started SyncEngine for `nodeId` on `link`. */
function engineOn(nodeId: string, local: LocalTable, link: TcpTransport, logger = log) {
  const e = new SyncEngine({ nodeId, clusterId: 'lab', coalesceMs: 1, digestIntervalMs: 0, heartbeatMs: 100, maxFrameBytes: 4 << 20, entriesPerFrame: 1000 }, local, link, systemClock, logger);
  scratch.defer(() => e.stop());
  e.start();
  return e;
}

/** Applies kernel events for flows from..to-1 to `local` and tells the engine, as the daemon does. */
function churn(local: LocalTable, A: SyncEngine) {
  return (from: number, to: number, kind: 'new' | 'update' = 'new', mark = 0) => {
    for (let i = from; i < to; i++) {
      const r = local.applyEvent({ kind, flow: tcpFlow(i, { mark }), origin: 'kernel', portId: 0 });
      A.changed(r.key, kind === 'new', r.slot);
    }
  };
}

/** A relay on a free port to `target` that the test can stall, as a congested sync link would be; returns it and its port. */
async function relayTo(target: number) {
  const port = await freePort();
  const relay = loopbackRelay(port, target);
  scratch.defer(() => relay.off());
  await relay.on();
  return { relay, port };
}

/**
 * Active fw-a and standby fw-b, each a SyncEngine on its own TcpTransport (queue cap 256 KiB). fw-a reaches fw-b at
 * `toB` (fw-b's own port unless the test puts something in between); fw-b's dials to fw-a go nowhere if `oneWay`.
 */
async function pair(o: { deadAfterMs?: number; toB?: (portB: number) => Promise<number>; oneWay?: boolean } = {}) {
  const logA = captureLogger('info');
  const pskFile = freshPskFile(scratch.dir());
  const [pa, pb] = [await freePort(), await freePort()];
  const toB = o.toB ? await o.toB(pb) : pb;
  const toA = o.oneWay ? await freePort() : pa;
  const a = tlsLink('fw-a', pa, [['fw-b', toB]], pskFile, o.deadAfterMs);
  const b = tlsLink('fw-b', pb, [['fw-a', toA]], pskFile, o.deadAfterMs);
  const local = new LocalTable({ clock: systemClock });
  const A = engineOn('fw-a', local, a, logA.logger);
  const B = engineOn('fw-b', new LocalTable({ clock: systemClock }), b);
  await Promise.all([b.start(), a.start()]);
  const held = () => B.peerTables().get('fw-a')?.size ?? 0;
  return { a, b, A, B, local, put: churn(local, A), held, logA: logA.lines };
}

describe('sync engine over the TCP link', () => {
  test('a resume larger than the queue cap goes out paced and converges without a bulk', async () => {
    const { a, b, A, put, held } = await pair();
    put(0, 100);
    await waitFor('first sync', () => held() === 100 && A.status()[0]!.state === 'in_sync' && A.status()[0]!.unackedFrames === 0);
    const bulks = A.counters.bulks;
    await b.stop(); // the standby's link goes away; its engine (and session) stay
    await waitFor('down', () => A.status()[0]!.link !== 'up');
    // the resume below carries 20k entries, several times what 256 KiB holds
    put(100, 20_100);
    await b.start();
    await waitFor('resumed', () => held() === 20_100, 15_000);
    expect(A.counters.resumes).toBeGreaterThanOrEqual(1);
    expect(A.counters.bulks).toBe(bulks);
    expect(a.stats().dropped.queue_full ?? 0).toBe(0);
  });

  test('changes for a standby that stopped reading wait, coalesced, for the link to drain; the link stays up', async () => {
    // fw-a reaches fw-b only through a relay the test can stall, as a congested sync link would
    let relay: ReturnType<typeof loopbackRelay> | undefined;
    const toB = async (portB: number) => {
      const r = await relayTo(portB);
      relay = r.relay;
      return r.port;
    };
    // a stall outlasts the default link-down time here: only the cap may end it
    const { a, A, B, put, held, logA } = await pair({ deadAfterMs: 60_000, toB, oneWay: true });
    const N = 2000;
    put(0, N);
    await waitFor('first sync', () => held() === N && A.status()[0]!.state === 'in_sync' && A.status()[0]!.unackedFrames === 0);
    relay!.stall();
    // every round changes every flow's mark: ~80 KB of frames, a few rounds past the cap once the kernel's socket
    // buffers are full. Until the sender holds its changes (no entry sent for 20 rounds) or the link drops
    let round = 0;
    let quietRounds = 0;
    while (round < 1000 && quietRounds < 20 && !a.stats().dropped.queue_full) {
      const before = A.counters.entriesOut;
      put(0, N, 'update', ++round);
      A.flush();
      await new Promise((r) => setTimeout(r, 2));
      quietRounds = A.counters.entriesOut === before ? quietRounds + 1 : 0;
    }
    expect(a.stats().dropped.queue_full ?? 0).toBe(0);
    expect(quietRounds).toBe(20);
    expect(A.pending().changes).toBe(N);
    expect(A.pending().heldMs).toBeGreaterThan(0);
    expect(A.counters.holds).toBeGreaterThanOrEqual(1);
    expect(A.status()[0]!.link).toBe('up');
    const sentBefore = A.counters.entriesOut;
    await new Promise((r) => setTimeout(r, 1000)); // long enough a hold to be logged when it ends
    expect(logA.filter((l) => l.level === WARN)).toEqual([]);
    relay!.unstall();
    const keys = Array.from({ length: N }, (_, i) => flowKey(tcpFlow(i)));
    const copy = () => B.peerTables().get('fw-a')!;
    await waitFor('caught up', () => keys.every((k) => copy().get(k)?.mark === round), 15_000);
    expect(A.pending()).toEqual({ changes: 0, heldMs: 0 });
    expect(A.counters.entriesOut - sentBefore).toBe(N); // the 20 held rounds went out as one entry per flow
    const warned = logA.filter((l) => l.level === WARN);
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ msg: 'link was congested: held changes go out now that it drained', changes: N });
    expect(warned[0]!.heldMs).toBeGreaterThanOrEqual(1000);
    expect(A.counters.resumes).toBe(0);
  });

  test('a standby that stopped reading does not hold up another: it falls to the queue cap and resumes later', async () => {
    // fw-a syncs to fw-b directly and to fw-c through a relay the test stalls; fw-c's own dials go nowhere
    const pskFile = freshPskFile(scratch.dir());
    const [pa, pb, pc] = [await freePort(), await freePort(), await freePort()];
    const { relay, port: toC } = await relayTo(pc);
    const a = tlsLink('fw-a', pa, [['fw-b', pb], ['fw-c', toC]], pskFile, 60_000);
    const b = tlsLink('fw-b', pb, [['fw-a', pa]], pskFile, 60_000);
    const c = tlsLink('fw-c', pc, [['fw-a', await freePort()]], pskFile, 60_000);
    const local = new LocalTable({ clock: systemClock });
    const A = engineOn('fw-a', local, a);
    const B = engineOn('fw-b', new LocalTable({ clock: systemClock }), b);
    const C = engineOn('fw-c', new LocalTable({ clock: systemClock }), c);
    await Promise.all([a.start(), b.start(), c.start()]);
    const put = churn(local, A);
    const N = 2000;
    const keys = Array.from({ length: N }, (_, i) => flowKey(tcpFlow(i)));
    const hasMarks = (E: SyncEngine, mark: number) => () => keys.every((k) => E.peerTables().get('fw-a')?.get(k)?.mark === mark);
    put(0, N);
    await waitFor('first sync', () => hasMarks(B, 0)() && hasMarks(C, 0)() && A.status().every((p) => p.state === 'in_sync'));
    relay.stall();
    // rounds of changes to every flow until fw-c's queue passes the cap: fw-b keeps getting each round meanwhile
    let round = 0;
    while (round < 1000 && !a.stats().dropped.queue_full) {
      put(0, N, 'update', ++round);
      A.flush();
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(a.stats().dropped.queue_full).toBe(1);
    expect(A.counters.holds).toBe(0);
    expect(A.pending().changes).toBe(0);
    await waitFor('fw-b holds the last round', hasMarks(B, round), 15_000);
    // fw-a dials fw-c again (a new connection through the relay, not stalled) and resumes it
    await waitFor('fw-c caught up', hasMarks(C, round), 15_000);
    expect(A.status().find((p) => p.nodeId === 'fw-c')!.state).toBe('in_sync');
    expect(A.counters.resumes + A.counters.bulks).toBeGreaterThan(0);
  });
});
