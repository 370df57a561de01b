// The peer link's own minimal framing: u32 big-endian length, u8 frame type, payload (kept here so the transport
// does not wait on src/wire; the payload of a DATA frame is whatever src/wire encoded, untouched).

/** Frame types of the link protocol. DATA carries the sync layer's bytes; the rest is link control. */
export const enum LinkFrame {
  Hello = 1, // JSON hello (see hello.ts); first frame in each direction
  Refuse = 2, // UTF-8 reason word; sender closes right after
  Heartbeat = 3, // empty; keeps the link alive when idle
  Data = 4, // opaque payload for onFrame
}

const HEADER_BYTES = 5; // u32 length (covers type + payload) + u8 type

/** Encodes one frame. Header and payload are separate buffers so large payloads are not copied. */
export function encodeLinkFrame(type: LinkFrame, payload: Buffer = EMPTY): [Buffer, Buffer] {
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  header.writeUInt32BE(payload.length + 1, 0);
  header.writeUInt8(type, 4);
  return [header, payload];
}

const EMPTY = Buffer.alloc(0);

export type DecodeResult = { ok: true } | { ok: false; reason: 'too_large' | 'truncated' };

/**
 * Incremental decoder. `push()` never throws: a length over `maxPayloadBytes` (checked before buffering the
 * payload) or a zero length ends decoding with a reason and the caller drops the connection.
 */
export class LinkFrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failed = false;
  private aborted = false;

  constructor(
    private readonly maxPayloadBytes: number,
    private readonly onFrame: (type: number, payload: Buffer) => void,
  ) {}

  push(chunk: Buffer): DecodeResult {
    if (this.aborted) return { ok: true };
    if (this.failed) return { ok: false, reason: 'too_large' };
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.buffered < HEADER_BYTES) return { ok: true };
      const head = this.peek(HEADER_BYTES);
      const len = head.readUInt32BE(0);
      if (len === 0) {
        this.failed = true;
        return { ok: false, reason: 'truncated' };
      }
      if (len - 1 > this.maxPayloadBytes) {
        this.failed = true;
        return { ok: false, reason: 'too_large' };
      }
      if (this.buffered < 4 + len) return { ok: true };
      const whole = this.take(4 + len);
      this.onFrame(whole.readUInt8(4), whole.subarray(HEADER_BYTES));
      if (this.aborted) return { ok: true };
    }
  }

  /** Stops delivering (the connection is being torn down). */
  abort(): void {
    this.aborted = true;
    this.chunks = [];
    this.buffered = 0;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!;
    const joined = Buffer.concat(this.chunks);
    this.chunks = [joined];
    return joined;
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length === n) {
      this.chunks.shift();
      this.buffered -= n;
      return first;
    }
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return first.subarray(0, n);
    }
    const joined = Buffer.concat(this.chunks);
    this.chunks = joined.length > n ? [joined.subarray(n)] : [];
    this.buffered -= n;
    return joined.subarray(0, n);
  }
}
