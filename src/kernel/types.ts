// The conntrack data model shared by every layer: what a flow and an expectation are, as ctnetlink sees them.

/** AF_* address families ctnetlink carries in nfgenmsg.nfgen_family. */
export const enum Af {
  Inet = 2, // AF_INET
  Inet6 = 10, // AF_INET6
}

/** IPPROTO_* numbers of the L4 protocols conntrack tracks. */
export const enum IpProto {
  Icmp = 1,
  Tcp = 6,
  Udp = 17,
  Dccp = 33,
  Gre = 47,
  Icmpv6 = 58,
  Sctp = 132,
  UdpLite = 136,
}

/** An attribute we do not model, kept byte for byte so it survives a decode → encode round trip. */
export interface RawAttr {
  type: number; // nla_type without NLA_F_NESTED / NLA_F_NET_BYTEORDER
  nested: boolean; // NLA_F_NESTED was set
  data: Buffer; // payload, without the nla header
}

/**
 * One direction of a connection (CTA_TUPLE_ORIG / CTA_TUPLE_REPLY / CTA_TUPLE_MASTER, or an expectation's tuple
 * and mask). Addresses are text as `conntrack -L` prints them (IPv6 compressed, lower case).
 * Ports are used by TCP, UDP, UDP-Lite, SCTP and DCCP; GRE keys travel in the same attributes (CTA_PROTO_*_PORT).
 */
export interface Tuple {
  src: string;
  dst: string;
  proto: number; // IpProto
  sport?: number;
  dport?: number;
  icmpId?: number; // ICMP and ICMPv6
  icmpType?: number;
  icmpCode?: number;
  zone?: number; // CTA_TUPLE_ZONE: a per-direction zone
  unknown?: RawAttr[];
}

export interface TcpInfo {
  state: number; // TCP_CONNTRACK_* (ESTABLISHED = 3)
  wscaleOrig?: number;
  wscaleReply?: number;
  flagsOrig?: number; // IP_CT_TCP_FLAG_* for the original direction
  flagsReply?: number;
  /** Encode only: CTA_PROTOINFO_TCP_FLAGS_* are {flags, mask} pairs; the mask says which flags to set. Default = flags. */
  flagsOrigMask?: number;
  flagsReplyMask?: number;
  unknown?: RawAttr[];
}

export interface SctpInfo {
  state: number; // SCTP_CONNTRACK_*
  vtagOrig?: number;
  vtagReply?: number;
  unknown?: RawAttr[];
}

export interface DccpInfo {
  state: number; // CT_DCCP_*
  role?: number;
  handshakeSeq?: bigint;
  unknown?: RawAttr[];
}

export interface ProtoInfo {
  tcp?: TcpInfo;
  sctp?: SctpInfo;
  dccp?: DccpInfo;
  unknown?: RawAttr[];
}

export interface Counters {
  packets: bigint;
  bytes: bigint;
}

export interface SeqAdj {
  correctionPos: number;
  offsetBefore: number;
  offsetAfter: number;
}

/** CTA_NAT_SRC / CTA_NAT_DST: the NAT range given at creation (never reported by dumps or events). */
export interface NatRange {
  minIp?: string;
  maxIp?: string;
  minPort?: number;
  maxPort?: number;
}

export interface Synproxy {
  isn: number;
  its: number;
  tsoff: number;
}

/** A conntrack entry. Read-only fields (id, use, secmark, counters, timestamps) are ignored by the encoder for writes. */
export interface Flow {
  family: number; // Af
  orig: Tuple;
  reply: Tuple;
  status?: number; // IPS_* bits
  timeout?: number; // seconds remaining
  mark?: number;
  zone?: number; // CTA_ZONE (both directions)
  id?: number; // conntrack id: differs between nodes, never a key
  use?: number;
  secmark?: number;
  labels?: Buffer; // CTA_LABELS bitmap (16 bytes today)
  labelsMask?: Buffer; // CTA_LABELS_MASK, encode only
  protoinfo?: ProtoInfo;
  countersOrig?: Counters;
  countersReply?: Counters;
  timestampStart?: bigint; // ns since epoch
  timestampStop?: bigint;
  timestampEvent?: bigint; // CTA_TIMESTAMP_EVENT: when the kernel built this event, ns (wall clock); events only, read-only
  natSrc?: NatRange;
  natDst?: NatRange;
  seqAdjOrig?: SeqAdj;
  seqAdjReply?: SeqAdj;
  helper?: string;
  master?: Tuple;
  synproxy?: Synproxy;
  unknown?: RawAttr[];
}

/** An expectation (CTNETLINK_EXP). */
export interface Expectation {
  family: number;
  master: Tuple;
  tuple: Tuple;
  mask: Tuple;
  timeout?: number;
  id?: number;
  zone?: number;
  flags?: number; // NF_CT_EXPECT_*
  class?: number;
  helper?: string;
  fn?: string;
  nat?: { dir: number; tuple: Tuple };
  unknown?: RawAttr[];
}

/** IPS_* status bits (include/uapi/linux/netfilter/nf_conntrack_common.h). */
export const enum Ips {
  Expected = 1 << 0,
  SeenReply = 1 << 1,
  Assured = 1 << 2,
  Confirmed = 1 << 3,
  SrcNat = 1 << 4,
  DstNat = 1 << 5,
  SeqAdjust = 1 << 6,
  SrcNatDone = 1 << 7,
  DstNatDone = 1 << 8,
  Dying = 1 << 9,
  FixedTimeout = 1 << 10,
  Template = 1 << 11,
  Untracked = 1 << 12,
  Helper = 1 << 13,
  Offload = 1 << 14,
  HwOffload = 1 << 15,
}

/** TCP_CONNTRACK_* states. */
export const enum TcpState {
  None = 0,
  SynSent = 1,
  SynRecv = 2,
  Established = 3,
  FinWait = 4,
  CloseWait = 5,
  LastAck = 6,
  TimeWait = 7,
  Close = 8,
  SynSent2 = 9,
}

/** IP_CT_TCP_FLAG_*. */
export const enum TcpFlag {
  WindowScale = 0x01,
  SackPerm = 0x02,
  CloseInit = 0x04,
  BeLiberal = 0x08,
  DataUnacknowledged = 0x10,
  MaxackSet = 0x20,
}

export type EventKind = 'new' | 'update' | 'destroy';
export type Origin = 'kernel' | 'ours';

/** One decoded ctnetlink event: what happened, to which flow, and whether our own write caused it. */
export interface FlowEvent {
  kind: EventKind;
  flow: Flow;
  origin: Origin;
  portId: number; // nlmsg_pid: the writer's port for events caused by a userspace write, else 0
  /** flowKey(flow) when the stream could build it from the message bytes (cheaper than from the decoded text). */
  key?: string;
}

export interface ExpectationEvent {
  kind: EventKind;
  exp: Expectation;
  origin: Origin;
  portId: number;
}
