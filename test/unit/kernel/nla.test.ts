// AttrWriter byte layout (headers host order, payloads big endian, padding, nests, batches) and the attribute walkers.

import { describe, expect, it } from 'vitest';
import { AddressError } from '../../../src/kernel/addr.js';
import { AttrWriter, nlaCheck, parseAttrs, readStrz, readU64BE } from '../../../src/kernel/nla.js';
import { attr, be16, be32, be64, nest, nlmsg, strz, u8 } from '../../fixtures/builders.js';

describe('AttrWriter', () => {
  it('writes nlmsghdr + nfgenmsg and patches nlmsg_len', () => {
    const w = new AttrWriter();
    w.beginMessage(0x0100, 0x0605, 0x01020304, 10, 0xabcd);
    w.u8(1, 6);
    w.endMessage();
    const b = w.finish();
    expect(b.length).toBe(28);
    expect(b.readUInt32LE(0)).toBe(28);
    expect(b.readUInt16LE(4)).toBe(0x0100);
    expect(b.readUInt16LE(6)).toBe(0x0605);
    expect(b.readUInt32LE(8)).toBe(0x01020304);
    expect(b.readUInt32LE(12)).toBe(0); // pid: the kernel fills in our port
    expect([b[16], b[17], b.readUInt16BE(18)]).toEqual([10, 0, 0xabcd]);
  });

  it('lays out every scalar exactly like the hand builder', () => {
    const w = new AttrWriter();
    w.u8(1, 0x1ff);
    w.u16be(2, 0x1234);
    w.u32be(3, 0xdeadbeef);
    w.u64be(4, 0x0102030405060708n);
    w.bytes(5, Buffer.from([1, 2, 3]));
    w.strz(6, 'ftp');
    w.ipText(7, '10.1.2.3', 4);
    w.ipText(8, '2001:db8::1', 16);
    const expected = Buffer.concat([
      attr(1, u8(0xff)),
      attr(2, be16(0x1234)),
      attr(3, be32(0xdeadbeef)),
      attr(4, be64(0x0102030405060708n)),
      attr(5, Buffer.from([1, 2, 3])),
      attr(6, strz('ftp')),
      attr(7, Buffer.from([10, 1, 2, 3])),
      attr(8, Buffer.from('20010db8000000000000000000000001', 'hex')),
    ]);
    expect(w.finish().toString('hex')).toBe(expected.toString('hex'));
  });

  it('sets NLA_F_NESTED and the nest length, nests inside nests', () => {
    const w = new AttrWriter();
    const a = w.nest(1);
    const b = w.nest(2);
    w.u16be(3, 7);
    w.endNest(b);
    w.u8(4, 1);
    w.endNest(a);
    expect(w.finish().equals(nest(1, [nest(2, [attr(3, be16(7))]), attr(4, u8(1))]))).toBe(true);
  });

  it('re-emits a RawAttr with its nested flag', () => {
    const w = new AttrWriter();
    w.raw({ type: 300, nested: true, data: Buffer.from([1, 2, 3, 4, 5]) });
    w.raw({ type: 301, nested: false, data: Buffer.alloc(0) });
    expect(w.finish().equals(Buffer.concat([attr(300 | 0x8000, Buffer.from([1, 2, 3, 4, 5])), attr(301, Buffer.alloc(0))]))).toBe(true);
  });

  it('batches messages back to back; messages() returns each as a view, finish() a copy', () => {
    const w = new AttrWriter(64); // small on purpose: forces growth
    for (let i = 0; i < 50; i++) {
      w.beginMessage(0x100, 1, i, 2);
      w.u32be(7, i);
      w.bytes(100, Buffer.alloc(i, i));
      w.endMessage();
    }
    const msgs = w.messages();
    expect(msgs.length).toBe(50);
    expect(w.messageCount).toBe(50);
    let total = 0;
    msgs.forEach((m, i) => {
      expect(m.readUInt32LE(0)).toBe(m.length);
      expect(m.length % 4).toBe(0);
      expect(m.readUInt32LE(8)).toBe(i);
      expect(m.equals(nlmsg(0x100, 1, i, 0, 2, [attr(7, be32(i)), attr(100, Buffer.alloc(i, i))]))).toBe(true);
      total += m.length;
    });
    const all = w.finish();
    expect(all.length).toBe(total);
    expect(w.length).toBe(total);
    all[0] = 0xee;
    expect(w.messages()[0]![0]).not.toBe(0xee);
  });

  it('beginMessage closes an open message; finish closes the last one', () => {
    const w = new AttrWriter();
    w.beginMessage(0x100, 1, 1, 2);
    w.u8(1, 1);
    w.beginMessage(0x100, 1, 2, 2);
    w.u8(1, 2);
    const b = w.finish();
    expect(b.readUInt32LE(0)).toBe(28);
    expect(b.readUInt32LE(28)).toBe(28);
  });

  it('reset empties the batch; rewind undoes a message whose encoding threw', () => {
    const w = new AttrWriter();
    w.beginMessage(0x100, 1, 1, 2);
    w.u8(1, 1);
    w.endMessage();
    const mark = w.length;
    w.beginMessage(0x100, 1, 2, 2);
    expect(() => w.ipText(3, 'not-an-ip', 4)).toThrow(AddressError);
    expect(() => w.ipText(3, '::1', 4)).toThrow(AddressError);
    w.rewind(mark);
    expect(w.length).toBe(mark);
    expect(w.messages().length).toBe(1);
    w.reset();
    expect(w.length).toBe(0);
    expect(w.messages()).toEqual([]);
  });
});

describe('walkers', () => {
  it('parseAttrs masks NLA_F_NESTED and NLA_F_NET_BYTEORDER off the type', () => {
    const b = Buffer.concat([attr(5 | 0x8000, Buffer.alloc(4)), attr(6 | 0x4000, Buffer.from([1]))]);
    const got = parseAttrs(b, 0, b.length)!;
    expect(got.map((a) => [a.type, a.nested, a.data.length])).toEqual([
      [5, true, 4],
      [6, false, 1],
    ]);
  });

  it('nlaCheck reports truncation and short nla_len', () => {
    const b = attr(1, be32(1));
    expect(nlaCheck(b, 0, b.length)).toBe(8);
    expect(nlaCheck(b, 0, 7)).toBe(-1);
    expect(nlaCheck(b, 0, 3)).toBe(-1);
    const bad = Buffer.from([2, 0, 1, 0]);
    expect(nlaCheck(bad, 0, 4)).toBe(-2);
    expect(parseAttrs(bad, 0, 4)).toBeNull();
  });

  it('readStrz stops at NUL and tolerates a missing one; readU64BE reads all 64 bits', () => {
    expect(readStrz(Buffer.from('ftp\0xx'), 0, 6)).toBe('ftp');
    expect(readStrz(Buffer.from('sip'), 0, 3)).toBe('sip');
    expect(readU64BE(be64(0xfedcba9876543210n), 0)).toBe(0xfedcba9876543210n);
  });
});
