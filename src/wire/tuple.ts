// Owns the wire forms of a Tuple: the packed `bytes` form, the long `Tuple` message, and the no-NAT inverse.
//
// Packed form, network order: [proto u8][src 4|16][dst 4|16][L4: nothing or 4 bytes]
//   total length 9 / 13 = IPv4 without / with L4, 33 / 37 = IPv6 without / with L4.
//   L4 for ICMP (1) and ICMPv6 (58): [type u8][code u8][id u16]; for every other protocol: [sport u16][dport u16].
// A tuple packs when both addresses have the same family and it has either all of its protocol's L4 fields
// or none, and nothing else. Its zone is never packed: callers carry it next to the tuple. Anything else
// travels as the long `Tuple` message, so every Tuple the model can hold has a wire form.
import type { Tuple } from '../kernel/types.js';
import { formatAddress, writeAddress } from './addr.js';
import { WireError } from './errors.js';
import type { pb } from './proto.js';

const ICMP = 1;
const ICMPV6 = 58;

// The kernel's ICMP/ICMPv6 invmap (nf_conntrack_proto_icmp.c, nf_conntrack_proto_icmpv6.c): a request's
// reply tuple carries the reply type. Part of the wire format: both ends must invert the same way, so this
// table may only grow in a new protocol version.
const ICMP_INVERSE: ReadonlyMap<number, number> = new Map([
  [8, 0], [0, 8], // echo
  [13, 14], [14, 13], // timestamp
  [15, 16], [16, 15], // info
  [17, 18], [18, 17], // address mask
]);
const ICMPV6_INVERSE: ReadonlyMap<number, number> = new Map([
  [128, 129], [129, 128], // echo
  [139, 140], [140, 139], // node information
]);

function isIcmp(proto: number): boolean {
  return proto === ICMP || proto === ICMPV6;
}

function isU16(v: number | undefined): v is number {
  return v !== undefined && v >= 0 && v <= 0xffff && Number.isInteger(v);
}

function isU8(v: number | undefined): v is number {
  return v !== undefined && v >= 0 && v <= 0xff && Number.isInteger(v);
}

const scratch = Buffer.alloc(37);

/** The packed form of `t` without its zone, or undefined when it needs the long form. Never throws. */
export function packTuple(t: Tuple): Buffer | undefined {
  const proto = t.proto;
  if (!isU8(proto)) return undefined;
  const portsSet = t.sport !== undefined || t.dport !== undefined;
  const icmpSet = t.icmpType !== undefined || t.icmpCode !== undefined || t.icmpId !== undefined;
  const srcLen = writeAddress(t.src, scratch, 1);
  if (srcLen === 0) return undefined;
  const dstLen = writeAddress(t.dst, scratch, 1 + srcLen);
  if (dstLen !== srcLen) return undefined;
  let n = 1 + 2 * srcLen;
  scratch[0] = proto;
  if (isIcmp(proto)) {
    if (portsSet) return undefined;
    if (icmpSet) {
      if (!isU8(t.icmpType) || !isU8(t.icmpCode) || !isU16(t.icmpId)) return undefined;
      scratch[n] = t.icmpType;
      scratch[n + 1] = t.icmpCode;
      scratch.writeUInt16BE(t.icmpId, n + 2);
      n += 4;
    }
  } else {
    if (icmpSet) return undefined;
    if (portsSet) {
      if (!isU16(t.sport) || !isU16(t.dport)) return undefined;
      scratch.writeUInt16BE(t.sport, n);
      scratch.writeUInt16BE(t.dport, n + 2);
      n += 4;
    }
  }
  const out = Buffer.allocUnsafe(n);
  scratch.copy(out, 0, 0, n);
  return out;
}

/** Decodes a packed tuple (no zone); undefined when the length is not one of the four valid ones. */
export function unpackTuple(b: Uint8Array): Tuple | undefined {
  const len = b.length;
  const alen = len === 9 || len === 13 ? 4 : len === 33 || len === 37 ? 16 : 0;
  if (alen === 0) return undefined;
  const proto = b[0]!;
  const t: Tuple = { src: formatAddress(b, 1, alen), dst: formatAddress(b, 1 + alen, alen), proto };
  if (len === 1 + 2 * alen) return t;
  const o = 1 + 2 * alen;
  if (isIcmp(proto)) {
    t.icmpType = b[o]!;
    t.icmpCode = b[o + 1]!;
    t.icmpId = (b[o + 2]! << 8) | b[o + 3]!;
  } else {
    t.sport = (b[o]! << 8) | b[o + 1]!;
    t.dport = (b[o + 2]! << 8) | b[o + 3]!;
  }
  return t;
}

/** Address length a packed tuple implies (4 or 16), or 0 when malformed. */
export function packedAddressLength(b: Uint8Array): 4 | 16 | 0 {
  const len = b.length;
  return len === 9 || len === 13 ? 4 : len === 33 || len === 37 ? 16 : 0;
}

function addressBytes(text: string, what: string): Buffer {
  const out = Buffer.allocUnsafe(16);
  const n = writeAddress(text, out, 0);
  if (n === 0) throw new WireError('CTS_ERR_WIRE_ENCODE', `${what} address ${JSON.stringify(text)} is neither IPv4 nor IPv6`);
  return out.subarray(0, n);
}

/** The long form, zone included when `withZone`. Throws CTS_ERR_WIRE_ENCODE on an unparsable address. */
export function tupleToExt(t: Tuple, withZone: boolean): pb.ITuple {
  const x: pb.ITuple = { src: addressBytes(t.src, 'source'), dst: addressBytes(t.dst, 'destination') };
  if (t.proto) x.proto = t.proto;
  if (t.sport !== undefined) x.sport = t.sport;
  if (t.dport !== undefined) x.dport = t.dport;
  if (t.icmpType !== undefined) x.icmpType = t.icmpType;
  if (t.icmpCode !== undefined) x.icmpCode = t.icmpCode;
  if (t.icmpId !== undefined) x.icmpId = t.icmpId;
  if (withZone && t.zone !== undefined) x.zone = t.zone;
  return x;
}

/** Decodes the long form (zone included); undefined when an address has a length other than 4 or 16. */
export function tupleFromExt(x: pb.ITuple): Tuple | undefined {
  const src = x.src;
  const dst = x.dst;
  if (!src || !dst || (src.length !== 4 && src.length !== 16) || (dst.length !== 4 && dst.length !== 16)) return undefined;
  const t: Tuple = { src: formatAddress(src, 0, src.length), dst: formatAddress(dst, 0, dst.length), proto: x.proto ?? 0 };
  if (x.sport != null) t.sport = x.sport;
  if (x.dport != null) t.dport = x.dport;
  if (x.icmpType != null) t.icmpType = x.icmpType;
  if (x.icmpCode != null) t.icmpCode = x.icmpCode;
  if (x.icmpId != null) t.icmpId = x.icmpId;
  if (x.zone != null) t.zone = x.zone;
  return t;
}

/** Address length of a long-form tuple's source (4 or 16), for family inference. */
export function extAddressLength(x: pb.ITuple): number {
  return x.src ? x.src.length : 0;
}

function invertIcmpType(proto: number, type: number | undefined): number | undefined {
  if (type === undefined || !isIcmp(proto)) return type;
  return (proto === ICMP ? ICMP_INVERSE : ICMPV6_INVERSE).get(type);
}

/**
 * The reply tuple conntrack derives from `orig` when nothing rewrites the flow (no NAT), zone excluded;
 * undefined when no inverse is defined (an ICMP type without a reply type).
 */
export function invertTuple(orig: Tuple): Tuple | undefined {
  const t: Tuple = { src: orig.dst, dst: orig.src, proto: orig.proto };
  if (orig.dport !== undefined) t.sport = orig.dport;
  if (orig.sport !== undefined) t.dport = orig.sport;
  if (orig.icmpType !== undefined) {
    const type = invertIcmpType(orig.proto, orig.icmpType);
    if (type === undefined) return undefined;
    t.icmpType = type;
  }
  if (orig.icmpCode !== undefined) t.icmpCode = orig.icmpCode;
  if (orig.icmpId !== undefined) t.icmpId = orig.icmpId;
  return t;
}

/** True when `reply` equals invertTuple(orig), zones aside: then the wire carries no reply tuple. */
export function isInverse(orig: Tuple, reply: Tuple): boolean {
  if (
    reply.proto !== orig.proto ||
    reply.src !== orig.dst ||
    reply.dst !== orig.src ||
    reply.sport !== orig.dport ||
    reply.dport !== orig.sport ||
    reply.icmpCode !== orig.icmpCode ||
    reply.icmpId !== orig.icmpId
  ) {
    return false;
  }
  if (orig.icmpType === undefined) return reply.icmpType === undefined;
  const inv = invertIcmpType(orig.proto, orig.icmpType);
  return inv !== undefined && reply.icmpType === inv;
}
