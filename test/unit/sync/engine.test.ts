// The sync engine over the in-memory transport: convergence under churn, link cuts, restarts of either side,
// reincarnated flows, digest repair, and refusal of foreign frames.
import { afterEach, describe, expect, test, vi } from 'vitest';
import pino from 'pino';
import { SyncEngine, type SyncOptions } from '../../../src/sync/engine.js';
import { LocalTable, rebornOf } from '../../../src/state/local-table.js';
import { FakeClock, systemClock, type Clock } from '../../../src/state/clock.js';
import { createMemoryPair, type MemoryPairOptions, type MemoryTransport } from '../../../src/transport/memory.js';
import { toSyncedFlow } from '../../../src/wire/entry.js';
import { flowKey } from '../../../src/state/key.js';
import { decodeFrame, encodeFrame } from '../../../src/wire/envelope.js';
import { Ips, TcpState, type Flow, type FlowEvent } from '../../../src/kernel/types.js';

const log = pino({ level: process.env.LOG ?? 'silent' });
const opts = (nodeId: string): SyncOptions => ({ nodeId, clusterId: 'test', coalesceMs: 1, digestIntervalMs: 0, heartbeatMs: 0, maxFrameBytes: 4 << 20, entriesPerFrame: 500 });

interface Node {
  local: LocalTable;
  engine: SyncEngine;
  event(kind: FlowEvent['kind'], flow: Flow): void;
}

const engines: SyncEngine[] = [];
afterEach(() => {
  for (const e of engines.splice(0)) e.stop();
});

function node(id: string, transport: MemoryTransport, local = new LocalTable({ clock: systemClock }), clock: Clock = systemClock): Node {
  const engine = new SyncEngine(opts(id), local, transport, clock, log);
  engine.start();
  engines.push(engine);
  return {
    local,
    engine,
    event(kind, flow) {
      const r = local.applyEvent({ kind, flow, origin: 'kernel', portId: 0 });
      const reborn = rebornOf(r.change);
      if (reborn !== undefined) engine.changed(r.key, reborn, r.slot); // as the daemon does
    },
  };
}

/** fw1 and fw2 over one memory link, both transports started. */
async function startedPair(link: Omit<MemoryPairOptions, 'nodeIds'> = {}) {
  const pair = createMemoryPair({ nodeIds: ['fw1', 'fw2'], ...link });
  const A = node('fw1', pair.a);
  const B = node('fw2', pair.b);
  await pair.a.start();
  await pair.b.start();
  return { ...pair, A, B };
}

/** startedPair with `n` flows on fw1 that fw2 holds and has acknowledged: what a cut then loses is only in fw1's log. */
async function settledPair(n: number) {
  const pair = await startedPair();
  for (let i = 0; i < n; i++) pair.A.event('new', tcp(i));
  await until(converged(pair.A, pair.B, 'fw1'), 'first convergence');
  await until(() => pair.A.engine.status()[0].unackedFrames === 0, 'acks');
  return pair;
}

function tcp(i: number, state = TcpState.Established, extra: Partial<Flow> = {}): Flow {
  const src = `10.1.${(i >> 8) & 255}.${i & 255}`;
  return {
    family: 2,
    orig: { src, dst: '10.2.0.1', proto: 6, sport: 10000 + (i % 50000), dport: 443 },
    reply: { src: '10.2.0.1', dst: src, proto: 6, sport: 443, dport: 10000 + (i % 50000) },
    status: Ips.Confirmed | (state >= TcpState.Established ? Ips.SeenReply | Ips.Assured : 0),
    timeout: 3600,
    mark: i % 3,
    protoinfo: { tcp: { state } },
    ...extra,
  };
}

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await tick();
  }
}

/** The receiver's table of `from` equals the sender's local table: same keys, same synced contents. */
function expectConverged(sender: Node, receiver: Node, fromId: string): void {
  const peer = receiver.engine.peerTables().get(fromId)!;
  const strip = (f: Flow) => ({ ...toSyncedFlow(f), timeout: undefined });
  const a = new Map<string, unknown>();
  sender.local.forEach((k) => a.set(k, strip(sender.local.get(k)!)));
  const b = new Map<string, unknown>();
  peer.forEach((k) => b.set(k, strip(peer.get(k)!)));
  expect(b.size).toBe(a.size);
  for (const [k, v] of a) expect(b.get(k)).toEqual(v);
  expect(Buffer.from(peer.digest(256).buffer)).toEqual(Buffer.from(sender.local.digest(256).buffer));
}

const converged = (s: Node, r: Node, id: string) => () => {
  const peer = r.engine.peerTables().get(id);
  return !!peer && peer.size === s.local.size && Buffer.compare(Buffer.from(peer.digest(256).buffer), Buffer.from(s.local.digest(256).buffer)) === 0;
};

describe('sync engine', () => {
  test('changes, updates and deletes converge; the standby never keeps what the active destroyed', async () => {
    const { A, B } = await startedPair();
    for (let i = 0; i < 3000; i++) A.event('new', tcp(i, TcpState.SynSent));
    for (let i = 0; i < 3000; i += 2) A.event('update', tcp(i, TcpState.Established));
    for (let i = 0; i < 3000; i += 5) A.event('destroy', tcp(i));
    await until(converged(A, B, 'fw1'), 'convergence');
    expectConverged(A, B, 'fw1');
    expect(B.engine.peerTables().get('fw1')!.size).toBe(3000 - 600);
    await until(() => A.engine.status()[0].state === 'in_sync', 'in_sync');
    await until(() => A.engine.status()[0].unackedFrames === 0, 'acks');
  });

  test('changes between two sends go out once per key, whatever happened to their table slots meanwhile', async () => {
    const { A, B } = await startedPair();
    for (let i = 0; i < 10; i++) A.event('new', tcp(i, TcpState.SynSent));
    await until(converged(A, B, 'fw1'), 'first convergence');
    const before = { ...A.engine.counters };
    const slot = (i: number): number => {
      let at = -1;
      A.local.forEach((k, s) => A.local.get(k)!.orig.sport === 10000 + i && (at = s));
      return at;
    };
    const slot0 = slot(0);
    // all before the next send: slots are freed and taken again by the same or other keys
    A.event('destroy', tcp(0));
    A.event('new', tcp(100)); // takes flow 0's slot
    expect(slot(100)).toBe(slot0);
    A.event('destroy', tcp(1));
    A.event('new', tcp(1)); // back in its own slot: a new incarnation
    A.event('update', tcp(2, TcpState.Established));
    A.event('update', tcp(2, TcpState.FinWait));
    A.event('destroy', tcp(3));
    A.event('new', tcp(101)); // takes flow 3's slot, and is gone again before the send
    A.event('destroy', tcp(101));
    A.event('new', tcp(4, TcpState.Established)); // a NEW on a held key: a new incarnation in place
    await until(converged(A, B, 'fw1'), 'convergence');
    expectConverged(A, B, 'fw1');
    expect(A.engine.counters.entriesOut - before.entriesOut).toBe(4); // 100, 1, 2, 4
    expect(A.engine.counters.deletesOut - before.deletesOut).toBe(3); // 0, 3, 101
  });

  test('a flush or a refresh batch bigger than what the link has left stops once it turns congested; the rest waits, coalesced', async () => {
    // 4 KiB before backpressure: one frame of 500 entries passes it, and the memory link is congested from then on
    const { a, A, B } = await startedPair({ highWaterMarkBytes: 4 << 10 });
    for (let i = 0; i < 6000; i++) A.event('new', tcp(i));
    await until(converged(A, B, 'fw1'), 'first convergence');
    // the start's bulk (which these flows may have joined) is over, everything acked, the link drained
    await until(() => A.engine.status()[0].state === 'in_sync' && A.engine.status()[0].unackedFrames === 0 && !a.congested(), 'in sync');
    const before = { ...A.engine.counters };
    for (let i = 0; i < 5000; i++) A.event('update', tcp(i, TcpState.Established, { mark: 7 }));
    for (let i = 5000; i < 6000; i++) A.event('destroy', tcp(i));
    A.engine.flush(); // one flush of 6000 changes, as a burst between two checks would give
    const sent = A.engine.counters.entriesOut - before.entriesOut;
    expect(sent).toBe(500); // one frame, then the link was congested
    expect(A.engine.counters.deletesOut).toBe(before.deletesOut);
    expect(A.engine.counters.holds - before.holds).toBe(1);
    expect(A.engine.pending().changes).toBe(6000 - sent);
    // changes during the hold join it: flow 0 (sent already) and flow 4999 (held) change again
    A.event('update', tcp(0, TcpState.Established, { mark: 8 }));
    A.event('update', tcp(4999, TcpState.Established, { mark: 8 }));
    expect(A.engine.pending().changes).toBe(6000 - sent + 1);
    await until(converged(A, B, 'fw1'), 'convergence');
    expectConverged(A, B, 'fw1');
    expect(B.engine.peerTables().get('fw1')!.get(flowKey(tcp(4999)))!.mark).toBe(8);
    expect(A.engine.pending()).toEqual({ changes: 0, heldMs: 0 });
    expect(A.engine.counters.entriesOut - before.entriesOut).toBe(5001); // each flow once, flow 0 twice
    expect(A.engine.counters.deletesOut - before.deletesOut).toBe(1000);
    // a batch of timeout refreshes too: one frame, then the rest joins the changes (upserts, as held refreshes do)
    await until(() => !a.congested(), 'drained again');
    const mid = { ...A.engine.counters };
    A.engine.sendRefreshes(Array.from({ length: 3000 }, (_, i) => ({ key: flowKey(tcp(i)), timeout: 1800 })));
    expect(A.engine.counters.refreshesOut - mid.refreshesOut).toBe(500);
    expect(A.engine.pending().changes).toBe(2500);
    await until(() => A.engine.pending().changes === 0 && converged(A, B, 'fw1')(), 'held refreshes sent');
    expect(A.engine.counters.entriesOut - mid.entriesOut).toBe(2500);
  });

  test('a hold ends once the link is no longer congested, also when the transport sends no drain', async () => {
    // as TCP with several peers: one congested peer recovers while another's queue keeps the drain from coming. The
    // engine is not started, so housekeeping (the old, once-a-second way out) cannot end the hold either.
    const { a, b } = createMemoryPair({ nodeIds: ['fw1', 'fw2'] });
    const local = new LocalTable({ clock: systemClock });
    const engine = new SyncEngine(opts('fw1'), local, a, systemClock, log);
    engines.push(engine);
    const B = node('fw2', b);
    let congested = false;
    a.congested = () => congested;
    await a.start();
    await b.start();
    await until(() => engine.status()[0].state === 'in_sync', 'in sync');
    congested = true;
    for (let i = 0; i < 100; i++) {
      const r = local.applyEvent({ kind: 'new', flow: tcp(i), origin: 'kernel', portId: 0 });
      engine.changed(r.key, true, r.slot);
    }
    engine.flush();
    expect(engine.counters.holds).toBe(1);
    expect(engine.pending().changes).toBe(100);
    await tick(120); // two looks at a link still congested: still held
    expect([engine.counters.entriesOut, engine.pending().changes]).toEqual([0, 100]);
    congested = false;
    await until(() => B.engine.peerTables().get('fw1')?.size === 100, 'held changes sent');
    expect([engine.counters.entriesOut, engine.counters.holds, engine.pending().changes]).toEqual([100, 1, 0]);
  });

  test('a long hold is looked at less often: 50 ms after it began, then a quarter of its age, at most once a second', () => {
    // no peer yet (the transport is not started), so flush goes straight to the congestion check
    const { a } = createMemoryPair({ nodeIds: ['fw1', 'fw2'] });
    a.congested = () => true;
    const clock = new FakeClock(0);
    const local = new LocalTable({ clock: systemClock });
    const engine = new SyncEngine(opts('fw1'), local, a, clock, log);
    engines.push(engine);
    const spy = vi.spyOn(globalThis, 'setTimeout');
    let delays: unknown[];
    try {
      const r = local.applyEvent({ kind: 'new', flow: tcp(1), origin: 'kernel', portId: 0 });
      engine.changed(r.key, true, r.slot); // opens a batch: its 1 ms check
      engine.flush(); // held from now
      clock.advance(400);
      engine.flush();
      clock.advance(10_000);
      engine.flush();
      delays = spy.mock.calls.map((c) => c[1]);
    } finally {
      spy.mockRestore();
    }
    expect(delays).toEqual([1, 50, 100, 1000]);
    expect([engine.counters.holds, engine.pending()]).toEqual([1, { changes: 1, heldMs: 10_400 }]);
  });

  test('a link cut during churn resumes without a full bulk and converges', async () => {
    const { link, A, B } = await settledPair(1000);
    const bulks = A.engine.counters.bulks;
    link.cut();
    for (let i = 1000; i < 1500; i++) A.event('new', tcp(i));
    for (let i = 0; i < 200; i++) A.event('destroy', tcp(i));
    await tick(20);
    link.restore();
    await until(converged(A, B, 'fw1'), 'convergence after the cut');
    expectConverged(A, B, 'fw1');
    expect(A.engine.counters.resumes).toBe(1);
    expect(A.engine.counters.bulks).toBe(bulks);
  });

  test('a cut that outlasts housekeeping still resumes: the log keeps what a peer whose link is down has not acknowledged', async () => {
    const { link, A, B } = await startedPair();
    const housekeeping = () => (A.engine as unknown as { housekeeping(): void }).housekeeping();
    for (let i = 0; i < 1000; i++) A.event('new', tcp(i));
    await until(converged(A, B, 'fw1'), 'first convergence');
    // the bulk that met the standby's hello carried the flows; its end may still be on the way (a standby cut off
    // in the middle of a bulk asks for a new one, see below)
    await until(() => B.engine.status()[0]!.peerInSync, 'the end of the bulk');
    // cut before the standby's first ack (they ride on its housekeeping, a second after it started): what it holds
    // is still only in A's log
    expect(A.engine.status()[0].unackedFrames).toBeGreaterThan(0);
    const bulks = A.engine.counters.bulks;
    link.cut();
    for (let i = 1000; i < 1300; i++) A.event('new', tcp(i));
    for (let i = 0; i < 100; i++) A.event('destroy', tcp(i));
    A.engine.flush();
    await tick(30);
    housekeeping(); // about once a second: it used to forget every frame once no peer was up
    const behind = A.engine.status()[0];
    expect(behind.link).toBe('down');
    expect(behind.unackedFrames).toBeGreaterThan(0);
    expect(behind.oldestUnackedMs, 'how far behind the cut peer is').toBeGreaterThanOrEqual(25);
    link.restore();
    await until(converged(A, B, 'fw1'), 'convergence after the cut');
    expectConverged(A, B, 'fw1');
    expect([A.engine.counters.resumes, A.engine.counters.bulks - bulks]).toEqual([1, 0]);
    expect(A.engine.status()[0]!.why).toMatch(/^resumed \d+ entries after seq \d+$/);
  });

  test('a cut during which many times more keys changed than the table holds ends in a full bulk, the cheaper catch-up', async () => {
    const { link, A, B } = await settledPair(100);
    const resumes = A.engine.counters.resumes;
    link.cut();
    // 2000 flows come and go, 50 come and 10 go for good: a resume would re-send 2060 keys, a bulk the 140 left
    for (let i = 100; i < 150; i++) A.event('new', tcp(i));
    for (let i = 0; i < 10; i++) A.event('destroy', tcp(i));
    for (let i = 1000; i < 3000; i++) {
      A.event('new', tcp(i));
      if (i % 400 === 399) A.engine.flush();
    }
    for (let i = 1000; i < 3000; i++) {
      A.event('destroy', tcp(i));
      if (i % 400 === 399) A.engine.flush();
    }
    A.engine.flush();
    await tick(30);
    link.restore();
    await until(converged(A, B, 'fw1'), 'convergence after the cut');
    expectConverged(A, B, 'fw1');
    expect(A.engine.counters.resumes).toBe(resumes);
    expect(A.engine.counters.bulks).toBeGreaterThanOrEqual(2);
    await until(() => A.engine.status()[0]!.state === 'in_sync', 'the bulk sent');
    expect(A.engine.status()[0]!.why).toMatch(/^full bulk sent: it missed more than the resume log holds \(it has up to seq \d+, the log starts at \d+\)$/);
  });

  /** fw1 and fw2 converged on 600 flows, then the standby misses the delete of tcp(7): it holds one flow too many,
   * which only the end of a bulk sweeps. `hello` may rewrite fw1's hellos on the way (as an older version's). */
  async function pairWithStaleFlow(hello?: (env: ReturnType<typeof body>) => Buffer) {
    const pair = await startedPair();
    const { link, A, B } = pair;
    const onHello = (f: Buffer, dir: string) => {
      if (!hello || dir !== 'a->b' || body(f)?.body !== 'hello') return false;
      (B.engine as unknown as { receive(f: Buffer, p: unknown): void }).receive(hello(body(f)), { nodeId: 'fw1' });
      return true;
    };
    link.setFilter((f, dir) => (onHello(f, dir) ? 'drop' : 'deliver'));
    for (let i = 0; i < 600; i++) A.event('new', tcp(i));
    await until(converged(A, B, 'fw1'), 'first convergence');
    await until(() => B.engine.status()[0]!.peerInSync, 'the end of the first bulk');
    link.setFilter((f, dir) => (onHello(f, dir) || (dir === 'a->b' && body(f)?.body === 'delete') ? 'drop' : 'deliver'));
    A.event('destroy', tcp(7));
    A.engine.flush();
    await tick(20);
    expect(B.engine.peerTables().get('fw1')!.size).toBe(600);
    return { ...pair, onHello, bulks: A.engine.counters.bulks };
  }

  /** The standby of pairWithStaleFlow ends with the active's table, complete; the active counted [resumes, bulks
   * since] and says `why` of its catch-up. */
  async function expectBulkEnded(p: Awaited<ReturnType<typeof pairWithStaleFlow>>, counts: [number, number], why: RegExp) {
    const { A, B } = p;
    await until(() => B.engine.status()[0].peerInSync, 'the bulk ended at the standby');
    expectConverged(A, B, 'fw1');
    expect([A.engine.counters.resumes, A.engine.counters.bulks - p.bulks]).toEqual(counts);
    await until(() => A.engine.status()[0]!.state === 'in_sync', 'the catch-up done');
    expect(A.engine.status()[0]!.why).toMatch(why);
  }
  const body = (f: Buffer) => {
    const d = decodeFrame(f, { maxFrameBytes: 4 << 20 }, { clusterId: 'test' });
    return d.ok ? d.env : undefined;
  };

  test('a receiver that missed only the end of a bulk resumes and gets the end again, which sweeps what the bulk did not list', async () => {
    const p = await pairWithStaleFlow();
    const { link, A, B, onHello } = p;
    link.setFilter((f, dir) => (onHello(f, dir) || (dir === 'a->b' && body(f)?.body === 'bulkEnd') ? 'drop' : 'deliver'));
    await A.engine.bulk();
    await tick(20);
    link.setFilter(undefined);
    expect(B.engine.status()[0].peerInSync).toBe(false);
    link.cut();
    await tick(20);
    link.restore();
    await expectBulkEnded(p, [1, 1], /^resumed 0 entries after seq \d+, and finished bulk \d+$/);
  });

  test('a bulk that a link cut stopped halfway goes on from there after the resume, and its end sweeps', async () => {
    const p = await pairWithStaleFlow();
    const { link, A, B } = p;
    for (let i = 600; i < 3000; i++) A.event('new', tcp(i)); // 6 frames of 500 in a bulk
    A.engine.flush();
    await until(() => B.engine.peerTables().get('fw1')!.size === 3000, 'the new flows (and the stale one)');
    // the link goes down just after the standby got the bulk's second frame of entries
    let frames = 0;
    link.setFilter((f, dir) => {
      const u = dir === 'a->b' ? body(f)?.upsert : undefined;
      if (u?.bulkId && ++frames === 2) queueMicrotask(() => link.cut());
      return 'deliver';
    });
    await A.engine.bulk();
    expect(link.isCut()).toBe(true);
    expect(B.engine.status()[0].peerInSync).toBe(false);
    const sentBefore = A.engine.counters.entriesOut;
    A.event('new', tcp(5000)); // a change during the cut, and one to a flow the bulk had already sent
    A.event('update', tcp(1, TcpState.FinWait));
    A.engine.flush();
    await tick(20);
    link.restore();
    await expectBulkEnded(p, [1, 1], /^resumed \d+ entries after seq \d+, and finished bulk \d+$/);
    expect(B.engine.peerTables().get('fw1')!.has(flowKey(tcp(7)))).toBe(false);
    // the 2 changes, then the resume: the 2 frames the cut lost (the second was still in flight, 1000 entries) and
    // the 2 changes again, then the bulk's other 3 frames (1500); a new bulk would have re-sent all 3001
    expect(A.engine.counters.entriesOut - sentBefore).toBe(2 + 1000 + 2 + 1500);
  });

  test('a bulk its sender finished but whose receiver was cut off halfway (the rest lost in a socket) resumes from the log', async () => {
    const p = await pairWithStaleFlow();
    const { link, A, B } = p;
    for (let i = 600; i < 3000; i++) A.event('new', tcp(i)); // 6 frames of 500 in a bulk, the last of 499
    A.engine.flush();
    await until(() => B.engine.peerTables().get('fw1')!.size === 3000, 'the new flows (and the stale one)');
    // the standby gets the bulk's first 2 frames of entries; the other 4 and the end die with the link
    let frames = 0;
    link.setFilter((f, dir) => {
      const env = dir === 'a->b' ? body(f) : undefined;
      return (env?.upsert?.bulkId && ++frames > 2) || env?.body === 'bulkEnd' ? 'drop' : 'deliver';
    });
    await A.engine.bulk();
    expect([frames, B.engine.status()[0].peerInSync]).toEqual([6, false]);
    link.cut();
    link.setFilter(undefined);
    await tick(20);
    const sentBefore = A.engine.counters.entriesOut;
    link.restore();
    await expectBulkEnded(p, [1, 1], /^resumed 1999 entries after seq \d+, and finished bulk \d+$/);
    expect(B.engine.peerTables().get('fw1')!.has(flowKey(tcp(7)))).toBe(false);
    // the 4 lost frames again (1999 entries) and the end; a new bulk would have re-sent all 2999
    expect(A.engine.counters.entriesOut - sentBefore).toBe(1999);
  });

  test('a receiver whose bulk was cut short asks a peer that cannot finish it (an older version) for a full one', async () => {
    // without the capability the peer would resume and never send the end that sweeps
    const older = (env: ReturnType<typeof body>) => encodeFrame({ ...env!, hello: { ...env!.hello!, capabilities: [] } });
    const p = await pairWithStaleFlow(older);
    const { link, A, onHello } = p;
    link.setFilter((f, dir) => (onHello(f, dir) || (dir === 'a->b' && body(f)?.body === 'bulkEnd') ? 'drop' : 'deliver'));
    await A.engine.bulk();
    await tick(20);
    link.setFilter((f, dir) => (onHello(f, dir) ? 'drop' : 'deliver'));
    link.cut();
    await tick(20);
    link.restore();
    await expectBulkEnded(p, [0, 2], /^full bulk sent: it holds no complete copy/);
  });

  test('timeout refreshes sent while the link is cut reach the standby when it resumes', async () => {
    const { link, A, B } = await settledPair(300); // 3600 s left
    link.cut();
    // the periodic dump finds 120 s left on the first 100 (as the mirror does: the table takes it, then the refresh)
    A.local.beginResync();
    const drift: { key: string; timeout: number }[] = [];
    for (let i = 0; i < 300; i++) {
      const f = tcp(i, TcpState.Established, i < 100 ? { timeout: 120 } : {});
      A.local.resyncFlow(f, undefined, undefined, i >= 100);
      if (i < 100) drift.push({ key: flowKey(f), timeout: 120 });
    }
    A.local.endResync();
    A.engine.sendRefreshes(drift);
    link.restore();
    const peer = () => B.engine.peerTables().get('fw1')!;
    const low = () => drift.filter((d) => (peer().remainingTimeout(d.key) ?? 0) <= 120).length;
    await until(() => A.engine.counters.resumes === 1, 'resume');
    await until(() => low() === 100, 'the refreshed timeouts on the standby', 1000);
    expect(peer().remainingTimeout(flowKey(tcp(200)))).toBeGreaterThan(3500); // the rest kept theirs
  });

  test('frames lost on the link (no cut) are repaired by the digest exchange', async () => {
    const { link, A, B } = await startedPair();
    for (let i = 0; i < 500; i++) A.event('new', tcp(i));
    await until(converged(A, B, 'fw1'), 'convergence');
    // lose every frame towards the standby for a while, without the link going down (no resume happens)
    link.setFilter((_f, dir) => (dir === 'a->b' ? 'drop' : 'deliver'));
    for (let i = 500; i < 900; i++) A.event('new', tcp(i));
    for (let i = 0; i < 100; i++) A.event('destroy', tcp(i));
    await tick(30);
    link.setFilter(undefined);
    expect(converged(A, B, 'fw1')()).toBe(false);
    (A.engine as unknown as { sendDigest(): void }).sendDigest();
    await until(converged(A, B, 'fw1'), 'repair');
    expectConverged(A, B, 'fw1');
    expect(B.engine.counters.divergentBuckets).toBeGreaterThan(0);
  });

  test('a restarted standby gets a full bulk; a restarted active replaces what the standby held', async () => {
    let pair = createMemoryPair({ nodeIds: ['fw1', 'fw2'] });
    const A = node('fw1', pair.a);
    let B = node('fw2', pair.b);
    await pair.a.start();
    await pair.b.start();
    for (let i = 0; i < 800; i++) A.event('new', tcp(i));
    await until(converged(A, B, 'fw1'), 'convergence');
    // standby restart: a fresh engine and an empty peer table
    await pair.a.stop();
    await pair.b.stop();
    pair = createMemoryPair({ nodeIds: ['fw1', 'fw2'] });
    const A2 = node('fw1', pair.a, A.local);
    B = node('fw2', pair.b);
    await pair.a.start();
    await pair.b.start();
    await until(converged(A2, B, 'fw1'), 'bulk to the restarted standby');
    expect(A2.engine.counters.bulks).toBe(1);
    // active restart: a new session whose table lost some flows while it was down
    await pair.a.stop();
    await pair.b.stop();
    const kernel = new LocalTable({ clock: systemClock });
    const A3 = { local: kernel } as Node;
    for (let i = 100; i < 900; i++) kernel.applyEvent({ kind: 'new', flow: tcp(i), origin: 'kernel', portId: 0 });
    const pair2 = createMemoryPair({ nodeIds: ['fw1', 'fw2'] });
    const B2engine = new SyncEngine(opts('fw2'), B.local, pair2.b, systemClock, log);
    // keep the standby's peer table across the link change: reuse its engine state by swapping the transport
    (B.engine as unknown as { transport: unknown }).transport = pair2.b;
    pair2.b.onFrame = (f, from) => (B.engine as unknown as { receive(f: Buffer, p: unknown): void }).receive(f, from);
    pair2.b.onLink = (p, s, r) => (B.engine as unknown as { onLink(p: unknown, s: string, r?: string): void }).onLink(p, s, r);
    B2engine.stop();
    const A3engine = new SyncEngine(opts('fw1'), kernel, pair2.a, systemClock, log);
    A3engine.start();
    engines.push(A3engine);
    A3.engine = A3engine;
    await pair2.a.start();
    await pair2.b.start();
    await until(converged(A3, B, 'fw1'), 'bulk from the restarted active');
    expectConverged(A3, B, 'fw1');
    expect(B.engine.peerTables().get('fw1')!.size).toBe(800);
  });

  test('a bulk cut short by stop() sends no bulk end, and a stopped engine sends nothing', async () => {
    // An end would make the receiver take the part it got for the whole table and drop the rest. The transport can
    // outlive the engine a little: a Redis stop flushes its queue after the daemon stopped the engine.
    const { link, A } = await startedPair();
    for (let i = 0; i < 3000; i++) A.event('new', tcp(i));
    await tick(50);
    const bodies: string[] = [];
    link.setFilter((f, dir) => {
      const d = decodeFrame(f, { maxFrameBytes: 4 << 20 }, { clusterId: 'test' });
      if (dir === 'a->b' && d.ok) bodies.push(d.env.body ?? '');
      return 'deliver';
    });
    const bulk = A.engine.bulk();
    A.engine.stop();
    await bulk;
    A.engine.flush();
    A.event('new', tcp(5000));
    await tick(20);
    expect(bodies[0]).toBe('bulkBegin');
    expect(bodies).toContain('upsert');
    expect(bodies).not.toContain('bulkEnd');
    const sent = bodies.length;
    A.engine.changed('x', true);
    (A.engine as unknown as { sendDigest(): void }).sendDigest();
    await tick(20);
    expect(bodies.length).toBe(sent);
  });

  test('a new connection on the same tuple replaces the old one on the standby, even if its TCP state is earlier', async () => {
    const { A, B } = await startedPair();
    A.event('new', tcp(1, TcpState.TimeWait));
    await until(converged(A, B, 'fw1'), 'first');
    // the kernel re-creates the entry on a SYN in TIME_WAIT: destroy + new, coalesced into one upsert
    A.event('destroy', tcp(1));
    A.event('new', tcp(1, TcpState.SynSent, { id: 99 }));
    await until(converged(A, B, 'fw1'), 'reincarnation');
    const peer = B.engine.peerTables().get('fw1')!;
    const [k] = [...(function* () { const out: string[] = []; peer.forEach((key) => out.push(key)); yield* out; })()];
    expect(peer.get(k)!.protoinfo!.tcp!.state).toBe(TcpState.SynSent);
  });

  test('frames of another cluster, or with a bad MAC, are refused and counted, and change nothing', async () => {
    const { a, b } = createMemoryPair({ nodeIds: ['fw1', 'fw2'] });
    const B = node('fw2', b);
    await a.start();
    await b.start();
    await tick(10);
    const evil = encodeFrame({ clusterId: 'other', nodeId: 'fw1', seq: 100, upsert: { entries: [] } });
    a.send(evil);
    a.send(Buffer.from('garbage that is not a frame'));
    await tick(10);
    expect(B.engine.counters.dropped.wrong_cluster).toBe(1);
    expect(B.engine.counters.dropped.bad_payload).toBe(1);
    expect(B.engine.peerTables().get('fw1')?.size ?? 0).toBe(0);
  });

  test('lastDataAgoMs moves with frames that change the table, not with heartbeats', async () => {
    const { a, b } = createMemoryPair({ nodeIds: ['fw1', 'fw2'] });
    const A = node('fw1', a);
    const clock = new FakeClock(1000);
    const B = node('fw2', b, undefined, clock);
    await a.start();
    await b.start();
    const fw1 = () => B.engine.status().find((s) => s.nodeId === 'fw1');
    await until(() => (fw1()?.lastFrameAgoMs ?? -1) >= 0, 'hello');
    for (let i = 0; i < 10; i++) A.event('new', tcp(i));
    await until(converged(A, B, 'fw1'), 'convergence');
    clock.advance(250);
    expect(fw1()!.lastDataAgoMs).toBe(250);
    a.send(encodeFrame({ clusterId: 'test', nodeId: 'fw1', heartbeat: { timeMs: Date.now(), tableSize: 10, intervalMs: 500 } }));
    await until(() => fw1()!.lastFrameAgoMs === 0, 'heartbeat');
    expect(fw1()!.lastDataAgoMs).toBe(250);
    A.event('destroy', tcp(3));
    await until(converged(A, B, 'fw1'), 'delete');
    expect(fw1()!.lastDataAgoMs).toBe(0);
  });
});
