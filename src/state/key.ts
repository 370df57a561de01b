// Flow identity: the compact binary key (family, zones, original tuple) every table is indexed by, and its hash.
//
// Key layout (a latin1 string, one char per byte; a flat V8 one-byte string is ~32 bytes for IPv4 TCP):
//   [0] family  [1] L4 proto  [2] zone/address flags  [3] L4 field flags
//   zones present, u16 BE each, in the order CTA_ZONE, orig tuple zone, reply tuple zone
//   src, dst: 4 or 16 address bytes (per family), or, for text that is not an address, u8 length + text
//   L4 fields present: sport u16, dport u16, icmp id u16, icmp type u8, icmp code u8 (all BE)
// Every field that can be absent has a flag, so "zone 0" and "no zone" are different keys, as they are to the kernel
// (which hashes the per-direction zone). The conntrack id is never part of it: ids differ between nodes.

import type { Flow, Tuple } from '../kernel/types.js';
import type { PlainFlow } from '../kernel/flow-codec.js';
import { ipToText, parseIpInto } from '../kernel/addr.js';
import { Cta, CtaIp, CtaProto, CtaTuple } from '../kernel/ctnetlink-const.js';

const Z_CT = 1;
const Z_ORIG = 2;
const Z_REPLY = 4;
const TEXT_ADDR = 8;

const L_SPORT = 1;
const L_DPORT = 2;
const L_ICMP_ID = 4;
const L_ICMP_TYPE = 8;
const L_ICMP_CODE = 16;

const AF_INET = 2;
const AF_INET6 = 10;

// Large enough for two 255-byte text addresses; reused by every call (single-threaded, no re-entry).
const scratch = Buffer.allocUnsafe(600);

/** What a key says: enough to rebuild the original tuple and the zones without the stored flow. */
export interface KeyParts {
  family: number;
  orig: Tuple; // includes orig.zone when the key has one
  ctZone?: number; // CTA_ZONE
  replyZone?: number; // CTA_TUPLE_ZONE of the reply tuple
}

function addrLen(family: number): number {
  return family === AF_INET ? 4 : family === AF_INET6 ? 16 : 0;
}

function writeText(s: string, at: number): number {
  const n = Math.min(s.length, 255);
  scratch[at] = n;
  scratch.write(s.slice(0, n), at + 1, n, 'latin1');
  return at + 1 + n;
}

/** The identity of a flow as a compact string, for use as a Map key. Never throws, whatever the input. */
export function flowKey(flow: Flow): string {
  const o = flow.orig;
  const family = flow.family & 0xff;
  let zf = 0;
  let lf = 0;
  let at = 4;
  if (flow.zone !== undefined) {
    zf |= Z_CT;
    scratch.writeUInt16BE(flow.zone & 0xffff, at);
    at += 2;
  }
  if (o.zone !== undefined) {
    zf |= Z_ORIG;
    scratch.writeUInt16BE(o.zone & 0xffff, at);
    at += 2;
  }
  const rz = flow.reply?.zone;
  if (rz !== undefined) {
    zf |= Z_REPLY;
    scratch.writeUInt16BE(rz & 0xffff, at);
    at += 2;
  }
  const alen = addrLen(family);
  if (alen !== 0 && parseIpInto(o.src, scratch, at) === alen && parseIpInto(o.dst, scratch, at + alen) === alen) {
    at += 2 * alen;
  } else {
    zf |= TEXT_ADDR;
    at = writeText(String(o.src), at);
    at = writeText(String(o.dst), at);
  }
  if (o.sport !== undefined) {
    lf |= L_SPORT;
    scratch.writeUInt16BE(o.sport & 0xffff, at);
    at += 2;
  }
  if (o.dport !== undefined) {
    lf |= L_DPORT;
    scratch.writeUInt16BE(o.dport & 0xffff, at);
    at += 2;
  }
  if (o.icmpId !== undefined) {
    lf |= L_ICMP_ID;
    scratch.writeUInt16BE(o.icmpId & 0xffff, at);
    at += 2;
  }
  if (o.icmpType !== undefined) {
    lf |= L_ICMP_TYPE;
    scratch[at++] = o.icmpType & 0xff;
  }
  if (o.icmpCode !== undefined) {
    lf |= L_ICMP_CODE;
    scratch[at++] = o.icmpCode & 0xff;
  }
  scratch[0] = family;
  scratch[1] = o.proto & 0xff;
  scratch[2] = zf;
  scratch[3] = lf;
  return scratch.toString('latin1', 0, at);
}

function putU16(v: number, at: number): number {
  scratch[at] = v >> 8;
  scratch[at + 1] = v & 0xff;
  return at + 2;
}

/**
 * flowKey(decodeFlow(buf, off, end, family)) for a ctnetlink message decodeFlow accepted, read straight from its
 * attributes: the event path then neither formats addresses into text for the key nor parses them back. Returns
 * undefined for anything but the plain form (addresses not of the family, a tuple, tuple part or zone given twice,
 * which decodeFlow resolves by its own rules); the caller then uses flowKey.
 */
export function flowKeyFromAttrs(buf: Buffer, off: number, end: number, family: number): string | undefined {
  const alen = addrLen(family);
  if (alen === 0) return undefined;
  let ctZone = -1;
  let origZone = -1;
  let replyZone = -1;
  let src = -1; // offsets of the address bytes
  let dst = -1;
  let proto = -1;
  let sport = -1;
  let dport = -1;
  let icmpId = -1;
  let icmpType = -1;
  let icmpCode = -1;
  let seen = 0; // bits 1 << Cta type of the top-level attributes read, and of the orig tuple's nests (<< 24)
  for (let p = off; p < end; ) {
    const len = buf[p]! | (buf[p + 1]! << 8);
    const type = (buf[p + 2]! | (buf[p + 3]! << 8)) & 0x3fff;
    const e = p + len;
    if (len < 4 || e > end) return undefined; // decodeFlow refuses these: only here to bound the walk on any input
    if (type === Cta.Zone || type === Cta.TupleOrig || type === Cta.TupleReply) {
      if (seen & (1 << type)) return undefined;
      seen |= 1 << type;
    }
    if (type === Cta.Zone) ctZone = (buf[p + 4]! << 8) | buf[p + 5]!;
    else if (type === Cta.TupleOrig || type === Cta.TupleReply) {
      const orig = type === Cta.TupleOrig;
      for (let q = p + 4; q < e; ) {
        const cl = buf[q]! | (buf[q + 1]! << 8);
        const ct = (buf[q + 2]! | (buf[q + 3]! << 8)) & 0x3fff;
        const ce = q + cl;
        if (cl < 4 || ce > e) return undefined;
        if (ct === CtaTuple.Zone) {
          const z = (buf[q + 4]! << 8) | buf[q + 5]!;
          if (orig ? origZone >= 0 : replyZone >= 0) return undefined;
          if (orig) origZone = z;
          else replyZone = z;
        } else if (orig && (ct === CtaTuple.Ip || ct === CtaTuple.Proto)) {
          if (seen & (1 << (24 + ct))) return undefined;
          seen |= 1 << (24 + ct);
          for (let r = q + 4; r < ce; ) {
            const al = buf[r]! | (buf[r + 1]! << 8);
            const at = (buf[r + 2]! | (buf[r + 3]! << 8)) & 0x3fff;
            const d = r + 4;
            if (al < 4 || r + al > ce) return undefined;
            if (ct === CtaTuple.Ip) {
              if (at >= CtaIp.V4Src && at <= CtaIp.V6Dst) {
                if (al - 4 !== alen) return undefined;
                if (at === CtaIp.V4Src || at === CtaIp.V6Src) src = d;
                else dst = d;
              }
            } else if (at === CtaProto.Num) proto = buf[d]!;
            else if (at === CtaProto.SrcPort) sport = (buf[d]! << 8) | buf[d + 1]!;
            else if (at === CtaProto.DstPort) dport = (buf[d]! << 8) | buf[d + 1]!;
            else if (at === CtaProto.IcmpId || at === CtaProto.Icmpv6Id) icmpId = (buf[d]! << 8) | buf[d + 1]!;
            else if (at === CtaProto.IcmpType || at === CtaProto.Icmpv6Type) icmpType = buf[d]!;
            else if (at === CtaProto.IcmpCode || at === CtaProto.Icmpv6Code) icmpCode = buf[d]!;
            r += (al + 3) & ~3;
          }
        }
        q += (cl + 3) & ~3;
      }
    }
    p += (len + 3) & ~3;
  }
  if (src < 0 || dst < 0 || proto < 0) return undefined;
  // the layout flowKey writes (see the file comment)
  let zf = 0;
  let lf = 0;
  let at = 4;
  if (ctZone >= 0) {
    zf |= Z_CT;
    at = putU16(ctZone, at);
  }
  if (origZone >= 0) {
    zf |= Z_ORIG;
    at = putU16(origZone, at);
  }
  if (replyZone >= 0) {
    zf |= Z_REPLY;
    at = putU16(replyZone, at);
  }
  for (let i = 0; i < alen; i++) scratch[at++] = buf[src + i]!;
  for (let i = 0; i < alen; i++) scratch[at++] = buf[dst + i]!;
  if (sport >= 0) {
    lf |= L_SPORT;
    at = putU16(sport, at);
  }
  if (dport >= 0) {
    lf |= L_DPORT;
    at = putU16(dport, at);
  }
  if (icmpId >= 0) {
    lf |= L_ICMP_ID;
    at = putU16(icmpId, at);
  }
  if (icmpType >= 0) {
    lf |= L_ICMP_TYPE;
    scratch[at++] = icmpType;
  }
  if (icmpCode >= 0) {
    lf |= L_ICMP_CODE;
    scratch[at++] = icmpCode;
  }
  scratch[0] = family;
  scratch[1] = proto;
  scratch[2] = zf;
  scratch[3] = lf;
  return scratch.toString('latin1', 0, at);
}

/**
 * flowKeyFromAttrs for a message scanPlainFlow accepted, from what the scan found: no second walk over the
 * attributes. The plain form has no tuple zones and always both ports (see scanPlainTuple).
 */
export function keyFromPlain(buf: Buffer, f: PlainFlow): string {
  const alen = f.addrLen;
  let at = 4;
  if (f.zone >= 0) at = putU16(f.zone, at);
  for (let i = 0; i < alen; i++) scratch[at++] = buf[f.srcAt + i]!;
  for (let i = 0; i < alen; i++) scratch[at++] = buf[f.dstAt + i]!;
  at = putU16(f.sport, at);
  at = putU16(f.dport, at);
  scratch[0] = f.family;
  scratch[1] = f.proto;
  scratch[2] = f.zone >= 0 ? Z_CT : 0;
  scratch[3] = L_SPORT | L_DPORT;
  return scratch.toString('latin1', 0, at);
}

/** Rebuilds the original tuple and zones from a key made by flowKey. */
export function decodeKey(key: string): KeyParts {
  scratch.write(key, 0, 'latin1');
  const family = scratch[0]!;
  const zf = scratch[2]!;
  const lf = scratch[3]!;
  let at = 4;
  const parts: KeyParts = { family, orig: { src: '', dst: '', proto: scratch[1]! } };
  if (zf & Z_CT) {
    parts.ctZone = scratch.readUInt16BE(at);
    at += 2;
  }
  let origZone: number | undefined;
  if (zf & Z_ORIG) {
    origZone = scratch.readUInt16BE(at);
    at += 2;
  }
  if (zf & Z_REPLY) {
    parts.replyZone = scratch.readUInt16BE(at);
    at += 2;
  }
  const t = parts.orig;
  if (zf & TEXT_ADDR) {
    let len = scratch[at]!;
    t.src = scratch.toString('latin1', at + 1, at + 1 + len);
    at += 1 + len;
    len = scratch[at]!;
    t.dst = scratch.toString('latin1', at + 1, at + 1 + len);
    at += 1 + len;
  } else {
    const alen = addrLen(family) as 4 | 16;
    t.src = ipToText(scratch, at, alen);
    t.dst = ipToText(scratch, at + alen, alen);
    at += 2 * alen;
  }
  if (lf & L_SPORT) {
    t.sport = scratch.readUInt16BE(at);
    at += 2;
  }
  if (lf & L_DPORT) {
    t.dport = scratch.readUInt16BE(at);
    at += 2;
  }
  if (lf & L_ICMP_ID) {
    t.icmpId = scratch.readUInt16BE(at);
    at += 2;
  }
  if (lf & L_ICMP_TYPE) t.icmpType = scratch[at++];
  if (lf & L_ICMP_CODE) t.icmpCode = scratch[at++];
  if (origZone !== undefined) t.zone = origZone;
  return parts;
}

/** Zones a key carries, as keyTupleBytes reports them; -1 = the key has none. */
export interface KeyZones {
  ctZone: number;
  origZone: number;
  replyZone: number;
}

/**
 * Copies the key's original tuple as [proto u8][src][dst][sport u16][dport u16] (network order; no port bytes when
 * the key has no ports) into out at `at`, and its zones into `zones`; returns the length written. Returns 0, writing
 * nothing useful, for keys not in that form: text addresses, ICMP/ICMPv6, or only one of the two ports. The send path
 * uses it to encode the common flow without rebuilding text addresses (this is wire/tuple.ts's packed layout).
 */
export function keyTupleBytes(key: string, out: Buffer, at: number, zones: KeyZones): number {
  const family = key.charCodeAt(0);
  const proto = key.charCodeAt(1);
  const zf = key.charCodeAt(2);
  const lf = key.charCodeAt(3);
  const alen = addrLen(family);
  if (alen === 0 || zf & TEXT_ADDR || proto === 1 || proto === 58) return 0;
  if (lf !== 0 && lf !== (L_SPORT | L_DPORT)) return 0;
  let k = 4;
  zones.ctZone = zf & Z_CT ? (key.charCodeAt(k++) << 8) | key.charCodeAt(k++) : -1;
  zones.origZone = zf & Z_ORIG ? (key.charCodeAt(k++) << 8) | key.charCodeAt(k++) : -1;
  zones.replyZone = zf & Z_REPLY ? (key.charCodeAt(k++) << 8) | key.charCodeAt(k++) : -1;
  const n = 2 * alen + (lf === 0 ? 0 : 4);
  if (key.length !== k + n) return 0; // not a key flowKey wrote
  out[at] = proto;
  for (let i = 0; i < n; i++) out[at + 1 + i] = key.charCodeAt(k + i);
  return 1 + n;
}

/**
 * keyTupleBytes' inverse: the key flowKey makes for a flow whose original tuple is the packed bytes
 * buf[at .. at+len) ([proto][src][dst][sport dport], 9/13 bytes IPv4, 33/37 IPv6) and whose zones are given
 * (-1 = none; each < 2^16), without formatting the addresses into text. Undefined for ICMP/ICMPv6 (their L4
 * fields are keyed differently) and for any other length. The receive path builds the key of a plain entry with it.
 */
export function keyFromTupleBytes(buf: Uint8Array, at: number, len: number, ctZone: number, origZone: number, replyZone: number): string | undefined {
  const alen = len === 9 || len === 13 ? 4 : len === 33 || len === 37 ? 16 : 0;
  const proto = buf[at]!;
  if (alen === 0 || proto === 1 || proto === 58) return undefined;
  let zf = 0;
  let k = 4;
  if (ctZone >= 0) {
    zf |= Z_CT;
    k = putU16(ctZone, k);
  }
  if (origZone >= 0) {
    zf |= Z_ORIG;
    k = putU16(origZone, k);
  }
  if (replyZone >= 0) {
    zf |= Z_REPLY;
    k = putU16(replyZone, k);
  }
  for (let i = 1; i < len; i++) scratch[k++] = buf[at + i]!;
  scratch[0] = alen === 4 ? AF_INET : AF_INET6;
  scratch[1] = proto;
  scratch[2] = zf;
  scratch[3] = len === 1 + 2 * alen ? 0 : L_SPORT | L_DPORT;
  return scratch.toString('latin1', 0, k);
}

/** The L4 protocol a key is for, without decoding the rest. */
export function keyProto(key: string): number {
  return key.charCodeAt(1);
}

/** The address family a key is for, without decoding the rest. */
export function keyFamily(key: string): number {
  return key.charCodeAt(0);
}

/** murmur3's finaliser: spreads every input bit over the whole word, so prefix bits make good bucket ids. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A 32-bit hash of a key (FNV-1a, then fmix32). Identical on every node, so bucket ids agree across peers. */
export function keyHash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return fmix32(h);
}

/**
 * The digest bucket of a key: floor(hash * n / 2^32). For power-of-two n this is the top bits of the hash, so a
 * bucket of a coarse digest is exactly the union of consecutive buckets of a finer one (digests fold).
 */
export function bucketOf(key: string, nBuckets: number): number {
  return bucketOfHash(keyHash(key), nBuckets);
}

/** bucketOf for a hash already computed with keyHash. */
export function bucketOfHash(hash: number, nBuckets: number): number {
  return Math.floor((hash * nBuckets) / 4294967296);
}
