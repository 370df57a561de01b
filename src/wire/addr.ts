// Address text ↔ network-order bytes for the wire: the kernel codec's own functions (src/kernel/addr.ts), so a
// key built from text is the same on every node and in every layer.
import { ipToText, parseIpInto } from '../kernel/addr.js';

/** Parses IPv4 or IPv6 text into 4 or 16 bytes written at `out[off]`; returns the length, or 0 if invalid. */
export function writeAddress(text: string, out: Uint8Array, off: number): 4 | 16 | 0 {
  return parseIpInto(text, out, off);
}

/** Parses address text into a new 4- or 16-byte Buffer, or undefined if it is neither IPv4 nor IPv6. */
export function parseAddress(text: string): Buffer | undefined {
  const out = Buffer.allocUnsafe(16);
  const n = writeAddress(text, out, 0);
  return n === 0 ? undefined : out.subarray(0, n);
}

/** Formats 4 or 16 bytes at `buf[off]` as inet_ntop does (what `conntrack -L` prints). */
export function formatAddress(buf: Uint8Array, off: number, len: 4 | 16): string {
  return ipToText(buf, off, len);
}
