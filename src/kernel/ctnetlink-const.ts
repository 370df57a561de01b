// Attribute numbers of ctnetlink (include/uapi/linux/netfilter/nfnetlink_conntrack.h), named after their C origin.

/** NLA_F_* bits carried in nla_type; the attribute number is what is left after masking both off. */
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
export const NLA_TYPE_MASK = 0x3fff; // ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER)
export const NLA_HDRLEN = 4;

/** enum ctattr_type */
export const enum Cta {
  TupleOrig = 1, // CTA_TUPLE_ORIG
  TupleReply = 2, // CTA_TUPLE_REPLY
  Status = 3, // CTA_STATUS
  Protoinfo = 4, // CTA_PROTOINFO
  Help = 5, // CTA_HELP
  NatSrc = 6, // CTA_NAT_SRC
  Timeout = 7, // CTA_TIMEOUT
  Mark = 8, // CTA_MARK
  CountersOrig = 9, // CTA_COUNTERS_ORIG
  CountersReply = 10, // CTA_COUNTERS_REPLY
  Use = 11, // CTA_USE
  Id = 12, // CTA_ID
  NatDst = 13, // CTA_NAT_DST
  TupleMaster = 14, // CTA_TUPLE_MASTER
  SeqAdjOrig = 15, // CTA_SEQ_ADJ_ORIG (= CTA_NAT_SEQ_ADJ_ORIG)
  SeqAdjReply = 16, // CTA_SEQ_ADJ_REPLY (= CTA_NAT_SEQ_ADJ_REPLY)
  Secmark = 17, // CTA_SECMARK (obsolete, still decoded)
  Zone = 18, // CTA_ZONE
  Secctx = 19, // CTA_SECCTX (kept raw)
  Timestamp = 20, // CTA_TIMESTAMP
  MarkMask = 21, // CTA_MARK_MASK (kept raw)
  Labels = 22, // CTA_LABELS
  LabelsMask = 23, // CTA_LABELS_MASK
  Synproxy = 24, // CTA_SYNPROXY
  Filter = 25, // CTA_FILTER (requests only, kept raw)
  StatusMask = 26, // CTA_STATUS_MASK (requests only, kept raw)
  TimestampEvent = 27, // CTA_TIMESTAMP_EVENT (u64 ns, events only; not in this machine's uapi header yet)
}

/** enum ctattr_tuple */
export const enum CtaTuple {
  Ip = 1, // CTA_TUPLE_IP
  Proto = 2, // CTA_TUPLE_PROTO
  Zone = 3, // CTA_TUPLE_ZONE
}

/** enum ctattr_ip */
export const enum CtaIp {
  V4Src = 1, // CTA_IP_V4_SRC
  V4Dst = 2, // CTA_IP_V4_DST
  V6Src = 3, // CTA_IP_V6_SRC
  V6Dst = 4, // CTA_IP_V6_DST
}

/** enum ctattr_l4proto */
export const enum CtaProto {
  Num = 1, // CTA_PROTO_NUM
  SrcPort = 2, // CTA_PROTO_SRC_PORT (also the GRE key)
  DstPort = 3, // CTA_PROTO_DST_PORT
  IcmpId = 4, // CTA_PROTO_ICMP_ID
  IcmpType = 5, // CTA_PROTO_ICMP_TYPE
  IcmpCode = 6, // CTA_PROTO_ICMP_CODE
  Icmpv6Id = 7, // CTA_PROTO_ICMPV6_ID
  Icmpv6Type = 8, // CTA_PROTO_ICMPV6_TYPE
  Icmpv6Code = 9, // CTA_PROTO_ICMPV6_CODE
}

/** enum ctattr_protoinfo */
export const enum CtaProtoinfo {
  Tcp = 1, // CTA_PROTOINFO_TCP
  Dccp = 2, // CTA_PROTOINFO_DCCP
  Sctp = 3, // CTA_PROTOINFO_SCTP
}

/** enum ctattr_protoinfo_tcp */
export const enum CtaProtoinfoTcp {
  State = 1, // CTA_PROTOINFO_TCP_STATE
  WscaleOriginal = 2, // CTA_PROTOINFO_TCP_WSCALE_ORIGINAL
  WscaleReply = 3, // CTA_PROTOINFO_TCP_WSCALE_REPLY
  FlagsOriginal = 4, // CTA_PROTOINFO_TCP_FLAGS_ORIGINAL: struct nf_ct_tcp_flags { u8 flags; u8 mask; }
  FlagsReply = 5, // CTA_PROTOINFO_TCP_FLAGS_REPLY
}

/** enum ctattr_protoinfo_dccp */
export const enum CtaProtoinfoDccp {
  State = 1, // CTA_PROTOINFO_DCCP_STATE
  Role = 2, // CTA_PROTOINFO_DCCP_ROLE
  HandshakeSeq = 3, // CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ
  Pad = 4, // CTA_PROTOINFO_DCCP_PAD
}

/** enum ctattr_protoinfo_sctp */
export const enum CtaProtoinfoSctp {
  State = 1, // CTA_PROTOINFO_SCTP_STATE
  VtagOriginal = 2, // CTA_PROTOINFO_SCTP_VTAG_ORIGINAL
  VtagReply = 3, // CTA_PROTOINFO_SCTP_VTAG_REPLY
}

/** enum ctattr_counters */
export const enum CtaCounters {
  Packets = 1, // CTA_COUNTERS_PACKETS (u64)
  Bytes = 2, // CTA_COUNTERS_BYTES (u64)
  Packets32 = 3, // CTA_COUNTERS32_PACKETS (old u32)
  Bytes32 = 4, // CTA_COUNTERS32_BYTES (old u32)
  Pad = 5, // CTA_COUNTERS_PAD
}

/** enum ctattr_tstamp */
export const enum CtaTimestamp {
  Start = 1, // CTA_TIMESTAMP_START (u64 ns)
  Stop = 2, // CTA_TIMESTAMP_STOP
  Pad = 3, // CTA_TIMESTAMP_PAD
}

/** enum ctattr_nat */
export const enum CtaNat {
  V4MinIp = 1, // CTA_NAT_V4_MINIP
  V4MaxIp = 2, // CTA_NAT_V4_MAXIP
  Proto = 3, // CTA_NAT_PROTO
  V6MinIp = 4, // CTA_NAT_V6_MINIP
  V6MaxIp = 5, // CTA_NAT_V6_MAXIP
}

/** enum ctattr_protonat */
export const enum CtaProtonat {
  PortMin = 1, // CTA_PROTONAT_PORT_MIN
  PortMax = 2, // CTA_PROTONAT_PORT_MAX
}

/** enum ctattr_seqadj */
export const enum CtaSeqadj {
  CorrectionPos = 1, // CTA_SEQADJ_CORRECTION_POS
  OffsetBefore = 2, // CTA_SEQADJ_OFFSET_BEFORE
  OffsetAfter = 3, // CTA_SEQADJ_OFFSET_AFTER
}

/** enum ctattr_synproxy */
export const enum CtaSynproxy {
  Isn = 1, // CTA_SYNPROXY_ISN
  Its = 2, // CTA_SYNPROXY_ITS
  Tsoff = 3, // CTA_SYNPROXY_TSOFF
}

/** enum ctattr_help */
export const enum CtaHelp {
  Name = 1, // CTA_HELP_NAME
  Info = 2, // CTA_HELP_INFO (helper specific, kept raw)
}

/** enum ctattr_expect */
export const enum CtaExpect {
  Master = 1, // CTA_EXPECT_MASTER
  Tuple = 2, // CTA_EXPECT_TUPLE
  Mask = 3, // CTA_EXPECT_MASK
  Timeout = 4, // CTA_EXPECT_TIMEOUT
  Id = 5, // CTA_EXPECT_ID
  HelpName = 6, // CTA_EXPECT_HELP_NAME
  Zone = 7, // CTA_EXPECT_ZONE
  Flags = 8, // CTA_EXPECT_FLAGS
  Class = 9, // CTA_EXPECT_CLASS
  Nat = 10, // CTA_EXPECT_NAT
  Fn = 11, // CTA_EXPECT_FN
}

/** enum ctattr_expect_nat */
export const enum CtaExpectNat {
  Dir = 1, // CTA_EXPECT_NAT_DIR
  Tuple = 2, // CTA_EXPECT_NAT_TUPLE
}

/** Multicast groups of NETLINK_NETFILTER (enum nfnetlink_groups); bind() takes them as bit (1 << (group - 1)). */
export const enum NfnlGroup {
  CtNew = 1, // NFNLGRP_CONNTRACK_NEW
  CtUpdate = 2, // NFNLGRP_CONNTRACK_UPDATE
  CtDestroy = 3, // NFNLGRP_CONNTRACK_DESTROY
  CtExpNew = 4, // NFNLGRP_CONNTRACK_EXP_NEW
  CtExpUpdate = 5, // NFNLGRP_CONNTRACK_EXP_UPDATE
  CtExpDestroy = 6, // NFNLGRP_CONNTRACK_EXP_DESTROY
}
