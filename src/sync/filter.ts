// What is synced: the config's protocol, address, state, zone and mark selections compiled into one predicate.
import { IpProto, type Flow } from '../kernel/types.js';
import type { PlainFlow } from '../kernel/flow-codec.js';
import { TCP_STATES } from '../kernel/json.js';
import { parseIpInto } from '../kernel/addr.js';
import type { Config } from '../config/load.js';

const PROTO_BY_NAME: Record<string, number> = {
  tcp: IpProto.Tcp,
  udp: IpProto.Udp,
  udplite: IpProto.UdpLite,
  icmp: IpProto.Icmp,
  icmpv6: IpProto.Icmpv6,
  sctp: IpProto.Sctp,
  dccp: IpProto.Dccp,
  gre: IpProto.Gre,
};
const CONNECTIONLESS = new Set<number>([IpProto.Udp, IpProto.UdpLite, IpProto.Icmp, IpProto.Icmpv6, IpProto.Gre]);

/** The predicate over a Flow, and the same one over a message read in place (the event path's fast path). */
export type FlowFilter = ((f: Flow) => boolean) & { plain: (f: PlainFlow, buf: Buffer) => boolean };

/** A CIDR as bytes: it matches addresses of its own family whose first `bits` bits equal its own. */
interface Cidr {
  len: 4 | 16;
  bytes: Uint8Array;
  bits: number;
}

function parseCidrs(cidrs: readonly string[]): Cidr[] | undefined {
  const out: Cidr[] = [];
  for (const c of cidrs) {
    const [addr, bits] = c.split('/');
    const bytes = new Uint8Array(16);
    const len = parseIpInto(addr, bytes, 0);
    // the config loader checked the CIDRs; a peer given by host name is not an address and matches nothing
    if (len) out.push({ len, bytes, bits: bits === undefined ? len * 8 : Number(bits) });
  }
  return out.length ? out : undefined;
}

// Per-event check without allocation: node:net's BlockList builds a native SocketAddress per call, which cost
// more than the rest of the event path together during a burst.
const scratch = new Uint8Array(16);

function matches(cidrs: Cidr[], addr: string): boolean {
  const len = parseIpInto(addr, scratch, 0);
  for (const c of cidrs) {
    if (c.len !== len) continue;
    const full = c.bits >> 3;
    let i = 0;
    while (i < full && scratch[i] === c.bytes[i]) i++;
    if (i < full) continue;
    const rest = c.bits & 7;
    if (rest === 0 || ((scratch[full] ^ c.bytes[full]) & (0xff << (8 - rest)) & 0xff) === 0) return true;
  }
  return false;
}

function hits(cidrs: Cidr[], f: Flow): boolean {
  return matches(cidrs, f.orig.src) || matches(cidrs, f.orig.dst);
}

/** matches() for address bytes in place (len 4 or 16): no text in between. */
function matchesAt(cidrs: Cidr[], buf: Buffer, at: number, len: number): boolean {
  for (const c of cidrs) {
    if (c.len !== len) continue;
    const full = c.bits >> 3;
    let i = 0;
    while (i < full && buf[at + i] === c.bytes[i]) i++;
    if (i < full) continue;
    const rest = c.bits & 7;
    if (rest === 0 || ((buf[at + full]! ^ c.bytes[full]!) & (0xff << (8 - rest)) & 0xff) === 0) return true;
  }
  return false;
}

function hitsPlain(cidrs: Cidr[], f: PlainFlow, buf: Buffer): boolean {
  return matchesAt(cidrs, buf, f.srcAt, f.addrLen) || matchesAt(cidrs, buf, f.dstAt, f.addrLen);
}

/**
 * Compile `sync.*` into a predicate. `extraIgnore` adds addresses that are never synced whatever the config says:
 * the sync link's own endpoints (syncing the sync link's flows would feed back on itself).
 */
export function compileFilter(sync: Config['sync'], extraIgnore: string[] = []): FlowFilter {
  // per-protocol and per-state verdicts as flags indexed by number: one load per event, not a Set lookup each
  const protoOk = new Uint8Array(256);
  for (const p of sync.protocols) if (sync.connectionless || !CONNECTIONLESS.has(PROTO_BY_NAME[p]!)) protoOk[PROTO_BY_NAME[p]!] = 1;
  const tcpStateOk = new Uint8Array(256);
  for (const s of sync.tcpStates) tcpStateOk[TCP_STATES.indexOf(s)] = 1;
  const accept = parseCidrs(sync.acceptCidrs);
  const ignore = parseCidrs([...sync.ignoreCidrs, ...extraIgnore]);
  const zones = sync.zones.length ? new Set(sync.zones.map(Number)) : undefined;
  const marks = sync.marks.map((m) => {
    const [v, mask] = m.split('/');
    return { value: Number(v) >>> 0, mask: mask === undefined ? 0xffffffff : Number(mask) >>> 0 };
  });
  const filter = (f: Flow): boolean => {
    const proto = f.orig.proto;
    if (protoOk[proto] !== 1) return false;
    if (proto === IpProto.Tcp && f.protoinfo?.tcp && tcpStateOk[f.protoinfo.tcp.state] !== 1) return false;
    if (zones && !zones.has(f.zone ?? 0)) return false;
    if (marks.length && !marks.some((m) => ((f.mark ?? 0) & m.mask) === (m.value & m.mask))) return false;
    if (ignore && hits(ignore, f)) return false;
    if (accept && !hits(accept, f)) return false;
    return true;
  };
  // the same decisions, in the same order, over the fields scanPlainFlow read
  const plain = (f: PlainFlow, buf: Buffer): boolean => {
    const proto = f.proto;
    if (protoOk[proto] !== 1) return false;
    if (proto === IpProto.Tcp && f.tcpState >= 0 && tcpStateOk[f.tcpState] !== 1) return false;
    if (zones && !zones.has(f.zone >= 0 ? f.zone : 0)) return false;
    const mark = f.mark >= 0 ? f.mark : 0;
    if (marks.length && !marks.some((m) => (mark & m.mask) === (m.value & m.mask))) return false;
    if (ignore && hitsPlain(ignore, f, buf)) return false;
    if (accept && !hitsPlain(accept, f, buf)) return false;
    return true;
  };
  return Object.assign(filter, { plain });
}
