// Random schedules of kernel churn and link faults between two engines: once the faults end, each node's copy of the
// other's table converges to it exactly (the active's flows on the standby, and the standby's own on the active),
// remaining timeouts included where no frame is lost on a live link (digests do not compare timeouts).
// engine.test.ts has one hand-written schedule per fault; this lets fast-check interleave them. The faults: cuts
// (frames in flight lost, then resume or bulk), restarts of either daemon, and, on a live link, lost and
// held-then-reordered data frames (upsert, delete, refresh; the digest exchange repairs the entries they carried).
// Handshake, bulk markers, acks and digests are never lost on a live link: TCP loses frames only with the
// connection, and a cut is its own fault here.
import fc from 'fast-check';
import pino from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { SyncEngine, type SyncOptions } from '../../../src/sync/engine.js';
import { LocalTable, rebornOf } from '../../../src/state/local-table.js';
import { systemClock } from '../../../src/state/clock.js';
import { createMemoryPair, type MemoryTransport } from '../../../src/transport/memory.js';
import { toSyncedFlow } from '../../../src/wire/entry.js';
import { flowKey } from '../../../src/state/key.js';
import { decodeFrame } from '../../../src/wire/envelope.js';
import { Ips, TcpState, type Flow, type FlowEvent } from '../../../src/kernel/types.js';

const log = pino({ level: process.env.LOG ?? 'silent' });
// small frames, so a bulk spans several; resumeFrames 2 makes most cuts end in a bulk rather than a resume
const opts = (nodeId: string, resumeFrames: number): SyncOptions => ({ nodeId, clusterId: 'test', coalesceMs: 1, digestIntervalMs: 0, heartbeatMs: 0, maxFrameBytes: 1 << 20, entriesPerFrame: 3, resumeFrames });

const engines: SyncEngine[] = [];
afterEach(() => {
  for (const e of engines.splice(0)) e.stop();
});

const STATES = [TcpState.SynSent, TcpState.SynRecv, TcpState.Established, TcpState.FinWait, TcpState.CloseWait, TcpState.TimeWait, TcpState.Close];

function flow(i: number, id: number, state: TcpState, mark: number, udp: boolean, timeout: number): Flow {
  const src = `10.1.0.${i}`;
  const proto = udp ? 17 : 6;
  return {
    family: 2,
    orig: { src, dst: '10.2.0.1', proto, sport: 20000 + i, dport: 53 },
    reply: { src: '10.2.0.1', dst: src, proto, sport: 53, dport: 20000 + i },
    status: Ips.Confirmed | (state >= TcpState.Established ? Ips.SeenReply | Ips.Assured : 0),
    timeout,
    mark,
    id,
    ...(udp ? {} : { protoinfo: { tcp: { state } } }),
  };
}

type Op =
  | { t: 'new' | 'update'; n: number; i: number; state: number; mark: number }
  | { t: 'destroy'; n: number; i: number }
  | { t: 'refresh'; n: number; i: number; timeout: number }
  | { t: 'restart'; n: number }
  | { t: 'cut' | 'restore' | 'hold' | 'unfilter' }
  | { t: 'drop'; frames: number }
  | { t: 'release'; order: 'fifo' | 'reverse' }
  | { t: 'wait'; ms: number };

// node 0 is the active, node 1 the standby; the standby has flows of its own too (its peer table on the active)
const FLOWS = 8;
const nodeIx = fc.constantFrom(0, 0, 0, 1);
const churnAndCuts = [
  { arbitrary: fc.record({ t: fc.constantFrom('new' as const, 'update' as const), n: nodeIx, i: fc.nat(FLOWS - 1), state: fc.nat(STATES.length - 1), mark: fc.nat(3) }), weight: 8 },
  { arbitrary: fc.record({ t: fc.constant('destroy' as const), n: nodeIx, i: fc.nat(FLOWS - 1) }), weight: 3 },
  // the periodic dump finds a remaining timeout the kernel changed without an event (traffic, or just time)
  { arbitrary: fc.record({ t: fc.constant('refresh' as const), n: nodeIx, i: fc.nat(FLOWS - 1), timeout: fc.integer({ min: 100, max: 500 }) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constantFrom('cut' as const, 'restore' as const) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('restart' as const), n: fc.nat(1) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 8 }) }), weight: 3 },
] as const;
const liveLoss = [
  { arbitrary: fc.record({ t: fc.constantFrom('hold' as const, 'unfilter' as const) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('drop' as const), frames: fc.integer({ min: 1, max: 4 }) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('release' as const), order: fc.constantFrom('fifo' as const, 'reverse' as const) }), weight: 1 },
] as const;
const schedule = (ops: fc.Arbitrary<Op>) => fc.tuple(fc.array(ops, { minLength: 1, maxLength: 60 }), fc.constantFrom(2, 8192));
const RUNS = Number(process.env.FC_RUNS ?? 200);

const DATA = new Set(['upsert', 'delete', 'refresh']);
const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One node: its kernel's flows (each tuple's current connection), the daemon's local table and its engine. */
interface Side {
  id: string;
  transport: MemoryTransport;
  kernel: Map<number, KernelFlow>;
  local: LocalTable;
  engine: SyncEngine;
}

/** A connection in the model kernel; `timeout` is its remaining lifetime when last set (NEW, UPDATE, refresh). */
interface KernelFlow {
  id: number;
  udp: boolean;
  state: number;
  mark: number;
  timeout: number;
}
const kernelFlow = (i: number, c: KernelFlow): Flow => flow(i, c.id, STATES[c.state]!, c.mark, c.udp, c.timeout);

/** Plays `ops`, ends the faults, and waits up to 4 s for convergence, sending digests every 20 ms if `digests`. */
async function run(ops: Op[], resumeFrames: number, digests: boolean): Promise<{ ok: boolean; detail: string }> {
  const { a, b, link } = createMemoryPair({ nodeIds: ['fw1', 'fw2'] });
  // a new daemon: a new session whose table comes from a dump of the kernel
  const boot = (id: string, transport: MemoryTransport, kernel: Side['kernel']): Side => {
    const local = new LocalTable({ clock: systemClock });
    for (const [i, c] of kernel) local.applyEvent({ kind: 'new', flow: kernelFlow(i, c), origin: 'kernel', portId: 0 });
    const engine = new SyncEngine(opts(id, resumeFrames), local, transport, systemClock, log);
    engines.push(engine);
    engine.start();
    return { id, transport, kernel, local, engine };
  };
  const sides = [boot('fw1', a, new Map()), boot('fw2', b, new Map())];
  await a.start();
  await b.start();
  let nextId = 1;
  let dropLeft = 0;
  let holding = false;
  link.setFilter((frame) => {
    const d = decodeFrame(frame, { maxFrameBytes: 1 << 20 }, { clusterId: 'test' });
    if (!d.ok || !DATA.has(d.env.body ?? '')) return 'deliver';
    if (dropLeft > 0) return dropLeft--, 'drop';
    return holding ? 'hold' : 'deliver';
  });
  const event = (s: Side, kind: FlowEvent['kind'], i: number): void => {
    const c = s.kernel.get(i)!;
    const r = s.local.applyEvent({ kind, flow: kernelFlow(i, c), origin: 'kernel', portId: 0 });
    const reborn = rebornOf(r.change);
    if (reborn !== undefined) s.engine.changed(r.key, reborn, r.slot); // as the daemon does
  };
  for (const o of ops) {
    switch (o.t) {
      case 'new': {
        // a NEW on a tuple the kernel holds is a new connection that replaced it (its DESTROY was lost or coalesced)
        const s = sides[o.n]!;
        s.kernel.set(o.i, { id: nextId++, udp: o.i % 5 === 0, state: o.state, mark: o.mark, timeout: 600 });
        event(s, 'new', o.i);
        break;
      }
      case 'update': {
        const s = sides[o.n]!;
        const c = s.kernel.get(o.i);
        if (!c) break;
        Object.assign(c, { state: o.state, mark: o.mark, timeout: 600 });
        event(s, 'update', o.i);
        break;
      }
      case 'destroy': {
        const s = sides[o.n]!;
        if (!s.kernel.has(o.i)) break;
        event(s, 'destroy', o.i);
        s.kernel.delete(o.i);
        break;
      }
      case 'refresh': {
        // as the mirror does: a dump of the whole kernel, whose drifted line the table takes; then the refresh
        const s = sides[o.n]!;
        const c = s.kernel.get(o.i);
        if (!c) break;
        c.timeout = o.timeout;
        s.local.beginResync();
        for (const [i, k] of s.kernel) s.local.resyncFlow(kernelFlow(i, k), undefined, undefined, i !== o.i);
        const d = s.local.endResync();
        if (d.added.length + d.changed.length + d.removed.length) throw new Error('the model kernel and the table differ');
        s.engine.sendRefreshes([{ key: flowKey(kernelFlow(o.i, c)), timeout: o.timeout }]);
        break;
      }
      case 'restart': {
        const s = sides[o.n]!;
        s.engine.stop();
        await s.transport.stop();
        sides[o.n] = boot(s.id, s.transport, s.kernel);
        await s.transport.start();
        break;
      }
      case 'cut':
        link.cut();
        break;
      case 'restore':
        if (link.isCut()) link.restore();
        break;
      case 'hold':
        holding = true;
        break;
      case 'unfilter':
        holding = false;
        dropLeft = 0;
        break;
      case 'drop':
        dropLeft += o.frames;
        break;
      case 'release':
        link.releaseHeld(o.order);
        break;
      case 'wait':
        await tick(o.ms);
        break;
    }
  }
  // the faults end; the protocol (resume after a cut, digests for frames lost on a live link) must heal the rest
  holding = false;
  dropLeft = 0;
  link.releaseHeld('reverse');
  if (link.isCut()) link.restore();
  const [A, B] = sides as [Side, Side];
  // timeouts are compared only without live loss: a lost refresh is not something a digest finds
  const differ = () => [...differences(A, B, !digests), ...differences(B, A, !digests)];
  try {
    const end = Date.now() + 4000;
    while (Date.now() < end) {
      await tick(20);
      if (!differ().length) return { ok: true, detail: '' };
      if (digests) for (const s of sides) (s.engine as unknown as { sendDigest(): void }).sendDigest();
    }
    return { ok: false, detail: differ().map((l) => l + '\n').join('') };
  } finally {
    await a.stop();
    await b.stop();
  }
}

type Readable = { size: number; forEach(fn: (k: string) => void): void; get(k: string): Flow | undefined };

/** Each entry's synced contents, its remaining timeout aside, and that timeout (s). */
function view(t: Readable): Map<string, { synced: string; timeout: number }> {
  const m = new Map<string, { synced: string; timeout: number }>();
  t.forEach((k) => {
    const f = t.get(k)!;
    m.set(k, { synced: JSON.stringify({ ...toSyncedFlow(f), timeout: undefined }), timeout: f.timeout ?? -1 });
  });
  return m;
}

/** Where `to`'s copy of `from`'s table differs from it; remaining timeouts within 2 s count as equal. */
function differences(from: Side, to: Side, timeouts: boolean): string[] {
  const peer = to.engine.peerTables().get(from.id);
  const a = view(from.local);
  const b = peer ? view(peer) : new Map<string, { synced: string; timeout: number }>();
  const out: string[] = [];
  for (const [k, v] of a) {
    const w = b.get(k);
    if (w?.synced !== v.synced) out.push(`${from.id} ${k}: ${v.synced} / ${to.id}'s copy: ${w?.synced ?? 'missing'}`);
    else if (timeouts && Math.abs(w.timeout - v.timeout) > 2) out.push(`${from.id} ${k}: ${v.timeout} s left / ${to.id}'s copy: ${w.timeout} s`);
  }
  for (const k of b.keys()) if (!a.has(k)) out.push(`${to.id}'s copy holds ${k}, ${from.id} does not`);
  return out;
}

describe('sync engine under random fault schedules', () => {
  const converges = (digests: boolean) => async ([ops, resumeFrames]: [Op[], number]) => {
    const r = await run(ops, resumeFrames, digests);
    for (const e of engines.splice(0)) e.stop();
    expect(r.detail).toBe('');
    expect(r.ok).toBe(true);
  };

  test('after cuts and restarts during churn, resume or bulk alone makes each copy equal its source (no digest)', async () => {
    await fc.assert(fc.asyncProperty(schedule(fc.oneof(...churnAndCuts)), converges(false)), { numRuns: RUNS });
  }, 120_000);

  test('with data frames also lost or reordered on a live link, the digest exchange repairs the rest', async () => {
    await fc.assert(fc.asyncProperty(schedule(fc.oneof(...churnAndCuts, ...liveLoss)), converges(true)), { numRuns: RUNS });
  }, 120_000);
});
