// Random schedules of kernel churn and link faults between an active and a standby engine: once the faults end, the
// standby's copy converges to the active's table exactly. engine.test.ts has one hand-written schedule per fault;
// this lets fast-check interleave them. The faults: cuts (frames in flight lost, then resume or bulk), restarts of
// either daemon, and, on a live link, lost and held-then-reordered data frames (upsert, delete, refresh; the digest
// exchange repairs them).
// Handshake, bulk markers, acks and digests are never lost on a live link: TCP loses frames only with the
// connection, and a cut is its own fault here.
import fc from 'fast-check';
import pino from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { SyncEngine, type SyncOptions } from '../../../src/sync/engine.js';
import { LocalTable, rebornOf } from '../../../src/state/local-table.js';
import { systemClock } from '../../../src/state/clock.js';
import { createMemoryPair } from '../../../src/transport/memory.js';
import { toSyncedFlow } from '../../../src/wire/entry.js';
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

function flow(i: number, id: number, state: TcpState, mark: number, udp: boolean): Flow {
  const src = `10.1.0.${i}`;
  const proto = udp ? 17 : 6;
  return {
    family: 2,
    orig: { src, dst: '10.2.0.1', proto, sport: 20000 + i, dport: 53 },
    reply: { src: '10.2.0.1', dst: src, proto, sport: 53, dport: 20000 + i },
    status: Ips.Confirmed | (state >= TcpState.Established ? Ips.SeenReply | Ips.Assured : 0),
    timeout: 600,
    mark,
    id,
    ...(udp ? {} : { protoinfo: { tcp: { state } } }),
  };
}

type Op =
  | { t: 'new' | 'update'; i: number; state: number; mark: number }
  | { t: 'destroy'; i: number }
  | { t: 'cut' | 'restore' | 'hold' | 'unfilter' | 'restartActive' | 'restartStandby' }
  | { t: 'drop'; n: number }
  | { t: 'release'; order: 'fifo' | 'reverse' }
  | { t: 'wait'; ms: number };

const FLOWS = 8;
const churnAndCuts = [
  { arbitrary: fc.record({ t: fc.constantFrom('new' as const, 'update' as const), i: fc.nat(FLOWS - 1), state: fc.nat(STATES.length - 1), mark: fc.nat(3) }), weight: 8 },
  { arbitrary: fc.record({ t: fc.constant('destroy' as const), i: fc.nat(FLOWS - 1) }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constantFrom('cut' as const, 'restore' as const) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constantFrom('restartActive' as const, 'restartStandby' as const) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 8 }) }), weight: 3 },
] as const;
const liveLoss = [
  { arbitrary: fc.record({ t: fc.constantFrom('hold' as const, 'unfilter' as const) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('drop' as const), n: fc.integer({ min: 1, max: 4 }) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('release' as const), order: fc.constantFrom('fifo' as const, 'reverse' as const) }), weight: 1 },
] as const;
const schedule = (ops: fc.Arbitrary<Op>) => fc.tuple(fc.array(ops, { minLength: 1, maxLength: 60 }), fc.constantFrom(2, 8192));
const RUNS = Number(process.env.FC_RUNS ?? 200);

const DATA = new Set(['upsert', 'delete', 'refresh']);
const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Plays `ops`, ends the faults, and waits up to 4 s for convergence, sending a digest every 20 ms if `digests`. */
async function run(ops: Op[], resumeFrames: number, digests: boolean): Promise<{ ok: boolean; detail: string }> {
  const { a, b, link } = createMemoryPair({ nodeIds: ['fw1', 'fw2'] });
  const engine = (id: string, local: LocalTable, t: typeof a): SyncEngine => {
    const e = new SyncEngine(opts(id, resumeFrames), local, t, systemClock, log);
    engines.push(e);
    e.start();
    return e;
  };
  let local = new LocalTable({ clock: systemClock });
  let A = engine('fw1', local, a);
  let B = engine('fw2', new LocalTable({ clock: systemClock }), b);
  await a.start();
  await b.start();
  // the kernel's view: what each tuple holds now (its conntrack id changes when the connection is new)
  const kernel = new Map<number, { id: number; udp: boolean; state: number; mark: number }>();
  let nextId = 1;
  let dropLeft = 0;
  let holding = false;
  link.setFilter((frame) => {
    const d = decodeFrame(frame, { maxFrameBytes: 1 << 20 }, { clusterId: 'test' });
    if (!d.ok || !DATA.has(d.env.body ?? '')) return 'deliver';
    if (dropLeft > 0) return dropLeft--, 'drop';
    return holding ? 'hold' : 'deliver';
  });
  const event = (kind: FlowEvent['kind'], f: Flow): void => {
    const r = local.applyEvent({ kind, flow: f, origin: 'kernel', portId: 0 });
    const reborn = rebornOf(r.change);
    if (reborn !== undefined) A.changed(r.key, reborn, r.slot); // as the daemon does
  };
  for (const o of ops) {
    switch (o.t) {
      case 'new': {
        // a NEW on a tuple the kernel holds is a new connection that replaced it (its DESTROY was lost or coalesced)
        const c = { id: nextId++, udp: o.i % 5 === 0, state: o.state, mark: o.mark };
        kernel.set(o.i, c);
        event('new', flow(o.i, c.id, STATES[c.state]!, c.mark, c.udp));
        break;
      }
      case 'update': {
        const c = kernel.get(o.i);
        if (!c) break;
        Object.assign(c, { state: o.state, mark: o.mark });
        event('update', flow(o.i, c.id, STATES[c.state]!, c.mark, c.udp));
        break;
      }
      case 'restartActive': {
        // a new daemon: a new session whose table comes from a dump of the kernel
        A.stop();
        await a.stop();
        local = new LocalTable({ clock: systemClock });
        for (const [i, c] of kernel) local.applyEvent({ kind: 'new', flow: flow(i, c.id, STATES[c.state]!, c.mark, c.udp), origin: 'kernel', portId: 0 });
        A = engine('fw1', local, a);
        await a.start();
        break;
      }
      case 'restartStandby':
        B.stop();
        await b.stop();
        B = engine('fw2', new LocalTable({ clock: systemClock }), b);
        await b.start();
        break;
      case 'destroy': {
        const c = kernel.get(o.i);
        if (!c) break;
        kernel.delete(o.i);
        event('destroy', flow(o.i, c.id, TcpState.Close, 0, c.udp));
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
        dropLeft += o.n;
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
  try {
    const end = Date.now() + 4000;
    while (Date.now() < end) {
      await tick(20);
      if (same(local, B)) return { ok: true, detail: '' };
      if (digests) (A as unknown as { sendDigest(): void }).sendDigest();
    }
    return { ok: false, detail: diff(local, B) };
  } finally {
    await a.stop();
    await b.stop();
  }
}

function view(t: { forEach(fn: (k: string) => void): void; get(k: string): Flow | undefined }): Map<string, string> {
  const m = new Map<string, string>();
  t.forEach((k) => m.set(k, JSON.stringify({ ...toSyncedFlow(t.get(k)!), timeout: undefined })));
  return m;
}

function same(local: LocalTable, B: SyncEngine): boolean {
  const peer = B.peerTables().get('fw1');
  if (!peer || peer.size !== local.size) return false;
  const a = view(local);
  const b = view(peer);
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

function diff(local: LocalTable, B: SyncEngine): string {
  const peer = B.peerTables().get('fw1');
  const a = view(local);
  const b = peer ? view(peer) : new Map<string, string>();
  const out: string[] = [];
  for (const [k, v] of a) if (b.get(k) !== v) out.push(`active ${k}: ${v} / standby: ${b.get(k) ?? 'missing'}`);
  for (const k of b.keys()) if (!a.has(k)) out.push(`standby holds ${k}, the active does not`);
  return out.join('\n');
}

describe('sync engine under random fault schedules', () => {
  const converges = (digests: boolean) => async ([ops, resumeFrames]: [Op[], number]) => {
    const r = await run(ops, resumeFrames, digests);
    for (const e of engines.splice(0)) e.stop();
    expect(r.detail).toBe('');
    expect(r.ok).toBe(true);
  };

  test('after cuts and restarts during churn, resume or bulk alone makes the standby equal the active (no digest)', async () => {
    await fc.assert(fc.asyncProperty(schedule(fc.oneof(...churnAndCuts)), converges(false)), { numRuns: RUNS });
  }, 120_000);

  test('with data frames also lost or reordered on a live link, the digest exchange repairs the rest', async () => {
    await fc.assert(fc.asyncProperty(schedule(fc.oneof(...churnAndCuts, ...liveLoss)), converges(true)), { numRuns: RUNS });
  }, 120_000);
});
