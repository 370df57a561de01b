// The receive fast path (checkFrame → scanPlainUpsert → keyFromTupleBytes → PeerTable.upsertPlain → setPlain) against
// the path it shortcuts (decodeFrame → apply → entryToFlow → flowKey → PeerTable.upsert → set): the same entries
// accepted with the same values and keys, and two engines fed the same frames (merges onto held entries, reborn,
// authoritative, bulks, replays, truncated and corrupted frames, with and without a MAC) end in the same state.
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { Ips, type Flow } from '../../../src/kernel/types.js';
import { FakeClock } from '../../../src/state/clock.js';
import { flowKey, keyFromTupleBytes } from '../../../src/state/key.js';
import { LocalTable } from '../../../src/state/local-table.js';
import { FlowTable } from '../../../src/state/table.js';
import { SyncEngine } from '../../../src/sync/engine.js';
import type { PeerInfo, Transport } from '../../../src/transport/types.js';
import { entryToFlow, flowToEntry, toSyncedFlow } from '../../../src/wire/entry.js';
import { createMacKey, encodeFrame, FRAME_HEADER_BYTES, MAC_BYTES, type MacKey } from '../../../src/wire/envelope.js';
import { Entry, type pb } from '../../../src/wire/proto.js';
import { newPlainWireEntry, PlainUpsert, readPlainEntry, scanPlainUpsert } from '../../../src/wire/upsert-scan.js';
import { AF_INET, AF_INET6, flowArb, plainFlowOf, tupleOf, u16, u32 } from '../wire/arbitraries.js';

const log = pino({ level: 'silent' });

/** TCP protoinfo in packTcp's ranges (so it travels packed), sometimes with fields absent. */
const tcpInfo = fc.record(
  { state: fc.integer({ min: 0, max: 11 }), wscaleOrig: fc.integer({ min: 0, max: 14 }), wscaleReply: fc.integer({ min: 0, max: 14 }), flagsOrig: fc.integer({ min: 0, max: 126 }), flagsReply: fc.integer({ min: 0, max: 126 }) },
  { requiredKeys: ['state'] },
);

/** Status words biased towards the sticky bits (ASSURED, SEEN_REPLY) and the insignificant ones. */
const status = fc.oneof(u32, fc.constantFrom(0, Ips.Confirmed, Ips.Confirmed | Ips.SeenReply, Ips.Confirmed | Ips.SeenReply | Ips.Assured, Ips.Assured, 1 << 9));

/** Flows of the shape the sender writes with EntryBatch.addPlain (any family, no NAT), now and then with one oddity. */
const plainFlow = (family: number, proto: number, oddWeight = 5): fc.Arbitrary<Flow> =>
  fc
    .record({
      orig: tupleOf(family, proto),
      x: fc.record(
        { zone: fc.oneof({ weight: 6, arbitrary: u16 }, { weight: 1, arbitrary: u32 }), replyZone: u16, status, mark: fc.oneof(fc.constant(0), u32), timeout: fc.oneof(fc.integer({ min: 0, max: 500_000 }), u32), tcp: tcpInfo, synproxy: fc.oneof(fc.constant({ isn: 0, its: 0, tsoff: 0 }), fc.record({ isn: u32, its: u32, tsoff: u32 })) },
        { requiredKeys: [] },
      ),
      odd: fc.oneof({ weight: 30, arbitrary: fc.constant(undefined) }, { weight: oddWeight, arbitrary: fc.constantFrom('nat', 'labels', 'helper', 'tcpMask', 'sctp') }),
    })
    .map(({ orig, x, odd }) => {
      const f = plainFlowOf(family, orig, x);
      if (odd === 'nat') f.reply = { ...f.reply, sport: ((f.reply.sport ?? 0) + 1) & 0xffff, dport: f.reply.dport ?? 1 };
      if (odd === 'labels') f.labels = Buffer.alloc(16, 1);
      if (odd === 'helper') f.helper = 'ftp';
      if (odd === 'tcpMask' && f.protoinfo?.tcp) f.protoinfo.tcp.flagsOrigMask = 3;
      if (odd === 'sctp') f.protoinfo = { ...f.protoinfo, sctp: { state: 3, vtagOrig: 1 } };
      return f;
    });

const protoArb = (family: number) => fc.oneof({ weight: 12, arbitrary: fc.constantFrom(6, 6, 6, 17, 17, 132, 33, 47, 50) }, { weight: 1, arbitrary: fc.constant(family === AF_INET ? 1 : 58) });
const anyPlainish = fc.constantFrom(AF_INET, AF_INET6).chain((family) => protoArb(family).chain((proto) => plainFlow(family, proto)));
const entryFlow = fc.oneof({ weight: 5, arbitrary: anyPlainish }, { weight: 1, arbitrary: flowArb() });

/** Every per-slot column and packed string of a FlowTable (private fields, read for the comparison only). */
function columns(t: FlowTable, key: string): unknown[] {
  const slot = t.slotOf(key);
  const x = t as unknown as Record<string, ArrayLike<unknown>>;
  const cols = ['present', 'hashesA', 'hashesB', 'statuses', 'marks', 'ids', 'timeouts', 'reported', 'versions', 'borns', 'dirtyBits', 'extra'];
  const tcp = Array.from({ length: 5 }, (_, i) => x['tcp']![slot * 5 + i]);
  return [slot >= 0, ...cols.map((c) => x[c]![slot]), ...tcp];
}

function encodeEntry(f: Flow): Buffer | undefined {
  try {
    return Buffer.from(Entry.encode(flowToEntry(f)).finish());
  } catch {
    return undefined; // not encodable (the sender would count encode_error)
  }
}

describe('readPlainEntry', () => {
  it('accepts only entries entryToFlow accepts, with the same key and the same stored columns', () => {
    let taken = 0;
    const e = newPlainWireEntry();
    fc.assert(
      fc.property(entryFlow, fc.integer({ min: 1, max: 1e9 }), (f, v) => {
        const bytes = encodeEntry(f);
        if (bytes === undefined) return;
        if (!readPlainEntry(bytes, 0, bytes.length, e)) return;
        taken++;
        const d = entryToFlow(Entry.decode(bytes));
        expect(d.ok).toBe(true);
        if (!d.ok) return;
        const key = keyFromTupleBytes(bytes, e.tupleAt, e.tupleLen, e.zone, e.origZone, e.replyZone);
        expect(key).toBe(flowKey(d.value));
        const a = new FlowTable();
        const b = new FlowTable();
        a.set(key!, d.value, v, v, 1000);
        b.setPlain(key!, e, v, v, 1000);
        expect(columns(b, key!)).toEqual(columns(a, key!));
        expect(b.get(key!)).toEqual(a.get(key!));
      }),
      { numRuns: 1000 },
    );
    expect(taken).toBeGreaterThan(300);
  });

  it('takes the steady-state entry: IPv4 TCP, status, timeout, packed TCP, zero synproxy', () => {
    const f: Flow = {
      family: AF_INET,
      orig: { src: '10.0.0.1', dst: '10.0.0.2', proto: 6, sport: 1234, dport: 443 },
      reply: { src: '10.0.0.2', dst: '10.0.0.1', proto: 6, sport: 443, dport: 1234 },
      status: 0xe,
      timeout: 120,
      mark: 0,
      protoinfo: { tcp: { state: 3, wscaleOrig: 7, wscaleReply: 7, flagsOrig: 0x23, flagsReply: 0x23 } },
      synproxy: { isn: 0, its: 0, tsoff: 0 },
    };
    const b = encodeEntry(f)!;
    expect(readPlainEntry(b, 0, b.length, newPlainWireEntry())).toBe(true);
    const icmp = encodeEntry({ ...f, orig: { src: '10.0.0.1', dst: '10.0.0.2', proto: 1, icmpType: 8, icmpCode: 0, icmpId: 1 }, reply: { src: '10.0.0.2', dst: '10.0.0.1', proto: 1, icmpType: 0, icmpCode: 0, icmpId: 1 }, protoinfo: undefined } as Flow)!;
    expect(readPlainEntry(icmp, 0, icmp.length, newPlainWireEntry())).toBe(false);
  });
});

// ---- engine level -----------------------------------------------------------------------------------------

const CLUSTER = 'test';
const PEER: PeerInfo = { nodeId: 'fw1' };

interface Rig {
  engine: SyncEngine;
  deliver(frame: Buffer): void;
}

function rig(clock: FakeClock, macKey: MacKey | undefined, fast: boolean): Rig {
  const t = { kind: 'stub', send: () => true, onFrame: (_f: Buffer, _p: PeerInfo) => {}, onLink: () => {}, onDrain: () => {} };
  const engine = new SyncEngine(
    { nodeId: 'fw2', clusterId: CLUSTER, coalesceMs: 1, digestIntervalMs: 0, heartbeatMs: 0, maxFrameBytes: 1 << 16, ...(macKey ? { macKey } : {}) },
    new LocalTable({ clock }),
    t as unknown as Transport,
    clock,
    log,
  );
  // the reference: every frame through decodeEnvelope + apply, as before the fast path
  if (!fast) {
    const e = engine as unknown as { receivePlain: () => boolean; snapshotPlain: () => number };
    e.receivePlain = () => false;
    e.snapshotPlain = () => -1;
  }
  return { engine, deliver: (frame) => t.onFrame(frame, PEER) };
}

/** Everything the two engines' receive halves can differ in. */
function state(r: Rig): unknown {
  const e = r.engine as unknown as { rx: Map<string, Record<string, unknown>> };
  const rx = e.rx.get(PEER.nodeId);
  const peer = r.engine.peerTables().get(PEER.nodeId);
  const rows: unknown[] = [];
  peer?.forEach((k) => rows.push([k, columns(peer.table, k), peer.get(k), peer.isTombstoned(k)]));
  const rxView = rx ? { ...rx, table: undefined, repair: rx['repair'] ? { ...(rx['repair'] as object), seen: [...((rx['repair'] as { seen: Set<string> }).seen)].sort() } : undefined } : undefined;
  return {
    counters: r.engine.counters,
    rx: rxView,
    peerCounters: peer?.counters,
    size: peer?.size,
    tombstones: peer?.tombstoneCount,
    digest: peer ? Array.from(peer.digest()) : undefined,
    rows,
    status: r.engine.status(),
  };
}

function mac(key: MacKey, frame: Buffer): Buffer {
  const end = frame.length - MAC_BYTES;
  createHmac('sha256', key.key).update(frame.subarray(0, end)).digest().subarray(0, MAC_BYTES).copy(frame, end);
  return frame;
}

type Op =
  | { kind: 'upsert'; flows: Flow[]; reborn: number[]; authoritative: boolean; bulk: boolean; seqStep: number; node?: string; cluster?: string }
  | { kind: 'delete'; flows: Flow[] }
  | { kind: 'bulkBegin' }
  | { kind: 'bulkEnd' }
  | { kind: 'repairBegin' }
  | { kind: 'repairEnd' }
  | { kind: 'hello'; session: number };

type Mangle = { kind: 'none' } | { kind: 'truncate'; at: number } | { kind: 'flip'; at: number; xor: number } | { kind: 'insert'; at: number; byte: number };

const mangleArb: fc.Arbitrary<Mangle> = fc.oneof(
  { weight: 8, arbitrary: fc.constant({ kind: 'none' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }) },
);

/**
 * A small pool of tuples, so later upserts land on held entries: the same connection with its TCP state moving
 * either way, sticky status bits dropped, no timeout, no protoinfo.
 */
const scenario = fc
  .array(fc.constantFrom(AF_INET, AF_INET6).chain((family) => protoArb(family).chain((proto) => plainFlow(family, proto, 1))), { minLength: 1, maxLength: 6 })
  .chain((pool) => {
    const variant = fc
      .record({ i: fc.nat(pool.length - 1), tcp: fc.option(tcpInfo, { nil: undefined }), status, dropTimeout: fc.boolean(), fresh: fc.oneof({ weight: 1, arbitrary: anyPlainish }, { weight: 12, arbitrary: fc.constant(undefined) }) })
      .map(({ i, tcp, status: st, dropTimeout, fresh }) => {
        if (fresh) return fresh;
        const f: Flow = { ...pool[i]!, status: st };
        if (f.orig.proto === 6) {
          if (tcp) f.protoinfo = { tcp: { ...tcp } };
          else delete f.protoinfo;
        }
        if (dropTimeout) delete f.timeout;
        return f;
      });
    const op: fc.Arbitrary<Op> = fc.oneof(
      {
        weight: 12,
        arbitrary: fc.record({
          kind: fc.constant('upsert' as const),
          flows: fc.array(variant, { minLength: 0, maxLength: 8 }),
          reborn: fc.array(fc.nat(9), { maxLength: 3 }),
          authoritative: fc.boolean(),
          bulk: fc.boolean(),
          seqStep: fc.oneof({ weight: 6, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.constantFrom(0, -1, 2) }),
          node: fc.oneof({ weight: 12, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constant('fw9') }),
          cluster: fc.oneof({ weight: 12, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constant('other') }),
        }, { requiredKeys: ['kind', 'flows', 'reborn', 'authoritative', 'bulk', 'seqStep'] }),
      },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), flows: fc.array(variant, { maxLength: 3 }) }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'bulkBegin' as const }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'bulkEnd' as const }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'repairBegin' as const }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'repairEnd' as const }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('hello' as const), session: fc.integer({ min: 1, max: 3 }) }) },
    );
    return fc.array(fc.tuple(op, mangleArb), { minLength: 1, maxLength: 25 });
  });

/** The frames a scenario makes (the sender's own encoder, so entries come out as EntryBatch.addPlain writes them). */
function frames(ops: [Op, Mangle][], macKey: MacKey | undefined): Buffer[] {
  let seq = 0;
  const bulkId = 7;
  const out: Buffer[] = [];
  const enc = (env: pb.IEnvelope, o: { node?: string | undefined; cluster?: string | undefined } = {}) =>
    encodeFrame({ clusterId: o.cluster ?? CLUSTER, nodeId: o.node ?? PEER.nodeId, ...env }, { macKey });
  for (const [op, m] of ops) {
    let f: Buffer;
    switch (op.kind) {
      case 'upsert': {
        seq = Math.max(0, seq + op.seqStep);
        const entries: pb.IEntry[] = [];
        for (const fl of op.flows) {
          try {
            entries.push(flowToEntry(fl));
          } catch {
            // not encodable: the sender would not send it
          }
        }
        f = enc({ seq, ack: seq % 3, upsert: { entries, reborn: op.reborn, authoritative: op.authoritative, bulkId: op.bulk ? bulkId : 0 } }, op);
        break;
      }
      case 'delete':
        f = enc({ seq: ++seq, delete: { keys: op.flows.map((fl) => { const e = flowToEntry(toSyncedFlow(fl)); return { orig: e.orig, origExt: e.origExt, zone: e.zone, origZone: e.origZone, family: e.family }; }) } });
        break;
      case 'bulkBegin':
        f = enc({ seq: ++seq, bulkBegin: { bulkId, count: 3, full: true } });
        break;
      case 'bulkEnd':
        f = enc({ seq: ++seq, bulkEnd: { bulkId, count: 3 } });
        break;
      case 'repairBegin':
        f = enc({ seq: ++seq, digestRepair: { digestId: 1, bucketCount: 4, buckets: [0, 1, 2, 3], last: false } });
        break;
      case 'repairEnd':
        f = enc({ seq: ++seq, digestRepair: { digestId: 1, bucketCount: 4, buckets: [0, 1, 2, 3], last: true } });
        break;
      case 'hello':
        seq = 0;
        f = enc({ hello: { version: 1, minVersion: 1, clusterId: CLUSTER, nodeId: PEER.nodeId, session: op.session } });
        break;
    }
    if (m.kind !== 'none') {
      const at = m.at % (f.length + 1);
      if (m.kind === 'truncate') f = f.subarray(0, at);
      else if (m.kind === 'flip' && at < f.length) f[at]! ^= m.xor;
      else if (m.kind === 'insert') f = Buffer.concat([f.subarray(0, at), Buffer.from([m.byte]), f.subarray(at)]);
      // authenticated garbage: a sender holding the key can still send malformed bytes
      if (macKey && f.length >= FRAME_HEADER_BYTES + MAC_BYTES && m.at % 2 === 0) f = mac(macKey, Buffer.from(f));
    }
    out.push(Buffer.from(f));
  }
  return out;
}

describe('SyncEngine receive: Upsert frames read in place', () => {
  const macKey = createMacKey('a cluster key of enough length');
  for (const withMac of [false, true]) {
    it(`ends in the same state as the protobufjs path for any frames (${withMac ? 'with' : 'without'} a MAC)`, () => {
      let plainFrames = 0;
      fc.assert(
        fc.property(scenario, (ops) => {
          const key = withMac ? macKey : undefined;
          const clock = new FakeClock(1_000_000);
          const fast = rig(clock, key, true);
          const ref = rig(clock, key, false);
          const scan = new PlainUpsert();
          const scratch = newPlainWireEntry();
          for (const f of frames(ops, key)) {
            if (f.length > FRAME_HEADER_BYTES && scanPlainUpsert(f, f.length - (f[2] === 1 ? MAC_BYTES : 0), scan, scratch)) plainFrames++;
            fast.deliver(f);
            ref.deliver(f);
            expect(state(fast)).toEqual(state(ref));
            clock.advance(1500);
          }
        }),
        { numRuns: 300 },
      );
      expect(plainFrames).toBeGreaterThan(400);
    });
  }

  it('loads a durable transport\'s snapshot frames as the protobufjs path does, onto whatever the table held', () => {
    let plainFrames = 0;
    fc.assert(
      fc.property(scenario, scenario, fc.boolean(), (before, snap, withMac) => {
        const key = withMac ? macKey : undefined;
        const clock = new FakeClock(5_000);
        const fast = rig(clock, key, true);
        const ref = rig(clock, key, false);
        for (const f of frames(before, key)) {
          fast.deliver(f);
          ref.deliver(f);
        }
        // snapshot frames: Upserts of this peer, now and then something else (a delete, another node, garbage)
        const sf = frames(snap, key);
        const scan = new PlainUpsert();
        const scratch = newPlainWireEntry();
        for (const f of sf) if (f.length > FRAME_HEADER_BYTES && scanPlainUpsert(f, f.length - (f[2] === 1 ? MAC_BYTES : 0), scan, scratch)) plainFrames++;
        clock.advance(700);
        for (const r of [fast, ref]) (r.engine as unknown as { loadSnapshot(p: PeerInfo, at: { session: number; seq: number }, f: Buffer[]): void }).loadSnapshot(PEER, { session: 9, seq: 40 }, sf);
        expect(state(fast)).toEqual(state(ref));
      }),
      { numRuns: 150 },
    );
    expect(plainFrames).toBeGreaterThan(200);
  });

  it('merges onto held entries as upsert() does: TCP state never backwards, sticky bits kept, reborn and authoritative replace', () => {
    const clock = new FakeClock(1000);
    const fast = rig(clock, undefined, true);
    const ref = rig(clock, undefined, false);
    const base: Flow = {
      family: AF_INET,
      orig: { src: '10.0.0.1', dst: '10.0.0.2', proto: 6, sport: 1234, dport: 443 },
      reply: { src: '10.0.0.2', dst: '10.0.0.1', proto: 6, sport: 443, dport: 1234 },
      status: Ips.Confirmed | Ips.SeenReply | Ips.Assured,
      timeout: 300,
      mark: 0,
      protoinfo: { tcp: { state: 3 } },
    };
    const key = flowKey(base);
    const send = (seq: number, f: Flow, u: Partial<pb.IUpsert> = {}) => {
      const frame = encodeFrame({ clusterId: CLUSTER, nodeId: PEER.nodeId, seq, upsert: { entries: [flowToEntry(f)], ...u } });
      fast.deliver(frame);
      ref.deliver(frame);
      expect(state(fast)).toEqual(state(ref));
    };
    send(1, base);
    send(2, { ...base, status: Ips.Confirmed, protoinfo: { tcp: { state: 1 } } }); // backwards, sticky bits dropped
    const pt = fast.engine.peerTables().get(PEER.nodeId)!;
    expect(pt.table.tcpStateAt(pt.table.slotOf(key))).toBe(3);
    expect(pt.table.statusAt(pt.table.slotOf(key))! & Ips.Assured).toBe(Ips.Assured);
    expect(pt.counters.tcpBackwardsBlocked).toBe(1);
    expect(pt.counters.stickyStatusKept).toBe(1);
    send(3, { ...base, timeout: undefined, protoinfo: undefined }); // keeps stored protoinfo and timeout (upsert()'s path)
    send(4, { ...base, status: Ips.Confirmed, protoinfo: { tcp: { state: 1 } } }, { reborn: [0] }); // a new connection
    expect(pt.table.tcpStateAt(pt.table.slotOf(key))).toBe(1);
    send(5, { ...base, protoinfo: { tcp: { state: 0 } } }, { authoritative: true });
    expect(pt.table.tcpStateAt(pt.table.slotOf(key))).toBe(0);
    send(5, base); // replayed seq
    expect(fast.engine.counters.dropped['replayed']).toBe(1);
    expect(pt.counters).toMatchObject({ added: 1, updated: 2, reincarnated: 2 });
  });

  it('never throws on random bytes behind a valid header', () => {
    const scan = new PlainUpsert();
    const scratch = newPlainWireEntry();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (b) => {
        const f = Buffer.concat([Buffer.from([0xc5, 1, 0]), Buffer.from(b)]);
        scanPlainUpsert(f, f.length, scan, scratch);
        const r = rig(new FakeClock(0), undefined, true);
        r.deliver(f);
      }),
      { numRuns: 2000 },
    );
  });
});
