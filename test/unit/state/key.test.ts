import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeFlow, DecodeError, encodeFlow, type EncodeOptions } from '../../../src/kernel/flow-codec.js';
import { AttrWriter, parseAttrs } from '../../../src/kernel/nla.js';
import { forEachMessage } from '../../../src/kernel/nfnetlink.js';
import type { Flow, RawAttr, Tuple } from '../../../src/kernel/types.js';
import { bucketOf, decodeKey, flowKey, flowKeyFromAttrs, keyHash } from '../../../src/state/key.js';
import { AF_INET, AF_INET6, flowArb } from '../wire/arbitraries.js';
import { icmpFlow, tcpFlow, v6Flow } from './flows.js';

describe('flowKey', () => {
  it('is compact for IPv4 TCP: 4 header bytes + 8 address bytes + 4 port bytes', () => {
    expect(flowKey(tcpFlow(1)).length).toBe(16);
  });

  it('ignores the conntrack id, timeout, status, counters and the reply addresses', () => {
    const a = tcpFlow(1);
    const b = tcpFlow(1, {
      id: 99,
      timeout: 5,
      status: 0,
      countersOrig: { packets: 1n, bytes: 2n },
      reply: { ...a.reply, dst: '203.0.113.5' },
    });
    expect(flowKey(b)).toBe(flowKey(a));
  });

  it('differs for every field of the identity', () => {
    const base = tcpFlow(1);
    const variants: Flow[] = [
      { ...base, orig: { ...base.orig, src: '10.9.9.9' } },
      { ...base, orig: { ...base.orig, dst: '10.9.9.9' } },
      { ...base, orig: { ...base.orig, sport: 1 } },
      { ...base, orig: { ...base.orig, dport: 1 } },
      { ...base, orig: { ...base.orig, proto: 17 } },
      { ...base, zone: 0 },
      { ...base, zone: 1 },
      { ...base, orig: { ...base.orig, zone: 1 } },
      { ...base, reply: { ...base.reply, zone: 1 } },
    ];
    const keys = new Set([flowKey(base), ...variants.map(flowKey)]);
    expect(keys.size).toBe(variants.length + 1);
  });

  it('distinguishes CTA_ZONE, orig tuple zone and reply tuple zone carrying the same number', () => {
    const base = tcpFlow(1);
    const a = flowKey({ ...base, zone: 5 });
    const b = flowKey({ ...base, orig: { ...base.orig, zone: 5 } });
    const c = flowKey({ ...base, reply: { ...base.reply, zone: 5 } });
    expect(new Set([a, b, c]).size).toBe(3);
  });

  it('keys ICMP by id, type and code', () => {
    const a = flowKey(icmpFlow(1));
    expect(flowKey(icmpFlow(2))).not.toBe(a);
    const f = icmpFlow(1);
    expect(flowKey({ ...f, orig: { ...f.orig, icmpType: 13 } })).not.toBe(a);
    expect(flowKey({ ...f, orig: { ...f.orig, icmpCode: 1 } })).not.toBe(a);
    expect(decodeKey(a).orig).toEqual(f.orig);
  });

  it('gives one key to one IPv6 address however it is written', () => {
    const f = v6Flow(0xab);
    const g: Flow = { ...f, orig: { ...f.orig, src: '2001:0DB8:0:0:0:0:0:AB' } };
    expect(flowKey(g)).toBe(flowKey(f));
    expect(flowKey(f).length).toBe(4 + 32 + 4);
  });

  it('round-trips v4, v6, mapped v6, zones and ICMP through decodeKey', () => {
    const cases: Flow[] = [
      tcpFlow(7),
      v6Flow(1, 3),
      { ...v6Flow(2), orig: { ...v6Flow(2).orig, src: '::ffff:10.1.2.3', zone: 9 }, reply: { ...v6Flow(2).reply, zone: 4 } },
      icmpFlow(77),
    ];
    for (const f of cases) {
      const parts = decodeKey(flowKey(f));
      expect(parts.family).toBe(f.family);
      expect(parts.orig).toEqual({ ...f.orig });
      expect(parts.ctZone).toBe(f.zone);
      expect(parts.replyZone).toBe(f.reply.zone);
    }
  });

  it('keeps text that is not an address, instead of throwing', () => {
    const f = tcpFlow(1);
    const bad: Flow = { ...f, orig: { ...f.orig, src: 'not-an-ip' } };
    const k = flowKey(bad);
    expect(decodeKey(k).orig.src).toBe('not-an-ip');
    expect(k).not.toBe(flowKey(f));
  });

  it('round-trips any tuple (property)', () => {
    const ip4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));
    const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
    const tuple = fc.record({
      src: ip4,
      dst: ip4,
      proto: fc.nat(255),
      sport: opt(fc.nat(65535)),
      dport: opt(fc.nat(65535)),
      icmpId: opt(fc.nat(65535)),
      icmpType: opt(fc.nat(255)),
      icmpCode: opt(fc.nat(255)),
      zone: opt(fc.nat(65535)),
    });
    fc.assert(
      fc.property(tuple, (t) => {
        const orig: Tuple = Object.fromEntries(Object.entries(t).filter(([, v]) => v !== undefined)) as unknown as Tuple;
        const parts = decodeKey(flowKey({ family: 2, orig, reply: { src: t.dst, dst: t.src, proto: t.proto } }));
        expect(parts.orig).toEqual(orig);
      }),
    );
  });

  it('never throws on arbitrary address text', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.integer(), (src, dst, family) => {
        const k = flowKey({ family, orig: { src, dst, proto: 6 }, reply: { src: dst, dst: src, proto: 6 } });
        expect(typeof k).toBe('string');
      }),
    );
  });
});

describe('bucketOf', () => {
  it('stays in range and folds: a coarse bucket is the prefix of a fine one', () => {
    for (let i = 0; i < 2000; i++) {
      const k = flowKey(tcpFlow(i));
      const fine = bucketOf(k, 4096);
      expect(fine).toBeGreaterThanOrEqual(0);
      expect(fine).toBeLessThan(4096);
      expect(bucketOf(k, 64)).toBe(fine >>> 6);
      expect(bucketOf(k, 1000)).toBeLessThan(1000);
    }
  });

  it('spreads sequential flows evenly', () => {
    const counts = new Array<number>(16).fill(0);
    for (let i = 0; i < 16000; i++) counts[bucketOf(flowKey(tcpFlow(i)), 16)]!++;
    for (const c of counts) {
      expect(c).toBeGreaterThan(800);
      expect(c).toBeLessThan(1200);
    }
    expect(keyHash(flowKey(tcpFlow(1)))).toBe(keyHash(flowKey(tcpFlow(1))));
  });
});

describe('flowKeyFromAttrs', () => {
  /** One IPCTNL_MSG_CT_NEW message holding these top-level attributes. */
  function message(family: number, attrs: RawAttr[]): Buffer {
    const w = new AttrWriter();
    w.beginMessage(0x100, 0, 1, family);
    for (const a of attrs) w.raw(a);
    w.endMessage();
    return w.finish();
  }

  function attrsOf(f: Flow, opts: EncodeOptions): RawAttr[] {
    const w = new AttrWriter();
    w.beginMessage(0x100, 0, 1, f.family);
    encodeFlow(w, f, opts);
    w.endMessage();
    const buf = w.finish();
    return parseAttrs(buf, 20, buf.length)!;
  }

  /** [what the fast path says, flowKey of what decodeFlow says], or undefined when decodeFlow refuses the message. */
  function both(buf: Buffer): [string | undefined, string] | undefined {
    let out: [string | undefined, string] | undefined;
    forEachMessage(buf, (m) => {
      const f = decodeFlow(buf, m.payloadOff, m.end, m.family);
      if (!(f instanceof DecodeError)) out = [flowKeyFromAttrs(buf, m.payloadOff, m.end, m.family), flowKey(f)];
    });
    return out;
  }

  it('is flowKey(decodeFlow(...)) for every flow the kernel layer can encode, unknown attributes and all', () => {
    fc.assert(
      fc.property(flowArb(), fc.boolean(), (flow, readOnly) => {
        const r = both(message(flow.family, attrsOf(flow, { readOnly })));
        if (r === undefined) return; // e.g. an odd tuple mixing families, which decodeFlow refuses
        if (r[0] !== undefined) expect(r[0]).toBe(r[1]);
        // the plain form (no kept attributes, addresses of the message's family) always takes the fast path
        const v6 = flow.family === AF_INET6;
        if (!readOnly && flow.orig.src.includes(':') === v6 && flow.orig.dst.includes(':') === v6) expect(r[0]).toBe(r[1]);
      }),
      { numRuns: 2000 },
    );
  });

  it('never disagrees with decodeFlow on messages spliced from two flows (repeats, any order, another family)', () => {
    let fast = 0;
    fc.assert(
      fc.property(
        flowArb(),
        flowArb(),
        fc.constantFrom(AF_INET, AF_INET6),
        fc.func(fc.integer()),
        fc.integer({ min: 1, max: 40 }),
        (a, b, family, order, n) => {
          const pool = [...attrsOf(a, { readOnly: true }), ...attrsOf(b, { readOnly: true })];
          const picked = pool.map((x, i) => ({ x, k: order(i) })).sort((p, q) => p.k - q.k).slice(0, n).map((p) => p.x);
          const r = both(message(family, picked));
          if (r !== undefined && r[0] !== undefined) {
            expect(r[0]).toBe(r[1]);
            fast++;
          }
        },
      ),
      { numRuns: 2000 },
    );
    expect(fast).toBeGreaterThan(50); // not vacuous: many spliced messages still have one orig tuple
  });

  it('returns, without throwing, on any bytes at all', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.constantFrom(AF_INET, AF_INET6, 0, 7), (bytes, family) => {
        const buf = Buffer.from(bytes);
        const k = flowKeyFromAttrs(buf, 0, buf.length, family);
        expect(k === undefined || typeof k === 'string').toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('takes the fast path for a plain event and gives up on a repeated tuple', () => {
    const f = tcpFlow(7, { zone: 3 });
    const attrs = attrsOf(f, {});
    expect(both(message(AF_INET, attrs))).toEqual([flowKey(f), flowKey(f)]);
    const twice = both(message(AF_INET, [...attrs, ...attrsOf(tcpFlow(8), {})]));
    expect(twice?.[0]).toBeUndefined();
    expect(twice?.[1]).toBe(flowKey(tcpFlow(8, { zone: 3 })));
  });
});
