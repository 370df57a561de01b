// The peer link's length-prefixed framing: frames cut at every byte offset, size limit before buffering, fuzz.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LinkFrame, LinkFrameDecoder, encodeLinkFrame } from '../../../src/transport/tcp/framing.js';
import { checkHello, decodeHello, encodeHello, keepsOver } from '../../../src/transport/tcp/hello.js';

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
  });

  it('round-trips a hello and rejects malformed ones', () => {
    const h = { v: 1, minV: 1, cluster: 'lab', node: 'fw-a', boot: 5, seq: 2 };
    expect(decodeHello(encodeHello(h))).toEqual(h);
    for (const bad of ['', 'null', '[]', '{"v":1}', JSON.stringify({ ...h, seq: -1 }), JSON.stringify({ ...h, node: '' }), 'x'.repeat(2000)]) {
      expect(decodeHello(Buffer.from(bad)), bad.slice(0, 20)).toBeNull();
    }
  });
});

describe('hello checks and the connection tie-break', () => {
  const local = { clusterId: 'lab', nodeId: 'fw-a', isKnownPeer: (id: string) => id === 'fw-b' };
  const h = { v: 1, minV: 1, cluster: 'lab', node: 'fw-b', boot: 1, seq: 1 };

  it('accepts overlapping version ranges and refuses the rest by reason', () => {
    expect(checkHello(h, local)).toEqual({ ok: true, version: 1 });
    expect(checkHello({ ...h, v: 7, minV: 1 }, local)).toEqual({ ok: true, version: 1 });
    expect(checkHello({ ...h, v: 7, minV: 5 }, local)).toEqual({ ok: false, reason: 'bad_version' });
    expect(checkHello({ ...h, cluster: 'other' }, local)).toEqual({ ok: false, reason: 'bad_cluster' });
    expect(checkHello({ ...h, node: 'fw-a' }, local)).toEqual({ ok: false, reason: 'self' });
    expect(checkHello({ ...h, node: 'fw-z' }, local)).toEqual({ ok: false, reason: 'unknown_node' });
    expect(checkHello(null, local)).toEqual({ ok: false, reason: 'bad_hello' });
  });

  it('keeps the connection dialed by the lower id, else the newer one of the same dialer, on both ends alike', () => {
    const byA = { dialer: 'fw-a', boot: 1, seq: 1 };
    const byB = { dialer: 'fw-b', boot: 9, seq: 9 };
    expect(keepsOver(byA, byB, 'fw-a')).toBe(true);
    expect(keepsOver(byB, byA, 'fw-a')).toBe(false);
    expect(keepsOver({ ...byB, seq: 10 }, byB, 'fw-a')).toBe(true);
    expect(keepsOver({ ...byB, boot: 10, seq: 1 }, byB, 'fw-a')).toBe(true);
    fc.assert(
      fc.property(fc.constantFrom('fw-a', 'fw-b'), fc.constantFrom('fw-a', 'fw-b'), fc.nat(5), fc.nat(5), fc.nat(5), fc.nat(5), (d1, d2, b1, b2, s1, s2) => {
        const x = { dialer: d1, boot: b1, seq: s1 };
        const y = { dialer: d2, boot: b2, seq: s2 };
        // A strict order: never both, and exactly one unless the keys are identical.
        const same = d1 === d2 && b1 === b2 && s1 === s2;
        return !(keepsOver(x, y, 'fw-a') && keepsOver(y, x, 'fw-a')) && (same || keepsOver(x, y, 'fw-a') !== keepsOver(y, x, 'fw-a'));
      }),
    );
  });
});
