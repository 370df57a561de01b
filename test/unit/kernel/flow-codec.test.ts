// Flow codec: every protocol and attribute family round-trips; hand-built bytes decode to the right fields;
// writes leave out what the kernel refuses; malformed input yields a DecodeError with a reason.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AddressError } from '../../../src/kernel/addr.js';
import { Cta } from '../../../src/kernel/ctnetlink-const.js';
import { decodeFlow, DecodeError, decodeTuple, encodeFlow, encodeTuple, type EncodeOptions } from '../../../src/kernel/flow-codec.js';
import { AttrWriter, parseAttrs } from '../../../src/kernel/nla.js';
import { forEachMessage } from '../../../src/kernel/nfnetlink.js';
import type { Flow } from '../../../src/kernel/types.js';
import { attr, be16, be32, be64, flowFixtures, ip4, ip6, nest, nlmsg, strz, tupleV4, u8 } from '../../fixtures/builders.js';
import { flowArb } from '../wire/arbitraries.js';

function encodeMsg(f: Flow, opts?: EncodeOptions): Buffer {
  const w = new AttrWriter();
  w.beginMessage(0x100, 0, 1, f.family);
  encodeFlow(w, f, opts);
  w.endMessage();
  return w.finish();
}

function decodeMsg(buf: Buffer): Flow | DecodeError {
  let out: Flow | DecodeError = new DecodeError('truncated');
  expect(forEachMessage(buf, (m) => (out = decodeFlow(buf, m.payloadOff, m.end, m.family)))).toBe(0);
  return out;
}

function ok(r: Flow | DecodeError): Flow {
  if (r instanceof DecodeError) throw new Error(`decode failed: ${r.reason}`);
  return r;
}

describe('round trip over the model fixtures', () => {
  for (const [name, flow] of Object.entries(flowFixtures())) {
    it(`${name}: encode(readOnly) -> decode is identity, and decode -> encode is byte-stable`, () => {
      const bytes = encodeMsg(flow, { readOnly: true });
      const back = ok(decodeMsg(bytes));
      expect(back).toEqual(flow);
      expect(encodeMsg(back, { readOnly: true }).equals(bytes)).toBe(true);
    });
  }
});

describe('address strings shared between the tuples of a message', () => {
  /** Every tuple decodeFlow reports equals that tuple's nest decoded on its own (its last occurrence wins). */
  function tuplesMatchAlone(buf: Buffer): void {
    const flow = ok(decodeMsg(buf));
    const alone = new Map<number, unknown>();
    for (const a of parseAttrs(buf, 20, buf.length)!) {
      if (a.type === Cta.TupleOrig || a.type === Cta.TupleReply || a.type === Cta.TupleMaster) {
        alone.set(a.type, decodeTuple(a.data, 0, a.data.length));
      }
    }
    expect(flow.orig).toEqual(alone.get(Cta.TupleOrig));
    expect(flow.reply).toEqual(alone.get(Cta.TupleReply));
    expect(flow.master).toEqual(alone.get(Cta.TupleMaster));
  }

  it('decode to the text of their own bytes, NATed or not, in any tuple order', () => {
    fc.assert(
      fc.property(flowArb(), fc.boolean(), (flow, masterFirst) => {
        let buf: Buffer;
        try {
          buf = encodeMsg(masterFirst ? { ...flow, master: flow.reply } : flow, { readOnly: true });
        } catch (e) {
          if (e instanceof AddressError) return; // an odd tuple the encoder refuses
          throw e;
        }
        if (decodeMsg(buf) instanceof DecodeError) return;
        tuplesMatchAlone(buf);
      }),
      { numRuns: 1000 },
    );
  });

  it('stay right when a tuple repeats an address, or reverses the original', () => {
    const f: Flow = {
      family: 2,
      orig: { src: '10.0.0.1', dst: '10.0.0.1', proto: 17, sport: 1, dport: 2 },
      reply: { src: '10.0.0.1', dst: '192.0.2.200', proto: 17, sport: 2, dport: 1 },
    };
    tuplesMatchAlone(encodeMsg(f));
    tuplesMatchAlone(encodeMsg({ ...f, orig: { ...f.orig, dst: '192.0.2.200' }, reply: { ...f.reply, src: '192.0.2.200', dst: '10.0.0.1' } }));
  });
});

describe('decoding hand-built bytes', () => {
  const orig = tupleV4(1, '10.0.0.1', '10.0.0.2', 6, 1000, 22);
  const reply = tupleV4(2, '10.0.0.2', '10.0.0.1', 6, 22, 1000);

  it('reads scalars big endian and nests by number, with or without NLA_F_NESTED', () => {
    const msg = nlmsg(0x100, 0x600, 0, 0, 2, [
      tupleV4(1, '10.0.0.1', '10.0.0.2', 6, 1000, 22),
      nest(2, [nest(1, [attr(1, ip4('10.0.0.2')), attr(2, ip4('10.0.0.1'))], false), nest(2, [attr(1, u8(6)), attr(2, be16(22)), attr(3, be16(1000))], false)], false),
      attr(3, be32(0x0e)),
      attr(7 | 0x4000, be32(120)), // NLA_F_NET_BYTEORDER is masked off too
      attr(8, be32(0x80000001)),
      attr(18, be16(0x1234)),
      nest(4, [nest(1, [attr(1, u8(3)), attr(2, u8(7)), attr(3, u8(8)), attr(4, Buffer.from([0x0b, 0x00])), attr(5, Buffer.from([0x23, 0xff]))])]),
      nest(5, [attr(1, strz('sip'))]),
      attr(22, Buffer.alloc(16, 1)),
    ]);
    const f = ok(decodeMsg(msg));
    expect(f.orig).toEqual({ src: '10.0.0.1', dst: '10.0.0.2', proto: 6, sport: 1000, dport: 22 });
    expect(f.reply).toEqual({ src: '10.0.0.2', dst: '10.0.0.1', proto: 6, sport: 22, dport: 1000 });
    expect([f.status, f.timeout, f.mark, f.zone, f.helper]).toEqual([0x0e, 120, 0x80000001, 0x1234, 'sip']);
    expect(f.protoinfo?.tcp).toEqual({ state: 3, wscaleOrig: 7, wscaleReply: 8, flagsOrig: 0x0b, flagsReply: 0x23 });
    expect(f.labels?.equals(Buffer.alloc(16, 1))).toBe(true);
    expect(f.unknown).toBeUndefined();
  });

  it('reads 64-bit and old 32-bit counters, timestamps and DCCP, dropping padding attributes', () => {
    const f = ok(
      decodeMsg(
        nlmsg(0x100, 0, 0, 0, 2, [
          orig,
          reply,
          nest(9, [attr(5, Buffer.alloc(0)), attr(1, be64(0x1_0000_0000n)), attr(2, be64(3n))]),
          nest(10, [attr(3, be32(7)), attr(4, be32(0xffffffff))]),
          nest(20, [attr(3, Buffer.alloc(0)), attr(1, be64(1n)), attr(2, be64(2n))]),
          nest(4, [nest(2, [attr(1, u8(2)), attr(2, u8(1)), attr(4, Buffer.alloc(0)), attr(3, be64(0xffff_ffff_ffffn))])]),
          attr(27, be64(99n)),
        ]),
      ),
    );
    expect(f.countersOrig).toEqual({ packets: 0x1_0000_0000n, bytes: 3n });
    expect(f.countersReply).toEqual({ packets: 7n, bytes: 0xffffffffn });
    expect([f.timestampStart, f.timestampStop, f.timestampEvent]).toEqual([1n, 2n, 99n]);
    expect(f.protoinfo?.dccp).toEqual({ state: 2, role: 1, handshakeSeq: 0xffff_ffff_ffffn });
    expect(f.unknown).toBeUndefined();
  });

  it('reads IPv6 tuples, ICMPv6 fields, tuple zones and the master tuple', () => {
    const v6 = (type: number, a: number[], b: number[], t: number) =>
      nest(type, [
        nest(1, [attr(3, ip6(a)), attr(4, ip6(b))]),
        nest(2, [attr(1, u8(58)), attr(7, be16(0x99)), attr(8, u8(t)), attr(9, u8(0))]),
        attr(3, be16(4)),
      ]);
    const one = [0, 0, 0, 0, 0, 0, 0, 1];
    const ll = [0xfe80, 0, 0, 0, 0, 0, 0, 2];
    const f = ok(decodeMsg(nlmsg(0x100, 0, 0, 0, 10, [v6(1, one, ll, 128), v6(2, ll, one, 129), v6(14, one, ll, 128)])));
    expect(f.orig).toEqual({ src: '::1', dst: 'fe80::2', proto: 58, icmpId: 0x99, icmpType: 128, icmpCode: 0, zone: 4 });
    expect(f.reply.icmpType).toBe(129);
    expect(f.master?.src).toBe('::1');
  });

  it('reads NAT, seq-adjust and synproxy nests', () => {
    const f = ok(
      decodeMsg(
        nlmsg(0x100, 0, 0, 0, 2, [
          orig,
          reply,
          nest(6, [attr(1, ip4('1.2.3.4')), attr(2, ip4('1.2.3.5')), nest(3, [attr(1, be16(100)), attr(2, be16(200))])]),
          nest(13, [attr(4, ip6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]))]),
          nest(15, [attr(1, be32(10)), attr(2, be32(20)), attr(3, be32(30))]),
          nest(16, [attr(3, be32(5))]),
          nest(24, [attr(1, be32(1)), attr(2, be32(2)), attr(3, be32(3))]),
        ]),
      ),
    );
    expect(f.natSrc).toEqual({ minIp: '1.2.3.4', maxIp: '1.2.3.5', minPort: 100, maxPort: 200 });
    expect(f.natDst).toEqual({ minIp: '2001:db8::1' });
    expect(f.seqAdjOrig).toEqual({ correctionPos: 10, offsetBefore: 20, offsetAfter: 30 });
    expect(f.seqAdjReply).toEqual({ correctionPos: 0, offsetBefore: 0, offsetAfter: 5 });
    expect(f.synproxy).toEqual({ isn: 1, its: 2, tsoff: 3 });
  });

  it('keeps unknown attributes in order, with their nested flag, at the top level and inside tuples', () => {
    const f = ok(
      decodeMsg(
        nlmsg(0x100, 0, 0, 0, 2, [
          attr(200, Buffer.from([1])),
          nest(1, [nest(1, [attr(1, ip4('1.1.1.1')), attr(2, ip4('2.2.2.2'))]), nest(2, [attr(1, u8(17))]), attr(9, be32(5))]),
          reply,
          nest(201, [attr(1, be32(2))]),
        ]),
      ),
    );
    expect(f.unknown?.map((u) => [u.type, u.nested, u.data.toString('hex')])).toEqual([
      [200, false, '01'],
      [201, true, '0800010000000002'],
    ]);
    expect(f.orig.unknown).toEqual([{ type: 9, nested: false, data: be32(5) }]);
  });

  it('keeps a known nest whole when it has a child we do not model, and re-emits that instead', () => {
    const withInfo = nlmsg(0x100, 0, 0, 0, 2, [orig, reply, nest(5, [attr(1, strz('ftp')), attr(2, Buffer.from([1, 2, 3, 4]))])]);
    const f = ok(decodeMsg(withInfo));
    expect(f.helper).toBe('ftp');
    expect(f.unknown?.length).toBe(1);
    expect(f.unknown?.[0]?.type).toBe(5);
    const again = encodeMsg(f, { readOnly: true });
    const helps = parseAttrs(again, 20, again.length)!.filter((a) => a.type === 5);
    expect(helps.length).toBe(1); // the raw nest replaces the rebuilt one: no duplicate CTA_HELP
    expect(ok(decodeMsg(again))).toEqual(f);
  });

  it('copies bytes out: decoded labels and unknowns survive reuse of the receive buffer', () => {
    const msg = nlmsg(0x100, 0, 0, 0, 2, [orig, reply, attr(22, Buffer.alloc(16, 7)), attr(250, Buffer.from([9]))]);
    const f = ok(decodeMsg(msg));
    msg.fill(0);
    expect(f.labels?.equals(Buffer.alloc(16, 7))).toBe(true);
    expect(f.unknown?.[0]?.data[0]).toBe(9);
  });
});

describe('encoding for writes', () => {
  const full = flowFixtures()['tcp v4, every read-only and writable field']!;

  it('leaves out id, use, secmark, counters, timestamps and unknowns unless readOnly', () => {
    const bytes = encodeMsg({ ...full, unknown: [{ type: 250, nested: false, data: Buffer.from([1]) }] });
    const types = parseAttrs(bytes, 20, bytes.length)!.map((a) => a.type);
    for (const t of [9, 10, 11, 12, 17, 20, 27, 250]) expect(types).not.toContain(t);
    for (const t of [1, 2, 3, 4, 5, 7, 8, 15, 16, 18, 22, 23, 24]) expect(types).toContain(t);
    const back = ok(decodeMsg(bytes));
    expect(back.id).toBeUndefined();
    expect(back.countersOrig).toBeUndefined();
    expect(back.mark).toBe(full.mark);
  });

  it('keepUnknown re-emits unknown attributes on a write without the read-only fields', () => {
    const f = { ...full, unknown: [{ type: 250, nested: false, data: Buffer.from([1]) }] };
    const back = ok(decodeMsg(encodeMsg(f, { keepUnknown: true })));
    expect(back.unknown).toEqual(f.unknown);
    expect(back.id).toBeUndefined();
  });

  it('writes TCP flags as {flags, mask}; the mask defaults to the flags', () => {
    const f: Flow = {
      family: 2,
      orig: full.orig,
      reply: full.reply,
      protoinfo: { tcp: { state: 3, flagsOrig: 0x08, flagsReply: 0x09, flagsReplyMask: 0x0f } },
    };
    const bytes = encodeMsg(f);
    expect(bytes.includes(attr(4, Buffer.from([0x08, 0x08])))).toBe(true);
    expect(bytes.includes(attr(5, Buffer.from([0x09, 0x0f])))).toBe(true);
  });

  it('encodeTuple writes the nest a CT GET / DELETE needs', () => {
    const w = new AttrWriter();
    encodeTuple(w, 1, { src: '10.0.0.1', dst: '10.0.0.2', proto: 6, sport: 1000, dport: 22 }, 2);
    expect(w.finish().equals(tupleV4(1, '10.0.0.1', '10.0.0.2', 6, 1000, 22))).toBe(true);
  });

  it('throws AddressError on a bad address; rewind restores the batch', () => {
    const w = new AttrWriter();
    w.beginMessage(0x100, 0, 1, 2);
    encodeFlow(w, full);
    w.endMessage();
    const before = w.finish();
    const mark = w.length;
    w.beginMessage(0x100, 0, 2, 2);
    expect(() => encodeFlow(w, { ...full, orig: { ...full.orig, src: '10.0.0.300' } })).toThrow(AddressError);
    w.rewind(mark);
    expect(w.finish().equals(before)).toBe(true);
  });
});

describe('malformed input', () => {
  const orig = tupleV4(1, '10.0.0.1', '10.0.0.2', 6, 1000, 22);
  const reply = tupleV4(2, '10.0.0.2', '10.0.0.1', 6, 22, 1000);
  const region = (attrs: Buffer[]) => Buffer.concat(attrs);
  const reason = (b: Buffer) => {
    const r = decodeFlow(b, 0, b.length, 2);
    return r instanceof DecodeError ? r.reason : 'ok';
  };

  it('names the reason', () => {
    expect(reason(region([orig]))).toBe('missing_tuple');
    expect(reason(region([orig, nest(2, [nest(2, [attr(1, u8(6))])])]))).toBe('missing_tuple'); // no CTA_TUPLE_IP
    expect(reason(region([orig, reply]).subarray(0, 50))).toBe('truncated');
    expect(reason(region([orig, reply, Buffer.from([2, 0, 3, 0])]))).toBe('bad_length');
    expect(reason(region([orig, reply, Buffer.from([1, 0])]))).toBe('truncated');
    expect(reason(region([orig, reply, attr(3, be16(1))]))).toBe('bad_length');
    expect(reason(region([orig, reply, nest(4, [Buffer.from([0xff, 0, 1, 0])])]))).toBe('bad_nest');
    expect(reason(region([orig, nest(2, [nest(1, [attr(1, ip4('1.1.1.1')), attr(4, ip6([0, 0, 0, 0, 0, 0, 0, 1]))]), nest(2, [attr(1, u8(6))])])]))).toBe('bad_payload');
    expect(reason(region([orig, reply]))).toBe('ok');
  });

  it('rejects a region outside the buffer', () => {
    const b = region([orig, reply]);
    expect(decodeFlow(b, 0, b.length + 1, 2)).toBeInstanceOf(DecodeError);
    expect(decodeFlow(b, 8, 4, 2)).toBeInstanceOf(DecodeError);
  });
});
