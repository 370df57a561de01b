// Messages captured from this project's kernel (scripts/capture-fixtures.py): each decodes to the fields the capture
// script caused, and decode -> encode(readOnly) -> decode is identity.

import { describe, expect, it } from 'vitest';
import { decodeExpectation, encodeExpectation } from '../../../src/kernel/expect-codec.js';
import { decodeFlow, DecodeError, encodeFlow } from '../../../src/kernel/flow-codec.js';
import { AttrWriter } from '../../../src/kernel/nla.js';
import { decodeNlError, forEachMessage, NLMSG_DONE, NLMSG_ERROR, type NlMsgView } from '../../../src/kernel/nfnetlink.js';
import type { Expectation, Flow } from '../../../src/kernel/types.js';
import { loadCaptured, type CapturedMessage } from '../../fixtures/kernel-fixtures.js';

type Decoded = { msg: CapturedMessage; view: NlMsgView; flow?: Flow; exp?: Expectation };

function decodeAll(file: string): Decoded[] {
  return loadCaptured(file).map((msg) => {
    const views: NlMsgView[] = [];
    expect(forEachMessage(msg.bytes, (v) => views.push(v))).toBe(0);
    expect(views.length).toBe(1);
    const view = views[0]!;
    const sub = view.type >> 8;
    if (sub === 1) {
      const flow = decodeFlow(msg.bytes, view.payloadOff, view.end, view.family);
      if (flow instanceof DecodeError) throw new Error(`${file}:${msg.line} ${flow.reason}`);
      return { msg, view, flow };
    }
    if (sub === 2) {
      const exp = decodeExpectation(msg.bytes, view.payloadOff, view.end, view.family);
      if (exp instanceof DecodeError) throw new Error(`${file}:${msg.line} ${exp.reason}`);
      return { msg, view, exp };
    }
    return { msg, view };
  });
}

const flowsOf = (file: string) => decodeAll(file).filter((d) => d.flow).map((d) => d.flow!);
const created = (d: Decoded) => (d.view.flags & 0x600) === 0x600;

describe('captured kernel messages', () => {
  it('every captured CT and EXP message round-trips through encode(readOnly)', () => {
    const all = loadCaptured();
    expect(all.length).toBeGreaterThan(40);
    let n = 0;
    for (const f of ['dump.hex', 'errors.hex', 'ftp-expect.hex', 'icmp.hex', 'inserted.hex', 'tcp.hex', 'udp.hex']) {
      for (const d of decodeAll(f)) {
        const w = new AttrWriter();
        if (d.flow) {
          encodeFlow(w, d.flow, { readOnly: true });
          const b = w.finish();
          expect(decodeFlow(b, 0, b.length, d.flow.family)).toEqual(d.flow);
          n++;
        } else if (d.exp) {
          encodeExpectation(w, d.exp, { readOnly: true });
          const b = w.finish();
          expect(decodeExpectation(b, 0, b.length, d.exp.family)).toEqual(d.exp);
          n++;
        }
      }
    }
    expect(n).toBeGreaterThan(40);
  });

  it('icmp: echo request/reply types, ids and ::1', () => {
    const [v4new, , v6new] = flowsOf('icmp.hex');
    expect(v4new!.orig).toMatchObject({ src: '127.0.0.1', proto: 1, icmpType: 8, icmpCode: 0, icmpId: 0x1234 });
    expect(v4new!.reply).toMatchObject({ proto: 1, icmpType: 0, icmpId: 0x1234 });
    expect(v6new!.family).toBe(10);
    expect(v6new!.orig).toMatchObject({ src: '::1', dst: '::1', proto: 58, icmpType: 128, icmpId: 0x5678 });
    expect(v6new!.reply.icmpType).toBe(129);
  });

  it('udp: ports, the ct mark set by the ruleset, SEEN_REPLY on the update', () => {
    const [v4new, v4upd, v6new] = flowsOf('udp.hex');
    expect(v4new!.orig).toMatchObject({ proto: 17, sport: 40001, dport: 9999 });
    expect(v4new!.reply).toMatchObject({ sport: 9999, dport: 40001 });
    expect(v4new!.mark).toBe(0x2a);
    expect((v4upd!.status ?? 0) & 0x2).toBe(0x2);
    expect(v6new!.orig).toMatchObject({ src: '::1', sport: 40002, dport: 9998 });
  });

  it('tcp: the state machine in order, window scale, label bit 3, the event timestamp', () => {
    const d = decodeAll('tcp.hex');
    const v4 = d.filter((x) => x.flow!.family === 2).map((x) => x.flow!);
    expect(created(d[0]!)).toBe(true);
    expect(v4.map((f) => f.protoinfo?.tcp?.state)).toEqual([1, 2, 3, 4, 6, 7]); // SYN_SENT .. TIME_WAIT
    expect(v4[0]!.orig).toMatchObject({ sport: 40003, dport: 8080 });
    expect(v4[0]!.protoinfo?.tcp?.wscaleOrig).toBeGreaterThan(0);
    expect(v4[0]!.labels?.[0]).toBe(0x08); // ct label set 3: bit 3 of the first byte
    expect(typeof v4[0]!.timestampEvent).toBe('bigint');
    const v6 = d.filter((x) => x.flow!.family === 10).map((x) => x.flow!);
    expect(v6[0]!.orig).toMatchObject({ src: '::1', sport: 40004, dport: 8081 });
  });

  it('conntrack -I entries: mark, zone, sctp vtags, gre keys, udplite, IPv6 text; the port id of the writer', () => {
    const d = decodeAll('inserted.hex');
    const [tcp, sctp, gre, udplite, v6, destroyed] = d;
    expect(tcp!.flow!.orig).toMatchObject({ src: '10.1.1.1', dst: '10.2.2.2', sport: 1111, dport: 2222 });
    expect([tcp!.flow!.mark, tcp!.flow!.zone, tcp!.flow!.protoinfo?.tcp?.state]).toEqual([42, 7, 3]);
    expect(tcp!.view.pid).not.toBe(0); // an event caused by a userspace write carries the writer's port id
    expect(tcp!.flow!.synproxy).toEqual({ isn: 0, its: 0, tsoff: 0 }); // entries created via ctnetlink carry it
    // conntrack-tools 1.4.7 byte-swaps the vtags it was given (0x12345678 / 0x87654321); this is what the kernel holds.
    expect(sctp!.flow!.protoinfo?.sctp).toMatchObject({ vtagOrig: 0x78563412, vtagReply: 0x21436587 });
    expect(sctp!.flow!.orig.proto).toBe(132);
    expect(gre!.flow!.orig).toMatchObject({ proto: 47, sport: 5, dport: 6 });
    expect(udplite!.flow!.orig).toMatchObject({ proto: 136, sport: 7777, dport: 8888 });
    expect(v6!.flow!.orig).toMatchObject({ src: '2001:db8::1', dst: '2001:db8:0:1::2', sport: 53, dport: 5353 });
    expect(v6!.flow!.mark).toBe(7);
    expect(destroyed!.view.type).toBe(0x102);
    expect(destroyed!.flow!.countersOrig).toEqual({ packets: 0n, bytes: 0n });
  });

  it('ftp: the expectation, its dump entry, and the RELATED data flow with its master', () => {
    const d = decodeAll('ftp-expect.hex');
    const exps = d.filter((x) => x.exp).map((x) => x.exp!);
    expect(exps.length).toBeGreaterThanOrEqual(3);
    for (const e of exps) {
      expect(e.master).toMatchObject({ sport: 40021, dport: 2121, proto: 6 });
      expect(e.tuple).toMatchObject({ dst: '127.0.0.1', dport: 30000 });
      expect(e.mask).toMatchObject({ src: '255.255.255.255', dport: 0xffff });
      expect(e.helper).toBe('ftp');
    }
    const control = d.find((x) => x.flow?.orig.dport === 2121)!.flow!;
    expect(control.helper).toBe('ftp');
    const related = d.find((x) => x.flow?.orig.dport === 30000 && x.flow.master)!.flow!;
    expect(related.master).toMatchObject({ sport: 40021, dport: 2121 });
    expect((related.status ?? 0) & 0x1).toBe(0x1); // IPS_EXPECTED
    expect(d.some((x) => x.view.type === NLMSG_DONE)).toBe(true);
  });

  it('dump: one multipart entry per flow with id, counters, start time, then NLMSG_DONE', () => {
    const d = decodeAll('dump.hex');
    const entries = d.filter((x) => x.flow);
    expect(entries.length).toBe(d.length - 1);
    expect(d[d.length - 1]!.view.type).toBe(NLMSG_DONE);
    for (const x of entries) {
      expect(x.view.flags & 2).toBe(2); // NLM_F_MULTI
      expect(x.flow!.id).toBeGreaterThan(0);
      expect(x.flow!.countersOrig).toBeDefined();
      expect(typeof x.flow!.timestampStart).toBe('bigint');
      expect(x.flow!.timeout).toBeGreaterThan(0);
    }
    const protos = new Set(entries.map((x) => x.flow!.orig.proto));
    for (const p of [1, 6, 17, 47, 58, 132, 136]) expect(protos).toContain(p);
  });

  it('errors: ENOENT for a missing tuple, EINVAL for a NEW without tuples, an ack for a DELETE', () => {
    const d = decodeAll('errors.hex');
    expect(d.every((x) => x.view.type === NLMSG_ERROR)).toBe(true);
    const e = d.map((x) => decodeNlError(x.msg.bytes, x.view));
    expect(e.map((x) => [x.errno, x.seq, x.msgType])).toEqual([
      [2, 31, 0x101],
      [22, 32, 0x100],
      [0, 33, 0x102],
    ]);
  });
});
