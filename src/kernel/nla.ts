// Building netlink messages and attributes into one growing Buffer (a batch of messages back to back).

import { parseIpInto, AddressError } from './addr.js';
import { NLA_F_NESTED, NLA_TYPE_MASK } from './ctnetlink-const.js';
import type { RawAttr } from './types.js';

export const NLMSG_HDRLEN = 16; // struct nlmsghdr
export const NFGENMSG_LEN = 4; // struct nfgenmsg

const INITIAL_SIZE = 4096;

/** Pads n up to the next multiple of 4 (NLMSG_ALIGN / NLA_ALIGN). */
export function align4(n: number): number {
  return (n + 3) & ~3;
}

/**
 * Writes nlmsghdr + nfgenmsg + attributes. nlmsghdr and nla headers are host order (little endian on every
 * platform this runs on); every ctnetlink payload helper says its byte order in its name.
 *
 * Views returned by messages() share memory with the writer: they stay valid until the next write, reset()
 * or rewind(). finish() returns a copy.
 */
export class AttrWriter {
  private buf: Buffer;
  private pos = 0;
  private msgStart = -1;
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  constructor(initialSize: number = INITIAL_SIZE) {
    this.buf = Buffer.alloc(Math.max(64, initialSize));
  }

  get length(): number {
    return this.pos;
  }

  /** Number of complete messages (beginMessage ... endMessage) in the batch. */
  get messageCount(): number {
    return this.ends.length;
  }

  private ensure(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** nlmsghdr (len patched by endMessage, pid 0: the kernel fills in our port) + nfgenmsg {family, version 0, res_id BE}. */
  beginMessage(type: number, flags: number, seq: number, family: number, resId: number = 0): void {
    if (this.msgStart >= 0) this.endMessage();
    this.ensure(NLMSG_HDRLEN + NFGENMSG_LEN);
    const b = this.buf;
    const p = this.pos;
    this.msgStart = p;
    b.writeUInt32LE(0, p);
    b.writeUInt16LE(type & 0xffff, p + 4);
    b.writeUInt16LE(flags & 0xffff, p + 6);
    b.writeUInt32LE(seq >>> 0, p + 8);
    b.writeUInt32LE(0, p + 12);
    b[p + 16] = family & 0xff;
    b[p + 17] = 0; // NFNETLINK_V0
    b.writeUInt16BE(resId & 0xffff, p + 18);
    this.pos = p + NLMSG_HDRLEN + NFGENMSG_LEN;
  }

  /** Patches nlmsg_len of the open message; attributes keep everything 4-aligned already. */
  endMessage(): void {
    if (this.msgStart < 0) return;
    this.pos = align4(this.pos);
    this.buf.writeUInt32LE(this.pos - this.msgStart, this.msgStart);
    this.starts.push(this.msgStart);
    this.ends.push(this.pos);
    this.msgStart = -1;
  }

  /** Writes an attribute header and reserves its padded payload; returns the payload offset. */
  private attr(type: number, payloadLen: number): number {
    const total = align4(4 + payloadLen);
    this.ensure(total);
    const b = this.buf;
    const p = this.pos;
    b[p] = (4 + payloadLen) & 0xff; // nla_len: host order
    b[p + 1] = ((4 + payloadLen) >>> 8) & 0xff;
    b[p + 2] = type & 0xff; // nla_type: host order
    b[p + 3] = (type >>> 8) & 0xff;
    // Zero the alignment padding so batches are byte-for-byte deterministic.
    for (let i = 4 + payloadLen; i < total; i++) b[p + i] = 0;
    this.pos = p + total;
    return p + 4;
  }

  u8(type: number, v: number): void {
    const o = this.attr(type, 1);
    this.buf[o] = v & 0xff;
  }

  u16be(type: number, v: number): void {
    const o = this.attr(type, 2);
    this.buf[o] = (v >>> 8) & 0xff;
    this.buf[o + 1] = v & 0xff;
  }

  u32be(type: number, v: number): void {
    const o = this.attr(type, 4);
    this.buf.writeUInt32BE(v >>> 0, o);
  }

  u64be(type: number, v: bigint): void {
    const o = this.attr(type, 8);
    this.buf.writeBigUInt64BE(BigInt.asUintN(64, v), o);
  }

  bytes(type: number, b: Buffer): void {
    const o = this.attr(type, b.length);
    b.copy(this.buf, o);
  }

  /** b[start, start + len) as the payload, for hot paths: short (an address, a port), so copied byte by byte. */
  slice(type: number, b: Buffer, start: number, len: number): void {
    const o = this.attr(type, len);
    const d = this.buf;
    for (let i = 0; i < len; i++) d[o + i] = b[start + i]!;
  }

  /** NUL-terminated string (NLA_NUL_STRING / NLA_STRING attributes such as CTA_HELP_NAME). */
  strz(type: number, s: string): void {
    const n = Buffer.byteLength(s, 'utf8');
    const o = this.attr(type, n + 1);
    this.buf.write(s, o, n, 'utf8');
    this.buf[o + n] = 0;
  }

  /**
   * Address text as CTA_IP_V4_* (4 bytes) or CTA_IP_V6_* (16 bytes) payload, parsed straight into the message.
   * Throws AddressError if the text is not an address of that length (our own model is wrong, not the wire).
   */
  ipText(type: number, s: string, len: 4 | 16): void {
    const o = this.attr(type, len);
    const got = parseIpInto(s, this.buf, o);
    if (got !== len) {
      this.pos = o - 4;
      throw new AddressError(s);
    }
  }

  /** Opens a nested attribute (NLA_F_NESTED set); returns the token endNest needs. */
  nest(type: number): number {
    const p = this.pos;
    this.attr(type | NLA_F_NESTED, 0);
    return p;
  }

  endNest(token: number): void {
    const len = this.pos - token;
    this.buf[token] = len & 0xff;
    this.buf[token + 1] = (len >>> 8) & 0xff;
  }

  /** Re-emits an attribute we kept but do not model, byte for byte. */
  raw(a: RawAttr): void {
    const o = this.attr((a.type & NLA_TYPE_MASK) | (a.nested ? NLA_F_NESTED : 0), a.data.length);
    a.data.copy(this.buf, o);
  }

  /** Forgets everything written (the memory is kept for the next batch). */
  reset(): void {
    this.pos = 0;
    this.msgStart = -1;
    this.starts.length = 0;
    this.ends.length = 0;
  }

  /**
   * Drops everything after `length` (a value read from `.length` earlier): the way to undo a message whose encoding
   * threw half way (e.g. a bad address) without losing the rest of the batch.
   */
  rewind(length: number): void {
    if (length < 0 || length > this.pos) return;
    this.pos = length;
    if (this.msgStart >= length) this.msgStart = -1;
    while (this.ends.length > 0 && this.ends[this.ends.length - 1]! > length) {
      this.ends.pop();
      this.starts.pop();
    }
  }

  /** A copy of the bytes written so far (an open message is closed first). */
  finish(): Buffer {
    if (this.msgStart >= 0) this.endMessage();
    return Buffer.from(this.buf.subarray(0, this.pos));
  }

  /** Each complete message as a view into the writer's memory, for one sendmsg with many iovecs. */
  messages(): Buffer[] {
    if (this.msgStart >= 0) this.endMessage();
    const out: Buffer[] = new Array(this.starts.length);
    for (let i = 0; i < this.starts.length; i++) out[i] = this.buf.subarray(this.starts[i], this.ends[i]);
    return out;
  }
}

// ---- Walking attributes -------------------------------------------------------------------------------------
// The decoders loop inline over [off, end) with these helpers: no closure and no allocation per attribute.

/** nla_len at p (host order, little endian). */
export function nlaLenLE(buf: Buffer, p: number): number {
  return buf[p]! | (buf[p + 1]! << 8);
}

/** nla_type at p with both flag bits masked off. */
export function nlaTypeLE(buf: Buffer, p: number): number {
  return (buf[p + 2]! | (buf[p + 3]! << 8)) & NLA_TYPE_MASK;
}

/** NLA_F_NESTED set at p. */
export function nlaIsNested(buf: Buffer, p: number): boolean {
  return (buf[p + 3]! & 0x80) !== 0;
}

/**
 * Checks the attribute header at p against the region end: returns the attribute's nla_len, or a negative value:
 * -1 the header or payload runs past end (truncated), -2 nla_len is smaller than the header (bad_length).
 */
export function nlaCheck(buf: Buffer, p: number, end: number): number {
  if (end - p < 4) return -1;
  const len = buf[p]! | (buf[p + 1]! << 8);
  if (len < 4) return -2;
  if (len > end - p) return -1;
  return len;
}

export function readU16BE(buf: Buffer, p: number): number {
  return (buf[p]! << 8) | buf[p + 1]!;
}

export function readU32BE(buf: Buffer, p: number): number {
  return ((buf[p]! << 24) | (buf[p + 1]! << 16) | (buf[p + 2]! << 8) | buf[p + 3]!) >>> 0;
}

export function readU64BE(buf: Buffer, p: number): bigint {
  return (BigInt(readU32BE(buf, p)) << 32n) | BigInt(readU32BE(buf, p + 4));
}

/** A string attribute: up to the first NUL (kernel strings are NUL-terminated; tolerate a missing NUL). */
export function readStrz(buf: Buffer, p: number, len: number): string {
  let e = p;
  const stop = p + len;
  while (e < stop && buf[e] !== 0) e++;
  return buf.toString('utf8', p, e);
}

/** A copy of the payload: the receive buffer is reused by the socket layer, so views would be overwritten. */
export function copyBytes(buf: Buffer, p: number, len: number): Buffer {
  const out = Buffer.allocUnsafe(len);
  // Labels (16 bytes) arrive with every event: a byte loop beats Buffer#copy's argument checks at this size.
  if (len <= 64) for (let i = 0; i < len; i++) out[i] = buf[p + i]!;
  else buf.copy(out, 0, p, p + len);
  return out;
}

/** The attribute at p (already checked with nlaCheck) as a RawAttr, payload copied. */
export function readRawAttr(buf: Buffer, p: number, len: number): RawAttr {
  return { type: nlaTypeLE(buf, p), nested: nlaIsNested(buf, p), data: copyBytes(buf, p + 4, len - 4) };
}

/** Every attribute of [off, end) as RawAttr, or null if the region is malformed. For tests and cold paths. */
export function parseAttrs(buf: Buffer, off: number, end: number): RawAttr[] | null {
  const out: RawAttr[] = [];
  let p = off;
  while (p < end) {
    const len = nlaCheck(buf, p, end);
    if (len < 0) return null;
    out.push(readRawAttr(buf, p, len));
    p += align4(len);
  }
  return out;
}
