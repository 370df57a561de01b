// Owns the wire layer's failure vocabulary: drop reasons for received data, error codes for programming errors.

/** Why a received frame (or an item inside one) was dropped. Receivers count drops under these names. */
export type DropReason = 'bad_version' | 'too_large' | 'bad_auth' | 'truncated' | 'bad_payload' | 'wrong_cluster';

/** Outcome of decoding untrusted input: receive paths return this and never throw. */
export type Decoded<T> = { ok: true; value: T } | { ok: false; reason: DropReason; detail: string };

/**
 * CTS_ERR_WIRE_ENCODE: a Flow/Expectation handed to the encoder cannot be represented (e.g. an address that is
 * not IPv4/IPv6 text). CTS_ERR_WIRE_CONFIG: an option given to the wire layer is out of range.
 */
export type WireErrorCode = 'CTS_ERR_WIRE_ENCODE' | 'CTS_ERR_WIRE_CONFIG';

/** Thrown only on send paths, for input our own code produced: it is a bug upstream, not a peer's fault. */
export class WireError extends Error {
  readonly code: WireErrorCode;
  constructor(code: WireErrorCode, message: string) {
    super(message);
    this.name = 'WireError';
    this.code = code;
  }
}

export function drop<T>(reason: DropReason, detail: string): Decoded<T> {
  return { ok: false, reason, detail };
}
