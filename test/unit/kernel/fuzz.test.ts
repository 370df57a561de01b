// Fuzzing the receive path: random bytes and mutated real messages never make the decoders throw, the work is
// bounded, the result is a value or a DecodeError, and whatever decodes re-encodes to the same model.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeExpectation, encodeExpectation } from '../../../src/kernel/expect-codec.js';
import { decodeFlow, DecodeError, encodeFlow } from '../../../src/kernel/flow-codec.js';
import { AttrWriter } from '../../../src/kernel/nla.js';
import { decodeNlError, forEachMessage } from '../../../src/kernel/nfnetlink.js';
import type { Expectation, Flow } from '../../../src/kernel/types.js';
import { expectationFixtures, flowFixtures } from '../../fixtures/builders.js';
import { loadCaptured } from '../../fixtures/kernel-fixtures.js';

const REASONS = ['truncated', 'bad_length', 'bad_nest', 'missing_tuple', 'bad_payload'];

/** Runs the whole receive path over buf; checks the invariants; returns how many messages decoded. */
function receive(buf: Buffer): number {
  let calls = 0;
  let decoded = 0;
  forEachMessage(buf, (m) => {
    calls++;
    expect(m.off).toBeGreaterThanOrEqual(0);
    expect(m.end).toBeLessThanOrEqual(buf.length);
    decodeNlError(buf, m);
    for (const r of [decodeFlow(buf, m.payloadOff, m.end, m.family), decodeExpectation(buf, m.payloadOff, m.end, m.family)]) {
      if (r instanceof DecodeError) {
        expect(REASONS).toContain(r.reason);
        continue;
      }
      decoded++;
      // Whatever decodes must re-encode, and decode again to the same model.
      const w = new AttrWriter();
      if ('orig' in r) {
        encodeFlow(w, r as Flow, { readOnly: true });
        const b = w.finish();
        expect(decodeFlow(b, 0, b.length, m.family)).toEqual(r);
      } else {
        encodeExpectation(w, r as Expectation, { readOnly: true });
        const b = w.finish();
        expect(decodeExpectation(b, 0, b.length, m.family)).toEqual(r);
      }
    }
  });
  // Bounded work: a message is at least one 16-byte header.
  expect(calls).toBeLessThanOrEqual(Math.floor(buf.length / 16));
  return decoded;
}

const captured = loadCaptured().map((m) => m.bytes);
const built = [
  ...Object.values(flowFixtures()).map((f) => {
    const w = new AttrWriter();
    w.beginMessage(0x100, 0, 0, f.family);
    encodeFlow(w, f, { readOnly: true });
    return w.finish();
  }),
  ...Object.values(expectationFixtures()).map((e) => {
    const w = new AttrWriter();
    w.beginMessage(0x200, 0, 0, e.family);
    encodeExpectation(w, e, { readOnly: true });
    return w.finish();
  }),
];
const seeds = [...captured, ...built];

type Mutation =
  | { kind: 'flip'; at: number; xor: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'nla_len'; at: number; value: number }
  | { kind: 'type'; at: number; value: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('nla_len' as const), at: fc.nat(), value: fc.oneof(fc.integer({ min: 0, max: 12 }), fc.nat(0xffff)) }),
  fc.record({ kind: fc.constant('type' as const), at: fc.nat(), value: fc.nat(0xffff) }),
);

function mutate(seed: Buffer, muts: Mutation[]): Buffer {
  let b = Buffer.from(seed);
  for (const m of muts) {
    if (b.length === 0) break;
    const at = m.at % b.length;
    if (m.kind === 'flip') b[at]! ^= m.xor;
    else if (m.kind === 'truncate') b = b.subarray(0, at);
    else if (at + 2 <= b.length) {
      // Attribute headers sit at 4-byte boundaries after the 20-byte header: aim there most of the time.
      const p = Math.min(b.length - 2, (at & ~3) + (m.kind === 'type' ? 2 : 0));
      b.writeUInt16LE(m.value, p);
    }
  }
  return b;
}

describe('fuzz', () => {
  it('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (a) => {
        receive(Buffer.from(a));
      }),
      { numRuns: 3000 },
    );
  });

  it('random bytes behind a plausible nlmsghdr + nfgenmsg', () => {
    fc.assert(
      fc.property(fc.constantFrom(0x100, 0x102, 0x200, 2, 3), fc.uint8Array({ maxLength: 400 }), (type, a) => {
        const b = Buffer.alloc(20 + a.length);
        b.writeUInt32LE(b.length, 0);
        b.writeUInt16LE(type, 4);
        b[16] = 2;
        Buffer.from(a).copy(b, 20);
        receive(b);
      }),
      { numRuns: 3000 },
    );
  });

  it('mutated captured and built messages (flipped bytes, truncation, corrupt nla_len and nla_type)', () => {
    fc.assert(
      fc.property(fc.constantFrom(...seeds), fc.array(mutation, { minLength: 1, maxLength: 4 }), (seed, muts) => {
        receive(mutate(seed, muts));
      }),
      { numRuns: 5000 },
    );
  });

  it('the unmutated seeds all decode (the mutations start from valid input)', () => {
    let n = 0;
    for (const s of seeds) n += receive(s);
    expect(n).toBeGreaterThan(50);
  });

  it('batches of seeds cut at every offset', () => {
    const batch = Buffer.concat(seeds.slice(0, 6));
    for (let cut = 0; cut <= batch.length; cut += 3) receive(batch.subarray(0, cut));
    expect(receive(batch)).toBeGreaterThan(0);
  });
});
