// Owns the mapping between the shared Flow/Expectation model and their wire messages (Entry, FlowKey,
// RefreshItem, Expectation, ExpectationKey), including what is synced and what is not.
//
// Synced: everything the standby needs to recreate the kernel entry (see toSyncedFlow). Not synced: the
// conntrack id, use count, secmark, counters, timestamps (node-local or not settable through ctnetlink) and
// unknown attributes (kernel-local; a standby on another kernel must not write bytes it does not understand).
//
// Compact encoding (the steady-state goal is <= 45 bytes per entry):
// - The reply tuple is omitted when it is the exact inverse of the original one (no NAT): tuple.ts.
// - Zero status and mark are omitted; family is omitted when the address length implies it.
// - TCP protoinfo is one varint (`tcp`), layout below; values that do not fit go in `tcp_ext`.
import { Af, type Expectation, type Flow, type NatRange, type ProtoInfo, type SeqAdj, type Tuple } from '../kernel/types.js';
import { writeAddress, formatAddress } from './addr.js';
import { type Decoded, drop, WireError } from './errors.js';
import { Entry, type pb } from './proto.js';
import {
  extAddressLength, invertTuple, isInverse, packTuple, packedAddressLength, tupleFromExt, tupleToExt, unpackTuple,
} from './tuple.js';

/** A flow's identity: zones plus original tuple (orig.zone is the per-direction zone). Never the conntrack id. */
export interface FlowKey {
  family: number;
  orig: Tuple;
  zone?: number;
}

/** An expectation's identity, as CTA_EXPECT_TUPLE deletion uses it. */
export interface ExpectationKey {
  family: number;
  tuple: Tuple;
  zone?: number;
}

/** One RefreshItem: a flow and its remaining timeout in seconds at send time. */
export interface Refresh {
  key: FlowKey;
  timeout: number;
}

// ---------------------------------------------------------------------------------------------------------
// Normalisation: what a decoded flow looks like, so tests and digests can compare like with like.

function syncedTuple(t: Tuple, withZone = true): Tuple {
  const out: Tuple = { src: t.src, dst: t.dst, proto: t.proto };
  if (t.sport !== undefined) out.sport = t.sport;
  if (t.dport !== undefined) out.dport = t.dport;
  if (t.icmpType !== undefined) out.icmpType = t.icmpType;
  if (t.icmpCode !== undefined) out.icmpCode = t.icmpCode;
  if (t.icmpId !== undefined) out.icmpId = t.icmpId;
  if (withZone && t.zone !== undefined) out.zone = t.zone;
  return out;
}

function syncedProtoinfo(p: ProtoInfo | undefined): ProtoInfo | undefined {
  if (!p || (!p.tcp && !p.sctp && !p.dccp)) return undefined;
  const out: ProtoInfo = {};
  if (p.tcp) {
    const t = p.tcp;
    out.tcp = { state: t.state };
    if (t.wscaleOrig !== undefined) out.tcp.wscaleOrig = t.wscaleOrig;
    if (t.wscaleReply !== undefined) out.tcp.wscaleReply = t.wscaleReply;
    if (t.flagsOrig !== undefined) out.tcp.flagsOrig = t.flagsOrig;
    if (t.flagsReply !== undefined) out.tcp.flagsReply = t.flagsReply;
    if (t.flagsOrigMask !== undefined) out.tcp.flagsOrigMask = t.flagsOrigMask;
    if (t.flagsReplyMask !== undefined) out.tcp.flagsReplyMask = t.flagsReplyMask;
  }
  if (p.sctp) {
    out.sctp = { state: p.sctp.state };
    if (p.sctp.vtagOrig !== undefined) out.sctp.vtagOrig = p.sctp.vtagOrig;
    if (p.sctp.vtagReply !== undefined) out.sctp.vtagReply = p.sctp.vtagReply;
  }
  if (p.dccp) {
    out.dccp = { state: p.dccp.state };
    if (p.dccp.role !== undefined) out.dccp.role = p.dccp.role;
    if (p.dccp.handshakeSeq !== undefined) out.dccp.handshakeSeq = p.dccp.handshakeSeq;
  }
  return out;
}

function syncedNat(n: NatRange): NatRange {
  const out: NatRange = {};
  if (n.minIp !== undefined) out.minIp = n.minIp;
  if (n.maxIp !== undefined) out.maxIp = n.maxIp;
  if (n.minPort !== undefined) out.minPort = n.minPort;
  if (n.maxPort !== undefined) out.maxPort = n.maxPort;
  return out;
}

function syncedSeqAdj(s: SeqAdj): SeqAdj {
  // uint32 on the wire, as CTA_SEQADJ_* are.
  return { correctionPos: s.correctionPos >>> 0, offsetBefore: s.offsetBefore >>> 0, offsetAfter: s.offsetAfter >>> 0 };
}

/**
 * The part of a flow that is synced, in the exact shape entryToFlow returns:
 * `entryToFlow(flowToEntry(f))` deep-equals `toSyncedFlow(f)`. status and mark are always present (an Upsert is
 * the full state, and an absent mark means 0 in every kernel report); labels are copied.
 */
export function toSyncedFlow(f: Flow): Flow {
  const out: Flow = {
    family: f.family,
    orig: syncedTuple(f.orig),
    reply: syncedTuple(f.reply),
    status: f.status ?? 0,
    mark: f.mark ?? 0,
  };
  if (f.timeout !== undefined) out.timeout = f.timeout;
  if (f.zone !== undefined) out.zone = f.zone;
  if (f.labels !== undefined) out.labels = Buffer.from(f.labels);
  if (f.labelsMask !== undefined) out.labelsMask = Buffer.from(f.labelsMask);
  const pi = syncedProtoinfo(f.protoinfo);
  if (pi) out.protoinfo = pi;
  if (f.natSrc) out.natSrc = syncedNat(f.natSrc);
  if (f.natDst) out.natDst = syncedNat(f.natDst);
  if (f.seqAdjOrig) out.seqAdjOrig = syncedSeqAdj(f.seqAdjOrig);
  if (f.seqAdjReply) out.seqAdjReply = syncedSeqAdj(f.seqAdjReply);
  if (f.helper !== undefined) out.helper = f.helper;
  if (f.master) out.master = syncedTuple(f.master);
  if (f.synproxy) out.synproxy = { isn: f.synproxy.isn >>> 0, its: f.synproxy.its >>> 0, tsoff: f.synproxy.tsoff >>> 0 };
  return out;
}

/** The synced part of an expectation, in the shape expectationFromWire returns. */
export function toSyncedExpectation(e: Expectation): Expectation {
  const out: Expectation = {
    family: e.family,
    master: syncedTuple(e.master),
    tuple: syncedTuple(e.tuple),
    mask: syncedTuple(e.mask),
  };
  if (e.timeout !== undefined) out.timeout = e.timeout;
  if (e.zone !== undefined) out.zone = e.zone;
  if (e.flags !== undefined) out.flags = e.flags;
  if (e.class !== undefined) out.class = e.class;
  if (e.helper !== undefined) out.helper = e.helper;
  if (e.fn !== undefined) out.fn = e.fn;
  if (e.nat) out.nat = { dir: e.nat.dir, tuple: syncedTuple(e.nat.tuple) };
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Packed TCP protoinfo, one varint (<= 26 bits, 4 bytes for a typical established flow):
//   bits 0-3   state (TCP_CONNTRACK_*, 0-15)
//   bits 4-7   wscale orig + 1    (0 = absent; wscale 0-14)
//   bits 8-11  wscale reply + 1
//   bits 12-18 flags orig + 1     (0 = absent; flags 0-126)
//   bits 19-25 flags reply + 1
// Flag masks (encode-only) and anything out of range use tcp_ext.

const TCP_PACKED_LIMIT = 1 << 26;

function packTcp(t: NonNullable<ProtoInfo['tcp']>): number | undefined {
  if (t.flagsOrigMask !== undefined || t.flagsReplyMask !== undefined) return undefined;
  const slot = (v: number | undefined, max: number): number => (v === undefined ? 0 : Number.isInteger(v) && v >= 0 && v <= max ? v + 1 : -1);
  const wo = slot(t.wscaleOrig, 14);
  const wr = slot(t.wscaleReply, 14);
  const fo = slot(t.flagsOrig, 126);
  const fr = slot(t.flagsReply, 126);
  if (!(Number.isInteger(t.state) && t.state >= 0 && t.state <= 15) || wo < 0 || wr < 0 || fo < 0 || fr < 0) return undefined;
  return t.state | (wo << 4) | (wr << 8) | (fo << 12) | (fr << 19);
}

function unpackTcp(v: number): NonNullable<ProtoInfo['tcp']> | undefined {
  if (v >= TCP_PACKED_LIMIT) return undefined;
  const t: NonNullable<ProtoInfo['tcp']> = { state: v & 0xf };
  const wo = (v >>> 4) & 0xf;
  const wr = (v >>> 8) & 0xf;
  const fo = (v >>> 12) & 0x7f;
  const fr = (v >>> 19) & 0x7f;
  if (wo) t.wscaleOrig = wo - 1;
  if (wr) t.wscaleReply = wr - 1;
  if (fo) t.flagsOrig = fo - 1;
  if (fr) t.flagsReply = fr - 1;
  return t;
}

// ---------------------------------------------------------------------------------------------------------
// Shared pieces of the encoders.

type TupleFields = { packed?: Uint8Array | null; ext?: pb.ITuple | null };

/** Packed when possible; `inlineZone` puts a zone into the long form (for tuples without a zone field). */
function encodeTuple(t: Tuple, inlineZone: boolean): { packed?: Buffer; ext?: pb.ITuple } {
  if (!(inlineZone && t.zone !== undefined)) {
    const packed = packTuple(t);
    if (packed) return { packed };
  }
  return { ext: tupleToExt(t, inlineZone) };
}

// A decoded message reports an absent oneof `bytes` member as an empty array, not null: test the length.
function hasBytes(b: Uint8Array | null | undefined): b is Uint8Array {
  return b != null && b.length > 0;
}

function hasTuple(packed: Uint8Array | null | undefined, ext: pb.ITuple | null | undefined): boolean {
  return hasBytes(packed) || ext != null;
}

function decodeTuple(f: TupleFields): Tuple | undefined {
  if (hasBytes(f.packed)) return unpackTuple(f.packed);
  if (f.ext) return tupleFromExt(f.ext);
  return undefined;
}

function familyOfLength(len: number): number {
  return len === 16 ? Af.Inet6 : Af.Inet;
}

function impliedFamily(f: TupleFields): number {
  if (hasBytes(f.packed)) return familyOfLength(packedAddressLength(f.packed));
  if (f.ext) return familyOfLength(extAddressLength(f.ext));
  return Af.Inet;
}

interface KeyFieldsOut {
  orig?: Uint8Array | null;
  origExt?: pb.ITuple | null;
  zone?: number | null;
  origZone?: number | null;
  family?: number | null;
}

/** Fields 1-5, shared by Entry, FlowKey and RefreshItem. */
function writeKeyFields(out: KeyFieldsOut, family: number, orig: Tuple, zone: number | undefined): void {
  const t = encodeTuple(orig, false);
  if (t.packed) out.orig = t.packed;
  else out.origExt = t.ext!;
  if (zone !== undefined) out.zone = zone;
  if (orig.zone !== undefined) out.origZone = orig.zone;
  if (family !== impliedFamily({ packed: t.packed, ext: t.ext })) out.family = family;
}

function readKeyFields(k: KeyFieldsOut): Decoded<FlowKey> {
  const fields = { packed: k.orig, ext: k.origExt };
  const orig = decodeTuple(fields);
  if (!orig) return drop('bad_payload', hasTuple(k.orig, k.origExt) ? 'malformed original tuple' : 'missing original tuple');
  if (k.origZone != null) orig.zone = k.origZone;
  const key: FlowKey = { family: k.family ?? impliedFamily(fields), orig };
  if (k.zone != null) key.zone = k.zone;
  return { ok: true, value: key };
}

function addrOrThrow(text: string, what: string): Buffer {
  const out = Buffer.allocUnsafe(16);
  const n = writeAddress(text, out, 0);
  if (n === 0) throw new WireError('CTS_ERR_WIRE_ENCODE', `${what} ${JSON.stringify(text)} is neither IPv4 nor IPv6`);
  return Buffer.from(out.subarray(0, n));
}

function natToWire(n: NatRange): pb.INatRange {
  const x: pb.INatRange = {};
  if (n.minIp !== undefined) x.minIp = addrOrThrow(n.minIp, 'NAT min address');
  if (n.maxIp !== undefined) x.maxIp = addrOrThrow(n.maxIp, 'NAT max address');
  if (n.minPort !== undefined) x.minPort = n.minPort;
  if (n.maxPort !== undefined) x.maxPort = n.maxPort;
  return x;
}

function natFromWire(x: pb.INatRange): NatRange | undefined {
  const n: NatRange = {};
  for (const k of ['minIp', 'maxIp'] as const) {
    const b = x[k];
    if (b == null) continue;
    if (b.length !== 4 && b.length !== 16) return undefined;
    n[k] = formatAddress(b, 0, b.length);
  }
  if (x.minPort != null) n.minPort = x.minPort;
  if (x.maxPort != null) n.maxPort = x.maxPort;
  return n;
}

function seqAdjToWire(s: SeqAdj): pb.ISeqAdj {
  const x: pb.ISeqAdj = {};
  if (s.correctionPos) x.correctionPos = s.correctionPos;
  if (s.offsetBefore) x.offsetBefore = s.offsetBefore;
  if (s.offsetAfter) x.offsetAfter = s.offsetAfter;
  return x;
}

function seqAdjFromWire(x: pb.ISeqAdj): SeqAdj {
  return { correctionPos: x.correctionPos ?? 0, offsetBefore: x.offsetBefore ?? 0, offsetAfter: x.offsetAfter ?? 0 };
}

// ---------------------------------------------------------------------------------------------------------
// Flows.

/**
 * The Entry message for a flow (send path). Throws WireError CTS_ERR_WIRE_ENCODE only for a flow our own
 * code could not have read from a kernel (an address that is not IPv4/IPv6 text).
 */
export function flowToEntry(f: Flow): pb.IEntry {
  const e: pb.IEntry = {};
  writeKeyFields(e, f.family, f.orig, f.zone);
  if (f.status) e.status = f.status;
  if (f.timeout !== undefined) e.timeout = f.timeout;
  if (f.mark) e.mark = f.mark;
  const tcp = f.protoinfo?.tcp;
  if (tcp) {
    const packed = packTcp(tcp);
    if (packed !== undefined) e.tcp = packed;
    else e.tcpExt = tcpToWire(tcp);
  }
  if (!isInverse(f.orig, f.reply)) {
    const r = encodeTuple(f.reply, false);
    if (r.packed) e.reply = r.packed;
    else e.replyExt = r.ext!;
  }
  if (f.reply.zone !== undefined) e.replyZone = f.reply.zone;
  if (f.labels !== undefined) e.labels = f.labels;
  if (f.labelsMask !== undefined) e.labelsMask = f.labelsMask;
  const sctp = f.protoinfo?.sctp;
  if (sctp) {
    e.sctp = { state: sctp.state };
    if (sctp.vtagOrig !== undefined) e.sctp.vtagOrig = sctp.vtagOrig;
    if (sctp.vtagReply !== undefined) e.sctp.vtagReply = sctp.vtagReply;
  }
  const dccp = f.protoinfo?.dccp;
  if (dccp) {
    e.dccp = { state: dccp.state };
    if (dccp.role !== undefined) e.dccp.role = dccp.role;
    if (dccp.handshakeSeq !== undefined) e.dccp.handshakeSeq = Number(dccp.handshakeSeq);
  }
  if (f.helper !== undefined) e.helper = f.helper;
  if (f.master) {
    const m = encodeTuple(f.master, true);
    if (m.packed) e.master = m.packed;
    else e.masterExt = m.ext!;
  }
  if (f.seqAdjOrig) e.seqAdjOrig = seqAdjToWire(f.seqAdjOrig);
  if (f.seqAdjReply) e.seqAdjReply = seqAdjToWire(f.seqAdjReply);
  if (f.natSrc) e.natSrc = natToWire(f.natSrc);
  if (f.natDst) e.natDst = natToWire(f.natDst);
  if (f.synproxy) e.synproxy = { isn: f.synproxy.isn, its: f.synproxy.its, tsoff: f.synproxy.tsoff };
  return e;
}

// ---------------------------------------------------------------------------------------------------------
// Pre-encoded entries for the send path: the bytes of Upsert.entries, written without building pb.IEntry objects.

/** What a flow with none of the rare fields consists of (see EntryBatch.addPlain); -1 = absent. */
export interface PlainEntry {
  /** Packed original tuple (tuple.ts layout) in tuple[0 .. tupleLen). */
  tuple: Buffer;
  tupleLen: number;
  zone: number;
  origZone: number;
  status: number; // u32, 0 = omitted
  timeout: number;
  mark: number; // u32, 0 = omitted
  /** TCP columns: state, wscale orig/reply, flags orig/reply (-1 = absent); tcpState -1 = no TCP protoinfo. */
  tcp: Int16Array;
  tcpState: number;
  replyZone: number;
  /** Synproxy isn, its, tsoff in [0..2]; [3] = 1 when the flow has one (see FlowTable.isPlainOrSynproxyAt). */
  synproxy: Uint32Array;
}

/** Writes a uint32 as a protobuf varint at b[p]; returns the offset after it. */
export function putVarint(b: Uint8Array, p: number, v: number): number {
  while (v > 0x7f) {
    b[p++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  b[p++] = v;
  return p;
}

function varintLen(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

/**
 * A growing run of encoded `Upsert.entries` fields (tag, length, Entry), byte for byte what protobufjs writes for
 * the same entries: the send path's hot case (a flow without NAT, labels, helper, ...) is written straight from
 * table columns, anything else goes through flowToEntry. One per sender, reused frame after frame.
 */
export class EntryBatch {
  private buf = Buffer.allocUnsafe(64 * 1024);
  private len = 0;
  count = 0;

  reset(): void {
    this.len = 0;
    this.count = 0;
  }

  /** The bytes written since reset(): a view, valid until the next add or reset. */
  view(): Buffer {
    return this.buf.subarray(0, this.len);
  }

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const b = Buffer.allocUnsafe(Math.max(2 * this.buf.length, this.len + n));
    this.buf.copy(b, 0, 0, this.len);
    this.buf = b;
  }

  private varint(v: number): void {
    this.len = putVarint(this.buf, this.len, v);
  }

  /** Adds the entry flowToEntry(f) makes. Throws what flowToEntry throws, leaving the batch unchanged. */
  addFlow(f: Flow): void {
    const body = Entry.encode(flowToEntry(f)).finish();
    this.ensure(6 + body.length);
    this.buf[this.len++] = 0x0a; // entries = 1, length-delimited
    this.varint(body.length);
    this.buf.set(body, this.len);
    this.len += body.length;
    this.count++;
  }

  /**
   * Adds the entry of a flow made only of key, status, timeout, mark, TCP protoinfo, synproxy and an inverse reply tuple,
   * as flowToEntry would encode it. False (nothing written) when its TCP fields need tcp_ext: use addFlow then.
   */
  addPlain(e: PlainEntry): boolean {
    let tcp = -1;
    if (e.tcpState >= 0) {
      const t = e.tcp;
      // packTcp's ranges: state 0-15, wscale 0-14, flags 0-126
      if (t[0]! > 15 || t[1]! > 14 || t[2]! > 14 || t[3]! > 126 || t[4]! > 126) return false;
      tcp = t[0]! | ((t[1]! + 1) << 4) | ((t[2]! + 1) << 8) | ((t[3]! + 1) << 12) | ((t[4]! + 1) << 19);
    }
    // fields in protobufjs's order (by number): orig 1, zone 3, orig_zone 4, status 6, timeout 7, mark 8, tcp 9,
    // reply_zone 12, synproxy 24; family (5) is implied by the address length and the reply tuple (10/11) is the inverse
    let size = 2 + e.tupleLen;
    if (e.zone >= 0) size += 1 + varintLen(e.zone);
    if (e.origZone >= 0) size += 1 + varintLen(e.origZone);
    if (e.status !== 0) size += 1 + varintLen(e.status);
    if (e.timeout >= 0) size += 1 + varintLen(e.timeout);
    if (e.mark !== 0) size += 1 + varintLen(e.mark);
    if (tcp >= 0) size += 1 + varintLen(tcp);
    if (e.replyZone >= 0) size += 1 + varintLen(e.replyZone);
    const sp = e.synproxy;
    // Synproxy: all three fields, zeros included (flowToEntry sets each property, so protobufjs writes them)
    const spLen = sp[3] ? 3 + varintLen(sp[0]!) + varintLen(sp[1]!) + varintLen(sp[2]!) : 0;
    if (spLen) size += 3 + spLen; // two-byte tag of field 24, one-byte length (at most 18)
    this.ensure(6 + size);
    const b = this.buf;
    b[this.len++] = 0x0a;
    this.varint(size);
    b[this.len++] = 0x0a; // orig = 1
    b[this.len++] = e.tupleLen;
    // a tuple is at most ~40 bytes: a loop beats Buffer#copy's argument checks and native call
    const tb = e.tuple;
    for (let i = 0, at = this.len; i < e.tupleLen; i++) b[at + i] = tb[i]!;
    this.len += e.tupleLen;
    if (e.zone >= 0) (b[this.len++] = 0x18), this.varint(e.zone);
    if (e.origZone >= 0) (b[this.len++] = 0x20), this.varint(e.origZone);
    if (e.status !== 0) (b[this.len++] = 0x30), this.varint(e.status);
    if (e.timeout >= 0) (b[this.len++] = 0x38), this.varint(e.timeout);
    if (e.mark !== 0) (b[this.len++] = 0x40), this.varint(e.mark);
    if (tcp >= 0) (b[this.len++] = 0x48), this.varint(tcp);
    if (e.replyZone >= 0) (b[this.len++] = 0x60), this.varint(e.replyZone);
    if (spLen) {
      b[this.len++] = 0xc2; // synproxy = 24, length-delimited
      b[this.len++] = 0x01;
      b[this.len++] = spLen;
      (b[this.len++] = 0x08), this.varint(sp[0]!);
      (b[this.len++] = 0x10), this.varint(sp[1]!);
      (b[this.len++] = 0x18), this.varint(sp[2]!);
    }
    this.count++;
    return true;
  }
}

function tcpToWire(t: NonNullable<ProtoInfo['tcp']>): pb.ITcpInfo {
  const x: pb.ITcpInfo = { state: t.state };
  if (t.wscaleOrig !== undefined) x.wscaleOrig = t.wscaleOrig;
  if (t.wscaleReply !== undefined) x.wscaleReply = t.wscaleReply;
  if (t.flagsOrig !== undefined) x.flagsOrig = t.flagsOrig;
  if (t.flagsReply !== undefined) x.flagsReply = t.flagsReply;
  if (t.flagsOrigMask !== undefined) x.flagsOrigMask = t.flagsOrigMask;
  if (t.flagsReplyMask !== undefined) x.flagsReplyMask = t.flagsReplyMask;
  return x;
}

function tcpFromWire(x: pb.ITcpInfo): NonNullable<ProtoInfo['tcp']> {
  const t: NonNullable<ProtoInfo['tcp']> = { state: x.state ?? 0 };
  if (x.wscaleOrig != null) t.wscaleOrig = x.wscaleOrig;
  if (x.wscaleReply != null) t.wscaleReply = x.wscaleReply;
  if (x.flagsOrig != null) t.flagsOrig = x.flagsOrig;
  if (x.flagsReply != null) t.flagsReply = x.flagsReply;
  if (x.flagsOrigMask != null) t.flagsOrigMask = x.flagsOrigMask;
  if (x.flagsReplyMask != null) t.flagsReplyMask = x.flagsReplyMask;
  return t;
}

/** The flow an Entry describes (receive path: never throws; a malformed entry is `bad_payload`). */
export function entryToFlow(e: pb.IEntry): Decoded<Flow> {
  const key = readKeyFields(e);
  if (!key.ok) return key;
  const { family, orig, zone } = key.value;
  let reply: Tuple | undefined;
  if (hasTuple(e.reply, e.replyExt)) {
    reply = decodeTuple({ packed: e.reply, ext: e.replyExt });
    if (!reply) return drop('bad_payload', 'malformed reply tuple');
  } else {
    reply = invertTuple(orig);
    if (!reply) return drop('bad_payload', 'reply tuple omitted but the original tuple has no inverse');
  }
  if (e.replyZone != null) reply.zone = e.replyZone;
  const f: Flow = { family, orig, reply, status: e.status ?? 0, mark: e.mark ?? 0 };
  if (zone !== undefined) f.zone = zone;
  if (e.timeout != null) f.timeout = e.timeout;
  if (e.labels != null) f.labels = Buffer.from(e.labels); // copy: a view would pin the whole frame in memory
  if (e.labelsMask != null) f.labelsMask = Buffer.from(e.labelsMask);
  let pi: ProtoInfo | undefined;
  if (e.tcp != null) {
    const tcp = unpackTcp(e.tcp);
    if (!tcp) return drop('bad_payload', 'packed tcp protoinfo out of range');
    pi = { tcp };
  } else if (e.tcpExt) {
    pi = { tcp: tcpFromWire(e.tcpExt) };
  }
  if (e.sctp) {
    const s = e.sctp;
    const sctp: NonNullable<ProtoInfo['sctp']> = { state: s.state ?? 0 };
    if (s.vtagOrig != null) sctp.vtagOrig = s.vtagOrig;
    if (s.vtagReply != null) sctp.vtagReply = s.vtagReply;
    (pi ??= {}).sctp = sctp;
  }
  if (e.dccp) {
    const d = e.dccp;
    const dccp: NonNullable<ProtoInfo['dccp']> = { state: d.state ?? 0 };
    if (d.role != null) dccp.role = d.role;
    if (d.handshakeSeq != null) dccp.handshakeSeq = BigInt(d.handshakeSeq);
    (pi ??= {}).dccp = dccp;
  }
  if (pi) f.protoinfo = pi;
  if (e.helper != null) f.helper = e.helper;
  if (hasTuple(e.master, e.masterExt)) {
    const m = decodeTuple({ packed: e.master, ext: e.masterExt });
    if (!m) return drop('bad_payload', 'malformed master tuple');
    f.master = m;
  }
  if (e.seqAdjOrig) f.seqAdjOrig = seqAdjFromWire(e.seqAdjOrig);
  if (e.seqAdjReply) f.seqAdjReply = seqAdjFromWire(e.seqAdjReply);
  if (e.natSrc) {
    const n = natFromWire(e.natSrc);
    if (!n) return drop('bad_payload', 'malformed NAT source range');
    f.natSrc = n;
  }
  if (e.natDst) {
    const n = natFromWire(e.natDst);
    if (!n) return drop('bad_payload', 'malformed NAT destination range');
    f.natDst = n;
  }
  if (e.synproxy) f.synproxy = { isn: e.synproxy.isn ?? 0, its: e.synproxy.its ?? 0, tsoff: e.synproxy.tsoff ?? 0 };
  return { ok: true, value: f };
}

// ---------------------------------------------------------------------------------------------------------
// Keys and refreshes.

/** The key of a flow (a Flow is also accepted wherever a FlowKey is, since it has the same fields). */
export function flowKeyOf(f: Flow | FlowKey): FlowKey {
  const key: FlowKey = { family: f.family, orig: syncedTuple(f.orig) };
  if (f.zone !== undefined) key.zone = f.zone;
  return key;
}

export function keyToWire(key: FlowKey): pb.IFlowKey {
  const k: pb.IFlowKey = {};
  writeKeyFields(k, key.family, key.orig, key.zone);
  return k;
}

/** Receive path: never throws. */
export function keyFromWire(k: pb.IFlowKey): Decoded<FlowKey> {
  return readKeyFields(k);
}

export function refreshToWire(key: FlowKey, timeout: number): pb.IRefreshItem {
  const r: pb.IRefreshItem = {};
  writeKeyFields(r, key.family, key.orig, key.zone);
  if (timeout) r.timeout = timeout;
  return r;
}

/** Receive path: never throws. */
export function refreshFromWire(r: pb.IRefreshItem): Decoded<Refresh> {
  const key = readKeyFields(r);
  if (!key.ok) return key;
  return { ok: true, value: { key: key.value, timeout: r.timeout ?? 0 } };
}

// ---------------------------------------------------------------------------------------------------------
// Expectations.

export function expectationKeyOf(e: Expectation | ExpectationKey): ExpectationKey {
  const key: ExpectationKey = { family: e.family, tuple: syncedTuple(e.tuple) };
  if (e.zone !== undefined) key.zone = e.zone;
  return key;
}

interface ExpKeyFieldsOut {
  tuple?: Uint8Array | null;
  tupleExt?: pb.ITuple | null;
  zone?: number | null;
  family?: number | null;
}

function writeExpKeyFields(out: ExpKeyFieldsOut, family: number, tuple: Tuple, zone: number | undefined): void {
  const t = encodeTuple(tuple, true);
  if (t.packed) out.tuple = t.packed;
  else out.tupleExt = t.ext!;
  if (zone !== undefined) out.zone = zone;
  if (family !== impliedFamily({ packed: t.packed, ext: t.ext })) out.family = family;
}

function readExpKeyFields(k: ExpKeyFieldsOut): Decoded<ExpectationKey> {
  const fields = { packed: k.tuple, ext: k.tupleExt };
  const tuple = decodeTuple(fields);
  if (!tuple) return drop('bad_payload', hasTuple(k.tuple, k.tupleExt) ? 'malformed expected tuple' : 'missing expected tuple');
  const key: ExpectationKey = { family: k.family ?? impliedFamily(fields), tuple };
  if (k.zone != null) key.zone = k.zone;
  return { ok: true, value: key };
}

export function expectationKeyToWire(key: ExpectationKey): pb.IExpectationKey {
  const k: pb.IExpectationKey = {};
  writeExpKeyFields(k, key.family, key.tuple, key.zone);
  return k;
}

/** Receive path: never throws. */
export function expectationKeyFromWire(k: pb.IExpectationKey): Decoded<ExpectationKey> {
  return readExpKeyFields(k);
}

/** Send path; throws CTS_ERR_WIRE_ENCODE like flowToEntry. */
export function expectationToWire(e: Expectation): pb.IExpectation {
  const x: pb.IExpectation = {};
  writeExpKeyFields(x, e.family, e.tuple, e.zone);
  const m = encodeTuple(e.master, true);
  if (m.packed) x.master = m.packed;
  else x.masterExt = m.ext!;
  const k = encodeTuple(e.mask, true);
  if (k.packed) x.mask = k.packed;
  else x.maskExt = k.ext!;
  if (e.timeout !== undefined) x.timeout = e.timeout;
  if (e.flags !== undefined) x.flags = e.flags;
  if (e.class !== undefined) x.class = e.class;
  if (e.helper !== undefined) x.helper = e.helper;
  if (e.fn !== undefined) x.fn = e.fn;
  if (e.nat) {
    const t = encodeTuple(e.nat.tuple, true);
    x.nat = { dir: e.nat.dir };
    if (t.packed) x.nat.tuple = t.packed;
    else x.nat.tupleExt = t.ext!;
  }
  return x;
}

/** Receive path: never throws. */
export function expectationFromWire(x: pb.IExpectation): Decoded<Expectation> {
  const key = readExpKeyFields(x);
  if (!key.ok) return key;
  const master = decodeTuple({ packed: x.master, ext: x.masterExt });
  if (!master) return drop('bad_payload', 'malformed or missing expectation master tuple');
  const mask = decodeTuple({ packed: x.mask, ext: x.maskExt });
  if (!mask) return drop('bad_payload', 'malformed or missing expectation mask');
  const e: Expectation = { family: key.value.family, master, tuple: key.value.tuple, mask };
  if (key.value.zone !== undefined) e.zone = key.value.zone;
  if (x.timeout != null) e.timeout = x.timeout;
  if (x.flags != null) e.flags = x.flags;
  if (x.class != null) e.class = x.class;
  if (x.helper != null) e.helper = x.helper;
  if (x.fn != null) e.fn = x.fn;
  if (x.nat) {
    const t = decodeTuple({ packed: x.nat.tuple, ext: x.nat.tupleExt });
    if (!t) return drop('bad_payload', 'malformed expectation NAT tuple');
    e.nat = { dir: x.nat.dir ?? 0, tuple: t };
  }
  return { ok: true, value: e };
}
