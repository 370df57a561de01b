import { describe, expect, test } from 'vitest';
import { prepareCreate, prepareUpdate, invertTuple, natFromTuples, DEFAULT_WRITE_POLICY } from '../../../src/kernel/write-rules.js';
import { Ips, TcpFlag, type Flow } from '../../../src/kernel/types.js';

const base: Flow = {
  family: 2,
  orig: { src: '10.1.0.2', dst: '10.2.0.2', proto: 6, sport: 40000, dport: 22 },
  reply: { src: '10.2.0.2', dst: '10.1.0.2', proto: 6, sport: 22, dport: 40000 },
  status: Ips.SeenReply | Ips.Assured | Ips.Confirmed | Ips.Expected | Ips.Dying | Ips.SrcNatDone,
  timeout: 100,
  id: 1234,
  protoinfo: { tcp: { state: 3, wscaleOrig: 7, wscaleReply: 9, flagsOrig: TcpFlag.WindowScale | TcpFlag.SackPerm | TcpFlag.MaxackSet, flagsReply: TcpFlag.SackPerm } },
};

describe('kernel write rules', () => {
  test('create: CONFIRMED set, EXPECTED and other unsettable bits cleared, read-only fields dropped', () => {
    const f = prepareCreate(base, DEFAULT_WRITE_POLICY);
    expect(f.status).toBe(Ips.SeenReply | Ips.Assured | Ips.Confirmed);
    expect(f.id).toBeUndefined();
    expect(f.natSrc).toBeUndefined();
    expect(f.natDst).toBeUndefined();
  });

  test('BE_LIBERAL in both directions by default; window scale only with WINDOW_SCALE both ways', () => {
    const tcp = prepareCreate(base, DEFAULT_WRITE_POLICY).protoinfo!.tcp!;
    expect(tcp.flagsOrig! & TcpFlag.BeLiberal).toBeTruthy();
    expect(tcp.flagsReply! & TcpFlag.BeLiberal).toBeTruthy();
    expect(tcp.flagsOrig! & TcpFlag.WindowScale).toBeTruthy();
    expect(tcp.flagsReply! & TcpFlag.WindowScale).toBeTruthy();
    expect(tcp.flagsOrig! & TcpFlag.MaxackSet).toBeFalsy();
    expect([tcp.wscaleOrig, tcp.wscaleReply]).toEqual([7, 9]);
    const strict = prepareCreate(base, { ...DEFAULT_WRITE_POLICY, liberal: false }).protoinfo!.tcp!;
    expect(strict.flagsOrig! & TcpFlag.BeLiberal).toBeFalsy();
  });

  test('a missing reply tuple is the inverse, a missing timeout the default', () => {
    const { reply: _r, timeout: _t, ...rest } = base;
    const f = prepareCreate(rest as Flow, DEFAULT_WRITE_POLICY);
    expect(f.reply).toEqual(base.reply);
    expect(f.timeout).toBe(DEFAULT_WRITE_POLICY.defaultTimeout);
    expect(invertTuple({ src: 'a', dst: 'b', proto: 1, icmpType: 8, icmpCode: 0, icmpId: 5 })).toEqual({ src: 'b', dst: 'a', proto: 1, icmpType: 0, icmpCode: 0, icmpId: 5 });
  });

  test('NAT is derived from the tuples at create and never sent on update', () => {
    const masq: Flow = { ...base, reply: { src: '10.2.0.2', dst: '10.2.0.1', proto: 6, sport: 22, dport: 61000 } };
    expect(natFromTuples(masq)).toEqual({ natSrc: { minIp: '10.2.0.1', maxIp: '10.2.0.1', minPort: 61000, maxPort: 61000 } });
    const dnat: Flow = { ...base, orig: { ...base.orig, dst: '192.0.2.10', dport: 80 }, reply: { src: '10.2.0.2', dst: '10.1.0.2', proto: 6, sport: 8080, dport: 40000 } };
    const created = prepareCreate(dnat, DEFAULT_WRITE_POLICY);
    expect(created.natDst).toEqual({ minIp: '10.2.0.2', maxIp: '10.2.0.2', minPort: 8080, maxPort: 8080 });
    // the kernel computes the translated reply itself; given it ready-made it would not mark the entry NATed
    expect(created.reply).toEqual(invertTuple(dnat.orig));
    const u = prepareUpdate({ ...dnat, helper: 'ftp', master: base.orig }, DEFAULT_WRITE_POLICY);
    expect(u.natDst).toBeUndefined();
    expect(u.helper).toBeUndefined();
    expect(u.master).toBeUndefined();
  });

  test('labels only when the policy says the ruleset uses them', () => {
    const l = { ...base, labels: Buffer.alloc(16, 1) };
    expect(prepareCreate(l, DEFAULT_WRITE_POLICY).labels).toBeUndefined();
    expect(prepareCreate(l, { ...DEFAULT_WRITE_POLICY, labels: true }).labelsMask).toEqual(Buffer.alloc(16, 0xff));
  });
});
