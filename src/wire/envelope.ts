// Owns the frame: the bytes around one Envelope (header, optional MAC) and the checks every received frame passes.
//
// Byte layout of one frame (a TCP frame's payload after its length prefix, see framing.ts, or one Redis value):
//
//   offset  size  field
//   0       1     magic 0xC5 ("this is ctsync")
//   1       1     frame format, currently 1. Bumped only for a change old receivers cannot skip; compatible
//                 additions go into the protobuf Envelope instead (Envelope.version).
//   2       1     flags: bit 0 = a MAC trails the frame. Other bits are reserved and must be 0.
//   3       n     Envelope, protobuf (ctsync.proto)
//   3+n     16    only with flag bit 0: HMAC-SHA256(macKey, bytes 0 .. 3+n-1), first 16 bytes
//
// decodeFrame order: size limit (before anything is read), header (magic, format = the version check, flags),
// MAC (before any protobuf is parsed, so an unauthenticated sender cannot reach the decoder), protobuf decode,
// Envelope.version, cluster id. Every failure is a named drop reason; nothing throws.
//
// MAC: keyed with a key derived from the cluster key (HKDF-SHA256, info "ctsync frame mac v1"), so the raw
// cluster key (also usable as a TLS PSK) is never used directly. It authenticates the frame end to end, over
// shared infrastructure such as Redis. It does not stop replays: receivers drop seqs they have already seen.
// Per transport: when a receiver has a key, it refuses frames without a valid MAC; without a key, a trailing
// MAC is skipped unverified (that transport relies on its own authentication, e.g. TLS).
import { createHmac, createSecretKey, hkdfSync, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { DropReason } from './errors.js';
import { WireError } from './errors.js';
import { Envelope, type pb } from './proto.js';
import { putVarint } from './entry.js';

export const FRAME_MAGIC = 0xc5;
export const FRAME_FORMAT = 1;
export const FRAME_HEADER_BYTES = 3;
export const FRAME_FLAG_MAC = 0x01;
export const MAC_BYTES = 16;

/** Envelope.version this build sends. */
export const PROTOCOL_VERSION = 1;
/** Oldest Envelope.version this build accepts. Newer versions are accepted: their additions are skippable. */
export const MIN_PROTOCOL_VERSION = 1;

/** Default largest frame accepted (header, Envelope and MAC). A 1000-entry Upsert is ~30 KiB. */
export const DEFAULT_MAX_FRAME_BYTES = 1 << 20;

export interface FrameLimits {
  /** Largest frame accepted, in bytes; checked before anything is decoded. */
  maxFrameBytes: number;
}

/** An opaque MAC key; make one per cluster key with createMacKey and reuse it. */
export interface MacKey {
  readonly kind: 'ctsync-frame-mac-v1';
  readonly key: KeyObject;
}

/** What a receiver requires of a frame. */
export interface FrameExpect {
  clusterId: string;
  /** When set, frames must carry a valid MAC (bad_auth otherwise). */
  macKey?: MacKey | undefined;
}

export interface EncodeOptions {
  /** When set, the frame carries a MAC. */
  macKey?: MacKey | undefined;
}

export type FrameResult = { ok: true; env: pb.Envelope } | { ok: false; reason: DropReason; detail: string };

/** Derives the frame MAC key from the cluster's shared key (at least 16 bytes of secret). */
export function createMacKey(clusterKey: Uint8Array | string): MacKey {
  const ikm = typeof clusterKey === 'string' ? Buffer.from(clusterKey, 'utf8') : Buffer.from(clusterKey);
  if (ikm.length < 16) {
    throw new WireError('CTS_ERR_WIRE_CONFIG', `cluster key is ${ikm.length} bytes; at least 16 are required to authenticate frames`);
  }
  const derived = Buffer.from(hkdfSync('sha256', ikm, 'ctsync', 'ctsync frame mac v1', 32));
  return { kind: 'ctsync-frame-mac-v1', key: createSecretKey(derived) };
}

function mac(key: MacKey, data: Uint8Array): Buffer {
  return createHmac('sha256', key.key).update(data).digest().subarray(0, MAC_BYTES);
}

/** Encodes an Envelope into one frame (send path). `version` defaults to PROTOCOL_VERSION. */
export function encodeFrame(env: pb.IEnvelope, opts: EncodeOptions = {}): Buffer {
  const msg = env.version ? env : { ...env, version: PROTOCOL_VERSION };
  const body = Envelope.encode(msg).finish();
  const macLen = opts.macKey ? MAC_BYTES : 0;
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.length + macLen);
  out[0] = FRAME_MAGIC;
  out[1] = FRAME_FORMAT;
  out[2] = opts.macKey ? FRAME_FLAG_MAC : 0;
  out.set(body, FRAME_HEADER_BYTES);
  if (opts.macKey) {
    const end = FRAME_HEADER_BYTES + body.length;
    mac(opts.macKey, out.subarray(0, end)).copy(out, end);
  }
  return out;
}

/**
 * encodeFrame for an Upsert whose entries are already encoded (EntryBatch: the bytes of repeated field 1):
 * the same bytes encodeFrame writes for `{ ...env, upsert: { entries, ...upsert } }`. The Envelope's fields all
 * come before its body (numbers 1-5 < 17) and Upsert.entries is its field 1, so the frame is the head, the
 * body's tag and length, the entries, then the rest of the Upsert.
 */
export function encodeUpsertFrame(env: pb.IEnvelope, upsert: Omit<pb.IUpsert, 'entries'>, entries: Uint8Array, opts: EncodeOptions = {}): Buffer {
  const head = Envelope.encode(env.version ? env : { ...env, version: PROTOCOL_VERSION }).finish();
  // the Upsert without entries, as protobufjs writes it inside an Envelope: skip that field's tag and length
  const alone = Envelope.encode({ upsert }).finish();
  let skip = 2;
  while (alone[skip]! & 0x80) skip++;
  const rest = alone.subarray(skip + 1);
  const bodyLen = entries.length + rest.length;
  let lenBytes = 1;
  for (let v = bodyLen; v > 0x7f; v >>>= 7) lenBytes++;
  const macLen = opts.macKey ? MAC_BYTES : 0;
  const end = FRAME_HEADER_BYTES + head.length + 2 + lenBytes + bodyLen;
  const out = Buffer.allocUnsafe(end + macLen);
  out[0] = FRAME_MAGIC;
  out[1] = FRAME_FORMAT;
  out[2] = opts.macKey ? FRAME_FLAG_MAC : 0;
  let p = FRAME_HEADER_BYTES;
  out.set(head, p);
  p += head.length;
  out[p++] = 0x8a; // upsert = 17, length-delimited: (17 << 3 | 2) as a varint
  out[p++] = 0x01;
  p = putVarint(out, p, bodyLen);
  out.set(entries, p);
  p += entries.length;
  out.set(rest, p);
  if (opts.macKey) mac(opts.macKey, out.subarray(0, end)).copy(out, end);
  return out;
}

function fail(reason: DropReason, detail: string): { ok: false; reason: DropReason; detail: string } {
  return { ok: false, reason, detail };
}

/** Where a checked frame's Envelope ends (it starts at FRAME_HEADER_BYTES), or why the frame is dropped. */
export type FrameCheck = { ok: true; end: number } | { ok: false; reason: DropReason; detail: string };

/**
 * The checks every received frame passes before any of its Envelope is read: size limit, header (magic, format,
 * flags) and MAC. A receive path that reads the Envelope in place runs this first; decodeFrame is this plus
 * decodeEnvelope.
 */
export function checkFrame(buf: Uint8Array, limits: FrameLimits, expect: FrameExpect): FrameCheck {
  if (buf.length > limits.maxFrameBytes) return fail('too_large', `frame of ${buf.length} bytes exceeds ${limits.maxFrameBytes}`);
  if (buf.length < FRAME_HEADER_BYTES) return fail('truncated', `frame of ${buf.length} bytes has no header`);
  if (buf[0] !== FRAME_MAGIC) return fail('bad_payload', `magic 0x${buf[0]!.toString(16)} is not a ctsync frame`);
  if (buf[1] !== FRAME_FORMAT) return fail('bad_version', `frame format ${buf[1]} (this node reads ${FRAME_FORMAT})`);
  const flags = buf[2]!;
  if (flags & ~FRAME_FLAG_MAC) return fail('bad_version', `unknown frame flags 0x${flags.toString(16)}`);
  let end = buf.length;
  if (flags & FRAME_FLAG_MAC) {
    if (buf.length < FRAME_HEADER_BYTES + MAC_BYTES) return fail('truncated', 'frame too short for its MAC');
    end -= MAC_BYTES;
    if (expect.macKey) {
      const want = mac(expect.macKey, buf.subarray(0, end));
      if (!timingSafeEqual(want, buf.subarray(end))) return fail('bad_auth', 'frame MAC does not verify');
    }
  } else if (expect.macKey) {
    return fail('bad_auth', 'frame carries no MAC but this transport requires one');
  }
  return { ok: true, end };
}

/** Checks and decodes one received frame (receive path: never throws). */
export function decodeFrame(buf: Uint8Array, limits: FrameLimits, expect: FrameExpect): FrameResult {
  const c = checkFrame(buf, limits, expect);
  return c.ok ? decodeEnvelope(buf, c.end, expect) : c;
}

/** The rest of decodeFrame for a frame checkFrame passed (`end` from it): protobuf decode, version, cluster id. */
export function decodeEnvelope(buf: Uint8Array, end: number, expect: FrameExpect): FrameResult {
  let env: pb.Envelope;
  try {
    env = Envelope.decode(buf.subarray(FRAME_HEADER_BYTES, end));
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    // protobufjs reports reads past the end as RangeError "index out of range"; anything else (bad wire type,
    // groups nested until the stack runs out) is a malformed payload.
    const truncated = err instanceof RangeError && msg.startsWith('index out of range');
    return fail(truncated ? 'truncated' : 'bad_payload', `envelope: ${msg}`);
  }
  if (!(env.version >= MIN_PROTOCOL_VERSION)) {
    return fail('bad_version', `protocol version ${env.version} (this node accepts >= ${MIN_PROTOCOL_VERSION})`);
  }
  if (env.clusterId !== expect.clusterId) {
    return fail('wrong_cluster', `cluster ${JSON.stringify(env.clusterId)} (expected ${JSON.stringify(expect.clusterId)})`);
  }
  return { ok: true, env };
}
