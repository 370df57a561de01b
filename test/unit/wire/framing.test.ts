// Stream framer: frames come back exactly whatever the chunking; oversize prefixes fail fast; junk never throws.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { FrameReader, frameBytes, LENGTH_PREFIX_BYTES, type FrameReaderError } from '../../../src/wire/framing.js';

function collect(max = 1 << 20) {
  const reader = new FrameReader(max);
  const frames: Buffer[] = [];
  const errors: FrameReaderError[] = [];
  reader.onFrame((f) => frames.push(Buffer.from(f)));
  reader.onError((e) => errors.push(e));
  return { reader, frames, errors };
}

const payloads = [Buffer.from('first frame payload'), Buffer.from([]), Buffer.from('third, a little longer than the others')];

describe('frameBytes', () => {
  test('prefixes a big-endian u32 length', () => {
    const f = frameBytes(Buffer.from('abc'));
    expect([...f]).toEqual([0, 0, 0, 3, 97, 98, 99]);
  });
});

describe('FrameReader', () => {
  test('two frames cut at every byte offset', () => {
    const stream = Buffer.concat([frameBytes(payloads[0]!), frameBytes(payloads[2]!)]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const { reader, frames, errors } = collect();
      reader.push(stream.subarray(0, cut));
      reader.push(stream.subarray(cut));
      expect(frames).toEqual([payloads[0], payloads[2]]);
      expect(errors).toEqual([]);
      expect(reader.buffered).toBe(0);
    }
  });

  test('three frames (one empty) cut at every pair of byte offsets', () => {
    const stream = Buffer.concat(payloads.map((p) => frameBytes(p)));
    for (let a = 0; a <= stream.length; a++) {
      for (let b = a; b <= stream.length; b++) {
        const { reader, frames, errors } = collect();
        reader.push(stream.subarray(0, a));
        reader.push(stream.subarray(a, b));
        reader.push(stream.subarray(b));
        expect(frames).toEqual(payloads);
        expect(errors).toEqual([]);
      }
    }
  });

  test('one byte at a time', () => {
    const stream = Buffer.concat(payloads.map((p) => frameBytes(p)));
    const { reader, frames } = collect();
    for (const byte of stream) reader.push(Buffer.from([byte]));
    expect(frames).toEqual(payloads);
  });

  test('any chunking of any frames gives the frames back', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (frames, cuts) => {
          const stream = Buffer.concat(frames.map((f) => frameBytes(f)));
          const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((x, y) => x - y);
          const { reader, frames: got, errors } = collect(300);
          let prev = 0;
          for (const p of [...points, stream.length]) {
            reader.push(stream.subarray(prev, p));
            prev = p;
          }
          expect(got).toEqual(frames.map((f) => Buffer.from(f)));
          expect(errors).toEqual([]);
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('a frame at exactly the limit passes; one byte more is too_large as soon as the prefix is read', () => {
    const ok = collect(8);
    ok.reader.push(frameBytes(Buffer.alloc(8, 1)));
    expect(ok.frames).toHaveLength(1);

    const { reader, frames, errors } = collect(8);
    const prefix = Buffer.alloc(LENGTH_PREFIX_BYTES);
    prefix.writeUInt32BE(9);
    reader.push(prefix.subarray(0, 2));
    expect(errors).toEqual([]);
    reader.push(prefix.subarray(2));
    expect(errors).toEqual([{ reason: 'too_large', detail: expect.stringContaining('9') }]);
    expect(reader.broken).toBe(true);
    // Nothing after the bad prefix is buffered or delivered, and the error is reported once.
    reader.push(Buffer.alloc(64, 2));
    reader.push(frameBytes(Buffer.from('late')));
    expect(reader.buffered).toBe(0);
    expect(frames).toEqual([]);
    expect(errors).toHaveLength(1);
  });

  test('a 4 GiB length prefix with data behind it is refused without allocating for it', () => {
    const { reader, errors } = collect(1 << 20);
    const chunk = Buffer.alloc(1024, 0xff); // prefix 0xffffffff followed by junk, all in one chunk
    reader.push(chunk);
    expect(errors.map((e) => e.reason)).toEqual(['too_large']);
    expect(reader.buffered).toBe(0);
  });

  test('frames delivered as views of the chunk stay correct after the chunk is reused', () => {
    const reader = new FrameReader(100);
    const seen: string[] = [];
    reader.onFrame((f) => seen.push(f.toString()));
    const chunk = frameBytes(Buffer.from('hello'));
    reader.push(chunk);
    chunk.fill(0);
    expect(seen).toEqual(['hello']);
  });

  test('random bytes never throw, and every frame delivered respects the limit', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 20 }), fc.integer({ min: 0, max: 64 }), (chunks, max) => {
        const reader = new FrameReader(max);
        let over = 0;
        let errs = 0;
        reader.onFrame((f) => {
          if (f.length > max) over++;
        });
        reader.onError(() => errs++);
        for (const c of chunks) reader.push(c);
        expect(over).toBe(0);
        expect(errs).toBeLessThanOrEqual(1);
      }),
      { numRuns: 5000 },
    );
  });

  test('an invalid limit is a CTS_ERR_WIRE_CONFIG', () => {
    expect(() => new FrameReader(-1)).toThrow(expect.objectContaining({ code: 'CTS_ERR_WIRE_CONFIG' }));
  });
});
