// Owns the in-place read of the common received frame: an Envelope of version, cluster id, node id, seq, ack and an
// Upsert whose entries all have the plain shape EntryBatch.addPlain writes, read without protobufjs objects.
//
// It accepts a strict subset of what protobufjs decodes: canonical tags of the expected wire types, each field at
// most once, varints protobufjs reads to the same value, nothing unknown. For that subset Envelope.decode plus
// entryToFlow would succeed and yield exactly the values read here; for anything else (a NAT'd entry, a newer
// peer's extra field, a truncated or corrupted frame) the scan says no and the caller takes the protobufjs path,
// which decides what is dropped and why. The frame's size and MAC are checked before (envelope.ts checkFrame).
import type { PlainFlow } from '../kernel/flow-codec.js';
import { FRAME_HEADER_BYTES } from './envelope.js';

/** One plain Entry read in place: PlainFlow's fields (id always -1) plus where its packed tuple is, and zones. */
export interface PlainWireEntry extends PlainFlow {
  /** The packed original tuple (tuple.ts layout) is buf[tupleAt .. tupleAt + tupleLen). */
  tupleAt: number;
  tupleLen: number;
  /** CTA_TUPLE_ZONE of the original and reply tuples, -1 = none. `zone` is CTA_ZONE. */
  origZone: number;
  replyZone: number;
}

export function newPlainWireEntry(): PlainWireEntry {
  return {
    family: 0, proto: -1, addrLen: 0, srcAt: -1, dstAt: -1, sport: -1, dport: -1, zone: -1, status: 0, timeout: -1,
    mark: 0, id: -1, protoinfo: false, tcpState: -1, wscaleOrig: -1, wscaleReply: -1, flagsOrig: -1, flagsReply: -1,
    synproxy: false, isn: 0, its: 0, tsoff: 0, tupleAt: -1, tupleLen: 0, origZone: -1, replyZone: -1,
  };
}

/** An Upsert frame read in place (scanPlainUpsert); reused frame after frame. Offsets point into the frame. */
export class PlainUpsert {
  version = 0;
  clusterAt = -1;
  clusterLen = 0;
  nodeAt = -1;
  nodeLen = 0;
  seq = 0;
  ack = 0;
  bulkId = 0;
  authoritative = false;
  /**
   * Entries: entry i is buf[entryAt[i] .. entryEnd[i]), each a plain one, read once by the scan into the columns
   * below (load() gives it back as a PlainWireEntry): applying it then costs no second walk of its bytes.
   */
  count = 0;
  entryAt = new Int32Array(1024);
  entryEnd = new Int32Array(1024);
  private cols = new Float64Array(1024 * COLS);
  /** rebornAt[i] = 1 when Upsert.reborn lists entry i. */
  rebornAt = new Uint8Array(1024);
  private reborn: number[] = [];

  reset(): void {
    this.version = 0;
    this.clusterAt = -1;
    this.clusterLen = 0;
    this.nodeAt = -1;
    this.nodeLen = 0;
    this.seq = 0;
    this.ack = 0;
    this.bulkId = 0;
    this.authoritative = false;
    this.count = 0;
    this.reborn.length = 0;
  }

  /** Appends the entry at buf[at .. end) that readPlainEntry just read into `e`. */
  addEntry(at: number, end: number, e: PlainWireEntry): void {
    const n = this.count;
    if (n === this.entryAt.length) {
      const a = new Int32Array(2 * n);
      a.set(this.entryAt);
      this.entryAt = a;
      const b = new Int32Array(2 * n);
      b.set(this.entryEnd);
      this.entryEnd = b;
      const c = new Float64Array(2 * n * COLS);
      c.set(this.cols);
      this.cols = c;
    }
    this.entryAt[n] = at;
    this.entryEnd[n] = end;
    const c = this.cols;
    const o = n * COLS;
    c[o] = e.tupleAt;
    c[o + 1] = e.tupleLen;
    c[o + 2] = e.zone;
    c[o + 3] = e.origZone;
    c[o + 4] = e.replyZone;
    c[o + 5] = e.status;
    c[o + 6] = e.timeout;
    c[o + 7] = e.mark;
    c[o + 8] = e.tcpState < 0 ? -1 : e.tcpState | ((e.wscaleOrig + 1) << 4) | ((e.wscaleReply + 1) << 8) | ((e.flagsOrig + 1) << 12) | ((e.flagsReply + 1) << 19);
    c[o + 9] = e.synproxy ? 1 : 0;
    c[o + 10] = e.isn;
    c[o + 11] = e.its;
    c[o + 12] = e.tsoff;
    this.count = n + 1;
  }

  /** Entry i as readPlainEntry read it, into out (buf: the frame scanned). */
  load(buf: Uint8Array, i: number, out: PlainWireEntry): void {
    const c = this.cols;
    const o = i * COLS;
    const at = c[o]!;
    const len = c[o + 1]!;
    out.tupleAt = at;
    out.tupleLen = len;
    out.zone = c[o + 2]!;
    out.origZone = c[o + 3]!;
    out.replyZone = c[o + 4]!;
    out.status = c[o + 5]!;
    out.timeout = c[o + 6]!;
    out.mark = c[o + 7]!;
    setTcp(out, c[o + 8]!);
    out.synproxy = c[o + 9] === 1;
    out.isn = c[o + 10]!;
    out.its = c[o + 11]!;
    out.tsoff = c[o + 12]!;
    setTuple(buf, at, len, out);
  }

  addReborn(i: number): void {
    this.reborn.push(i);
  }

  /** Turns the reborn list into rebornAt marks (indexes past the entries are ignored, as a Set lookup would). */
  markReborn(): void {
    if (this.rebornAt.length < this.count) this.rebornAt = new Uint8Array(this.entryAt.length);
    this.rebornAt.fill(0, 0, this.count);
    for (const i of this.reborn) if (i < this.count) this.rebornAt[i] = 1;
  }
}

/** Columns per entry in PlainUpsert: tuple at/len, zones (3), status, timeout, mark, packed tcp, synproxy (4). */
const COLS = 13;

// The read cursor (single-threaded; no re-entry).
let p = 0;

/**
 * A uint32 varint as protobufjs reads it, at most 5 bytes; -1 when it runs past `end` or is one protobufjs would
 * read differently (longer, or a fifth byte with bits above the 32nd).
 */
function u32(buf: Uint8Array, end: number): number {
  if (p >= end) return -1;
  let b = buf[p++]!;
  if (b < 0x80) return b;
  let v = b & 0x7f;
  if (p >= end) return -1;
  b = buf[p++]!;
  v |= (b & 0x7f) << 7;
  if (b < 0x80) return v;
  if (p >= end) return -1;
  b = buf[p++]!;
  v |= (b & 0x7f) << 14;
  if (b < 0x80) return v;
  if (p >= end) return -1;
  b = buf[p++]!;
  v |= (b & 0x7f) << 21;
  if (b < 0x80) return v;
  if (p >= end) return -1;
  b = buf[p++]!;
  if (b > 15) return -1;
  return v + b * 0x10000000;
}

/** A uint64 varint of at most 7 bytes (< 2^49, exact as a JS number, as protobufjs gives it); -1 otherwise. */
function u49(buf: Uint8Array, end: number): number {
  let v = 0;
  let m = 1;
  for (let i = 0; i < 7; i++) {
    if (p >= end) return -1;
    const b = buf[p++]!;
    v += (b & 0x7f) * m;
    if (b < 0x80) return v;
    m *= 128;
  }
  return -1;
}

/** A length prefix whose bytes lie within `end`: the end offset of the field's bytes, or -1. */
function lengthEnd(buf: Uint8Array, end: number): number {
  const n = u32(buf, end);
  if (n < 0 || n > end - p) return -1;
  return p + n;
}

// Entry field bits (each field at most once).
const F_ORIG = 1;
const F_ZONE = 2;
const F_ORIG_ZONE = 4;
const F_STATUS = 8;
const F_TIMEOUT = 16;
const F_MARK = 32;
const F_TCP = 64;
const F_REPLY_ZONE = 128;
const F_SYNPROXY = 256;

/** Packed TCP protoinfo values entryToFlow accepts (entry.ts TCP_PACKED_LIMIT). */
const TCP_PACKED_LIMIT = 1 << 26;

/**
 * Reads the Entry in buf[start .. end) into out when it has the plain shape: a packed original tuple (not ICMP),
 * optional zones (< 2^16), status, timeout, mark, packed TCP protoinfo, reply zone and synproxy, nothing else,
 * and entryToFlow would accept it. False otherwise (out is then partly written).
 */
export function readPlainEntry(buf: Uint8Array, start: number, end: number, out: PlainWireEntry): boolean {
  let seen = 0;
  let tcp = -1;
  out.zone = -1;
  out.origZone = -1;
  out.replyZone = -1;
  out.status = 0;
  out.timeout = -1;
  out.mark = 0;
  out.synproxy = false;
  out.isn = 0;
  out.its = 0;
  out.tsoff = 0;
  p = start;
  while (p < end) {
    const tag = buf[p++]!;
    let bit: number;
    let v: number;
    switch (tag) {
      case 0x0a: {
        // orig = 1, bytes
        bit = F_ORIG;
        const e = lengthEnd(buf, end);
        if (e < 0) return false;
        out.tupleAt = p;
        out.tupleLen = e - p;
        p = e;
        break;
      }
      case 0xc2: {
        // synproxy = 24, message: two-byte tag
        if (p >= end || buf[p++] !== 0x01) return false;
        bit = F_SYNPROXY;
        const e = lengthEnd(buf, end);
        if (e < 0 || !readSynproxy(buf, e, out)) return false;
        break;
      }
      case 0x18:
      case 0x20:
      case 0x30:
      case 0x38:
      case 0x40:
      case 0x48:
      case 0x60:
        v = u32(buf, end);
        if (v < 0) return false;
        if (tag === 0x18) (bit = F_ZONE), (out.zone = v);
        else if (tag === 0x20) (bit = F_ORIG_ZONE), (out.origZone = v);
        else if (tag === 0x30) (bit = F_STATUS), (out.status = v);
        else if (tag === 0x38) (bit = F_TIMEOUT), (out.timeout = v);
        else if (tag === 0x40) (bit = F_MARK), (out.mark = v);
        else if (tag === 0x48) (bit = F_TCP), (tcp = v);
        else (bit = F_REPLY_ZONE), (out.replyZone = v);
        break;
      default:
        return false;
    }
    if (seen & bit) return false;
    seen |= bit;
  }
  if (!(seen & F_ORIG) || out.zone > 0xffff || out.origZone > 0xffff || out.replyZone > 0xffff) return false;
  const len = out.tupleLen;
  const at = out.tupleAt;
  const proto = buf[at]!;
  if (!(len === 9 || len === 13 || len === 33 || len === 37) || proto === 1 || proto === 58) return false;
  if (tcp >= TCP_PACKED_LIMIT) return false;
  setTuple(buf, at, len, out);
  setTcp(out, tcp);
  out.id = -1;
  return true;
}

/** The tuple fields of out from a packed tuple of a valid length (9, 13, 33, 37). */
function setTuple(buf: Uint8Array, at: number, len: number, out: PlainWireEntry): void {
  const alen = len < 33 ? 4 : 16;
  out.family = alen === 4 ? 2 : 10;
  out.proto = buf[at]!;
  out.addrLen = alen;
  out.srcAt = at + 1;
  out.dstAt = at + 1 + alen;
  if (len === 1 + 2 * alen) {
    out.sport = -1;
    out.dport = -1;
  } else {
    const o = at + 1 + 2 * alen;
    out.sport = (buf[o]! << 8) | buf[o + 1]!;
    out.dport = (buf[o + 2]! << 8) | buf[o + 3]!;
  }
}

/** The TCP fields of out from a packed TCP protoinfo value below TCP_PACKED_LIMIT, or -1 for none. */
function setTcp(out: PlainWireEntry, tcp: number): void {
  out.protoinfo = tcp >= 0;
  if (tcp >= 0) {
    // entry.ts unpackTcp's layout: state 4 bits, then wscale orig/reply, flags orig/reply, each + 1 (0 = absent)
    out.tcpState = tcp & 0xf;
    const wo = (tcp >>> 4) & 0xf;
    const wr = (tcp >>> 8) & 0xf;
    const fo = (tcp >>> 12) & 0x7f;
    const fr = (tcp >>> 19) & 0x7f;
    out.wscaleOrig = wo - 1;
    out.wscaleReply = wr - 1;
    out.flagsOrig = fo - 1;
    out.flagsReply = fr - 1;
  } else {
    out.tcpState = -1;
    out.wscaleOrig = -1;
    out.wscaleReply = -1;
    out.flagsOrig = -1;
    out.flagsReply = -1;
  }
}

/** Synproxy { isn = 1, its = 2, tsoff = 3 } in buf[p .. end); absent fields are 0. */
function readSynproxy(buf: Uint8Array, end: number, out: PlainWireEntry): boolean {
  let seen = 0;
  while (p < end) {
    const tag = buf[p++]!;
    if (tag !== 0x08 && tag !== 0x10 && tag !== 0x18) return false;
    const bit = 1 << (tag >>> 3);
    if (seen & bit) return false;
    seen |= bit;
    const v = u32(buf, end);
    if (v < 0) return false;
    if (tag === 0x08) out.isn = v;
    else if (tag === 0x10) out.its = v;
    else out.tsoff = v;
  }
  out.synproxy = true;
  return true;
}

/** The Upsert message in buf[p .. end): entries (each checked with readPlainEntry), bulk id, reborn, authoritative. */
function readUpsert(buf: Uint8Array, end: number, out: PlainUpsert, scratch: PlainWireEntry): boolean {
  let seen = 0;
  while (p < end) {
    const tag = buf[p++]!;
    if (tag === 0x0a) {
      // entries = 1: repeated, so no once-only rule
      const e = lengthEnd(buf, end);
      if (e < 0) return false;
      const at = p;
      if (!readPlainEntry(buf, at, e, scratch)) return false;
      out.addEntry(at, e, scratch);
      p = e;
      continue;
    }
    const bit = 1 << (tag >>> 3);
    if (seen & bit) return false;
    seen |= bit;
    if (tag === 0x18) {
      out.bulkId = u49(buf, end);
      if (out.bulkId < 0) return false;
    } else if (tag === 0x22) {
      // reborn = 4, packed
      const e = lengthEnd(buf, end);
      if (e < 0) return false;
      while (p < e) {
        const v = u32(buf, e);
        if (v < 0) return false;
        out.addReborn(v);
      }
    } else if (tag === 0x28) {
      const v = u32(buf, end);
      if (v < 0) return false;
      out.authoritative = v !== 0;
    } else return false;
  }
  return true;
}

/**
 * Reads the Envelope of a checked frame (buf[FRAME_HEADER_BYTES .. end), see envelope.ts checkFrame) into out when
 * it is an Upsert of the plain shape (see the file comment). False for anything else: decode it with protobufjs.
 * `scratch` is overwritten. The caller still compares cluster and node id (clusterAt/nodeAt) and the version.
 */
export function scanPlainUpsert(buf: Uint8Array, end: number, out: PlainUpsert, scratch: PlainWireEntry): boolean {
  out.reset();
  let seen = 0;
  p = FRAME_HEADER_BYTES;
  while (p < end) {
    const tag = buf[p++]!;
    let bit: number;
    if (tag === 0x08) {
      bit = 2;
      out.version = u32(buf, end);
      if (out.version < 0) return false;
    } else if (tag === 0x12 || tag === 0x1a) {
      bit = tag === 0x12 ? 4 : 8;
      const e = lengthEnd(buf, end);
      if (e < 0) return false;
      if (tag === 0x12) (out.clusterAt = p), (out.clusterLen = e - p);
      else (out.nodeAt = p), (out.nodeLen = e - p);
      p = e;
    } else if (tag === 0x20 || tag === 0x28) {
      bit = tag === 0x20 ? 16 : 32;
      const v = u49(buf, end);
      if (v < 0) return false;
      if (tag === 0x20) out.seq = v;
      else out.ack = v;
    } else if (tag === 0x8a) {
      // upsert = 17: two-byte tag
      if (p >= end || buf[p++] !== 0x01) return false;
      bit = 64;
      const e = lengthEnd(buf, end);
      if (e < 0 || !readUpsert(buf, e, out, scratch)) return false;
      p = e;
    } else return false;
    if (seen & bit) return false;
    seen |= bit;
  }
  if (!(seen & 64) || out.clusterAt < 0 || out.nodeAt < 0) return false;
  out.markReborn();
  return true;
}

/** True when buf[at .. at + len) holds exactly the bytes of `want`. */
export function bytesEqual(buf: Uint8Array, at: number, len: number, want: Uint8Array): boolean {
  if (len !== want.length) return false;
  for (let i = 0; i < len; i++) if (buf[at + i] !== want[i]) return false;
  return true;
}
