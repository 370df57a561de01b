// Flow builders for the state tests: realistic kernel-shaped flows with overridable parts.

import type { Flow, Tuple } from '../../../src/kernel/types.js';

const IPS_SEEN_REPLY = 2;
const IPS_ASSURED = 4;
const IPS_CONFIRMED = 8;
export const ESTABLISHED_STATUS = IPS_SEEN_REPLY | IPS_ASSURED | IPS_CONFIRMED;

export function v4(i: number, base = 10): string {
  return `${base}.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`;
}

/** An established IPv4 TCP flow, number i (distinct i → distinct key). */
export function tcpFlow(i: number, over: Partial<Flow> = {}): Flow {
  const orig: Tuple = { src: v4(i), dst: '192.0.2.10', proto: 6, sport: 10000 + (i % 50000), dport: 443 };
  const reply: Tuple = { src: orig.dst, dst: orig.src, proto: 6, sport: 443, dport: orig.sport! };
  return {
    family: 2,
    orig,
    reply,
    status: ESTABLISHED_STATUS,
    timeout: 432000,
    id: 1000 + i,
    protoinfo: { tcp: { state: 3, wscaleOrig: 7, wscaleReply: 7, flagsOrig: 0x23, flagsReply: 0x23 } },
    ...over,
  };
}

export function withTcp(f: Flow, state: number): Flow {
  return { ...f, protoinfo: { ...f.protoinfo, tcp: { ...(f.protoinfo?.tcp ?? { state }), state } } };
}

/** A SNAT'd UDP flow: the reply tuple is not the inverse of the original. */
export function natUdpFlow(i: number): Flow {
  return {
    family: 2,
    orig: { src: v4(i), dst: '198.51.100.7', proto: 17, sport: 5000, dport: 53 },
    reply: { src: '198.51.100.7', dst: '203.0.113.1', proto: 17, sport: 53, dport: 40000 + (i % 20000) },
    status: 0x18e, // SEEN_REPLY | ASSURED | CONFIRMED | SRC_NAT | SRC_NAT_DONE
    timeout: 120,
    mark: 7,
  };
}

export function icmpFlow(id: number): Flow {
  return {
    family: 2,
    orig: { src: '10.0.0.1', dst: '10.0.0.2', proto: 1, icmpId: id, icmpType: 8, icmpCode: 0 },
    reply: { src: '10.0.0.2', dst: '10.0.0.1', proto: 1, icmpId: id, icmpType: 0, icmpCode: 0 },
    status: 10,
    timeout: 30,
  };
}

export function v6Flow(i: number, zone?: number): Flow {
  const f: Flow = {
    family: 10,
    orig: { src: `2001:db8::${i.toString(16)}`, dst: '2001:db8:1::1', proto: 6, sport: 40000, dport: 22 },
    reply: { src: '2001:db8:1::1', dst: `2001:db8::${i.toString(16)}`, proto: 6, sport: 22, dport: 40000 },
    status: ESTABLISHED_STATUS,
    timeout: 300,
    protoinfo: { tcp: { state: 3 } },
  };
  if (zone !== undefined) f.zone = zone;
  return f;
}
