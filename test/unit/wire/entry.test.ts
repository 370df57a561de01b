// Flow/Expectation <-> wire message mapping: exact round trips through real protobuf bytes, compactness, bad input.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import type { Flow } from '../../../src/kernel/types.js';
import {
  entryToFlow, expectationFromWire, expectationKeyFromWire, expectationKeyOf, expectationKeyToWire, expectationToWire,
  flowKeyOf, flowToEntry, keyFromWire, keyToWire, refreshFromWire, refreshToWire, toSyncedExpectation, toSyncedFlow,
} from '../../../src/wire/entry.js';
import { WireError } from '../../../src/wire/errors.js';
import { Entry, Expectation, FlowKey } from '../../../src/wire/proto.js';
import protobuf from 'protobufjs/light.js';
import { AF_INET, AF_INET6, establishedTcp4, expectationArb, flowArb } from './arbitraries.js';

const RUNS = 2000;

function throughBytes(f: Flow) {
  const bytes = Entry.encode(flowToEntry(f)).finish();
  return { bytes, decoded: entryToFlow(Entry.decode(bytes)) };
}

describe('flow entries', () => {
  test('round trip through protobuf bytes equals the synced projection, all protocols, both families', () => {
    fc.assert(
      fc.property(flowArb(), (f) => {
        const { decoded } = throughBytes(f);
        expect(decoded).toStrictEqual({ ok: true, value: toSyncedFlow(f) });
      }),
      { numRuns: RUNS },
    );
  });

  test('each family on its own (so neither is starved by the mix)', () => {
    for (const fam of [AF_INET, AF_INET6]) {
      fc.assert(
        fc.property(flowArb([fam]), (f) => {
          const { decoded } = throughBytes(f);
          expect(decoded.ok && decoded.value.family).toBe(fam);
          expect(decoded).toStrictEqual({ ok: true, value: toSyncedFlow(f) });
        }),
        { numRuns: 500 },
      );
    }
  });

  test('the synced projection is idempotent and drops node-local fields', () => {
    fc.assert(
      fc.property(flowArb(), (f) => {
        const s = toSyncedFlow(f);
        expect(toSyncedFlow(s)).toStrictEqual(s);
        for (const k of ['id', 'use', 'secmark', 'countersOrig', 'countersReply', 'timestampStart', 'timestampStop', 'unknown']) {
          expect(s).not.toHaveProperty(k);
        }
      }),
      { numRuns: 500 },
    );
  });

  test('a steady-state IPv4 TCP established flow takes at most 30 bytes and no reply tuple', () => {
    fc.assert(
      fc.property(establishedTcp4, (f) => {
        const e = flowToEntry(f);
        expect(e.reply).toBeUndefined();
        expect(e.replyExt).toBeUndefined();
        expect(e.tcpExt).toBeUndefined();
        expect(e.family).toBeUndefined();
        expect(Entry.encode(e).finish().length).toBeLessThanOrEqual(30);
      }),
      { numRuns: 300 },
    );
  });

  test('a NATed flow carries its reply tuple packed', () => {
    const f: Flow = {
      family: AF_INET,
      orig: { src: '10.0.0.2', dst: '198.51.100.7', proto: 6, sport: 40000, dport: 443 },
      reply: { src: '198.51.100.7', dst: '203.0.113.1', proto: 6, sport: 443, dport: 61000 },
      status: 0x1be,
      timeout: 431999,
      protoinfo: { tcp: { state: 3, wscaleOrig: 7, wscaleReply: 9, flagsOrig: 0x23, flagsReply: 0x23 } },
    };
    const e = flowToEntry(f);
    expect(e.reply?.length).toBe(13);
    const { bytes, decoded } = throughBytes(f);
    expect(bytes.length).toBeLessThanOrEqual(45);
    expect(decoded).toStrictEqual({ ok: true, value: toSyncedFlow(f) });
  });

  test('ICMP echo omits the reply; an ICMP type without an inverse keeps it', () => {
    const echo: Flow = {
      family: AF_INET,
      orig: { src: '192.0.2.1', dst: '192.0.2.2', proto: 1, icmpType: 8, icmpCode: 0, icmpId: 77 },
      reply: { src: '192.0.2.2', dst: '192.0.2.1', proto: 1, icmpType: 0, icmpCode: 0, icmpId: 77 },
    };
    expect(flowToEntry(echo).reply).toBeUndefined();
    const odd: Flow = { ...echo, orig: { ...echo.orig, icmpType: 3 }, reply: { ...echo.reply, icmpType: 3 } };
    expect(flowToEntry(odd).reply).toBeDefined();
    expect(throughBytes(odd).decoded).toStrictEqual({ ok: true, value: toSyncedFlow(odd) });
  });

  test('an address that is not IPv4/IPv6 text is a CTS_ERR_WIRE_ENCODE on the send path', () => {
    const f: Flow = { family: AF_INET, orig: { src: 'bogus', dst: '1.2.3.4', proto: 17 }, reply: { src: '1.2.3.4', dst: 'bogus', proto: 17 } };
    expect(() => flowToEntry(f)).toThrow(WireError);
    try {
      flowToEntry(f);
    } catch (err) {
      expect((err as WireError).code).toBe('CTS_ERR_WIRE_ENCODE');
    }
  });

  test('malformed entries are bad_payload, never thrown', () => {
    expect(entryToFlow({})).toMatchObject({ ok: false, reason: 'bad_payload' });
    expect(entryToFlow({ orig: Buffer.alloc(12) })).toMatchObject({ ok: false, reason: 'bad_payload' });
    expect(entryToFlow({ origExt: { src: Buffer.alloc(5), dst: Buffer.alloc(4) } })).toMatchObject({ ok: false, reason: 'bad_payload' });
    expect(entryToFlow({ orig: Buffer.alloc(13), tcp: 1 << 26 })).toMatchObject({ ok: false, reason: 'bad_payload' });
    expect(entryToFlow({ orig: Buffer.alloc(13), reply: Buffer.alloc(3) })).toMatchObject({ ok: false, reason: 'bad_payload' });
    // ICMP type 3 has no inverse, so the reply cannot have been omitted.
    const icmp = Buffer.from([1, 1, 2, 3, 4, 5, 6, 7, 8, 3, 0, 0, 1]);
    expect(entryToFlow({ orig: icmp })).toMatchObject({ ok: false, reason: 'bad_payload' });
    expect(entryToFlow({ orig: Buffer.alloc(13), natSrc: { minIp: Buffer.alloc(3) } })).toMatchObject({ ok: false, reason: 'bad_payload' });
  });

  test('random bytes decoded as an Entry never make entryToFlow throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        let msg;
        try {
          msg = Entry.decode(bytes);
        } catch {
          return; // the frame decoder reports these as bad_payload/truncated (envelope tests)
        }
        const r = entryToFlow(msg);
        expect(typeof r.ok).toBe('boolean');
      }),
      { numRuns: 5000 },
    );
  });

  test('unknown fields inside an Entry are skipped (a newer peer may add them)', () => {
    const f = fc.sample(establishedTcp4, 1)[0]!;
    const known = Entry.encode(flowToEntry(f)).finish();
    const w = protobuf.Writer.create();
    w.uint32((99 << 3) | 0).uint32(12345); // varint field 99
    w.uint32((100 << 3) | 2).bytes(Buffer.from('future')); // length-delimited field 100
    const withUnknown = Buffer.concat([known, w.finish()]);
    expect(entryToFlow(Entry.decode(withUnknown))).toStrictEqual({ ok: true, value: toSyncedFlow(f) });
  });
});

describe('keys and refreshes', () => {
  test('flow keys round trip, and an encoded Entry decodes as its own FlowKey', () => {
    fc.assert(
      fc.property(flowArb(), (f) => {
        const key = flowKeyOf(f);
        const bytes = FlowKey.encode(keyToWire(key)).finish();
        expect(keyFromWire(FlowKey.decode(bytes))).toStrictEqual({ ok: true, value: key });
        const entryBytes = Entry.encode(flowToEntry(f)).finish();
        expect(keyFromWire(FlowKey.decode(entryBytes))).toStrictEqual({ ok: true, value: key });
      }),
      { numRuns: 1000 },
    );
  });

  test('the key never depends on the conntrack id', () => {
    fc.assert(
      fc.property(flowArb(), fc.integer({ min: 0, max: 0xffffffff }), (f, id) => {
        expect(keyToWire(flowKeyOf({ ...f, id }))).toStrictEqual(keyToWire(flowKeyOf({ ...f, id: undefined })));
      }),
      { numRuns: 200 },
    );
  });

  test('refresh items round trip', () => {
    fc.assert(
      fc.property(flowArb(), fc.integer({ min: 0, max: 0xffffffff }), (f, timeout) => {
        const item = refreshToWire(flowKeyOf(f), timeout);
        const bytes = Entry.encode(item).finish(); // RefreshItem fields are a subset of Entry's numbers
        const back = refreshFromWire(Entry.decode(bytes));
        expect(back).toStrictEqual({ ok: true, value: { key: flowKeyOf(f), timeout } });
      }),
      { numRuns: 500 },
    );
  });

  test('a refresh for a typical IPv4 flow is at most 22 bytes', () => {
    const f = fc.sample(establishedTcp4, 1)[0]!;
    expect(Entry.encode(refreshToWire(flowKeyOf(f), 431000)).finish().length).toBeLessThanOrEqual(22);
  });
});

describe('expectations', () => {
  test('round trip through protobuf bytes', () => {
    fc.assert(
      fc.property(expectationArb, (x) => {
        const bytes = Expectation.encode(expectationToWire(x)).finish();
        expect(expectationFromWire(Expectation.decode(bytes))).toStrictEqual({ ok: true, value: toSyncedExpectation(x) });
        expect(toSyncedExpectation(x)).not.toHaveProperty('id');
      }),
      { numRuns: 1000 },
    );
  });

  test('expectation keys round trip', () => {
    fc.assert(
      fc.property(expectationArb, (x) => {
        const key = expectationKeyOf(x);
        const bytes = Expectation.encode(expectationKeyToWire(key)).finish();
        expect(expectationKeyFromWire(Expectation.decode(bytes))).toStrictEqual({ ok: true, value: key });
      }),
      { numRuns: 500 },
    );
  });

  test('missing master or mask is bad_payload', () => {
    const tuple = Buffer.alloc(13);
    expect(expectationFromWire({ tuple })).toMatchObject({ ok: false, reason: 'bad_payload' });
    expect(expectationFromWire({ tuple, master: tuple })).toMatchObject({ ok: false, reason: 'bad_payload' });
    expect(expectationFromWire({ tuple, master: tuple, mask: tuple })).toMatchObject({ ok: true });
  });
});
