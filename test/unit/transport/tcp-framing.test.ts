// The peer link's length-prefixed framing: frames cut at every byte offset, size limit before buffering, fuzz.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LinkFrame, LinkFrameDecoder, encodeLinkFrame } from '../../../src/transport/tcp/framing.js';
import { decodeHello, encodeHello } from '../../../src/transport/tcp/hello.js';

const wire = (type: LinkFrame, p: Buffer): Buffer => Buffer.concat(encodeLinkFrame(type, p));

describe('link framing', () => {
  it('decodes two frames cut at every byte offset', () => {
    const bytes = Buffer.concat([wire(LinkFrame.Data, Buffer.from('first frame')), wire(LinkFrame.Heartbeat, Buffer.alloc(0)), wire(LinkFrame.Data, Buffer.from('2nd'))]);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const got: Array<[number, string]> = [];
      const d = new LinkFrameDecoder(1024, (t, p) => got.push([t, p.toString()]));
      expect(d.push(bytes.subarray(0, cut)).ok).toBe(true);
      expect(d.push(bytes.subarray(cut)).ok).toBe(true);
      expect(got).toEqual([[LinkFrame.Data, 'first frame'], [LinkFrame.Heartbeat, ''], [LinkFrame.Data, '2nd']]);
    }
  });

  it('refuses a length above the limit from the header alone', () => {
    const got: Buffer[] = [];
    const d = new LinkFrameDecoder(10, (_t, p) => got.push(p));
    expect(d.push(wire(LinkFrame.Data, Buffer.alloc(10))).ok).toBe(true);
    expect(d.push(wire(LinkFrame.Data, Buffer.alloc(11)).subarray(0, 5))).toEqual({ ok: false, reason: 'too_large' });
    expect(got).toHaveLength(1);
  });

  it('never throws on random bytes, and random bytes never decode as a hello', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), (chunks) => {
        const d = new LinkFrameDecoder(256, (t, p) => {
          if (t === LinkFrame.Hello) decodeHello(p);
        });
        for (const c of chunks) d.push(Buffer.from(c));
        return true;
      }),
    );
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (b) => decodeHello(Buffer.from(b)) === null || b.length > 0));
  });

  it('round-trips a hello and rejects malformed ones', () => {
    const h = { v: 1, minV: 1, cluster: 'lab', node: 'fw-a', boot: 5, seq: 2 };
    expect(decodeHello(encodeHello(h))).toEqual(h);
    for (const bad of ['', 'null', '[]', '{"v":1}', JSON.stringify({ ...h, seq: -1 }), JSON.stringify({ ...h, node: '' }), 'x'.repeat(2000)]) {
      expect(decodeHello(Buffer.from(bad)), bad.slice(0, 20)).toBeNull();
    }
  });
});
