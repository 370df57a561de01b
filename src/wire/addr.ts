// Owns the conversion between address text (as the shared Flow model holds it) and network-order bytes.
//
// The text form is what `conntrack -L` prints, i.e. glibc inet_ntop: IPv4 dotted quad; IPv6 lower case, the
// first longest run of two or more zero groups compressed, and the last 32 bits as a dotted quad for
// IPv4-compatible (::a.b.c.d) and IPv4-mapped (::ffff:a.b.c.d) addresses. The standby formats addresses this
// way, so keys built from text match on both nodes only if src/kernel prints the same way.

/** Parses IPv4 or IPv6 text into 4 or 16 bytes written at `out[off]`; returns the length, or 0 if invalid. */
export function writeAddress(text: string, out: Uint8Array, off: number): 4 | 16 | 0 {
  return text.includes(':') ? (parseIpv6(text, out, off) ? 16 : 0) : parseIpv4(text, 0, text.length, out, off) ? 4 : 0;
}

/** Parses address text into a new 4- or 16-byte Buffer, or undefined if it is neither IPv4 nor IPv6. */
export function parseAddress(text: string): Buffer | undefined {
  const out = Buffer.allocUnsafe(16);
  const n = writeAddress(text, out, 0);
  return n === 0 ? undefined : out.subarray(0, n);
}

/** Formats 4 or 16 bytes at `buf[off]` as inet_ntop does. */
export function formatAddress(buf: Uint8Array, off: number, len: 4 | 16): string {
  return len === 4 ? formatIpv4(buf, off) : formatIpv6(buf, off);
}

function formatIpv4(b: Uint8Array, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

function formatIpv6(b: Uint8Array, o: number): string {
  const w = new Array<number>(8);
  for (let i = 0; i < 8; i++) w[i] = (b[o + 2 * i]! << 8) | b[o + 2 * i + 1]!;
  // Longest run of zero words; the first one wins a tie; runs of one are not compressed (glibc inet_ntop6).
  let bestBase = -1;
  let bestLen = 0;
  let curBase = -1;
  let curLen = 0;
  for (let i = 0; i <= 8; i++) {
    if (i < 8 && w[i] === 0) {
      if (curBase < 0) {
        curBase = i;
        curLen = 0;
      }
      curLen++;
    } else if (curBase >= 0) {
      if (curLen > bestLen) {
        bestBase = curBase;
        bestLen = curLen;
      }
      curBase = -1;
    }
  }
  if (bestLen < 2) bestBase = -1;
  let s = '';
  for (let i = 0; i < 8; i++) {
    if (bestBase >= 0 && i >= bestBase && i < bestBase + bestLen) {
      if (i === bestBase) s += ':';
      continue;
    }
    if (i !== 0) s += ':';
    if (i === 6 && bestBase === 0 && (bestLen === 6 || (bestLen === 5 && w[5] === 0xffff))) {
      return s + formatIpv4(b, o + 12);
    }
    s += w[i]!.toString(16);
  }
  if (bestBase >= 0 && bestBase + bestLen === 8) s += ':';
  return s;
}

/** Strict dotted quad (no leading zeros, like inet_pton) from text[start, end). */
function parseIpv4(text: string, start: number, end: number, out: Uint8Array, off: number): boolean {
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = start; i <= end; i++) {
    const c = i < end ? text.charCodeAt(i) : 46; // a virtual '.' closes the last part
    if (c >= 48 && c <= 57) {
      if (digits > 0 && value === 0) return false; // leading zero
      value = value * 10 + (c - 48);
      if (value > 255) return false;
      digits++;
    } else if (c === 46) {
      if (digits === 0 || part > 3) return false;
      out[off + part++] = value;
      value = 0;
      digits = 0;
    } else {
      return false;
    }
  }
  return part === 4;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

function parseIpv6(text: string, out: Uint8Array, off: number): boolean {
  const words: number[] = [];
  let gap = -1; // index in words where '::' stands
  let i = 0;
  const n = text.length;
  if (n < 2) return false;
  if (text.charCodeAt(0) === 58) {
    if (text.charCodeAt(1) !== 58) return false;
    gap = 0;
    i = 2;
    if (i === n) return writeWords(words, gap, out, off);
  }
  for (;;) {
    // One group: hex digits, or a trailing dotted quad.
    const start = i;
    let value = 0;
    while (i < n && i - start < 5) {
      const h = hexValue(text.charCodeAt(i));
      if (h < 0) break;
      value = (value << 4) | h;
      i++;
    }
    if (i < n && text.charCodeAt(i) === 46) {
      if (words.length > 6) return false;
      const quad = new Uint8Array(4);
      if (!parseIpv4(text, start, n, quad, 0)) return false;
      words.push((quad[0]! << 8) | quad[1]!, (quad[2]! << 8) | quad[3]!);
      break;
    }
    const len = i - start;
    if (len === 0 || len > 4) return false;
    words.push(value);
    if (i === n) break;
    if (text.charCodeAt(i) !== 58) return false;
    i++;
    if (i < n && text.charCodeAt(i) === 58) {
      if (gap >= 0) return false;
      gap = words.length;
      i++;
      if (i === n) break;
    } else if (i === n) {
      return false; // trailing single ':'
    }
    if (words.length > 8) return false;
  }
  return writeWords(words, gap, out, off);
}

function writeWords(words: number[], gap: number, out: Uint8Array, off: number): boolean {
  if (gap < 0 ? words.length !== 8 : words.length > 7) return false;
  const fill = 8 - words.length;
  let k = 0;
  for (let i = 0; i < 8; i++) {
    let w: number;
    if (gap >= 0 && i >= gap && i < gap + fill) w = 0;
    else w = words[k++]!;
    out[off + 2 * i] = w >> 8;
    out[off + 2 * i + 1] = w & 0xff;
  }
  return true;
}
