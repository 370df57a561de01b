// Message iteration over datagrams (clean, batched, cut and corrupted) and NLMSG_ERROR decoding.

import { describe, expect, it } from 'vitest';
import {
  decodeNlError,
  forEachMessage,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLM_F_MULTI,
  NLMSG_DONE,
  NLMSG_ERROR,
  nfnlMsgType,
  type NlMsgView,
} from '../../../src/kernel/nfnetlink.js';
import { attr, be32, nlmsg, strz } from '../../fixtures/builders.js';

function collect(buf: Buffer): { msgs: NlMsgView[]; skipped: number } {
  const msgs: NlMsgView[] = [];
  const skipped = forEachMessage(buf, (m) => msgs.push(m));
  return { msgs, skipped };
}

/** nlmsghdr of a control message with a raw payload. */
function ctl(type: number, flags: number, seq: number, payload: Buffer): Buffer {
  const out = Buffer.alloc(16 + payload.length);
  out.writeUInt32LE(out.length, 0);
  out.writeUInt16LE(type, 4);
  out.writeUInt16LE(flags, 6);
  out.writeUInt32LE(seq, 8);
  payload.copy(out, 16);
  return out;
}

function errPayload(err: number, req: Buffer, tlvs: Buffer[] = []): Buffer {
  const e = Buffer.alloc(4);
  e.writeInt32LE(err);
  return Buffer.concat([e, req, ...tlvs]);
}

describe('forEachMessage', () => {
  const a = nlmsg(nfnlMsgType(1, 0), 0x600, 0, 1234, 2, [attr(3, be32(8))]);
  const b = nlmsg(nfnlMsgType(2, 0), NLM_F_MULTI, 9, 0, 10, []);
  const done = ctl(NLMSG_DONE, NLM_F_MULTI, 9, Buffer.alloc(4));

  it('yields every message of a batch with its header fields and offsets', () => {
    const buf = Buffer.concat([a, b, done]);
    const { msgs, skipped } = collect(buf);
    expect(skipped).toBe(0);
    expect(msgs.map((m) => [m.type, m.flags, m.seq, m.pid, m.family, m.off, m.len, m.payloadOff, m.end])).toEqual([
      [0x100, 0x600, 0, 1234, 2, 0, a.length, 20, a.length],
      [0x200, NLM_F_MULTI, 9, 0, 10, a.length, b.length, a.length + 20, a.length + b.length],
      [NLMSG_DONE, NLM_F_MULTI, 9, 0, 0, a.length + b.length, 20, a.length + b.length + 16, buf.length],
    ]);
    expect(msgs[0]!.resId).toBe(0);
  });

  it('reads res_id big endian', () => {
    const m = Buffer.from(a);
    m.writeUInt16BE(0x1234, 18);
    expect(collect(m).msgs[0]!.resId).toBe(0x1234);
  });

  it('stops at a bad nlmsg_len and reports the bytes it skipped', () => {
    const bad = Buffer.from(b);
    bad.writeUInt32LE(5, 0);
    const { msgs, skipped } = collect(Buffer.concat([a, bad, done]));
    expect(msgs.length).toBe(1);
    expect(skipped).toBe(bad.length + done.length);
    const huge = Buffer.from(a);
    huge.writeUInt32LE(0xffffffff, 0);
    expect(collect(huge)).toEqual({ msgs: [], skipped: a.length });
  });

  it('skips an nfnetlink message too short for nfgenmsg but keeps walking', () => {
    const short = ctl(0x100, 0, 0, Buffer.alloc(0));
    const { msgs, skipped } = collect(Buffer.concat([short, a]));
    expect(skipped).toBe(16);
    expect(msgs.map((m) => m.type)).toEqual([0x100]);
  });

  it('cut at every byte offset: whole messages before the cut, the rest counted, never a throw', () => {
    const buf = Buffer.concat([a, b, done]);
    for (let cut = 0; cut <= buf.length; cut++) {
      const { msgs, skipped } = collect(buf.subarray(0, cut));
      const whole = [a.length, a.length + b.length, buf.length].filter((e) => e <= cut).length;
      expect(msgs.length).toBe(whole);
      const consumed = [0, a.length, a.length + b.length, buf.length][whole]!;
      expect(skipped).toBe(cut - consumed);
    }
  });

  it('accepts a last message without its alignment padding', () => {
    const m = nlmsg(0x100, 0, 0, 0, 2, [Buffer.from([5, 0, 1, 0, 7])]); // one 5-byte attribute, unpadded
    expect(m.length % 4).toBe(1);
    const { msgs, skipped } = collect(m);
    expect(skipped).toBe(0);
    expect(msgs[0]!.end).toBe(m.length);
  });
});

describe('decodeNlError', () => {
  const req = nlmsg(nfnlMsgType(1, 0), 0x405, 77, 0, 2, [attr(7, be32(30))]);

  function decode(buf: Buffer) {
    let out: ReturnType<typeof decodeNlError> | undefined;
    forEachMessage(buf, (m) => (out = decodeNlError(buf, m)));
    return out!;
  }

  it('reads an ack (errno 0) with the echoed request', () => {
    expect(decode(ctl(NLMSG_ERROR, 0, 77, errPayload(0, req)))).toEqual({ errno: 0, seq: 77, msgType: 0x100 });
  });

  it('reads a negative error as a positive errno', () => {
    expect(decode(ctl(NLMSG_ERROR, 0, 77, errPayload(-17, req)))).toEqual({ errno: 17, seq: 77, msgType: 0x100 });
  });

  it('reads the extended ack message after the full request', () => {
    const tlv = [attr(2, be32(20)), attr(1, strz('missing tuple'))];
    const got = decode(ctl(NLMSG_ERROR, NLM_F_ACK_TLVS, 77, errPayload(-22, req, tlv)));
    expect(got).toEqual({ errno: 22, seq: 77, msgType: 0x100, extAckMsg: 'missing tuple' });
  });

  it('reads the extended ack message after a capped request', () => {
    const tlv = [attr(1, strz('no such entry'))];
    const got = decode(ctl(NLMSG_ERROR, NLM_F_ACK_TLVS | NLM_F_CAPPED, 5, errPayload(-2, req.subarray(0, 16), tlv)));
    expect(got).toEqual({ errno: 2, seq: 77, msgType: 0x100, extAckMsg: 'no such entry' });
  });

  it('reports EPROTO, not success, for an error message without its error code', () => {
    expect(decode(ctl(NLMSG_ERROR, 0, 3, Buffer.alloc(0))).errno).toBe(71);
  });

  it('reads the status of NLMSG_DONE', () => {
    const p = Buffer.alloc(4);
    p.writeInt32LE(-4);
    expect(decode(ctl(NLMSG_DONE, NLM_F_MULTI, 8, p))).toEqual({ errno: 4, seq: 8, msgType: 0 });
  });
});
