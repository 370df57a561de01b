import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Flow } from '../../../src/kernel/types.js';
import { bucketOf, flowKey } from '../../../src/state/key.js';
import { diffDigests, FlowTable, remainingSeconds, SET_ADDED, SET_MINOR, SET_SIGNIFICANT } from '../../../src/state/table.js';
import { icmpFlow, natUdpFlow, tcpFlow, v6Flow } from './flows.js';

function put(t: FlowTable, f: Flow, version = 1, at = 0): number {
  return t.set(flowKey(f), f, version, version, at);
}

/** Everything a Flow can carry that the table keeps (read-only kernel fields excluded). */
function kitchenSink(): Flow {
  return {
    family: 2,
    orig: {
      src: '10.0.0.1', dst: '10.0.0.2', proto: 6, sport: 21000, dport: 21, zone: 3,
      unknown: [{ type: 99, nested: false, data: Buffer.from([1, 2]) }],
    },
    reply: { src: '10.0.0.2', dst: '192.0.2.1', proto: 6, sport: 21, dport: 3000, zone: 4 },
    zone: 2,
    status: 0x3e,
    timeout: 77,
    mark: 0xdeadbeef,
    id: 5,
    labels: Buffer.alloc(16, 0xa5),
    labelsMask: Buffer.alloc(16, 0xff),
    protoinfo: {
      tcp: {
        state: 3, wscaleOrig: 7, wscaleReply: 8, flagsOrig: 0x2b, flagsReply: 0x08, flagsOrigMask: 0x08, flagsReplyMask: 0x08,
        unknown: [{ type: 9, nested: true, data: Buffer.from([0]) }],
      },
      unknown: [{ type: 4, nested: false, data: Buffer.alloc(0) }],
    },
    natSrc: { minIp: '192.0.2.1', maxIp: '192.0.2.9', minPort: 1024, maxPort: 65535 },
    natDst: { minIp: '2001:db8::1' },
    seqAdjOrig: { correctionPos: 1, offsetBefore: 2, offsetAfter: 3 },
    seqAdjReply: { correctionPos: 4294967295, offsetBefore: 0, offsetAfter: 6 },
    helper: 'ftp',
    master: { src: '10.0.0.1', dst: '10.0.0.2', proto: 6, sport: 20999, dport: 21, zone: 1 },
    synproxy: { isn: 1, its: 2, tsoff: 3 },
    unknown: [{ type: 200, nested: false, data: Buffer.from('hello') }],
  };
}

describe('FlowTable storage', () => {
  it('round-trips common and unusual flows', () => {
    const t = new FlowTable();
    const sctp: Flow = {
      ...natUdpFlow(3),
      orig: { ...natUdpFlow(3).orig, proto: 132 },
      reply: { ...natUdpFlow(3).reply, proto: 132 },
      protoinfo: { sctp: { state: 3, vtagOrig: 1, vtagReply: 4294967295 } },
    };
    const dccp: Flow = {
      family: 2,
      orig: { src: '10.0.0.1', dst: '10.0.0.2', proto: 33, sport: 1, dport: 2 },
      reply: { src: '10.0.0.2', dst: '10.0.0.1', proto: 33, sport: 2, dport: 1 },
      protoinfo: { dccp: { state: 4, role: 1, handshakeSeq: 0x123456789abcn } },
    };
    const flows = [tcpFlow(1), natUdpFlow(2), icmpFlow(3), v6Flow(4, 7), kitchenSink(), sctp, dccp];
    for (const f of flows) put(t, f);
    expect(t.size).toBe(flows.length);
    for (const f of flows) expect(t.get(flowKey(f))).toEqual(f);
  });

  it('deletes, reuses slots and grows past its initial capacity', () => {
    const t = new FlowTable({ initialCapacity: 16 });
    for (let i = 0; i < 1000; i++) put(t, tcpFlow(i));
    expect(t.size).toBe(1000);
    for (let i = 0; i < 1000; i += 2) expect(t.delete(flowKey(tcpFlow(i)))).toBe(true);
    expect(t.delete(flowKey(tcpFlow(0)))).toBe(false);
    expect(t.size).toBe(500);
    for (let i = 2000; i < 2500; i++) put(t, tcpFlow(i));
    expect(t.size).toBe(1000);
    expect(t.get(flowKey(tcpFlow(0)))).toBeUndefined();
    expect(t.get(flowKey(tcpFlow(999)))).toEqual(tcpFlow(999));
    expect(t.get(flowKey(tcpFlow(2499)))).toEqual(tcpFlow(2499));
  });

  it('finds exactly what a Map would under any mix of sets, deletes, sweeps and clears (its own hash index)', () => {
    // a small universe in a table that starts at 16 slots: long probe runs, wrap-around, deletes inside runs, growth
    const op = fc.oneof(
      { weight: 60, arbitrary: fc.record({ kind: fc.constant('set' as const), i: fc.nat(300) }) },
      { weight: 40, arbitrary: fc.record({ kind: fc.constant('delete' as const), i: fc.nat(300) }) },
      { weight: 10, arbitrary: fc.record({ kind: fc.constant('sweep' as const), i: fc.nat(300) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('clear' as const), i: fc.constant(0) }) },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 600 }), (ops) => {
        const t = new FlowTable({ initialCapacity: 16, digestBuckets: 4 });
        const model = new Map<string, number>();
        for (const { kind, i } of ops) {
          const k = flowKey(tcpFlow(i));
          if (kind === 'set') {
            put(t, tcpFlow(i), i + 1);
            model.set(k, i + 1);
          } else if (kind === 'delete') {
            expect(t.delete(k)).toBe(model.delete(k));
          } else if (kind === 'sweep') {
            // keep only keys below i: endSweep removes through the index, many at once
            t.beginSweep();
            for (const key of model.keys()) if (t.versionAt(t.slotOf(key)) <= i) t.touch(t.slotOf(key));
            t.endSweep();
            for (const [key, v] of model) if (v > i) model.delete(key);
          } else {
            t.clear();
            model.clear();
          }
          expect(t.size).toBe(model.size);
        }
        for (let i = 0; i <= 300; i++) {
          const k = flowKey(tcpFlow(i));
          const s = t.slotOf(k);
          expect(s >= 0).toBe(model.has(k));
          if (s >= 0) {
            expect(t.keyAt(s)).toBe(k);
            expect(t.versionAt(s)).toBe(model.get(k));
          }
        }
        const seen: string[] = [];
        t.forEach((k) => seen.push(k));
        expect(seen.sort()).toEqual([...model.keys()].sort());
      }),
      { numRuns: 300 },
    );
  });

  it('frees index positions on delete: endless churn at a constant size stays small and fast', () => {
    const t = new FlowTable({ initialCapacity: 16 });
    for (let i = 0; i < 20_000; i++) {
      put(t, tcpFlow(i));
      if (i >= 8) expect(t.delete(flowKey(tcpFlow(i - 8)))).toBe(true);
    }
    expect(t.size).toBe(8);
    expect(t.slotOf(flowKey(tcpFlow(19_999)))).toBeLessThan(16); // never grew: slots and positions were reused
  });

  it('iterates every entry once, in the same order each time, also through a resumable scan', () => {
    const t = new FlowTable();
    for (let i = 0; i < 300; i++) put(t, tcpFlow(i));
    for (let i = 0; i < 300; i += 3) t.delete(flowKey(tcpFlow(i)));
    const a: string[] = [];
    t.forEach((k) => a.push(k));
    const b: string[] = [];
    t.forEach((k) => b.push(k));
    expect(b).toEqual(a);
    expect(new Set(a).size).toBe(200);
    const c: string[] = [];
    let cur = 0;
    let rounds = 0;
    while (cur >= 0) {
      cur = t.scan(cur, 7, (k) => c.push(k));
      rounds++;
    }
    expect(c).toEqual(a);
    expect(rounds).toBeGreaterThan(200 / 7);
  });

  it('reports what a set changed', () => {
    const t = new FlowTable();
    const f = tcpFlow(1);
    expect(put(t, f)).toBe(SET_ADDED | SET_SIGNIFICANT);
    expect(put(t, f)).toBe(0);
    expect(put(t, { ...f, timeout: 10 })).toBe(SET_MINOR);
    expect(put(t, { ...f, timeout: 10, status: f.status! | 0x200 })).toBe(SET_MINOR); // IPS_DYING
    expect(put(t, { ...f, timeout: 10, status: 0xa })).toBe(SET_SIGNIFICANT | SET_MINOR);
    expect(put(t, { ...f, status: 0xa, mark: 1 })).toBe(SET_SIGNIFICANT | SET_MINOR);
    expect(put(t, { ...f, status: 0xa, mark: 1 })).toBe(0);
    const g = { ...f, status: 0xa, mark: 1, protoinfo: { tcp: { ...f.protoinfo!.tcp!, flagsOrig: 0x08 } } };
    expect(put(t, g)).toBe(SET_MINOR);
    expect(put(t, { ...g, protoinfo: { tcp: { ...g.protoinfo.tcp, state: 4 } } })).toBe(SET_SIGNIFICANT);
  });

  it('computes the remaining lifetime from the reported timeout and the time since', () => {
    const t = new FlowTable();
    const f = tcpFlow(1, { timeout: 30 });
    t.set(flowKey(f), f, 1, 1, 5000);
    const s = t.slotOf(flowKey(f));
    expect(t.remainingAt(s, 5000)).toBe(30);
    expect(t.remainingAt(s, 5000 + 10_000)).toBe(20);
    expect(t.remainingAt(s, 5000 + 29_001)).toBe(1);
    expect(t.remainingAt(s, 5000 + 30_000)).toBe(0);
    expect(t.get(flowKey(f), 5000 + 12_500)!.timeout).toBe(18);
    expect(remainingSeconds(10, 0, 99_999)).toBe(0);
  });

  it('sweeps what was not seen since beginSweep', () => {
    const t = new FlowTable();
    for (let i = 0; i < 10; i++) put(t, tcpFlow(i));
    t.beginSweep();
    for (let i = 0; i < 5; i++) put(t, tcpFlow(i));
    t.touch(t.slotOf(flowKey(tcpFlow(9))));
    const gone: string[] = [];
    expect(t.endSweep((k) => gone.push(k))).toBe(4);
    expect(t.size).toBe(6);
    expect(gone.sort()).toEqual([5, 6, 7, 8].map((i) => flowKey(tcpFlow(i))).sort());
  });
});

describe('FlowTable digests', () => {
  const flows = Array.from({ length: 500 }, (_, i) => (i % 5 === 0 ? natUdpFlow(i) : tcpFlow(i)));

  it('are equal for the same contents built in any order, with any versions and timeouts', () => {
    fc.assert(
      fc.property(fc.shuffledSubarray(flows, { minLength: flows.length }), fc.nat(50), (order, extra) => {
        const a = new FlowTable({ digestBuckets: 256 });
        const b = new FlowTable({ digestBuckets: 256 });
        for (const f of flows) put(a, f, 1, 0);
        // b: a different order, extra flows added then removed, other versions and timeouts.
        for (let i = 0; i < extra; i++) put(b, tcpFlow(100_000 + i));
        for (const f of order) put(b, { ...f, timeout: 1 }, 99, 12345);
        for (let i = 0; i < extra; i++) b.delete(flowKey(tcpFlow(100_000 + i)));
        expect(diffDigests(a.digest(64), b.digest(64))).toEqual([]);
        expect(Array.from(a.digest())).toEqual(Array.from(b.digest()));
      }),
      { numRuns: 20 },
    );
  });

  it('point at exactly the buckets that differ', () => {
    const a = new FlowTable();
    const b = new FlowTable();
    for (const f of flows) {
      put(a, f);
      put(b, f);
    }
    const changed = tcpFlow(1, { mark: 42 });
    const removed = tcpFlow(2);
    const addedF = tcpFlow(9999);
    put(b, changed);
    b.delete(flowKey(removed));
    put(b, addedF);
    const n = 1024;
    const want = [...new Set([changed, removed, addedF].map((f) => bucketOf(flowKey(f), n)))].sort((x, y) => x - y);
    expect(diffDigests(a.digest(n), b.digest(n))).toEqual(want);
    const inDiff: string[] = [];
    b.forEachInBuckets(want, n, (k) => inDiff.push(k));
    expect(inDiff).toContain(flowKey(changed));
    expect(inDiff).toContain(flowKey(addedF));
    expect(inDiff.length).toBeLessThan(20);
  });

  it('fold to coarser bucket counts the same as a full scan would', () => {
    const a = new FlowTable({ digestBuckets: 4096 });
    for (const f of flows) put(a, f);
    const folded = a.digest(128);
    // A count that does not divide 4096 takes the scanning path: 128 computed that way must agree.
    const b = new FlowTable({ digestBuckets: 1 });
    for (const f of flows) put(b, f);
    expect(Array.from(b.digest(128))).toEqual(Array.from(folded));
    expect(a.digest(100).length).toBe(200);
  });

  it('return to empty when everything is deleted', () => {
    const a = new FlowTable();
    for (const f of flows) put(a, f);
    for (const f of flows) a.delete(flowKey(f));
    expect(a.digest(16).every((x) => x === 0)).toBe(true);
  });
});
