// Owns stream framing for byte-stream transports (TCP/TLS): [u32 length, big endian][length bytes of frame].
//
// The length counts the frame only (envelope.ts layout), not the 4 prefix bytes. A length above the reader's
// limit is reported as `too_large` as soon as the prefix is read, without buffering the frame; the reader
// then stops, because a stream cannot be trusted to resynchronise after a bad prefix: the transport closes the
// connection. Frames that sit inside one chunk are handed out as views of it (no copy); frames spanning
// chunks are assembled into one buffer allocated once at the announced size.
import type { DropReason } from './errors.js';
import { WireError } from './errors.js';

export const LENGTH_PREFIX_BYTES = 4;

/** The frame with its length prefix, ready to write to a stream. */
export function frameBytes(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.set(payload, LENGTH_PREFIX_BYTES);
  return out;
}

export type FrameReaderError = { reason: Extract<DropReason, 'too_large'>; detail: string };

export class FrameReader {
  readonly maxFrameBytes: number;
  private frameCb: (frame: Buffer) => void = () => {};
  private errorCb: (err: FrameReaderError) => void = () => {};
  private readonly header = Buffer.alloc(LENGTH_PREFIX_BYTES);
  private headerFill = 0;
  /** Length of the frame being read, or -1 while reading a prefix. */
  private want = -1;
  /** The partially received frame (allocated at `want` bytes) and how much of it is filled. */
  private body: Buffer | null = null;
  private bodyFill = 0;
  private failed = false;

  constructor(maxFrameBytes: number) {
    if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 0 || maxFrameBytes > 0xffffffff) {
      throw new WireError('CTS_ERR_WIRE_CONFIG', `maxFrameBytes must be an integer in 0..2^32-1, got ${maxFrameBytes}`);
    }
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Called once per complete frame, in order. A frame may be a view of a pushed chunk: copy it to keep it. */
  onFrame(cb: (frame: Buffer) => void): void {
    this.frameCb = cb;
  }

  /** Called once when the stream becomes unusable; no frame follows. */
  onError(cb: (err: FrameReaderError) => void): void {
    this.errorCb = cb;
  }

  /** True after an error: further input is ignored. */
  get broken(): boolean {
    return this.failed;
  }

  /** Bytes held for an incomplete prefix or frame. */
  get buffered(): number {
    return this.want < 0 ? this.headerFill : this.bodyFill;
  }

  /** Feeds bytes from the stream. Never throws on any input (callbacks are the caller's). */
  push(chunk: Uint8Array): void {
    let off = 0;
    const n = chunk.length;
    while (off < n && !this.failed) {
      if (this.want < 0) {
        if (this.headerFill === 0 && n - off >= LENGTH_PREFIX_BYTES) {
          this.want = readU32BE(chunk, off);
          off += LENGTH_PREFIX_BYTES;
        } else {
          const take = Math.min(LENGTH_PREFIX_BYTES - this.headerFill, n - off);
          for (let i = 0; i < take; i++) this.header[this.headerFill++] = chunk[off + i]!;
          off += take;
          if (this.headerFill < LENGTH_PREFIX_BYTES) return;
          this.headerFill = 0;
          this.want = readU32BE(this.header, 0);
        }
        if (this.want > this.maxFrameBytes) {
          const detail = `frame length ${this.want} exceeds ${this.maxFrameBytes}`;
          this.failed = true;
          this.want = -1;
          this.errorCb({ reason: 'too_large', detail });
          return;
        }
      }
      const want = this.want;
      if (this.body === null && n - off >= want) {
        // Whole frame inside this chunk: hand out a view.
        const frame = asBuffer(chunk, off, want);
        off += want;
        this.want = -1;
        this.frameCb(frame);
        continue;
      }
      if (this.body === null) {
        this.body = Buffer.allocUnsafe(want);
        this.bodyFill = 0;
      }
      const take = Math.min(want - this.bodyFill, n - off);
      this.body.set(chunk.subarray(off, off + take), this.bodyFill);
      this.bodyFill += take;
      off += take;
      if (this.bodyFill === want) {
        const frame = this.body;
        this.body = null;
        this.bodyFill = 0;
        this.want = -1;
        this.frameCb(frame);
      }
    }
  }
}

function readU32BE(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) >>> 0) + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!);
}

function asBuffer(chunk: Uint8Array, off: number, len: number): Buffer {
  return Buffer.from(chunk.buffer, chunk.byteOffset + off, len);
}
