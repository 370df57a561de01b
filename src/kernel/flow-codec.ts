// The ctnetlink conntrack-entry codec: CTA_* attributes <-> Flow and Tuple, decode and encode side by side.
//
// Decisions:
// - Unknown attributes are kept as RawAttr in the nearest model object that has an `unknown` list (Flow, Tuple,
//   ProtoInfo, TcpInfo, SctpInfo, DccpInfo). A known nest whose model has no such list (the tuple's IP and proto
//   nests, CTA_HELP, CTA_COUNTERS_*, CTA_TIMESTAMP, CTA_NAT_*, CTA_SEQ_ADJ_*, CTA_SYNPROXY) and that contains a
//   child we do not model is decoded into its fields AND kept whole in the parent's unknown list; when unknown
//   attributes are emitted, the encoder then sends the raw nest instead of rebuilding it (the raw one is a superset).
// - Unknown attributes are emitted after the known ones, in their original order.
// - Padding attributes (CTA_COUNTERS_PAD, CTA_TIMESTAMP_PAD, CTA_PROTOINFO_DCCP_PAD) are dropped on decode and
//   never emitted: they exist only for architectures without efficient unaligned access, and the kernel reads
//   64-bit attributes with nla_get_be64 (a memcpy), so unaligned payloads are accepted.
// - Known nests are recognised by number whether or not NLA_F_NESTED is set (kernels before 5.2 did not set it);
//   both flag bits are masked off every type. Unknown attributes keep their NLA_F_NESTED bit.
// - Decode never throws and never keeps views into the input (the receive buffer is reused).
// - CTA_TIMESTAMP_EVENT (27, in every event when nf_conntrack_timestamp is on) is modelled as Flow.timestampEvent
//   rather than kept raw: it is on the hot path, and it is read-only like the other timestamps.
// - Writes (readOnly false) leave out id, use, secmark, counters, timestamps and, by default, unknown attributes;
//   the caller still owns the kernel's rules for CTA_STATUS (IPS_CONFIRMED set, IPS_EXPECTED clear, see DOMAIN.md).

import { ipToText } from './addr.js';
import {
  Cta,
  CtaCounters,
  CtaHelp,
  CtaIp,
  CtaNat,
  CtaProto,
  CtaProtoinfo,
  CtaProtoinfoDccp,
  CtaProtoinfoSctp,
  CtaProtoinfoTcp,
  CtaProtonat,
  CtaSeqadj,
  CtaSynproxy,
  CtaTimestamp,
  CtaTuple,
} from './ctnetlink-const.js';
import { AttrWriter, copyBytes, readRawAttr, readStrz, readU32BE, readU64BE } from './nla.js';
import type {
  Counters,
  DccpInfo,
  Flow,
  NatRange,
  ProtoInfo,
  RawAttr,
  SctpInfo,
  SeqAdj,
  Synproxy,
  TcpInfo,
  Tuple,
} from './types.js';

export type DecodeReason = 'truncated' | 'bad_length' | 'bad_nest' | 'missing_tuple' | 'bad_payload';

/** Why a message could not be decoded. Returned, never thrown: receive paths count it by reason and move on. */
export class DecodeError {
  constructor(readonly reason: DecodeReason) {}
}

// Shared instances: a flood of garbage must not also be a flood of allocations.
const E_TRUNCATED = new DecodeError('truncated');
const E_BAD_LENGTH = new DecodeError('bad_length');
const E_BAD_NEST = new DecodeError('bad_nest');
const E_MISSING_TUPLE = new DecodeError('missing_tuple');
const E_BAD_PAYLOAD = new DecodeError('bad_payload');

export interface EncodeOptions {
  /** Also emit id, use, secmark, counters and timestamps (the kernel refuses or ignores them on writes). Default false. */
  readOnly?: boolean;
  /**
   * Re-emit attributes kept as RawAttr. Default: same as readOnly. Off for writes because an attribute this code
   * does not know may be one the kernel rejects on input.
   */
  keepUnknown?: boolean;
}

// ---- Decoding ---------------------------------------------------------------------------------------------------

/**
 * Frames the attribute at p within [.., end): its nla_len, or a DecodeError. Inside a nest every framing problem
 * is bad_nest; at the top level it is truncated / bad_length.
 */
function frame(buf: Buffer, p: number, end: number, nested: boolean): number | DecodeError {
  if (end - p < 4) return nested ? E_BAD_NEST : E_TRUNCATED;
  const len = buf[p]! | (buf[p + 1]! << 8);
  if (len < 4) return nested ? E_BAD_NEST : E_BAD_LENGTH;
  if (len > end - p) return nested ? E_BAD_NEST : E_TRUNCATED;
  return len;
}

function pushUnknown(list: RawAttr[] | undefined, a: RawAttr): RawAttr[] {
  if (list === undefined) return [a];
  list.push(a);
  return list;
}

/** Removes kept raw copies of a known nest that occurs again (only reached with a non-empty list). */
export function dropRaw(list: RawAttr[], type: number): void {
  let j = 0;
  for (let i = 0; i < list.length; i++) if (list[i]!.type !== type) list[j++] = list[i]!;
  list.length = j;
}

/** Pushes the whole nest at p as raw if it had a child we do not model; first drops raw copies of an earlier one. */
function keepNest(list: RawAttr[] | undefined, buf: Buffer, p: number, len: number, foreign: boolean): RawAttr[] | undefined {
  if (list !== undefined) dropRaw(list, (buf[p + 2]! | (buf[p + 3]! << 8)) & 0x3fff);
  if (!foreign) return list !== undefined && list.length === 0 ? undefined : list;
  return pushUnknown(list, readRawAttr(buf, p, len));
}

// The addresses of the last tuple decoded (offsets into its buffer, and their text). The reply tuple of a flow
// without NAT holds the original's two addresses swapped: it takes the same strings instead of formatting them
// again, and the reply-is-inverse test in the tables then compares them by identity.
let lastSrcAt = -1;
let lastDstAt = -1;
let lastAddrLen = 0;
let lastSrc = '';
let lastDst = '';

function sameBytes(buf: Buffer, a: number, b: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (buf[a + i] !== buf[b + i]) return false;
  return true;
}

/** The text of the address at p; with `reuse`, the last tuple's string when the bytes are the same (same buf). */
function addrText(buf: Buffer, p: number, len: 4 | 16, reuse: boolean): string {
  if (reuse && len === lastAddrLen) {
    if (sameBytes(buf, p, lastDstAt, len)) return lastDst;
    if (sameBytes(buf, p, lastSrcAt, len)) return lastSrc;
  }
  return ipToText(buf, p, len);
}

/**
 * A tuple nest (CTA_TUPLE_ORIG / REPLY / MASTER, CTA_EXPECT_TUPLE / MASK / MASTER, CTA_EXPECT_NAT_TUPLE).
 * `reuse`: an earlier tuple of the same message in the same buf was decoded just before (see lastSrcAt).
 */
export function decodeTuple(buf: Buffer, off: number, end: number, reuse = false): Tuple | DecodeError {
  let src: string | undefined;
  let dst: string | undefined;
  let proto = -1;
  let sport: number | undefined;
  let dport: number | undefined;
  let icmpId: number | undefined;
  let icmpType: number | undefined;
  let icmpCode: number | undefined;
  let zone: number | undefined;
  let unknown: RawAttr[] | undefined;
  let srcAt = -1;
  let dstAt = -1;
  let addrLen = 0;

  let p = off;
  while (p < end) {
    const len = frame(buf, p, end, true);
    if (typeof len !== 'number') return len;
    const type = (buf[p + 2]! | (buf[p + 3]! << 8)) & 0x3fff;
    const d = p + 4;
    const dl = len - 4;
    if (type === CtaTuple.Ip) {
      // A repeated nest replaces the earlier one entirely (fields and any raw copy), so a raw copy always decodes
      // to exactly the fields we report.
      src = undefined;
      dst = undefined;
      if (unknown !== undefined) dropRaw(unknown, CtaTuple.Ip);
      addrLen = 0;
      let foreign = false;
      let q = d;
      const qe = d + dl;
      while (q < qe) {
        const cl = frame(buf, q, qe, true);
        if (typeof cl !== 'number') return cl;
        const ct = (buf[q + 2]! | (buf[q + 3]! << 8)) & 0x3fff;
        if (ct >= CtaIp.V4Src && ct <= CtaIp.V6Dst) {
          const want = ct <= CtaIp.V4Dst ? 4 : 16;
          if (cl - 4 !== want) return E_BAD_LENGTH;
          if (addrLen !== 0 && addrLen !== want) return E_BAD_PAYLOAD;
          addrLen = want;
          const text = addrText(buf, q + 4, want, reuse);
          if (ct === CtaIp.V4Src || ct === CtaIp.V6Src) {
            src = text;
            srcAt = q + 4;
          } else {
            dst = text;
            dstAt = q + 4;
          }
        } else foreign = true;
        q += (cl + 3) & ~3;
      }
      unknown = keepNest(unknown, buf, p, len, foreign);
    } else if (type === CtaTuple.Proto) {
      proto = -1;
      sport = dport = icmpId = icmpType = icmpCode = undefined;
      if (unknown !== undefined) dropRaw(unknown, CtaTuple.Proto);
      let foreign = false;
      let q = d;
      const qe = d + dl;
      while (q < qe) {
        const cl = frame(buf, q, qe, true);
        if (typeof cl !== 'number') return cl;
        const ct = (buf[q + 2]! | (buf[q + 3]! << 8)) & 0x3fff;
        const cd = q + 4;
        const cdl = cl - 4;
        switch (ct) {
          case CtaProto.Num:
            if (cdl !== 1) return E_BAD_LENGTH;
            proto = buf[cd]!;
            break;
          case CtaProto.SrcPort:
          case CtaProto.DstPort:
          case CtaProto.IcmpId:
          case CtaProto.Icmpv6Id: {
            if (cdl !== 2) return E_BAD_LENGTH;
            const v = (buf[cd]! << 8) | buf[cd + 1]!;
            if (ct === CtaProto.SrcPort) sport = v;
            else if (ct === CtaProto.DstPort) dport = v;
            else icmpId = v;
            break;
          }
          case CtaProto.IcmpType:
          case CtaProto.Icmpv6Type:
            if (cdl !== 1) return E_BAD_LENGTH;
            icmpType = buf[cd]!;
            break;
          case CtaProto.IcmpCode:
          case CtaProto.Icmpv6Code:
            if (cdl !== 1) return E_BAD_LENGTH;
            icmpCode = buf[cd]!;
            break;
          default:
            foreign = true;
        }
        q += (cl + 3) & ~3;
      }
      unknown = keepNest(unknown, buf, p, len, foreign);
    } else if (type === CtaTuple.Zone) {
      if (dl !== 2) return E_BAD_LENGTH;
      zone = (buf[d]! << 8) | buf[d + 1]!;
    } else {
      unknown = pushUnknown(unknown, readRawAttr(buf, p, len));
    }
    p += (len + 3) & ~3;
  }
  if (src === undefined || dst === undefined || proto < 0) return E_MISSING_TUPLE;
  lastSrcAt = srcAt;
  lastDstAt = dstAt;
  lastAddrLen = addrLen;
  lastSrc = src;
  lastDst = dst;
  return { src, dst, proto, sport, dport, icmpId, icmpType, icmpCode, zone, unknown };
}

function decodeTcpInfo(buf: Buffer, off: number, end: number): TcpInfo | DecodeError {
  const t: TcpInfo = {
    state: 0,
    wscaleOrig: undefined,
    wscaleReply: undefined,
    flagsOrig: undefined,
    flagsReply: undefined,
    unknown: undefined,
  };
  let p = off;
  while (p < end) {
    const len = frame(buf, p, end, true);
    if (typeof len !== 'number') return len;
    const type = (buf[p + 2]! | (buf[p + 3]! << 8)) & 0x3fff;
    const d = p + 4;
    const dl = len - 4;
    switch (type) {
      case CtaProtoinfoTcp.State:
      case CtaProtoinfoTcp.WscaleOriginal:
      case CtaProtoinfoTcp.WscaleReply:
        if (dl !== 1) return E_BAD_LENGTH;
        if (type === CtaProtoinfoTcp.State) t.state = buf[d]!;
        else if (type === CtaProtoinfoTcp.WscaleOriginal) t.wscaleOrig = buf[d]!;
        else t.wscaleReply = buf[d]!;
        break;
      case CtaProtoinfoTcp.FlagsOriginal:
      case CtaProtoinfoTcp.FlagsReply:
        // struct nf_ct_tcp_flags { u8 flags; u8 mask; }: dumps send mask 0, so only the flags are model data.
        if (dl !== 2) return E_BAD_LENGTH;
        if (type === CtaProtoinfoTcp.FlagsOriginal) t.flagsOrig = buf[d]!;
        else t.flagsReply = buf[d]!;
        break;
      default:
        t.unknown = pushUnknown(t.unknown, readRawAttr(buf, p, len));
    }
    p += (len + 3) & ~3;
  }
  return t;
}

function decodeSctpInfo(buf: Buffer, off: number, end: number): SctpInfo | DecodeError {
  const s: SctpInfo = { state: 0, vtagOrig: undefined, vtagReply: undefined, unknown: undefined };
  let p = off;
  while (p < end) {
    const len = frame(buf, p, end, true);
    if (typeof len !== 'number') return len;
    const type = (buf[p + 2]! | (buf[p + 3]! << 8)) & 0x3fff;
    const d = p + 4;
    const dl = len - 4;
    if (type === CtaProtoinfoSctp.State) {
      if (dl !== 1) return E_BAD_LENGTH;
      s.state = buf[d]!;
    } else if (type === CtaProtoinfoSctp.VtagOriginal || type === CtaProtoinfoSctp.VtagReply) {
      if (dl !== 4) return E_BAD_LENGTH;
      if (type === CtaProtoinfoSctp.VtagOriginal) s.vtagOrig = readU32BE(buf, d);
      else s.vtagReply = readU32BE(buf, d);
    } else {
      s.unknown = pushUnknown(s.unknown, readRawAttr(buf, p, len));
    }
    p += (len + 3) & ~3;
  }
  return s;
}

function decodeDccpInfo(buf: Buffer, off: number, end: number): DccpInfo | DecodeError {
  const c: DccpInfo = { state: 0, role: undefined, handshakeSeq: undefined, unknown: undefined };
  let p = off;
  while (p < end) {
    const len = frame(buf, p, end, true);
    if (typeof len !== 'number') return len;
    const type = (buf[p + 2]! | (buf[p + 3]! << 8)) & 0x3fff;
    const d = p + 4;
    const dl = len - 4;
    if (type === CtaProtoinfoDccp.State || type === CtaProtoinfoDccp.Role) {
      if (dl !== 1) return E_BAD_LENGTH;
      if (type === CtaProtoinfoDccp.State) c.state = buf[d]!;
      else c.role = buf[d]!;
    } else if (type === CtaProtoinfoDccp.HandshakeSeq) {
      if (dl !== 8) return E_BAD_LENGTH;
      c.handshakeSeq = readU64BE(buf, d);
    } else if (type !== CtaProtoinfoDccp.Pad) {
      c.unknown = pushUnknown(c.unknown, readRawAttr(buf, p, len));
    }
    p += (len + 3) & ~3;
  }
  return c;
}

function decodeProtoinfo(buf: Buffer, off: number, end: number): ProtoInfo | DecodeError {
  const pi: ProtoInfo = { tcp: undefined, sctp: undefined, dccp: undefined, unknown: undefined };
  let p = off;
  while (p < end) {
    const len = frame(buf, p, end, true);
    if (typeof len !== 'number') return len;
    const type = (buf[p + 2]! | (buf[p + 3]! << 8)) & 0x3fff;
    const d = p + 4;
    const e = p + len;
    if (type === CtaProtoinfo.Tcp) {
      const r = decodeTcpInfo(buf, d, e);
      if (r instanceof DecodeError) return r;
      pi.tcp = r;
    } else if (type === CtaProtoinfo.Sctp) {
      const r = decodeSctpInfo(buf, d, e);
      if (r instanceof DecodeError) return r;
      pi.sctp = r;
    } else if (type === CtaProtoinfo.Dccp) {
      const r = decodeDccpInfo(buf, d, e);
      if (r instanceof DecodeError) return r;
      pi.dccp = r;
    } else {
      pi.unknown = pushUnknown(pi.unknown, readRawAttr(buf, p, len));
    }
    p += (len + 3) & ~3;
  }
  return pi;
}

// Nests without an `unknown` slot report "had a child we do not model" through this flag (set by the decoder
// that just ran; single-threaded, read immediately by the caller).
let foreignChild = false;

function decodeCounters(buf: Buffer, off: number, end: number): Counters | DecodeError {
  let packets = 0n;
  let bytes = 0n;
  foreignChild = false;
  let p = off;
  while (p < end) {
    const len = frame(buf, p, end, true);
    if (typeof len !== 'number') return len;
    const type = (buf[p + 2]! | (buf[p + 3]! << 8)) & 0x3fff;
    const d = p + 4;
    const dl = len - 4;
    switch (type) {
      case CtaCounters.Packets:
      case CtaCounters.Bytes:
        if (dl !== 8) return E_BAD_LENGTH;
        if (type === CtaCounters.Packets) packets = readU64BE(buf, d);
        else bytes = readU64BE(buf, d);
        break;
      case CtaCounters.Packets32:
      case CtaCounters.Bytes32:
        if (dl !== 4) return E_BAD_LENGTH;
        if (type === CtaCounters.Packets32) packets = BigInt(readU32BE(buf, d));
        else bytes = BigInt(readU32BE(buf, d));
        break;
      case CtaCounters.Pad:
        break;
      default:
        foreignChild = true;
    }
    p += (len + 3) & ~3;
  }
  return { packets, bytes };
}

function decodeNat(buf: Buffer, off: number, end: number): NatRange | DecodeError {
  const r: NatRange = { minIp: undefined, maxIp: undefined, minPort: undefined, maxPort: undefined };
  let foreign = false;
  let p = off;
  while (p < end) {
    const len = frame(buf, p, end, true);
    if (typeof len !== 'number') return len;
    const type = (buf[p + 2]! | (buf[p + 3]! << 8)) & 0x3fff;
    const d = p + 4;
    const dl = len - 4;
    switch (type) {
      case CtaNat.V4MinIp:
      case CtaNat.V4MaxIp:
        if (dl !== 4) return E_BAD_LENGTH;
        if (type === CtaNat.V4MinIp) r.minIp = ipToText(buf, d, 4);
        else r.maxIp = ipToText(buf, d, 4);
        break;
      case CtaNat.V6MinIp:
      case CtaNat.V6MaxIp:
        if (dl !== 16) return E_BAD_LENGTH;
        if (type === CtaNat.V6MinIp) r.minIp = ipToText(buf, d, 16);
        else r.maxIp = ipToText(buf, d, 16);
        break;
      case CtaNat.Proto: {
        let q = d;
        const qe = p + len;
        while (q < qe) {
          const cl = frame(buf, q, qe, true);
          if (typeof cl !== 'number') return cl;
          const ct = (buf[q + 2]! | (buf[q + 3]! << 8)) & 0x3fff;
          if (ct === CtaProtonat.PortMin || ct === CtaProtonat.PortMax) {
            if (cl !== 6) return E_BAD_LENGTH;
            const v = (buf[q + 4]! << 8) | buf[q + 5]!;
            if (ct === CtaProtonat.PortMin) r.minPort = v;
            else r.maxPort = v;
          } else foreign = true;
          q += (cl + 3) & ~3;
        }
        break;
      }
      default:
        foreign = true;
    }
    p += (len + 3) & ~3;
  }
  foreignChild = foreign;
  return r;
}

/** CTA_SEQ_ADJ_*, CTA_SYNPROXY and CTA_TIMESTAMP are all "up to three fixed-size numbers": one walker. */
const tmp3: [number, number, number] = [0, 0, 0];

function decodeU32Triple(buf: Buffer, off: number, end: number): DecodeError | null {
  tmp3[0] = 0;
  tmp3[1] = 0;
  tmp3[2] = 0;
  foreignChild = false;
  let p = off;
  while (p < end) {
    const len = frame(buf, p, end, true);
    if (typeof len !== 'number') return len;
    const type = (buf[p + 2]! | (buf[p + 3]! << 8)) & 0x3fff;
    if (type >= 1 && type <= 3) {
      if (len !== 8) return E_BAD_LENGTH;
      tmp3[type - 1] = readU32BE(buf, p + 4);
    } else foreignChild = true;
    p += (len + 3) & ~3;
  }
  return null;
}

let tsStart: bigint | undefined;
let tsStop: bigint | undefined;

function decodeTimestamp(buf: Buffer, off: number, end: number): DecodeError | null {
  tsStart = undefined;
  tsStop = undefined;
  foreignChild = false;
  let p = off;
  while (p < end) {
    const len = frame(buf, p, end, true);
    if (typeof len !== 'number') return len;
    const type = (buf[p + 2]! | (buf[p + 3]! << 8)) & 0x3fff;
    if (type === CtaTimestamp.Start || type === CtaTimestamp.Stop) {
      if (len !== 12) return E_BAD_LENGTH;
      if (type === CtaTimestamp.Start) tsStart = readU64BE(buf, p + 4);
      else tsStop = readU64BE(buf, p + 4);
    } else if (type !== CtaTimestamp.Pad) foreignChild = true;
    p += (len + 3) & ~3;
  }
  return null;
}

/**
 * Decodes the attribute region [off, end) of an IPCTNL_MSG_CT_NEW / DELETE message (event or dump entry).
 * `family` is nfgenmsg.nfgen_family. Returns a Flow or a DecodeError; never throws, never keeps views of buf.
 */
export function decodeFlow(buf: Buffer, off: number, end: number, family: number): Flow | DecodeError {
  if (off < 0 || end > buf.length || off > end) return E_TRUNCATED;
  const f: Flow = {
    family,
    orig: undefined as unknown as Tuple,
    reply: undefined as unknown as Tuple,
    status: undefined,
    timeout: undefined,
    mark: undefined,
    zone: undefined,
    id: undefined,
    use: undefined,
    secmark: undefined,
    labels: undefined,
    labelsMask: undefined,
    protoinfo: undefined,
    countersOrig: undefined,
    countersReply: undefined,
    timestampStart: undefined,
    timestampStop: undefined,
    timestampEvent: undefined,
    natSrc: undefined,
    natDst: undefined,
    seqAdjOrig: undefined,
    seqAdjReply: undefined,
    helper: undefined,
    master: undefined,
    synproxy: undefined,
    unknown: undefined,
  };
  let tuples = 0;
  let p = off;
  while (p < end) {
    const len = frame(buf, p, end, false);
    if (typeof len !== 'number') return len;
    const type = (buf[p + 2]! | (buf[p + 3]! << 8)) & 0x3fff;
    const d = p + 4;
    const dl = len - 4;
    const e = p + len;
    switch (type) {
      case Cta.TupleOrig:
      case Cta.TupleReply:
      case Cta.TupleMaster: {
        const t = decodeTuple(buf, d, e, tuples++ > 0);
        if (t instanceof DecodeError) return t;
        if (type === Cta.TupleOrig) f.orig = t;
        else if (type === Cta.TupleReply) f.reply = t;
        else f.master = t;
        break;
      }
      case Cta.Status:
      case Cta.Timeout:
      case Cta.Mark:
      case Cta.Use:
      case Cta.Id:
      case Cta.Secmark: {
        if (dl !== 4) return E_BAD_LENGTH;
        const v = readU32BE(buf, d);
        if (type === Cta.Status) f.status = v;
        else if (type === Cta.Timeout) f.timeout = v;
        else if (type === Cta.Mark) f.mark = v;
        else if (type === Cta.Use) f.use = v;
        else if (type === Cta.Id) f.id = v;
        else f.secmark = v;
        break;
      }
      case Cta.Zone:
        if (dl !== 2) return E_BAD_LENGTH;
        f.zone = (buf[d]! << 8) | buf[d + 1]!;
        break;
      case Cta.Protoinfo: {
        const pi = decodeProtoinfo(buf, d, e);
        if (pi instanceof DecodeError) return pi;
        f.protoinfo = pi;
        break;
      }
      case Cta.CountersOrig:
      case Cta.CountersReply: {
        const c = decodeCounters(buf, d, e);
        if (c instanceof DecodeError) return c;
        if (type === Cta.CountersOrig) f.countersOrig = c;
        else f.countersReply = c;
        f.unknown = keepNest(f.unknown, buf, p, len, foreignChild);
        break;
      }
      case Cta.Timestamp: {
        const r = decodeTimestamp(buf, d, e);
        if (r !== null) return r;
        f.timestampStart = tsStart;
        f.timestampStop = tsStop;
        f.unknown = keepNest(f.unknown, buf, p, len, foreignChild);
        break;
      }
      case Cta.TimestampEvent:
        if (dl !== 8) return E_BAD_LENGTH;
        f.timestampEvent = readU64BE(buf, d);
        break;
      case Cta.Labels:
      case Cta.LabelsMask:
        if (type === Cta.Labels) f.labels = copyBytes(buf, d, dl);
        else f.labelsMask = copyBytes(buf, d, dl);
        break;
      case Cta.Help: {
        let helper: string | undefined;
        let foreign = false;
        let q = d;
        while (q < e) {
          const cl = frame(buf, q, e, true);
          if (typeof cl !== 'number') return cl;
          if (((buf[q + 2]! | (buf[q + 3]! << 8)) & 0x3fff) === CtaHelp.Name) helper = readStrz(buf, q + 4, cl - 4);
          else foreign = true;
          q += (cl + 3) & ~3;
        }
        f.helper = helper;
        f.unknown = keepNest(f.unknown, buf, p, len, foreign);
        break;
      }
      case Cta.NatSrc:
      case Cta.NatDst: {
        const r = decodeNat(buf, d, e);
        if (r instanceof DecodeError) return r;
        if (type === Cta.NatSrc) f.natSrc = r;
        else f.natDst = r;
        f.unknown = keepNest(f.unknown, buf, p, len, foreignChild);
        break;
      }
      case Cta.SeqAdjOrig:
      case Cta.SeqAdjReply:
      case Cta.Synproxy: {
        const r = decodeU32Triple(buf, d, e);
        if (r !== null) return r;
        if (type === Cta.Synproxy) {
          f.synproxy = { isn: tmp3[CtaSynproxy.Isn - 1], its: tmp3[CtaSynproxy.Its - 1], tsoff: tmp3[CtaSynproxy.Tsoff - 1] };
        } else {
          const s: SeqAdj = {
            correctionPos: tmp3[CtaSeqadj.CorrectionPos - 1],
            offsetBefore: tmp3[CtaSeqadj.OffsetBefore - 1],
            offsetAfter: tmp3[CtaSeqadj.OffsetAfter - 1],
          };
          if (type === Cta.SeqAdjOrig) f.seqAdjOrig = s;
          else f.seqAdjReply = s;
        }
        f.unknown = keepNest(f.unknown, buf, p, len, foreignChild);
        break;
      }
      default:
        f.unknown = pushUnknown(f.unknown, readRawAttr(buf, p, len));
    }
    p += (len + 3) & ~3;
  }
  if (f.orig === undefined || f.reply === undefined) return E_MISSING_TUPLE;
  return f;
}

// ---- Encoding ---------------------------------------------------------------------------------------------------

function hasRaw(list: RawAttr[] | undefined, type: number): boolean {
  if (list === undefined) return false;
  for (let i = 0; i < list.length; i++) if (list[i]!.type === type) return true;
  return false;
}

function emitUnknown(w: AttrWriter, list: RawAttr[] | undefined): void {
  if (list === undefined) return;
  for (let i = 0; i < list.length; i++) w.raw(list[i]!);
}

/**
 * Address length from the text itself rather than nfgen_family: the text is what decoded, so whatever decoded
 * re-encodes, and a wrong family cannot turn a valid address into an exception.
 */
function addrLen(_family: number, text: string): 4 | 16 {
  return text.indexOf(':') >= 0 ? 16 : 4;
}

/**
 * A tuple nest of the given CTA_* type. Throws AddressError if src/dst is not an address of the family (our
 * model is wrong; roll the writer back with rewind()). keepUnknown re-emits the tuple's kept attributes.
 */
export function encodeTuple(w: AttrWriter, type: number, t: Tuple, family: number, keepUnknown = false): void {
  const tok = w.nest(type);
  const u = keepUnknown ? t.unknown : undefined;
  if (!hasRaw(u, CtaTuple.Ip)) {
    const ip = w.nest(CtaTuple.Ip);
    const sl = addrLen(family, t.src);
    w.ipText(sl === 4 ? CtaIp.V4Src : CtaIp.V6Src, t.src, sl);
    const dl = addrLen(family, t.dst);
    w.ipText(dl === 4 ? CtaIp.V4Dst : CtaIp.V6Dst, t.dst, dl);
    w.endNest(ip);
  }
  if (!hasRaw(u, CtaTuple.Proto)) {
    const pr = w.nest(CtaTuple.Proto);
    w.u8(CtaProto.Num, t.proto);
    if (t.sport !== undefined) w.u16be(CtaProto.SrcPort, t.sport);
    if (t.dport !== undefined) w.u16be(CtaProto.DstPort, t.dport);
    const v6 = t.proto === 58;
    if (t.icmpId !== undefined) w.u16be(v6 ? CtaProto.Icmpv6Id : CtaProto.IcmpId, t.icmpId);
    if (t.icmpType !== undefined) w.u8(v6 ? CtaProto.Icmpv6Type : CtaProto.IcmpType, t.icmpType);
    if (t.icmpCode !== undefined) w.u8(v6 ? CtaProto.Icmpv6Code : CtaProto.IcmpCode, t.icmpCode);
    w.endNest(pr);
  }
  if (t.zone !== undefined) w.u16be(CtaTuple.Zone, t.zone);
  emitUnknown(w, u);
  w.endNest(tok);
}

function encodeProtoinfo(w: AttrWriter, pi: ProtoInfo, keep: boolean): void {
  const tok = w.nest(Cta.Protoinfo);
  const tcp = pi.tcp;
  if (tcp !== undefined) {
    const n = w.nest(CtaProtoinfo.Tcp);
    w.u8(CtaProtoinfoTcp.State, tcp.state);
    if (tcp.wscaleOrig !== undefined) w.u8(CtaProtoinfoTcp.WscaleOriginal, tcp.wscaleOrig);
    if (tcp.wscaleReply !== undefined) w.u8(CtaProtoinfoTcp.WscaleReply, tcp.wscaleReply);
    if (tcp.flagsOrig !== undefined) {
      w.u16be(CtaProtoinfoTcp.FlagsOriginal, ((tcp.flagsOrig & 0xff) << 8) | ((tcp.flagsOrigMask ?? tcp.flagsOrig) & 0xff));
    }
    if (tcp.flagsReply !== undefined) {
      w.u16be(CtaProtoinfoTcp.FlagsReply, ((tcp.flagsReply & 0xff) << 8) | ((tcp.flagsReplyMask ?? tcp.flagsReply) & 0xff));
    }
    if (keep) emitUnknown(w, tcp.unknown);
    w.endNest(n);
  }
  const sctp = pi.sctp;
  if (sctp !== undefined) {
    const n = w.nest(CtaProtoinfo.Sctp);
    w.u8(CtaProtoinfoSctp.State, sctp.state);
    if (sctp.vtagOrig !== undefined) w.u32be(CtaProtoinfoSctp.VtagOriginal, sctp.vtagOrig);
    if (sctp.vtagReply !== undefined) w.u32be(CtaProtoinfoSctp.VtagReply, sctp.vtagReply);
    if (keep) emitUnknown(w, sctp.unknown);
    w.endNest(n);
  }
  const dccp = pi.dccp;
  if (dccp !== undefined) {
    const n = w.nest(CtaProtoinfo.Dccp);
    w.u8(CtaProtoinfoDccp.State, dccp.state);
    if (dccp.role !== undefined) w.u8(CtaProtoinfoDccp.Role, dccp.role);
    if (dccp.handshakeSeq !== undefined) w.u64be(CtaProtoinfoDccp.HandshakeSeq, dccp.handshakeSeq);
    if (keep) emitUnknown(w, dccp.unknown);
    w.endNest(n);
  }
  if (keep) emitUnknown(w, pi.unknown);
  w.endNest(tok);
}

function encodeCounters(w: AttrWriter, type: number, c: Counters): void {
  const tok = w.nest(type);
  w.u64be(CtaCounters.Packets, c.packets);
  w.u64be(CtaCounters.Bytes, c.bytes);
  w.endNest(tok);
}

function encodeNat(w: AttrWriter, type: number, r: NatRange, family: number): void {
  const tok = w.nest(type);
  if (r.minIp !== undefined) {
    const l = addrLen(family, r.minIp);
    w.ipText(l === 4 ? CtaNat.V4MinIp : CtaNat.V6MinIp, r.minIp, l);
  }
  if (r.maxIp !== undefined) {
    const l = addrLen(family, r.maxIp);
    w.ipText(l === 4 ? CtaNat.V4MaxIp : CtaNat.V6MaxIp, r.maxIp, l);
  }
  if (r.minPort !== undefined || r.maxPort !== undefined) {
    const n = w.nest(CtaNat.Proto);
    if (r.minPort !== undefined) w.u16be(CtaProtonat.PortMin, r.minPort);
    if (r.maxPort !== undefined) w.u16be(CtaProtonat.PortMax, r.maxPort);
    w.endNest(n);
  }
  w.endNest(tok);
}

function encodeSeqAdj(w: AttrWriter, type: number, s: SeqAdj): void {
  const tok = w.nest(type);
  w.u32be(CtaSeqadj.CorrectionPos, s.correctionPos);
  w.u32be(CtaSeqadj.OffsetBefore, s.offsetBefore);
  w.u32be(CtaSeqadj.OffsetAfter, s.offsetAfter);
  w.endNest(tok);
}

function encodeSynproxy(w: AttrWriter, s: Synproxy): void {
  const tok = w.nest(Cta.Synproxy);
  w.u32be(CtaSynproxy.Isn, s.isn);
  w.u32be(CtaSynproxy.Its, s.its);
  w.u32be(CtaSynproxy.Tsoff, s.tsoff);
  w.endNest(tok);
}

/**
 * The attributes of a conntrack entry (the caller wraps them in beginMessage/endMessage). Writes: tuples, zone,
 * status, timeout, protoinfo, helper, labels (+mask), master, NAT, seq-adjust, synproxy, mark. readOnly adds id,
 * use, secmark, counters and timestamps (CTA_TIMESTAMP and CTA_TIMESTAMP_EVENT). Throws AddressError on an address that does not parse (see rewind()).
 */
export function encodeFlow(w: AttrWriter, f: Flow, opts?: EncodeOptions): void {
  const ro = opts?.readOnly === true;
  const keep = opts?.keepUnknown ?? ro;
  const u = keep ? f.unknown : undefined;
  const fam = f.family;
  encodeTuple(w, Cta.TupleOrig, f.orig, fam, keep);
  encodeTuple(w, Cta.TupleReply, f.reply, fam, keep);
  if (f.zone !== undefined) w.u16be(Cta.Zone, f.zone);
  if (f.status !== undefined) w.u32be(Cta.Status, f.status);
  if (f.timeout !== undefined) w.u32be(Cta.Timeout, f.timeout);
  if (ro) {
    if (f.countersOrig !== undefined && !hasRaw(u, Cta.CountersOrig)) encodeCounters(w, Cta.CountersOrig, f.countersOrig);
    if (f.countersReply !== undefined && !hasRaw(u, Cta.CountersReply)) {
      encodeCounters(w, Cta.CountersReply, f.countersReply);
    }
    if ((f.timestampStart !== undefined || f.timestampStop !== undefined) && !hasRaw(u, Cta.Timestamp)) {
      const tok = w.nest(Cta.Timestamp);
      if (f.timestampStart !== undefined) w.u64be(CtaTimestamp.Start, f.timestampStart);
      if (f.timestampStop !== undefined) w.u64be(CtaTimestamp.Stop, f.timestampStop);
      w.endNest(tok);
    }
  }
  if (f.protoinfo !== undefined) encodeProtoinfo(w, f.protoinfo, keep);
  if (f.helper !== undefined && !hasRaw(u, Cta.Help)) {
    const tok = w.nest(Cta.Help);
    w.strz(CtaHelp.Name, f.helper);
    w.endNest(tok);
  }
  if (ro && f.secmark !== undefined) w.u32be(Cta.Secmark, f.secmark);
  if (f.labels !== undefined) w.bytes(Cta.Labels, f.labels);
  if (f.labelsMask !== undefined) w.bytes(Cta.LabelsMask, f.labelsMask);
  if (f.master !== undefined) encodeTuple(w, Cta.TupleMaster, f.master, fam, keep);
  if (f.natSrc !== undefined && !hasRaw(u, Cta.NatSrc)) encodeNat(w, Cta.NatSrc, f.natSrc, fam);
  if (f.natDst !== undefined && !hasRaw(u, Cta.NatDst)) encodeNat(w, Cta.NatDst, f.natDst, fam);
  if (f.seqAdjOrig !== undefined && !hasRaw(u, Cta.SeqAdjOrig)) encodeSeqAdj(w, Cta.SeqAdjOrig, f.seqAdjOrig);
  if (f.seqAdjReply !== undefined && !hasRaw(u, Cta.SeqAdjReply)) encodeSeqAdj(w, Cta.SeqAdjReply, f.seqAdjReply);
  if (f.synproxy !== undefined && !hasRaw(u, Cta.Synproxy)) encodeSynproxy(w, f.synproxy);
  if (ro) {
    if (f.id !== undefined) w.u32be(Cta.Id, f.id);
    if (f.use !== undefined) w.u32be(Cta.Use, f.use);
    if (f.timestampEvent !== undefined) w.u64be(Cta.TimestampEvent, f.timestampEvent);
  }
  if (f.mark !== undefined) w.u32be(Cta.Mark, f.mark);
  emitUnknown(w, u);
}

// ---- The plain-event fast path ------------------------------------------------------------------------------------

/**
 * The fields of a "plain" conntrack message, read in place (scanPlainFlow): what the event path needs of the
 * common flow without building a Flow. Offsets point into the scanned buffer and are valid only until it is reused.
 * Absent optional numbers are -1 (all present values are unsigned).
 */
export interface PlainFlow {
  family: number;
  proto: number;
  addrLen: number;
  /** Offsets of the original tuple's source and destination address bytes. */
  srcAt: number;
  dstAt: number;
  sport: number;
  dport: number;
  /** CTA_ZONE, or -1. */
  zone: number;
  status: number;
  timeout: number;
  mark: number;
  id: number;
  /** CTA_PROTOINFO present (with a TCP nest, or empty). */
  protoinfo: boolean;
  /** CTA_PROTOINFO_TCP_*: state -1 = no TCP nest. */
  tcpState: number;
  wscaleOrig: number;
  wscaleReply: number;
  flagsOrig: number;
  flagsReply: number;
  /** CTA_SYNPROXY with all three values. */
  synproxy: boolean;
  isn: number;
  its: number;
  tsoff: number;
}

export function newPlainFlow(): PlainFlow {
  return {
    family: 0, proto: -1, addrLen: 0, srcAt: -1, dstAt: -1, sport: -1, dport: -1, zone: -1, status: -1, timeout: -1,
    mark: -1, id: -1, protoinfo: false, tcpState: -1, wscaleOrig: -1, wscaleReply: -1, flagsOrig: -1, flagsReply: -1,
    synproxy: false, isn: 0, its: 0, tsoff: 0,
  };
}

// Reply tuple fields of the message being scanned (single-threaded scratch).
let rSrcAt = -1;
let rDstAt = -1;
let rProto = -1;
let rSport = -1;
let rDport = -1;

/**
 * Scans a tuple nest of the plain form: CTA_TUPLE_IP with exactly the two addresses of the family and
 * CTA_TUPLE_PROTO with exactly number, source and destination port, each once, nothing else. Writes the original
 * tuple into out, a reply into the r* scratch. False for anything else.
 */
function scanPlainTuple(buf: Buffer, off: number, end: number, alen: number, orig: boolean, out: PlainFlow): boolean {
  let src = -1;
  let dst = -1;
  let proto = -1;
  let sport = -1;
  let dport = -1;
  let nests = 0;
  const srcType = alen === 4 ? CtaIp.V4Src : CtaIp.V6Src;
  const dstType = alen === 4 ? CtaIp.V4Dst : CtaIp.V6Dst;
  for (let q = off; q < end; ) {
    if (end - q < 4) return false;
    const cl = buf[q]! | (buf[q + 1]! << 8);
    const ct = (buf[q + 2]! | (buf[q + 3]! << 8)) & 0x3fff;
    const ce = q + cl;
    if (cl < 4 || ce > end) return false;
    if (ct !== CtaTuple.Ip && ct !== CtaTuple.Proto) return false;
    if (nests & (1 << ct)) return false;
    nests |= 1 << ct;
    for (let r = q + 4; r < ce; ) {
      if (ce - r < 4) return false;
      const al = buf[r]! | (buf[r + 1]! << 8);
      const at = (buf[r + 2]! | (buf[r + 3]! << 8)) & 0x3fff;
      const d = r + 4;
      if (al < 4 || r + al > ce) return false;
      if (ct === CtaTuple.Ip) {
        if (al - 4 !== alen) return false;
        if (at === srcType && src < 0) src = d;
        else if (at === dstType && dst < 0) dst = d;
        else return false;
      } else if (at === CtaProto.Num && proto < 0 && al === 5) proto = buf[d]!;
      else if (at === CtaProto.SrcPort && sport < 0 && al === 6) sport = (buf[d]! << 8) | buf[d + 1]!;
      else if (at === CtaProto.DstPort && dport < 0 && al === 6) dport = (buf[d]! << 8) | buf[d + 1]!;
      else return false;
      r += (al + 3) & ~3;
    }
    q += (cl + 3) & ~3;
  }
  if (src < 0 || dst < 0 || proto < 0 || sport < 0 || dport < 0) return false;
  if (orig) {
    out.srcAt = src;
    out.dstAt = dst;
    out.proto = proto;
    out.sport = sport;
    out.dport = dport;
  } else {
    rSrcAt = src;
    rDstAt = dst;
    rProto = proto;
    rSport = sport;
    rDport = dport;
  }
  return true;
}

function scanPlainTcp(buf: Buffer, off: number, end: number, out: PlainFlow): boolean {
  let seen = 0;
  for (let p = off; p < end; ) {
    if (end - p < 4) return false;
    const len = buf[p]! | (buf[p + 1]! << 8);
    const type = (buf[p + 2]! | (buf[p + 3]! << 8)) & 0x3fff;
    if (len < 4 || p + len > end || type < CtaProtoinfoTcp.State || type > CtaProtoinfoTcp.FlagsReply) return false;
    if (seen & (1 << type)) return false;
    seen |= 1 << type;
    const v = buf[p + 4]!;
    if (type <= CtaProtoinfoTcp.WscaleReply) {
      if (len !== 5) return false;
      if (type === CtaProtoinfoTcp.State) out.tcpState = v;
      else if (type === CtaProtoinfoTcp.WscaleOriginal) out.wscaleOrig = v;
      else out.wscaleReply = v;
    } else {
      if (len !== 6) return false; // struct nf_ct_tcp_flags: the mask byte is not model data (decodeTcpInfo)
      if (type === CtaProtoinfoTcp.FlagsOriginal) out.flagsOrig = v;
      else out.flagsReply = v;
    }
    p += (len + 3) & ~3;
  }
  // decodeTcpInfo reports state 0 for a TCP nest without a state attribute
  if (out.tcpState < 0) out.tcpState = 0;
  return true;
}

/** A counters (or timestamp) nest of only the children decodeCounters (decodeTimestamp) knows, at their sizes. */
function scanFigures(buf: Buffer, off: number, end: number, timestamp: boolean): boolean {
  for (let p = off; p < end; ) {
    if (end - p < 4) return false;
    const len = buf[p]! | (buf[p + 1]! << 8);
    const type = (buf[p + 2]! | (buf[p + 3]! << 8)) & 0x3fff;
    if (len < 4 || p + len > end) return false;
    const size = timestamp
      ? type === CtaTimestamp.Start || type === CtaTimestamp.Stop ? 12 : type === CtaTimestamp.Pad ? len : 0
      : type === CtaCounters.Packets || type === CtaCounters.Bytes ? 12
        : type === CtaCounters.Packets32 || type === CtaCounters.Bytes32 ? 8
          : type === CtaCounters.Pad ? len : 0;
    if (len !== size) return false;
    p += (len + 3) & ~3;
  }
  return true;
}

/**
 * Reads a conntrack message of the plain form in place: both tuples as scanPlainTuple takes them, the reply the
 * exact inverse of the original (no NAT), and otherwise only status, timeout, mark, use, id, secmark, CTA_ZONE,
 * CTA_TIMESTAMP_EVENT, CTA_PROTOINFO holding at most a TCP nest of state/wscale/flags, and a complete
 * CTA_SYNPROXY, each at most once and of its exact size. True when it is: then `out` says everything decodeFlow
 * would put into the fields the tables keep (use, secmark and the event timestamp are not kept); false for any
 * other message, which the caller decodes with decodeFlow. Never throws, allocates nothing. The binding reads event
 * sockets by the same rules (ctscan::Plain in patches/netlink+0.3.0.patch, see ct-records.ts): change both together.
 * A `dumpLine` may also hold the per-node figures no table keeps, which dumps carry on hosts with conntrack
 * accounting or timestamps on (events carry them only on DESTROY): CTA_COUNTERS_ORIG/REPLY and CTA_TIMESTAMP, each
 * holding only the children decodeFlow knows, at their exact sizes.
 */
export function scanPlainFlow(buf: Buffer, off: number, end: number, family: number, out: PlainFlow, dumpLine = false): boolean {
  const alen = family === 2 ? 4 : family === 10 ? 16 : 0;
  if (alen === 0) return false;
  out.family = family;
  out.addrLen = alen;
  out.zone = out.status = out.timeout = out.mark = out.id = -1;
  out.protoinfo = false;
  out.tcpState = out.wscaleOrig = out.wscaleReply = out.flagsOrig = out.flagsReply = -1;
  out.synproxy = false;
  let seen = 0;
  for (let p = off; p < end; ) {
    if (end - p < 4) return false;
    const len = buf[p]! | (buf[p + 1]! << 8);
    const type = (buf[p + 2]! | (buf[p + 3]! << 8)) & 0x3fff;
    const e = p + len;
    if (len < 4 || e > end || type > 31) return false;
    if (seen & (1 << type)) return false;
    seen |= 1 << type;
    const d = p + 4;
    switch (type) {
      case Cta.TupleOrig:
      case Cta.TupleReply:
        if (!scanPlainTuple(buf, d, e, alen, type === Cta.TupleOrig, out)) return false;
        break;
      case Cta.Status:
      case Cta.Timeout:
      case Cta.Mark:
      case Cta.Use:
      case Cta.Id:
      case Cta.Secmark: {
        if (len !== 8) return false;
        const v = readU32BE(buf, d);
        if (type === Cta.Status) out.status = v;
        else if (type === Cta.Timeout) out.timeout = v;
        else if (type === Cta.Mark) out.mark = v;
        else if (type === Cta.Id) out.id = v;
        break;
      }
      case Cta.Zone:
        if (len !== 6) return false;
        out.zone = (buf[d]! << 8) | buf[d + 1]!;
        break;
      case Cta.TimestampEvent:
        if (len !== 12) return false;
        break;
      case Cta.CountersOrig:
      case Cta.CountersReply:
      case Cta.Timestamp:
        if (!dumpLine || !scanFigures(buf, d, e, type === Cta.Timestamp)) return false;
        break;
      case Cta.Protoinfo:
        out.protoinfo = true;
        for (let q = d; q < e; ) {
          if (e - q < 4) return false;
          const cl = buf[q]! | (buf[q + 1]! << 8);
          const ct = (buf[q + 2]! | (buf[q + 3]! << 8)) & 0x3fff;
          if (cl < 4 || q + cl > e || ct !== CtaProtoinfo.Tcp || out.tcpState >= 0) return false;
          if (!scanPlainTcp(buf, q + 4, q + cl, out)) return false;
          q += (cl + 3) & ~3;
        }
        break;
      case Cta.Synproxy: {
        let kids = 0;
        for (let q = d; q < e; ) {
          if (e - q < 4) return false;
          const cl = buf[q]! | (buf[q + 1]! << 8);
          const ct = (buf[q + 2]! | (buf[q + 3]! << 8)) & 0x3fff;
          if (cl !== 8 || q + cl > e || ct < CtaSynproxy.Isn || ct > CtaSynproxy.Tsoff || kids & (1 << ct)) return false;
          kids |= 1 << ct;
          const v = readU32BE(buf, q + 4);
          if (ct === CtaSynproxy.Isn) out.isn = v;
          else if (ct === CtaSynproxy.Its) out.its = v;
          else out.tsoff = v;
          q += 8;
        }
        if (kids !== 0b1110) return false;
        out.synproxy = true;
        break;
      }
      default:
        return false;
    }
    p += (len + 3) & ~3;
  }
  if (!(seen & (1 << Cta.TupleOrig)) || !(seen & (1 << Cta.TupleReply))) return false;
  // the reply must be the original inverted (what the tables store as "reply is inverse")
  if (rProto !== out.proto || rSport !== out.dport || rDport !== out.sport) return false;
  for (let i = 0; i < alen; i++) {
    if (buf[rSrcAt + i] !== buf[out.dstAt + i] || buf[rDstAt + i] !== buf[out.srcAt + i]) return false;
  }
  return true;
}
