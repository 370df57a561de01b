// The compact flow store under the local and peer tables: key → slot, hot fields in typed-array columns, rare fields packed.
//
// Why this shape: a Map<string, Flow> of plain objects costs hundreds of bytes per entry. Here an entry is its key
// string (in the keys column), 8-16 bytes of hash index (key → small integer), ~57 bytes of columns, and, only
// when the flow has anything unusual (NAT'd reply tuple, labels, helper, master, ...), one packed latin1 string.
// Flows are decoded on demand. Every set/delete keeps a per-bucket XOR of entry hashes, so a digest is O(buckets).

import { randomBytes } from 'node:crypto';
import type { Flow, NatRange, ProtoInfo, RawAttr, SeqAdj, Tuple } from '../kernel/types.js';
import type { PlainFlow } from '../kernel/flow-codec.js';
import { ipToText, parseIpInto } from '../kernel/addr.js';
import { decodeKey, fmix32, keyHash } from './key.js';

// Presence bits: a decoded flow has exactly the optional fields the stored one had.
const P_STATUS = 1;
const P_MARK = 2;
const P_TIMEOUT = 4;
const P_PROTOINFO = 8;
const P_TCP = 16;
const P_WSO = 32;
const P_WSR = 64;
const P_FLO = 128;
const P_FLR = 256;
const P_ID = 512;
const P_REPLY_INV = 1024; // reply tuple is the inverse of the original: not stored

// Tags of the packed rare-field string. Tags below T_INSIGNIFICANT are part of the entry hash (what the standby
// must hold); the others are kept for a faithful round trip but differ between nodes or do not matter to a commit.
const T_REPLY = 1;
const T_LABELS = 2;
const T_HELPER = 3;
const T_NAT_SRC = 4;
const T_NAT_DST = 5;
const T_SEQADJ_ORIG = 6;
const T_SEQADJ_REPLY = 7;
const T_SYNPROXY = 8;
const T_MASTER = 9;
const T_SCTP = 10;
const T_DCCP = 11;
const T_LABELS_MASK = 20;
const T_TCP_MASKS = 21;
const T_ORIG_UNKNOWN = 22;
const T_REPLY_UNKNOWN = 23;
const T_PROTO_UNKNOWN = 24;
const T_TCP_UNKNOWN = 25;
const T_FLOW_UNKNOWN = 26;
const T_SCTP_UNKNOWN = 27;
const T_DCCP_UNKNOWN = 28;

/** Status bits the kernel flips on its own (dying, offload): not a change the standby needs. */
const STATUS_INSIGNIFICANT = (1 << 9) | (1 << 14) | (1 << 15); // IPS_DYING | IPS_OFFLOAD | IPS_HW_OFFLOAD

const NO_TIMEOUT = 0xffffffff;
/** store()'s `to` for a set() that keeps the entry's timeout as it is. */
const KEEP_TIMEOUT = -1;

/** What a set() changed, as bit flags. */
export const SET_ADDED = 1;
/** Something the standby needs changed (entry hash differs): re-send soon. */
export const SET_SIGNIFICANT = 2;
/** Only the timeout, TCP window flags/scale, id or round-trip-only attributes changed: a refresh can wait. */
export const SET_MINOR = 4;

// ---- packing -----------------------------------------------------------------------------------------------

/** A growable scratch writer/reader; one per module, reused by every call (single-threaded, no re-entry). */
class Scratch {
  buf = Buffer.allocUnsafe(1024);
  pos = 0;

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const b = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(b, 0, 0, this.pos);
    this.buf = b;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v & 0xff;
  }
  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16BE(v & 0xffff, this.pos);
    this.pos += 2;
  }
  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
  }
  bytes(b: Buffer): void {
    this.ensure(b.length);
    b.copy(this.buf, this.pos);
    this.pos += b.length;
  }
  /** Address: 4 or 16 raw bytes behind a length byte, or 0x80 + length + text for something that is not one. */
  addr(s: string): void {
    this.ensure(17);
    const n = parseIpInto(s, this.buf, this.pos + 1);
    if (n !== 0) {
      this.buf[this.pos] = n;
      this.pos += 1 + n;
      return;
    }
    this.u8(0x80);
    this.text(String(s));
  }
  text(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u16(b.length);
    this.bytes(b);
  }
}

const w = new Scratch();
const r = new Scratch();

function rU16(): number {
  const v = r.buf.readUInt16BE(r.pos);
  r.pos += 2;
  return v;
}
function rU32(): number {
  const v = r.buf.readUInt32BE(r.pos);
  r.pos += 4;
  return v;
}
function rBytes(n: number): Buffer {
  const b = Buffer.from(r.buf.subarray(r.pos, r.pos + n));
  r.pos += n;
  return b;
}
function rText(): string {
  const n = rU16();
  const s = r.buf.toString('utf8', r.pos, r.pos + n);
  r.pos += n;
  return s;
}
function rAddr(): string {
  const n = r.buf[r.pos++]!;
  if (n === 0x80) return rText();
  const s = ipToText(r.buf, r.pos, n as 4 | 16);
  r.pos += n;
  return s;
}

function packUnknown(tag: number, list: RawAttr[] | undefined): void {
  if (list === undefined) return;
  w.u8(tag);
  w.u16(list.length);
  for (const a of list) {
    w.u16(a.type);
    w.u8(a.nested ? 1 : 0);
    w.u16(a.data.length);
    w.bytes(a.data);
  }
}
function unpackUnknown(): RawAttr[] {
  const n = rU16();
  const list: RawAttr[] = [];
  for (let i = 0; i < n; i++) {
    const type = rU16();
    const nested = r.buf[r.pos++] === 1;
    const data = rBytes(rU16());
    list.push({ type, nested, data });
  }
  return list;
}

// Tuple field flags inside packed tuples.
const TF_SPORT = 1;
const TF_DPORT = 2;
const TF_ICMP_ID = 4;
const TF_ICMP_TYPE = 8;
const TF_ICMP_CODE = 16;
const TF_ZONE = 32;
const TF_UNKNOWN = 64;

function packTuple(t: Tuple, full: boolean): void {
  w.addr(t.src);
  w.addr(t.dst);
  w.u8(t.proto);
  let f = 0;
  if (t.sport !== undefined) f |= TF_SPORT;
  if (t.dport !== undefined) f |= TF_DPORT;
  if (t.icmpId !== undefined) f |= TF_ICMP_ID;
  if (t.icmpType !== undefined) f |= TF_ICMP_TYPE;
  if (t.icmpCode !== undefined) f |= TF_ICMP_CODE;
  if (full && t.zone !== undefined) f |= TF_ZONE;
  if (full && t.unknown !== undefined) f |= TF_UNKNOWN;
  w.u8(f);
  if (f & TF_SPORT) w.u16(t.sport!);
  if (f & TF_DPORT) w.u16(t.dport!);
  if (f & TF_ICMP_ID) w.u16(t.icmpId!);
  if (f & TF_ICMP_TYPE) w.u8(t.icmpType!);
  if (f & TF_ICMP_CODE) w.u8(t.icmpCode!);
  if (f & TF_ZONE) w.u16(t.zone!);
  if (f & TF_UNKNOWN) packUnknown(0, t.unknown);
}
function unpackTuple(): Tuple {
  const src = rAddr();
  const dst = rAddr();
  const t: Tuple = { src, dst, proto: r.buf[r.pos++]! };
  const f = r.buf[r.pos++]!;
  if (f & TF_SPORT) t.sport = rU16();
  if (f & TF_DPORT) t.dport = rU16();
  if (f & TF_ICMP_ID) t.icmpId = rU16();
  if (f & TF_ICMP_TYPE) t.icmpType = r.buf[r.pos++];
  if (f & TF_ICMP_CODE) t.icmpCode = r.buf[r.pos++];
  if (f & TF_ZONE) t.zone = rU16();
  if (f & TF_UNKNOWN) {
    r.pos++; // tag byte written by packUnknown
    t.unknown = unpackUnknown();
  }
  return t;
}

const NR_MIN_IP = 1;
const NR_MAX_IP = 2;
const NR_MIN_PORT = 4;
const NR_MAX_PORT = 8;

function packNat(tag: number, n: NatRange | undefined): void {
  if (n === undefined) return;
  w.u8(tag);
  const f =
    (n.minIp !== undefined ? NR_MIN_IP : 0) |
    (n.maxIp !== undefined ? NR_MAX_IP : 0) |
    (n.minPort !== undefined ? NR_MIN_PORT : 0) |
    (n.maxPort !== undefined ? NR_MAX_PORT : 0);
  w.u8(f);
  if (f & NR_MIN_IP) w.addr(n.minIp!);
  if (f & NR_MAX_IP) w.addr(n.maxIp!);
  if (f & NR_MIN_PORT) w.u16(n.minPort!);
  if (f & NR_MAX_PORT) w.u16(n.maxPort!);
}
function unpackNat(): NatRange {
  const f = r.buf[r.pos++]!;
  const n: NatRange = {};
  if (f & NR_MIN_IP) n.minIp = rAddr();
  if (f & NR_MAX_IP) n.maxIp = rAddr();
  if (f & NR_MIN_PORT) n.minPort = rU16();
  if (f & NR_MAX_PORT) n.maxPort = rU16();
  return n;
}

function packSeqAdj(tag: number, s: SeqAdj | undefined): void {
  if (s === undefined) return;
  w.u8(tag);
  w.u32(s.correctionPos);
  w.u32(s.offsetBefore);
  w.u32(s.offsetAfter);
}

/** The reply type the kernel derives for an ICMP request (its invmap), or -1. */
function invIcmpType(proto: number, type: number): number {
  if (proto === 1) {
    switch (type) {
      case 8: return 0; // echo ↔ echo reply
      case 0: return 8;
      case 13: return 14; // timestamp
      case 14: return 13;
      case 15: return 16; // info request
      case 16: return 15;
      case 17: return 18; // address mask
      case 18: return 17;
    }
  } else if (proto === 58) {
    switch (type) {
      case 128: return 129; // echo request ↔ reply
      case 129: return 128;
      case 139: return 140; // node information query ↔ response
      case 140: return 139;
    }
  }
  return -1;
}

/** True if the reply tuple is exactly what the kernel derives from the original without NAT: then it is not stored. */
function isInverse(o: Tuple, rt: Tuple): boolean {
  if (rt.proto !== o.proto || rt.src !== o.dst || rt.dst !== o.src) return false;
  if (rt.sport !== o.dport || rt.dport !== o.sport) return false;
  if (rt.icmpId !== o.icmpId || rt.icmpCode !== o.icmpCode) return false;
  if (o.icmpType === undefined) return rt.icmpType === undefined;
  return rt.icmpType === invIcmpType(o.proto, o.icmpType);
}

function invertTuple(o: Tuple): Tuple {
  const t: Tuple = { src: o.dst, dst: o.src, proto: o.proto };
  if (o.dport !== undefined) t.sport = o.dport;
  if (o.sport !== undefined) t.dport = o.sport;
  if (o.icmpId !== undefined) t.icmpId = o.icmpId;
  if (o.icmpType !== undefined) t.icmpType = invIcmpType(o.proto, o.icmpType);
  if (o.icmpCode !== undefined) t.icmpCode = o.icmpCode;
  return t;
}

/**
 * The packed form of nothing but an all-zero synproxy, which the kernel reports for every entry created through
 * ctnetlink (bursts, a commit's entries): one shared string instead of one per entry.
 */
const ZERO_SYNPROXY = String.fromCharCode(T_SYNPROXY) + '\0'.repeat(12);

/** A PlainFlow value as a column stores it (absent, -1, as 0). */
function orZero(v: number): number {
  return v < 0 ? 0 : v;
}

/** The presence bits setPlain() stores for f, all but P_TIMEOUT. */
function plainPresent(f: PlainFlow): number {
  let p = P_REPLY_INV; // scanPlainFlow takes only replies that invert the original
  if (f.status >= 0) p |= P_STATUS;
  if (f.mark >= 0) p |= P_MARK;
  if (f.protoinfo) p |= P_PROTOINFO;
  if (f.id >= 0) p |= P_ID;
  if (f.tcpState >= 0) {
    p |= P_TCP;
    if (f.wscaleOrig >= 0) p |= P_WSO;
    if (f.wscaleReply >= 0) p |= P_WSR;
    if (f.flagsOrig >= 0) p |= P_FLO;
    if (f.flagsReply >= 0) p |= P_FLR;
  }
  return p;
}

function isZeroSynproxy(buf: Buffer, start: number, end: number): boolean {
  if (end - start !== 13 || buf[start] !== T_SYNPROXY) return false;
  for (let i = start + 1; i < end; i++) if (buf[i] !== 0) return false;
  return true;
}

// ---- hashing -----------------------------------------------------------------------------------------------

let hashA = 0;
let hashB = 0;

/** Two independent 32-bit murmur3-style lanes over buf[0..len): 64 bits per entry, so digest collisions are moot. */
function hash64(buf: Buffer, len: number): void {
  let a = 0x9747b28c ^ len;
  let b = 0x5bd1e995 ^ len;
  let i = 0;
  for (; i + 4 <= len; i += 4) {
    const k = buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24);
    let ka = Math.imul(k, 0xcc9e2d51);
    ka = Math.imul((ka << 15) | (ka >>> 17), 0x1b873593);
    a ^= ka;
    a = (Math.imul((a << 13) | (a >>> 19), 5) + 0xe6546b64) | 0;
    let kb = Math.imul(k, 0x85ebca77);
    kb = Math.imul((kb << 13) | (kb >>> 19), 0xc2b2ae3d);
    b ^= kb;
    b = (Math.imul((b << 15) | (b >>> 17), 9) + 0x165667b1) | 0;
  }
  let k = 0;
  for (let s = 0; i < len; i++, s += 8) k |= buf[i]! << s;
  hashA = fmix32(a ^ Math.imul(k, 0xcc9e2d51));
  hashB = fmix32(b ^ Math.imul(k, 0x85ebca77) ^ 0x27d4eb2f);
}

// ---- the table ---------------------------------------------------------------------------------------------

export interface FlowTableOptions {
  /** Slots allocated up front; the columns double when full. Default 1024. */
  initialCapacity?: number;
  /** Digest buckets kept up to date on every change; a power of two. Default 4096 (32 KiB). */
  digestBuckets?: number;
}

/** The hash cache's starting value (see FlowTable.hashKey). */
const EMPTY_KEY_HASH = keyHash('');

/** Entry metadata as one object (for tests, the control socket, and anything off the hot path). */
export interface EntryMeta {
  version: number;
  born: number;
  timeout: number | undefined; // seconds, as last reported
  reportedAt: number; // Clock ms when that timeout was reported
  dirty: number;
}

export class FlowTable {
  // key → slot: open addressing with linear probing, at most half full, two words per position: slot + 1 (0 = empty)
  // and keyHash(key). A Map<string, number> costs a lookup and an insert per new key, each chasing a chain of key
  // strings; here a probe reads one pair of words and touches a key string only when the full hashes agree, and the
  // hash is the one the digest buckets need anyway.
  private index = new Uint32Array(0);
  private mask = 0; // positions - 1
  // Where a hash starts probing: keyHash is the same on every node and anyone who can open connections through
  // the firewall chooses keys, so unseeded low bits would let them pile flows into one probe run (each insert
  // then O(run)). A secret per-table seed keeps positions unpredictable, as V8 seeds its own Map hashes.
  // Read as an int32, which is all `h ^ seed` uses: always a small integer to V8, so every table has the same
  // object shape (a u32 seed above 2^31 in one table but not in another made code compiled for one fail on the other)
  private readonly seed = randomBytes(4).readInt32LE(0);
  private count = 0;
  // one-entry cache of keyHash: slotOf() then set() hash the same key once. Starts as a true pair ('' and its
  // hash): always a string and a number, so V8 sees one shape, and correct even for an empty key
  private hashKey = '';
  private hashVal = EMPTY_KEY_HASH;
  private cap = 0;
  private hi = 0; // slots [0, hi) have been used at least once
  private free: number[] = [];
  private keys: (string | undefined)[] = [];
  private extra: (string | undefined)[] = [];
  private present = new Uint16Array(0);
  private hashesA = new Uint32Array(0);
  private hashesB = new Uint32Array(0);
  private statuses = new Uint32Array(0);
  private marks = new Uint32Array(0);
  private ids = new Uint32Array(0);
  private timeouts = new Uint32Array(0);
  private reported = new Float64Array(0);
  private versions = new Float64Array(0);
  private borns = new Float64Array(0);
  private tcp = new Uint8Array(0); // 5 per slot: state, wscale orig/reply, flags orig/reply
  private dirtyBits = new Uint8Array(0);
  private gens = new Uint8Array(0);
  private gen = 0;
  private sweeping = false;
  private setSlot = -1;
  private readonly nBuckets: number;
  private readonly bucketShift: number;
  private readonly buckets: Uint32Array;

  constructor(opts: FlowTableOptions = {}) {
    const nb = opts.digestBuckets ?? 4096;
    if (!(nb >= 1 && nb <= 1 << 24 && (nb & (nb - 1)) === 0)) {
      throw new RangeError(`digestBuckets must be a power of two between 1 and 2^24, got ${nb}`);
    }
    this.nBuckets = nb;
    this.bucketShift = 32 - Math.log2(nb);
    this.buckets = new Uint32Array(2 * nb);
    this.grow(Math.max(16, opts.initialCapacity ?? 1024));
  }

  get size(): number {
    return this.count;
  }

  /** Digest buckets maintained incrementally (digest(n) for n dividing this is O(n)). */
  get digestBuckets(): number {
    return this.nBuckets;
  }

  private grow(cap: number): void {
    const g8 = (a: Uint8Array, n: number) => { const b = new Uint8Array(n); b.set(a); return b; };
    const g16 = (a: Uint16Array) => { const b = new Uint16Array(cap); b.set(a); return b; };
    const g32 = (a: Uint32Array) => { const b = new Uint32Array(cap); b.set(a); return b; };
    const g64 = (a: Float64Array) => { const b = new Float64Array(cap); b.set(a); return b; };
    this.present = g16(this.present);
    this.hashesA = g32(this.hashesA);
    this.hashesB = g32(this.hashesB);
    this.statuses = g32(this.statuses);
    this.marks = g32(this.marks);
    this.ids = g32(this.ids);
    this.timeouts = g32(this.timeouts);
    this.reported = g64(this.reported);
    this.versions = g64(this.versions);
    this.borns = g64(this.borns);
    this.tcp = g8(this.tcp, cap * 5);
    this.dirtyBits = g8(this.dirtyBits, cap);
    this.gens = g8(this.gens, cap);
    // one call instead of a push per slot: growth runs a few times per process, too rarely to be optimised code,
    // and pushing 2 x 65536 slots in the interpreter took as long as all the typed columns. New slots read undefined.
    this.keys.length = cap;
    this.extra.length = cap;
    this.cap = cap;
    let positions = 16;
    while (positions < 2 * cap) positions *= 2;
    if (positions - 1 > this.mask) this.rehash(positions);
  }

  private rehash(positions: number): void {
    const old = this.index;
    const idx = new Uint32Array(2 * positions);
    const mask = positions - 1;
    for (let i = 0; i < old.length; i += 2) {
      if (old[i] === 0) continue;
      const h = old[i + 1]!;
      let p = fmix32(h ^ this.seed) & mask;
      while (idx[2 * p] !== 0) p = (p + 1) & mask;
      idx[2 * p] = old[i]!;
      idx[2 * p + 1] = h;
    }
    this.index = idx;
    this.mask = mask;
  }

  private hashOf(key: string): number {
    if (key !== this.hashKey) {
      this.hashKey = key;
      this.hashVal = keyHash(key);
    }
    return this.hashVal;
  }

  /** The index position holding key, or -1. */
  private find(key: string, h: number): number {
    const idx = this.index;
    const mask = this.mask;
    for (let p = fmix32(h ^ this.seed) & mask; ; p = (p + 1) & mask) {
      const s = idx[2 * p]!;
      if (s === 0) return -1;
      if (idx[2 * p + 1] === h && this.keys[s - 1] === key) return p;
    }
  }

  private alloc(key: string): number {
    let slot = this.free.pop();
    if (slot === undefined) {
      if (this.hi === this.cap) this.grow(this.cap * 2);
      slot = this.hi++;
    }
    this.keys[slot] = key;
    const h = this.hashOf(key);
    const idx = this.index;
    let p = fmix32(h ^ this.seed) & this.mask;
    while (idx[2 * p] !== 0) p = (p + 1) & this.mask;
    idx[2 * p] = slot + 1;
    idx[2 * p + 1] = h;
    this.count++;
    this.hashesA[slot] = 0;
    this.hashesB[slot] = 0;
    return slot;
  }

  /** Empties position p, moving later entries of its probe run back so that no lookup stops short of them. */
  private unindex(p: number): void {
    const idx = this.index;
    const mask = this.mask;
    let hole = p;
    for (let q = (p + 1) & mask; idx[2 * q] !== 0; q = (q + 1) & mask) {
      const home = fmix32(idx[2 * q + 1]! ^ this.seed) & mask;
      // the entry at q may fill the hole unless its home lies cyclically in (hole, q]
      if (hole <= q ? home > hole && home <= q : home > hole || home <= q) continue;
      idx[2 * hole] = idx[2 * q]!;
      idx[2 * hole + 1] = idx[2 * q + 1]!;
      hole = q;
    }
    idx[2 * hole] = 0;
    idx[2 * hole + 1] = 0;
    this.count--;
  }

  /** The slot of a key, or -1. Slots are stable while the entry lives; use them for cheap column reads. */
  slotOf(key: string): number {
    const p = this.find(key, this.hashOf(key));
    return p < 0 ? -1 : this.index[2 * p]! - 1;
  }

  has(key: string): boolean {
    return this.slotOf(key) >= 0;
  }

  /** The slot the last set() wrote: saves the event path a second key lookup. */
  get lastSetSlot(): number {
    return this.setSlot;
  }

  /** SET_ADDED | SET_SIGNIFICANT when the last claim() allocated the key's slot, else 0. */
  private claimed = 0;

  /**
   * The start of set() and setPlain(): the key's slot (`known`, or looked up; allocated when absent, noted in
   * `claimed`), made the last set slot, and the key's bytes at the head of the scratch writer with `room` more.
   */
  private claim(key: string, known: number | undefined, room: number): number {
    let slot = known === undefined ? this.slotOf(key) : known;
    this.claimed = 0;
    if (slot < 0) {
      slot = this.alloc(key);
      this.claimed = SET_ADDED | SET_SIGNIFICANT;
    }
    this.setSlot = slot;
    w.pos = 0;
    w.ensure(key.length + room);
    // a key is a few dozen latin1 chars: a loop beats Buffer#write's argument checks and encoding dispatch
    const kb = w.buf;
    for (let i = 0; i < key.length; i++) kb[i] = key.charCodeAt(i);
    w.pos = key.length;
    return slot;
  }

  /**
   * Stores a flow under key (which must be flowKey(flow)). The timeout is flow.timeout, taken as reported at
   * reportedAt; a flow without one keeps none (offloaded flows are dumped without it). With keepTimeout, the
   * entry's timeout (and when it was reported) stays as it is, whatever flow.timeout says, and is not compared.
   * Returns SET_* flags.
   * A caller that has just looked the key up passes its slotOf() result (-1 = absent): on the event path every
   * hash lookup of a fresh key string counts.
   */
  set(key: string, flow: Flow, version: number, born: number, reportedAt: number, known?: number, keepTimeout = false): number {
    const slot = this.claim(key, known, 16);
    let result = this.claimed;
    const prevPresent = this.present[slot]!;
    // Hashed prefix: key (written by claim), significant status bits, mark, TCP state; then the significant packed tags.
    let p = 0;
    const status = flow.status;
    if (status !== undefined) p |= P_STATUS;
    const mark = flow.mark;
    if (mark !== undefined) p |= P_MARK;
    w.u32((status ?? 0) & ~STATUS_INSIGNIFICANT);
    w.u32(mark ?? 0);
    const pi = flow.protoinfo;
    const t = pi?.tcp;
    if (pi !== undefined) p |= P_PROTOINFO;
    w.u8(t !== undefined ? t.state : 0xff);
    const extraStart = w.pos;

    if (flow.reply !== undefined && isInverse(flow.orig, flow.reply)) p |= P_REPLY_INV;
    else if (flow.reply !== undefined) {
      w.u8(T_REPLY);
      packTuple(flow.reply, false);
    }
    if (flow.labels !== undefined) {
      w.u8(T_LABELS);
      w.u16(flow.labels.length);
      w.bytes(flow.labels);
    }
    if (flow.helper !== undefined) {
      w.u8(T_HELPER);
      w.text(flow.helper);
    }
    packNat(T_NAT_SRC, flow.natSrc);
    packNat(T_NAT_DST, flow.natDst);
    packSeqAdj(T_SEQADJ_ORIG, flow.seqAdjOrig);
    packSeqAdj(T_SEQADJ_REPLY, flow.seqAdjReply);
    if (flow.synproxy !== undefined) {
      w.u8(T_SYNPROXY);
      w.u32(flow.synproxy.isn);
      w.u32(flow.synproxy.its);
      w.u32(flow.synproxy.tsoff);
    }
    if (flow.master !== undefined) {
      w.u8(T_MASTER);
      packTuple(flow.master, true);
    }
    const sctp = pi?.sctp;
    if (sctp !== undefined) {
      w.u8(T_SCTP);
      w.u8((sctp.vtagOrig !== undefined ? 1 : 0) | (sctp.vtagReply !== undefined ? 2 : 0));
      w.u8(sctp.state);
      if (sctp.vtagOrig !== undefined) w.u32(sctp.vtagOrig);
      if (sctp.vtagReply !== undefined) w.u32(sctp.vtagReply);
    }
    const dccp = pi?.dccp;
    if (dccp !== undefined) {
      w.u8(T_DCCP);
      w.u8((dccp.role !== undefined ? 1 : 0) | (dccp.handshakeSeq !== undefined ? 2 : 0));
      w.u8(dccp.state);
      if (dccp.role !== undefined) w.u8(dccp.role);
      if (dccp.handshakeSeq !== undefined) {
        w.u32(Number((dccp.handshakeSeq >> 32n) & 0xffffffffn));
        w.u32(Number(dccp.handshakeSeq & 0xffffffffn));
      }
    }
    const sigEnd = w.pos;

    if (flow.labelsMask !== undefined) {
      w.u8(T_LABELS_MASK);
      w.u16(flow.labelsMask.length);
      w.bytes(flow.labelsMask);
    }
    if (t !== undefined && (t.flagsOrigMask !== undefined || t.flagsReplyMask !== undefined)) {
      w.u8(T_TCP_MASKS);
      w.u8((t.flagsOrigMask !== undefined ? 1 : 0) | (t.flagsReplyMask !== undefined ? 2 : 0));
      w.u8(t.flagsOrigMask ?? 0);
      w.u8(t.flagsReplyMask ?? 0);
    }
    packUnknown(T_ORIG_UNKNOWN, flow.orig.unknown);
    packUnknown(T_REPLY_UNKNOWN, flow.reply?.unknown);
    packUnknown(T_PROTO_UNKNOWN, pi?.unknown);
    packUnknown(T_TCP_UNKNOWN, t?.unknown);
    packUnknown(T_SCTP_UNKNOWN, sctp?.unknown);
    packUnknown(T_DCCP_UNKNOWN, dccp?.unknown);
    packUnknown(T_FLOW_UNKNOWN, flow.unknown);

    hash64(w.buf, sigEnd);
    let ext: string | undefined;
    if (w.pos === extraStart) ext = undefined;
    else if (isZeroSynproxy(w.buf, extraStart, w.pos)) ext = ZERO_SYNPROXY;
    else ext = w.buf.toString('latin1', extraStart, w.pos);

    // Minor differences, judged against the previous contents before they are overwritten.
    const timeout = flow.timeout;
    if (timeout !== undefined) p |= P_TIMEOUT;
    const id = flow.id;
    if (id !== undefined) p |= P_ID;
    let ts = 0, wso = 0, wsr = 0, flo = 0, flr = 0;
    if (t !== undefined) {
      p |= P_TCP;
      ts = t.state & 0xff;
      if (t.wscaleOrig !== undefined) { p |= P_WSO; wso = t.wscaleOrig & 0xff; }
      if (t.wscaleReply !== undefined) { p |= P_WSR; wsr = t.wscaleReply & 0xff; }
      if (t.flagsOrig !== undefined) { p |= P_FLO; flo = t.flagsOrig & 0xff; }
      if (t.flagsReply !== undefined) { p |= P_FLR; flr = t.flagsReply & 0xff; }
    }
    const to = keepTimeout ? KEEP_TIMEOUT : timeout === undefined ? NO_TIMEOUT : Math.min(Math.max(0, Math.floor(timeout)), NO_TIMEOUT - 1);
    return this.store(key, slot, result, prevPresent, p, ext, status ?? 0, mark ?? 0, id ?? 0, to, ts, wso, wsr, flo, flr, reportedAt, version, born);
  }

  /**
   * set() for a plain event read in place (scanPlainFlow): the same columns, packed bytes and hashes set() stores
   * for decodeFlow() of the same message, without a Flow. A property test holds the two paths equal.
   */
  setPlain(key: string, f: PlainFlow, version: number, born: number, reportedAt: number, known?: number, keepTimeout = false): number {
    const slot = this.claim(key, known, 32);
    let result = this.claimed;
    const prevPresent = this.present[slot]!;
    let p = plainPresent(f);
    const status = orZero(f.status);
    const mark = orZero(f.mark);
    w.u32(status & ~STATUS_INSIGNIFICANT);
    w.u32(mark);
    w.u8(f.tcpState >= 0 ? f.tcpState : 0xff);
    const extraStart = w.pos;
    if (f.synproxy) {
      w.u8(T_SYNPROXY);
      w.u32(f.isn);
      w.u32(f.its);
      w.u32(f.tsoff);
    }
    hash64(w.buf, w.pos);
    let ext: string | undefined;
    if (w.pos === extraStart) ext = undefined;
    else if (isZeroSynproxy(w.buf, extraStart, w.pos)) ext = ZERO_SYNPROXY;
    else ext = w.buf.toString('latin1', extraStart, w.pos);
    if (f.timeout >= 0) p |= P_TIMEOUT;
    const to = keepTimeout ? KEEP_TIMEOUT : f.timeout < 0 ? NO_TIMEOUT : Math.min(f.timeout, NO_TIMEOUT - 1);
    const tcp = f.tcpState >= 0;
    return this.store(
      key, slot, result, prevPresent, p, ext, status, mark, orZero(f.id), to, tcp ? f.tcpState : 0,
      tcp ? orZero(f.wscaleOrig) : 0, tcp ? orZero(f.wscaleReply) : 0, tcp ? orZero(f.flagsOrig) : 0, tcp ? orZero(f.flagsReply) : 0,
      reportedAt, version, born,
    );
  }

  /**
   * True when setPlain(key, f, ..., keepTimeout = true) on the entry at slot would change nothing (a refresh
   * dump's usual line): the caller then only touch()es it. False says only that setPlain must be asked.
   */
  holdsPlain(slot: number, f: PlainFlow): boolean {
    const p = this.present[slot]!;
    if (p !== (plainPresent(f) | (p & P_TIMEOUT))) return false;
    if (this.statuses[slot] !== orZero(f.status) || this.marks[slot] !== orZero(f.mark) || this.ids[slot] !== orZero(f.id)) return false;
    const ext = this.extra[slot];
    if (f.synproxy ? ext !== ZERO_SYNPROXY || (f.isn | f.its | f.tsoff) !== 0 : ext !== undefined) return false;
    if (f.tcpState < 0) return true;
    const tb = slot * 5;
    const tcp = this.tcp;
    return tcp[tb] === f.tcpState && tcp[tb + 1] === orZero(f.wscaleOrig) && tcp[tb + 2] === orZero(f.wscaleReply) &&
      tcp[tb + 3] === orZero(f.flagsOrig) && tcp[tb + 4] === orZero(f.flagsReply);
  }

  /**
   * The common tail of set() and setPlain(): compares with what the slot held (SET_* flags), then writes it.
   * `to` KEEP_TIMEOUT leaves the slot's timeout, its reporting time and its P_TIMEOUT bit alone.
   */
  private store(
    key: string, slot: number, result: number, prevPresent: number, p: number, ext: string | undefined,
    status: number, mark: number, id: number, to: number, ts: number, wso: number, wsr: number, flo: number, flr: number,
    reportedAt: number, version: number, born: number,
  ): number {
    if (to === KEEP_TIMEOUT) {
      if (result & SET_ADDED) to = NO_TIMEOUT; // a new entry has none to keep
      else {
        to = this.timeouts[slot]!;
        reportedAt = this.reported[slot]!;
        p = (p & ~P_TIMEOUT) | (prevPresent & P_TIMEOUT);
      }
    }
    const tb = slot * 5;
    const tcp = this.tcp;
    const oldA = this.hashesA[slot]!;
    const oldB = this.hashesB[slot]!;
    if (result === 0) {
      if (oldA !== hashA || oldB !== hashB) result |= SET_SIGNIFICANT;
      if (
        prevPresent !== p ||
        this.extra[slot] !== ext ||
        this.timeouts[slot] !== to ||
        this.statuses[slot] !== status >>> 0 ||
        this.ids[slot] !== id >>> 0 ||
        tcp[tb + 1] !== wso || tcp[tb + 2] !== wsr || tcp[tb + 3] !== flo || tcp[tb + 4] !== flr
      ) {
        result |= SET_MINOR;
      }
    }

    const b = 2 * (this.hashOf(key) >>> this.bucketShift);
    this.buckets[b] ^= oldA ^ hashA;
    this.buckets[b + 1] ^= oldB ^ hashB;
    this.hashesA[slot] = hashA;
    this.hashesB[slot] = hashB;
    this.present[slot] = p;
    this.extra[slot] = ext;
    this.statuses[slot] = status;
    this.marks[slot] = mark;
    this.ids[slot] = id;
    this.timeouts[slot] = to;
    this.reported[slot] = reportedAt;
    this.versions[slot] = version;
    this.borns[slot] = born;
    tcp[tb] = ts;
    tcp[tb + 1] = wso;
    tcp[tb + 2] = wsr;
    tcp[tb + 3] = flo;
    tcp[tb + 4] = flr;
    this.gens[slot] = this.gen;
    return result;
  }

  delete(key: string): boolean {
    const slot = this.slotOf(key);
    if (slot < 0) return false;
    this.removeSlot(slot, key);
    return true;
  }

  private removeSlot(slot: number, key: string): void {
    const h = this.hashOf(key);
    const b = 2 * (h >>> this.bucketShift);
    this.buckets[b] ^= this.hashesA[slot]!;
    this.buckets[b + 1] ^= this.hashesB[slot]!;
    this.unindex(this.find(key, h));
    this.keys[slot] = undefined;
    this.extra[slot] = undefined;
    this.dirtyBits[slot] = 0;
    this.free.push(slot);
  }

  clear(): void {
    this.index = new Uint32Array(0);
    this.mask = 0;
    this.count = 0;
    this.hashKey = '';
    this.hashVal = EMPTY_KEY_HASH;
    this.free = [];
    this.keys = [];
    this.extra = [];
    this.cap = 0;
    this.hi = 0;
    this.present = new Uint16Array(0);
    this.hashesA = new Uint32Array(0);
    this.hashesB = new Uint32Array(0);
    this.statuses = new Uint32Array(0);
    this.marks = new Uint32Array(0);
    this.ids = new Uint32Array(0);
    this.timeouts = new Uint32Array(0);
    this.reported = new Float64Array(0);
    this.versions = new Float64Array(0);
    this.borns = new Float64Array(0);
    this.tcp = new Uint8Array(0);
    this.dirtyBits = new Uint8Array(0);
    this.gens = new Uint8Array(0);
    this.buckets.fill(0);
    this.sweeping = false;
    this.grow(1024);
  }

  // ---- column reads (slot from slotOf; the slot must be live) ----

  keyAt(slot: number): string | undefined {
    return this.keys[slot];
  }
  versionAt(slot: number): number {
    return this.versions[slot]!;
  }
  bornAt(slot: number): number {
    return this.borns[slot]!;
  }
  statusAt(slot: number): number | undefined {
    return this.present[slot]! & P_STATUS ? this.statuses[slot] : undefined;
  }
  markAt(slot: number): number | undefined {
    return this.present[slot]! & P_MARK ? this.marks[slot] : undefined;
  }
  idAt(slot: number): number | undefined {
    return this.present[slot]! & P_ID ? this.ids[slot] : undefined;
  }
  /** TCP_CONNTRACK_* state, or -1 when the entry has no TCP protoinfo. */
  tcpStateAt(slot: number): number {
    return this.present[slot]! & P_TCP ? this.tcp[slot * 5]! : -1;
  }
  hasProtoinfoAt(slot: number): boolean {
    return (this.present[slot]! & P_PROTOINFO) !== 0;
  }
  /** Timeout in seconds as last reported, or undefined. */
  timeoutAt(slot: number): number | undefined {
    const t = this.timeouts[slot]!;
    return t === NO_TIMEOUT ? undefined : t;
  }
  reportedAtAt(slot: number): number {
    return this.reported[slot]!;
  }
  /** Seconds of life left at `now` (Clock ms): last reported timeout minus time since; undefined if none known. */
  remainingAt(slot: number, now: number): number | undefined {
    const t = this.timeouts[slot]!;
    if (t === NO_TIMEOUT) return undefined;
    return remainingSeconds(t, this.reported[slot]!, now);
  }
  dirtyAt(slot: number): number {
    return this.dirtyBits[slot]!;
  }
  setDirty(slot: number, bits: number): void {
    this.dirtyBits[slot] = bits;
  }
  /**
   * True when the entry has none of the rare fields (NAT'd reply, labels, helper, ...) except perhaps synproxy:
   * its columns and out are all of it. Synproxy counts as plain because the kernel reports one (all zero) for
   * every entry created through ctnetlink, so committed and written flows carry it. Its isn, its and tsoff go to
   * out[0..2]; out[3] is 1 when it is present, else 0.
   */
  isPlainOrSynproxyAt(slot: number, out: Uint32Array): boolean {
    const ext = this.extra[slot];
    if (ext === undefined) {
      out[3] = 0;
      return true;
    }
    // set() writes T_SYNPROXY + three u32 (big-endian), one latin1 char per byte
    if (ext.length !== 13 || ext.charCodeAt(0) !== T_SYNPROXY) return false;
    for (let i = 0; i < 3; i++) {
      const o = 1 + 4 * i;
      out[i] = (ext.charCodeAt(o) << 24) | (ext.charCodeAt(o + 1) << 16) | (ext.charCodeAt(o + 2) << 8) | ext.charCodeAt(o + 3);
    }
    out[3] = 1;
    return true;
  }
  /**
   * The TCP protoinfo columns into out[0..4] (state, wscale orig/reply, flags orig/reply; -1 = absent), as flowAt
   * would decode them. False when the entry has no TCP protoinfo.
   */
  tcpInto(slot: number, out: Int16Array): boolean {
    const p = this.present[slot]!;
    if (!(p & P_TCP) || !(p & P_PROTOINFO)) return false;
    const tb = slot * 5;
    const tcp = this.tcp;
    out[0] = tcp[tb]!;
    out[1] = p & P_WSO ? tcp[tb + 1]! : -1;
    out[2] = p & P_WSR ? tcp[tb + 2]! : -1;
    out[3] = p & P_FLO ? tcp[tb + 3]! : -1;
    out[4] = p & P_FLR ? tcp[tb + 4]! : -1;
    return true;
  }
  /** The timeout flowAt(slot, now) reports (remaining seconds at now), or -1 when the entry has none. */
  remainingOrNoneAt(slot: number, now: number): number {
    const t = this.timeouts[slot]!;
    if (!(this.present[slot]! & P_TIMEOUT) || t === NO_TIMEOUT) return -1;
    return remainingSeconds(t, this.reported[slot]!, now);
  }
  /** Entry hash lanes (what digests XOR together). */
  hashAAt(slot: number): number {
    return this.hashesA[slot]!;
  }
  hashBAt(slot: number): number {
    return this.hashesB[slot]!;
  }

  /** Re-stamps an entry's version (the local table bumps it only when set() reports a significant change). */
  setVersionAt(slot: number, version: number): void {
    this.versions[slot] = version;
  }

  /** Updates only the timeout (a refresh): no rehash, no version change. */
  setTimeoutAt(slot: number, timeout: number | undefined, reportedAt: number): void {
    if (timeout === undefined) {
      this.timeouts[slot] = NO_TIMEOUT;
      this.present[slot]! &= ~P_TIMEOUT;
    } else {
      this.timeouts[slot] = Math.min(Math.max(0, Math.floor(timeout)), NO_TIMEOUT - 1);
      this.present[slot]! |= P_TIMEOUT;
    }
    this.reported[slot] = reportedAt;
  }

  meta(key: string): EntryMeta | undefined {
    const s = this.slotOf(key);
    if (s < 0) return undefined;
    return {
      version: this.versions[s]!,
      born: this.borns[s]!,
      timeout: this.timeoutAt(s),
      reportedAt: this.reported[s]!,
      dirty: this.dirtyBits[s]!,
    };
  }

  // ---- decoding ----

  /** The stored flow. With `now`, timeout is the remaining lifetime instead of the last reported value. */
  get(key: string, now?: number): Flow | undefined {
    const s = this.slotOf(key);
    return s < 0 ? undefined : this.flowAt(s, now);
  }

  flowAt(slot: number, now?: number): Flow {
    const key = this.keys[slot]!;
    const parts = decodeKey(key);
    const p = this.present[slot]!;
    const f: Flow = { family: parts.family, orig: parts.orig, reply: undefined as unknown as Tuple };
    if (parts.ctZone !== undefined) f.zone = parts.ctZone;
    if (p & P_REPLY_INV) f.reply = invertTuple(parts.orig);
    if (p & P_TIMEOUT) f.timeout = now === undefined ? this.timeouts[slot]! : this.remainingAt(slot, now)!;
    if (p & P_ID) f.id = this.ids[slot]!;
    this.decodeInto(slot, f, false);
    if (f.reply === undefined) f.reply = invertTuple(parts.orig); // not reachable for entries set() wrote
    if (parts.replyZone !== undefined) f.reply.zone = parts.replyZone;
    return f;
  }

  /** The stored protoinfo alone (to keep it when an update arrives without one, as offloaded flows are dumped). */
  protoinfoAt(slot: number): ProtoInfo | undefined {
    if (!(this.present[slot]! & P_PROTOINFO)) return undefined;
    const tmp: Flow = { family: 0, orig: { src: '', dst: '', proto: 0 }, reply: { src: '', dst: '', proto: 0 } };
    this.decodeInto(slot, tmp, false);
    return tmp.protoinfo;
  }

  /**
   * Copies stored fields into `into`: all of them, or with onlyMissing only those `into` lacks (status, mark,
   * protoinfo, labels, helper, NAT, seq-adjust, synproxy, master). Tuples, timeout and id are left alone then.
   * This is how a partial kernel update event (which omits what did not change) is completed.
   */
  fillMissing(slot: number, into: Flow): void {
    this.decodeInto(slot, into, true);
  }

  private decodeInto(slot: number, f: Flow, onlyMissing: boolean): void {
    const p = this.present[slot]!;
    if (p & P_STATUS && (!onlyMissing || f.status === undefined)) f.status = this.statuses[slot]!;
    if (p & P_MARK && (!onlyMissing || f.mark === undefined)) f.mark = this.marks[slot]!;
    const wantProto = (p & P_PROTOINFO) !== 0 && (!onlyMissing || f.protoinfo === undefined);
    let pi: ProtoInfo | undefined;
    if (wantProto) {
      pi = {};
      if (p & P_TCP) {
        const tb = slot * 5;
        const tcp = this.tcp;
        pi.tcp = { state: tcp[tb]! };
        if (p & P_WSO) pi.tcp.wscaleOrig = tcp[tb + 1]!;
        if (p & P_WSR) pi.tcp.wscaleReply = tcp[tb + 2]!;
        if (p & P_FLO) pi.tcp.flagsOrig = tcp[tb + 3]!;
        if (p & P_FLR) pi.tcp.flagsReply = tcp[tb + 4]!;
      }
      f.protoinfo = pi;
    }
    const ext = this.extra[slot];
    if (ext === undefined) return;
    r.pos = 0;
    r.ensure(ext.length);
    const end = r.buf.write(ext, 0, 'latin1');
    r.pos = 0;
    while (r.pos < end) {
      const tag = r.buf[r.pos++]!;
      switch (tag) {
        case T_REPLY: {
          const t = unpackTuple();
          if (!onlyMissing) f.reply = t;
          break;
        }
        case T_LABELS: {
          const b = rBytes(rU16());
          if (!onlyMissing || f.labels === undefined) f.labels = b;
          break;
        }
        case T_LABELS_MASK: {
          const b = rBytes(rU16());
          if (!onlyMissing) f.labelsMask = b;
          break;
        }
        case T_HELPER: {
          const s = rText();
          if (!onlyMissing || f.helper === undefined) f.helper = s;
          break;
        }
        case T_NAT_SRC: {
          const n = unpackNat();
          if (!onlyMissing || f.natSrc === undefined) f.natSrc = n;
          break;
        }
        case T_NAT_DST: {
          const n = unpackNat();
          if (!onlyMissing || f.natDst === undefined) f.natDst = n;
          break;
        }
        case T_SEQADJ_ORIG:
        case T_SEQADJ_REPLY: {
          const s: SeqAdj = { correctionPos: rU32(), offsetBefore: rU32(), offsetAfter: rU32() };
          if (tag === T_SEQADJ_ORIG) {
            if (!onlyMissing || f.seqAdjOrig === undefined) f.seqAdjOrig = s;
          } else if (!onlyMissing || f.seqAdjReply === undefined) f.seqAdjReply = s;
          break;
        }
        case T_SYNPROXY: {
          const s = { isn: rU32(), its: rU32(), tsoff: rU32() };
          if (!onlyMissing || f.synproxy === undefined) f.synproxy = s;
          break;
        }
        case T_MASTER: {
          const t = unpackTuple();
          if (!onlyMissing || f.master === undefined) f.master = t;
          break;
        }
        case T_SCTP: {
          const fl = r.buf[r.pos++]!;
          const state = r.buf[r.pos++]!;
          const vo = fl & 1 ? rU32() : undefined;
          const vr = fl & 2 ? rU32() : undefined;
          if (pi !== undefined) {
            pi.sctp = { state };
            if (vo !== undefined) pi.sctp.vtagOrig = vo;
            if (vr !== undefined) pi.sctp.vtagReply = vr;
          }
          break;
        }
        case T_DCCP: {
          const fl = r.buf[r.pos++]!;
          const state = r.buf[r.pos++]!;
          const role = fl & 1 ? r.buf[r.pos++] : undefined;
          let hs: bigint | undefined;
          if (fl & 2) hs = (BigInt(rU32()) << 32n) | BigInt(rU32());
          if (pi !== undefined) {
            pi.dccp = { state };
            if (role !== undefined) pi.dccp.role = role;
            if (hs !== undefined) pi.dccp.handshakeSeq = hs;
          }
          break;
        }
        case T_TCP_MASKS: {
          const fl = r.buf[r.pos++]!;
          const mo = r.buf[r.pos++]!;
          const mr = r.buf[r.pos++]!;
          if (pi?.tcp !== undefined) {
            if (fl & 1) pi.tcp.flagsOrigMask = mo;
            if (fl & 2) pi.tcp.flagsReplyMask = mr;
          }
          break;
        }
        case T_ORIG_UNKNOWN: {
          const u = unpackUnknown();
          if (!onlyMissing) f.orig.unknown = u;
          break;
        }
        case T_REPLY_UNKNOWN: {
          const u = unpackUnknown();
          if (!onlyMissing && f.reply !== undefined) f.reply.unknown = u;
          break;
        }
        case T_PROTO_UNKNOWN: {
          const u = unpackUnknown();
          if (pi !== undefined) pi.unknown = u;
          break;
        }
        case T_TCP_UNKNOWN: {
          const u = unpackUnknown();
          if (pi?.tcp !== undefined) pi.tcp.unknown = u;
          break;
        }
        case T_SCTP_UNKNOWN: {
          const u = unpackUnknown();
          if (pi?.sctp !== undefined) pi.sctp.unknown = u;
          break;
        }
        case T_DCCP_UNKNOWN: {
          const u = unpackUnknown();
          if (pi?.dccp !== undefined) pi.dccp.unknown = u;
          break;
        }
        case T_FLOW_UNKNOWN: {
          const u = unpackUnknown();
          if (!onlyMissing) f.unknown = u;
          break;
        }
        default:
          return; // written by this module only: cannot happen; stop rather than misread
      }
    }
  }

  // ---- iteration ----

  /** Calls fn for every entry in slot order (stable while the table does not change). Do not set/delete inside. */
  forEach(fn: (key: string, slot: number) => void): void {
    const keys = this.keys;
    for (let s = 0; s < this.hi; s++) {
      const k = keys[s];
      if (k !== undefined) fn(k, s);
    }
  }

  /**
   * Resumable slot-order walk for bulk sends spread over event-loop turns: visits up to `limit` entries from
   * slot `cursor`, returns the cursor to continue from, or -1 when done. Entries added behind the cursor are
   * missed (they are sent as changes anyway); entries deleted ahead are skipped. Safe to change the table between
   * calls, not inside fn.
   */
  scan(cursor: number, limit: number, fn: (key: string, slot: number) => void): number {
    const keys = this.keys;
    let n = 0;
    let s = Math.max(0, cursor);
    for (; s < this.hi && n < limit; s++) {
      const k = keys[s];
      if (k !== undefined) {
        fn(k, s);
        n++;
      }
    }
    return s >= this.hi ? -1 : s;
  }

  /** The digest bucket (of nBuckets) of the entry in slot. */
  bucketAt(slot: number, nBuckets: number): number {
    return Math.floor((keyHash(this.keys[slot]!) * nBuckets) / 4294967296);
  }

  /** Visits the entries whose bucket (of nBuckets) is in `buckets`: the repair step after digests differ. */
  forEachInBuckets(buckets: Iterable<number>, nBuckets: number, fn: (key: string, slot: number) => void): void {
    const want = new Uint8Array(nBuckets);
    for (const b of buckets) if (b >= 0 && b < nBuckets) want[b] = 1;
    const keys = this.keys;
    for (let s = 0; s < this.hi; s++) {
      const k = keys[s];
      if (k !== undefined && want[Math.floor((keyHash(k) * nBuckets) / 4294967296)]) fn(k, s);
    }
  }

  /**
   * Per-bucket digest: 2 words (two hash lanes) per bucket, the XOR of the entry hashes in it. An entry hash
   * covers the key and what the standby needs (significant status bits, mark, protocol state, reply tuple,
   * labels, helper, NAT, seq-adjust, synproxy, master), not timeouts, versions or window flags, so the active's
   * local table and the standby's peer table agree when in sync. O(n) when n divides digestBuckets (folding),
   * O(entries) otherwise.
   */
  digest(nBuckets: number = this.nBuckets): Uint32Array {
    const out = new Uint32Array(2 * nBuckets);
    if (nBuckets <= this.nBuckets && this.nBuckets % nBuckets === 0 && (nBuckets & (nBuckets - 1)) === 0) {
      const shift = Math.log2(this.nBuckets / nBuckets);
      for (let i = 0; i < this.nBuckets; i++) {
        const o = 2 * (i >>> shift);
        out[o] ^= this.buckets[2 * i]!;
        out[o + 1] ^= this.buckets[2 * i + 1]!;
      }
      return out;
    }
    for (let s = 0; s < this.hi; s++) {
      const k = this.keys[s];
      if (k === undefined) continue;
      const o = 2 * Math.floor((keyHash(k) * nBuckets) / 4294967296);
      out[o] ^= this.hashesA[s]!;
      out[o + 1] ^= this.hashesB[s]!;
    }
    return out;
  }

  // ---- mark and sweep (dump-and-diff, full bulk from a peer) ----

  /** Starts a sweep: entries not set() or touch()ed before endSweep() are then removed. */
  beginSweep(): void {
    if (this.sweeping) this.gens.fill(this.gen); // an abandoned sweep: forget its marks
    this.gen ^= 1;
    this.sweeping = true;
  }

  /** Abandons a sweep without removing anything (its dump failed). */
  abortSweep(): void {
    this.sweeping = false;
  }

  get isSweeping(): boolean {
    return this.sweeping;
  }

  /** Marks an entry as seen in the current sweep without changing it. */
  touch(slot: number): void {
    this.gens[slot] = this.gen;
  }

  /** Removes every entry not seen since beginSweep(); calls onRemove(key) for each before removing it. */
  endSweep(onRemove?: (key: string) => void): number {
    if (!this.sweeping) return 0;
    this.sweeping = false;
    let n = 0;
    for (let s = 0; s < this.hi; s++) {
      const k = this.keys[s];
      if (k !== undefined && this.gens[s] !== this.gen) {
        onRemove?.(k);
        this.removeSlot(s, k);
        n++;
      }
    }
    return n;
  }
}

/** Indexes of buckets whose digests differ (both from digest(n) with the same n). */
export function diffDigests(a: Uint32Array, b: Uint32Array): number[] {
  const out: number[] = [];
  const n = Math.min(a.length, b.length) >>> 1;
  for (let i = 0; i < n; i++) {
    if (a[2 * i] !== b[2 * i] || a[2 * i + 1] !== b[2 * i + 1]) out.push(i);
  }
  return out;
}

/**
 * Seconds left of a timeout reported at `reportedAt` (ms), at `now` (ms), rounded up: an entry with any life left
 * has at least 1 s, and 0 means expired. The kernel counts in whole seconds too.
 */
export function remainingSeconds(timeout: number, reportedAt: number, now: number): number {
  const leftMs = timeout * 1000 - (now - reportedAt);
  return leftMs <= 0 ? 0 : Math.ceil(leftMs / 1000);
}
