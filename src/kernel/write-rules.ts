// The kernel's rules for writing conntrack entries, applied for the caller (see DOMAIN.md, "Creating an entry").
import { Ips, IpProto, TcpFlag, type Flow, type Tuple, type NatRange, type TcpInfo } from './types.js';

export interface WritePolicy {
  /** Set BE_LIBERAL in both directions so the first mid-window packets after takeover are not INVALID. */
  liberal: boolean;
  /** Write CTA_LABELS: only if the ruleset uses `ct label`, otherwise the kernel answers ENOSPC. */
  labels: boolean;
  /** Timeout (s) for a flow that carries none (a flowtable-offloaded entry is dumped without one). */
  defaultTimeout: number;
}

export const DEFAULT_WRITE_POLICY: Readonly<WritePolicy> = Object.freeze({ liberal: true, labels: false, defaultTimeout: 120 });

/** Status bits the kernel lets userspace set; everything else is derived (NAT, helper) or refused (EXPECTED → EBUSY). */
const SETTABLE_STATUS = Ips.SeenReply | Ips.Assured | Ips.Confirmed;

const PORTED = new Set<number>([IpProto.Tcp, IpProto.Udp, IpProto.UdpLite, IpProto.Sctp, IpProto.Dccp]);

/** The reply tuple of an un-NATed flow: the original one mirrored. */
export function invertTuple(t: Tuple): Tuple {
  const r: Tuple = { src: t.dst, dst: t.src, proto: t.proto };
  if (t.sport !== undefined) r.dport = t.sport;
  if (t.dport !== undefined) r.sport = t.dport;
  if (t.icmpId !== undefined) r.icmpId = t.icmpId;
  if (t.icmpType !== undefined) {
    // echo request ↔ reply (ICMP 8↔0, ICMPv6 128↔129); other types have no reply tuple worth syncing
    r.icmpType = t.proto === IpProto.Icmp ? (t.icmpType === 8 ? 0 : t.icmpType === 0 ? 8 : t.icmpType) : t.icmpType === 128 ? 129 : t.icmpType === 129 ? 128 : t.icmpType;
  }
  if (t.icmpCode !== undefined) r.icmpCode = t.icmpCode;
  if (t.zone !== undefined) r.zone = t.zone;
  return r;
}

/** NAT ranges that make the kernel compute exactly this flow's reply tuple (NAT is only settable at create). */
export function natFromTuples(f: Flow): { natSrc?: NatRange; natDst?: NatRange } {
  const out: { natSrc?: NatRange; natDst?: NatRange } = {};
  const ported = PORTED.has(f.orig.proto);
  const status = f.status ?? 0;
  const snat = status & Ips.SrcNat || f.reply.dst !== f.orig.src || (ported && f.reply.dport !== f.orig.sport);
  const dnat = status & Ips.DstNat || f.reply.src !== f.orig.dst || (ported && f.reply.sport !== f.orig.dport);
  if (snat) out.natSrc = range(f.reply.dst, ported ? f.reply.dport : undefined);
  if (dnat) out.natDst = range(f.reply.src, ported ? f.reply.sport : undefined);
  return out;
}

function range(ip: string, port: number | undefined): NatRange {
  return port === undefined ? { minIp: ip, maxIp: ip } : { minIp: ip, maxIp: ip, minPort: port, maxPort: port };
}

/**
 * The TCP flags (and mask) written for one direction: SACK_PERM kept, BE_LIBERAL by policy, WINDOW_SCALE only with
 * both window scales known (it takes effect only when set in both directions in the same request).
 */
export function tcpFlagsForWrite(flags: number | undefined, bothScales: boolean, policy: WritePolicy): number {
  const ws = bothScales ? TcpFlag.WindowScale : 0;
  return ((flags ?? 0) & (ws | TcpFlag.SackPerm)) | (policy.liberal ? TcpFlag.BeLiberal : 0) | ws;
}

/** The status written: the settable bits, CONFIRMED always. */
export function statusForWrite(status: number | undefined): number {
  return ((status ?? 0) & SETTABLE_STATUS) | Ips.Confirmed;
}

function tcpForWrite(tcp: TcpInfo, policy: WritePolicy): TcpInfo {
  const both = tcp.wscaleOrig !== undefined && tcp.wscaleReply !== undefined;
  const ws = both ? TcpFlag.WindowScale : 0;
  const fo = tcpFlagsForWrite(tcp.flagsOrig, both, policy);
  const fr = tcpFlagsForWrite(tcp.flagsReply, both, policy);
  const out: TcpInfo = { state: tcp.state, flagsOrig: fo, flagsOrigMask: fo, flagsReply: fr, flagsReplyMask: fr };
  if (ws) {
    out.wscaleOrig = tcp.wscaleOrig;
    out.wscaleReply = tcp.wscaleReply;
  }
  return out;
}

/** The writable part of a flow, common to create and update. */
function writable(f: Flow, policy: WritePolicy): Flow {
  const out: Flow = {
    family: f.family,
    orig: f.orig,
    reply: f.reply ?? invertTuple(f.orig),
    status: statusForWrite(f.status),
    timeout: f.timeout ?? policy.defaultTimeout,
  };
  if (f.mark !== undefined) out.mark = f.mark;
  if (f.zone !== undefined) out.zone = f.zone;
  if (policy.labels && f.labels) {
    out.labels = f.labels;
    out.labelsMask = f.labelsMask ?? Buffer.alloc(f.labels.length, 0xff);
  }
  if (f.protoinfo?.tcp) out.protoinfo = { tcp: tcpForWrite(f.protoinfo.tcp, policy) };
  else if (f.protoinfo?.sctp) out.protoinfo = { sctp: { ...f.protoinfo.sctp, unknown: undefined } };
  else if (f.protoinfo?.dccp) out.protoinfo = { dccp: { ...f.protoinfo.dccp, unknown: undefined } };
  if (f.seqAdjOrig) out.seqAdjOrig = f.seqAdjOrig;
  if (f.seqAdjReply) out.seqAdjReply = f.seqAdjReply;
  if (f.synproxy) out.synproxy = f.synproxy;
  return out;
}

/** CT_NEW with CREATE: CONFIRMED set, EXPECTED cleared, both tuples and a timeout, NAT/helper/master here only. */
export function prepareCreate(f: Flow, policy: WritePolicy): Flow {
  const out = writable(f, policy);
  const nat = f.natSrc || f.natDst ? { natSrc: f.natSrc, natDst: f.natDst } : natFromTuples(out);
  if (nat.natSrc) out.natSrc = nat.natSrc;
  if (nat.natDst) out.natDst = nat.natDst;
  // The kernel derives the NATed reply tuple from the original one and the ranges, and marks the entry
  // SRC_NAT/DST_NAT only if that changes something: given the already translated reply tuple it would see
  // nothing to do and the entry would never be translated. So the un-NATed reply goes out, and NAT makes it.
  if (nat.natSrc || nat.natDst) out.reply = invertTuple(out.orig);
  if (f.helper) out.helper = f.helper;
  if (f.master) out.master = f.master;
  return out;
}

/** CT_NEW without CREATE: NAT, master and helper cannot change (EOPNOTSUPP / EBUSY), so they are left out. */
export function prepareUpdate(f: Flow, policy: WritePolicy): Flow {
  return writable(f, policy);
}
