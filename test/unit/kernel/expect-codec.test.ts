// Expectation codec: round trip of the model fixtures, hand-built bytes, and malformed input.

import { describe, expect, it } from 'vitest';
import { decodeExpectation, encodeExpectation } from '../../../src/kernel/expect-codec.js';
import { DecodeError } from '../../../src/kernel/flow-codec.js';
import { AttrWriter, parseAttrs } from '../../../src/kernel/nla.js';
import type { Expectation } from '../../../src/kernel/types.js';
import { attr, be16, be32, expectationFixtures, nest, strz, tupleV4 } from '../../fixtures/builders.js';

function encode(e: Expectation, readOnly: boolean): Buffer {
  const w = new AttrWriter();
  encodeExpectation(w, e, { readOnly });
  return w.finish();
}

function decode(b: Buffer): Expectation | DecodeError {
  return decodeExpectation(b, 0, b.length, 2);
}

describe('expectation codec', () => {
  for (const [name, e] of Object.entries(expectationFixtures())) {
    it(`${name}: encode(readOnly) -> decode is identity`, () => {
      const bytes = encode(e, true);
      const back = decodeExpectation(bytes, 0, bytes.length, e.family);
      expect(back).toEqual(e);
      expect(encode(back as Expectation, true).equals(bytes)).toBe(true);
    });
  }

  it('decodes hand-built attributes', () => {
    const b = Buffer.concat([
      tupleV4(1, '10.0.0.1', '10.0.0.2', 6, 1000, 21),
      tupleV4(2, '10.0.0.2', '10.0.0.1', 6, 0, 5000),
      tupleV4(3, '255.255.255.255', '255.255.255.255', 6, 0, 0xffff),
      attr(4, be32(300)),
      attr(5, be32(0xabcdef01)),
      attr(6, strz('ftp')),
      attr(7, be16(9)),
      attr(8, be32(1)),
      attr(9, be32(2)),
      nest(10, [attr(1, be32(1)), tupleV4(2, '192.0.2.1', '0.0.0.0', 6, 0, 6000)]),
      attr(11, strz('nat-follow-master')),
    ]);
    const e = decode(b) as Expectation;
    expect(e.master.dport).toBe(21);
    expect(e.tuple).toEqual({ src: '10.0.0.2', dst: '10.0.0.1', proto: 6, sport: 0, dport: 5000 });
    expect(e.mask.src).toBe('255.255.255.255');
    expect([e.timeout, e.id, e.helper, e.zone, e.flags, e.class, e.fn]).toEqual([300, 0xabcdef01, 'ftp', 9, 1, 2, 'nat-follow-master']);
    expect(e.nat).toEqual({ dir: 1, tuple: { src: '192.0.2.1', dst: '0.0.0.0', proto: 6, sport: 0, dport: 6000 } });
  });

  it('leaves the id out of writes', () => {
    const e = expectationFixtures()['ftp passive expectation']!;
    const types = parseAttrs(encode(e, false), 0, encode(e, false).length)!.map((a) => a.type);
    expect(types).not.toContain(5);
    expect(types).toContain(4);
  });

  it('names the reason for malformed input', () => {
    const m = tupleV4(1, '10.0.0.1', '10.0.0.2', 6, 1000, 21);
    const t = tupleV4(2, '10.0.0.2', '10.0.0.1', 6, 0, 5000);
    const reason = (b: Buffer) => {
      const r = decode(b);
      return r instanceof DecodeError ? r.reason : 'ok';
    };
    expect(reason(Buffer.concat([m, t]))).toBe('missing_tuple');
    expect(reason(Buffer.concat([m, t, tupleV4(3, '1.1.1.1', '1.1.1.1', 6, 0, 0), attr(4, be16(1))]))).toBe('bad_length');
    expect(reason(Buffer.concat([m, t, tupleV4(3, '1.1.1.1', '1.1.1.1', 6, 0, 0)]).subarray(0, 70))).toBe('truncated');
    expect(reason(Buffer.concat([m, t, tupleV4(3, '1.1.1.1', '1.1.1.1', 6, 0, 0), nest(10, [Buffer.from([9, 0, 1])])]))).toBe('bad_nest');
  });
});
