// Frame codec: every body round trips; checks run in order (size, version, MAC, payload, cluster); never throws.
import fc from 'fast-check';
import protobuf from 'protobufjs/light.js';
import { afterEach, describe, expect, test, vi } from 'vitest';
import {
  createMacKey, decodeFrame, DEFAULT_MAX_FRAME_BYTES, encodeFrame, FRAME_HEADER_BYTES, MAC_BYTES, PROTOCOL_VERSION,
} from '../../../src/wire/envelope.js';
import { entryToFlow, flowToEntry, toSyncedFlow } from '../../../src/wire/entry.js';
import { Envelope, type pb } from '../../../src/wire/proto.js';
import { establishedTcp4, flowArb } from './arbitraries.js';

const limits = { maxFrameBytes: DEFAULT_MAX_FRAME_BYTES };
const expectA = { clusterId: 'fw-a' };
const key = createMacKey('correct horse battery staple, cluster fw-a');
const otherKey = createMacKey('another cluster key of enough length');
const base = { clusterId: 'fw-a', nodeId: 'node-1', seq: 7, ack: 3 };

const bodies: Array<[string, pb.IEnvelope]> = [
  ['hello', { hello: { version: 1, minVersion: 1, clusterId: 'fw-a', nodeId: 'node-1', role: 1, capabilities: ['digest-v1'], session: 2 ** 40 + 5, peerSession: 9, lastSeq: 12, maxFrameBytes: 1 << 20 } }],
  ['upsert', { upsert: { entries: fc.sample(establishedTcp4, 3).map(flowToEntry), bulkId: 4 } }],
  ['delete', { delete: { keys: [{ orig: Buffer.from([6, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]), zone: 3 }], expectations: [{ tuple: Buffer.alloc(13), zone: 1 }] } }],
  ['refresh', { refresh: { items: [{ orig: Buffer.alloc(13), timeout: 1200 }] } }],
  ['bulkBegin', { bulkBegin: { bulkId: 1, count: 100000, full: true } }],
  ['bulkEnd', { bulkEnd: { bulkId: 1, count: 99999 } }],
  ['resyncRequest', { resyncRequest: { full: false, fromSeq: 2 ** 50, session: 77 } }],
  ['sack', { sack: { cumulative: 10, ranges: [{ first: 12, last: 15 }, { first: 20, last: 20 }] } }],
  ['heartbeat', { heartbeat: { timeMs: 1_763_700_000_123, tableSize: 1_000_000, lastAppliedSeq: 41, lastSentSeq: 44, intervalMs: 1000 } }],
  ['digest', { digest: { digestId: 5, bucketCount: 4, algorithm: 1, hashBytes: 8, hashes: Buffer.alloc(32, 0xab), tableSize: 10, counts: [1, 2, 3, 4] } }],
  ['digestRepairRequest', { digestRepairRequest: { digestId: 5, bucketCount: 4, buckets: [0, 3] } }],
  ['digestRepair', { digestRepair: { digestId: 5, bucketCount: 4, buckets: [0, 3], entries: fc.sample(establishedTcp4, 2).map(flowToEntry), last: true } }],
];

/** Plain-object view of a decoded message, with protobufjs' defaults, for comparison. */
function plain(env: pb.Envelope): unknown {
  return (Envelope as unknown as protobuf.Type).toObject(env as unknown as protobuf.Message, { defaults: false, bytes: Array });
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('frames', () => {
  test.each(bodies)('%s round trips, with and without MAC', (name, body) => {
    for (const macKey of [undefined, key]) {
      const frame = encodeFrame({ ...base, ...body }, { macKey });
      const r = decodeFrame(frame, limits, { clusterId: 'fw-a', macKey });
      expect(r.ok).toBe(true);
      if (!r.ok) return;
      expect(r.env.body).toBe(name);
      expect(r.env.version).toBe(PROTOCOL_VERSION);
      expect(r.env.seq).toBe(7);
      expect(plain(r.env)).toEqual(plain(Envelope.decode(Envelope.encode({ ...base, version: PROTOCOL_VERSION, ...body }).finish())));
    }
  });

  test('flows survive a whole frame', () => {
    fc.assert(
      fc.property(fc.array(flowArb(), { maxLength: 20 }), (flows) => {
        const r = decodeFrame(encodeFrame({ ...base, upsert: { entries: flows.map(flowToEntry) } }, { macKey: key }), limits, { ...expectA, macKey: key });
        expect(r.ok).toBe(true);
        if (!r.ok) return;
        expect((r.env.upsert?.entries ?? []).map((e) => entryToFlow(e))).toStrictEqual(flows.map((f) => ({ ok: true, value: toSyncedFlow(f) })));
      }),
      { numRuns: 200 },
    );
  });

  test('byte layout: [0xC5][format 1][flags][envelope][16-byte MAC]', () => {
    const plainFrame = encodeFrame({ ...base, heartbeat: { timeMs: 1 } });
    const macFrame = encodeFrame({ ...base, heartbeat: { timeMs: 1 } }, { macKey: key });
    expect([...plainFrame.subarray(0, 3)]).toEqual([0xc5, 1, 0]);
    expect([...macFrame.subarray(0, 3)]).toEqual([0xc5, 1, 1]);
    expect(macFrame.length).toBe(plainFrame.length + MAC_BYTES);
    expect(macFrame.subarray(3, macFrame.length - MAC_BYTES)).toEqual(plainFrame.subarray(3));
  });
});

describe('receive checks', () => {
  const good = encodeFrame({ ...base, heartbeat: { timeMs: 1 } });

  test('size limit is checked before anything is decoded', () => {
    const spy = vi.spyOn(Envelope, 'decode');
    const big = encodeFrame({ ...base, upsert: { entries: fc.sample(establishedTcp4, 50).map(flowToEntry) } });
    const r = decodeFrame(big, { maxFrameBytes: big.length - 1 }, expectA);
    expect(r).toMatchObject({ ok: false, reason: 'too_large' });
    expect(spy).not.toHaveBeenCalled();
    expect(decodeFrame(big, { maxFrameBytes: big.length }, expectA).ok).toBe(true);
  });

  test('version: wrong frame format or unknown flags are bad_version, checked before the MAC', () => {
    const f = Buffer.from(good);
    f[1] = 2;
    expect(decodeFrame(f, limits, { ...expectA, macKey: key })).toMatchObject({ ok: false, reason: 'bad_version' });
    const g = Buffer.from(good);
    g[2] = 0x80;
    expect(decodeFrame(g, limits, expectA)).toMatchObject({ ok: false, reason: 'bad_version' });
  });

  test('protocol version 0 (or missing) is bad_version; a newer version is accepted', () => {
    const old = Buffer.concat([Buffer.from([0xc5, 1, 0]), Envelope.encode({ clusterId: 'fw-a' }).finish()]);
    expect(decodeFrame(old, limits, expectA)).toMatchObject({ ok: false, reason: 'bad_version' });
    const newer = encodeFrame({ ...base, version: PROTOCOL_VERSION + 5, heartbeat: {} });
    expect(decodeFrame(newer, limits, expectA)).toMatchObject({ ok: true });
  });

  test('wrong cluster is refused', () => {
    expect(decodeFrame(good, limits, { clusterId: 'fw-b' })).toMatchObject({ ok: false, reason: 'wrong_cluster' });
    const authed = encodeFrame({ ...base, clusterId: 'fw-b', heartbeat: {} }, { macKey: key });
    expect(decodeFrame(authed, limits, { ...expectA, macKey: key })).toMatchObject({ ok: false, reason: 'wrong_cluster' });
  });

  test('not a ctsync frame, or too short for a header', () => {
    expect(decodeFrame(Buffer.from('GET / HTTP/1.1\r\n'), limits, expectA)).toMatchObject({ ok: false, reason: 'bad_payload' });
    expect(decodeFrame(Buffer.from([0xc5, 1]), limits, expectA)).toMatchObject({ ok: false, reason: 'truncated' });
  });

  test('a frame cut short is truncated (or bad_payload), never accepted as something else', () => {
    const frame = encodeFrame({ ...base, upsert: { entries: fc.sample(establishedTcp4, 5).map(flowToEntry) } });
    for (let n = FRAME_HEADER_BYTES + 1; n < frame.length; n++) {
      const r = decodeFrame(frame.subarray(0, n), limits, expectA);
      if (r.ok) {
        // protobuf has no end marker: a cut exactly between two fields parses, with fewer entries.
        expect(r.env.upsert?.entries?.length ?? 0).toBeLessThan(5);
      } else {
        expect(['truncated', 'bad_payload', 'wrong_cluster']).toContain(r.reason);
      }
    }
  });
});

describe('MAC', () => {
  const frame = encodeFrame({ ...base, upsert: { entries: fc.sample(establishedTcp4, 3).map(flowToEntry) } }, { macKey: key });

  test('a receiver with the key accepts only frames with a valid MAC', () => {
    expect(decodeFrame(frame, limits, { ...expectA, macKey: key }).ok).toBe(true);
    expect(decodeFrame(frame, limits, { ...expectA, macKey: otherKey })).toMatchObject({ ok: false, reason: 'bad_auth' });
    const unsigned = encodeFrame({ ...base, heartbeat: {} });
    expect(decodeFrame(unsigned, limits, { ...expectA, macKey: key })).toMatchObject({ ok: false, reason: 'bad_auth' });
  });

  test('flipping any bit after the header is bad_auth, and the payload is never decoded', () => {
    const spy = vi.spyOn(Envelope, 'decode');
    for (let i = FRAME_HEADER_BYTES; i < frame.length; i++) {
      const f = Buffer.from(frame);
      f[i]! ^= 1 << (i % 8);
      expect(decodeFrame(f, limits, { ...expectA, macKey: key })).toMatchObject({ ok: false, reason: 'bad_auth' });
    }
    expect(spy).not.toHaveBeenCalled();
  });

  test('clearing the MAC flag does not bypass a receiver that requires one', () => {
    const f = Buffer.from(frame);
    f[2] = 0;
    expect(decodeFrame(f, limits, { ...expectA, macKey: key })).toMatchObject({ ok: false, reason: 'bad_auth' });
  });

  test('a receiver without a key (TLS transport) skips a MAC it cannot check', () => {
    expect(decodeFrame(frame, limits, expectA).ok).toBe(true);
  });

  test('keys shorter than 16 bytes are refused with CTS_ERR_WIRE_CONFIG', () => {
    expect(() => createMacKey('short')).toThrow(expect.objectContaining({ code: 'CTS_ERR_WIRE_CONFIG' }));
  });
});

describe('compatibility', () => {
  test('unknown envelope fields and unknown body variants are tolerated', () => {
    const w = protobuf.Writer.create();
    w.uint32((90 << 3) | 0).uint32(5); // a future scalar
    w.uint32((91 << 3) | 2).bytes(Buffer.from([1, 2, 3])); // a future message
    w.uint32((92 << 3) | 5).fixed32(7); // a future fixed32
    const known = Envelope.encode({ ...base, version: 1, heartbeat: { timeMs: 9 } }).finish();
    const r = decodeFrame(Buffer.concat([Buffer.from([0xc5, 1, 0]), known, w.finish()]), limits, expectA);
    expect(r.ok && r.env.heartbeat?.timeMs).toBe(9);

    const onlyFuture = Buffer.concat([Buffer.from([0xc5, 1, 0]), Envelope.encode({ ...base, version: 2 }).finish(), w.finish()]);
    const r2 = decodeFrame(onlyFuture, limits, expectA);
    expect(r2.ok).toBe(true);
    expect(r2.ok && r2.env.body).toBeUndefined();
  });
});

describe('fuzz', () => {
  test('random bytes never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (bytes, magic) => {
        const b = Buffer.from(bytes);
        if (magic && b.length >= 3) {
          b[0] = 0xc5;
          b[1] = 1;
          b[2] &= 1;
        }
        const r = decodeFrame(b, limits, expectA);
        expect(typeof r.ok).toBe('boolean');
        const r2 = decodeFrame(b, limits, { ...expectA, macKey: key });
        expect(r2.ok).toBe(false);
      }),
      { numRuns: 10000 },
    );
  });

  test('mutated valid frames never throw', () => {
    const seed = encodeFrame({ ...base, upsert: { entries: fc.sample(flowArb(), 10).map(flowToEntry) } });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat(), (edits, cut) => {
        const b = Buffer.from(seed);
        for (const [pos, v] of edits) b[FRAME_HEADER_BYTES + (pos % (b.length - FRAME_HEADER_BYTES))] = v;
        const f = b.subarray(0, Math.max(FRAME_HEADER_BYTES, b.length - (cut % 20)));
        const r = decodeFrame(f, limits, expectA);
        expect(typeof r.ok).toBe('boolean');
        if (r.ok) for (const e of r.env.upsert?.entries ?? []) expect(typeof entryToFlow(e).ok).toBe('boolean');
      }),
      { numRuns: 5000 },
    );
  });

  test('deeply nested groups are bad_payload, not a crash', () => {
    const tag = protobuf.Writer.create().uint32((99 << 3) | 3).finish(); // start-group of unknown field 99
    const groups = Buffer.concat(new Array(100_000).fill(tag));
    const r = decodeFrame(Buffer.concat([Buffer.from([0xc5, 1, 0]), groups]), limits, expectA);
    expect(r).toMatchObject({ ok: false });
    expect(['bad_payload', 'truncated']).toContain(!r.ok && r.reason);
  });
});
