// IP address bytes <-> text: IPv4 dotted quad and IPv6 formatted exactly like glibc inet_ntop (what `conntrack -L` prints).

/** Thrown by textToIp for input that is not an IPv4 or IPv6 address (config and CLI input only). */
export class AddressError extends Error {
  readonly code = 'CTS_ERR_BAD_ADDRESS';
  constructor(readonly input: string) {
    super(`not an IPv4 or IPv6 address: ${JSON.stringify(input)}`);
    this.name = 'AddressError';
  }
}

// Octet strings built once: IPv4 formatting on the event path is four lookups and three concatenations.
const OCTET: string[] = [];
for (let i = 0; i < 256; i++) OCTET.push(String(i));
// IPv6 groups from two byte tables: no leading zeros for the high byte, two digits for the low byte when a high one exists.
const HEX: string[] = [];
const HEX2: string[] = [];
for (let i = 0; i < 256; i++) {
  HEX.push(i.toString(16));
  HEX2.push((i < 16 ? '0' : '') + i.toString(16));
}

function groupText(hi: number, lo: number): string {
  return hi === 0 ? HEX[lo]! : HEX[hi]! + HEX2[lo]!;
}

function ipv4ToText(buf: Uint8Array, off: number): string {
  return OCTET[buf[off]!] + '.' + OCTET[buf[off + 1]!] + '.' + OCTET[buf[off + 2]!] + '.' + OCTET[buf[off + 3]!];
}

/**
 * glibc inet_ntop6 rules: hex groups without leading zeros; the longest run of at least two zero groups becomes
 * "::" (the first run wins a tie); IPv4-compatible (::a.b.c.d, first six groups zero and the rest not a single
 * zero group) and IPv4-mapped (::ffff:a.b.c.d) addresses end in dotted quad.
 */
function ipv6ToText(buf: Uint8Array, off: number): string {
  let bestBase = -1;
  let bestLen = 0;
  let curBase = -1;
  let curLen = 0;
  for (let i = 0; i < 8; i++) {
    const w = (buf[off + 2 * i]! << 8) | buf[off + 2 * i + 1]!;
    if (w === 0) {
      if (curBase < 0) {
        curBase = i;
        curLen = 1;
      } else curLen++;
    } else if (curBase >= 0) {
      if (curLen > bestLen) {
        bestBase = curBase;
        bestLen = curLen;
      }
      curBase = -1;
    }
  }
  if (curBase >= 0 && curLen > bestLen) {
    bestBase = curBase;
    bestLen = curLen;
  }
  if (bestLen < 2) bestBase = -1;

  let s = '';
  for (let i = 0; i < 8; i++) {
    if (bestBase >= 0 && i >= bestBase && i < bestBase + bestLen) {
      if (i === bestBase) s += ':';
      continue;
    }
    if (i !== 0) s += ':';
    if (
      i === 6 &&
      bestBase === 0 &&
      (bestLen === 6 || (bestLen === 5 && buf[off + 10] === 0xff && buf[off + 11] === 0xff))
    ) {
      return s + ipv4ToText(buf, off + 12);
    }
    s += groupText(buf[off + 2 * i]!, buf[off + 2 * i + 1]!);
  }
  if (bestBase >= 0 && bestBase + bestLen === 8) s += ':';
  return s;
}

/** Address bytes at buf[off..off+len) as text. The caller guarantees the bytes exist (decoders check nla_len). */
export function ipToText(buf: Uint8Array, off: number, len: 4 | 16): string {
  return len === 4 ? ipv4ToText(buf, off) : ipv6ToText(buf, off);
}

/** Parses dotted quad text at s[from..to) into out[at..at+4); false if it is not exactly four decimal octets. */
function parseIpv4(s: string, from: number, to: number, out: Uint8Array, at: number): boolean {
  let part = 0;
  let val = 0;
  let digits = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      // A leading zero ("01") is ambiguous (octal in inet_aton), so it is refused like inet_pton does.
      if (digits > 0 && val === 0) return false;
      val = val * 10 + (c - 48);
      if (val > 255) return false;
      digits++;
    } else if (c === 46 /* . */) {
      if (digits === 0 || part === 3) return false;
      out[at + part++] = val;
      val = 0;
      digits = 0;
    } else return false;
  }
  if (digits === 0 || part !== 3) return false;
  out[at + 3] = val;
  return true;
}

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Parses IPv6 text (with "::" and an optional trailing dotted quad) into out[at..at+16). */
function parseIpv6(s: string, out: Uint8Array, at: number): boolean {
  const n = s.length;
  if (n < 2 || n > 45) return false;
  const words: number[] = [];
  let gap = -1; // index in words where "::" stands
  let i = 0;
  if (s.charCodeAt(0) === 58 /* : */) {
    if (s.charCodeAt(1) !== 58) return false;
    gap = 0;
    i = 2;
    if (i === n) {
      out.fill(0, at, at + 16);
      return true;
    }
  }
  while (i < n) {
    // One group: hex digits, or a dotted quad in the last 32 bits.
    let j = i;
    let val = 0;
    while (j < n && j - i < 5) {
      const h = hexVal(s.charCodeAt(j));
      if (h < 0) break;
      val = (val << 4) | h;
      j++;
    }
    if (j < n && s.charCodeAt(j) === 46 /* . */) {
      if (words.length > 6) return false;
      const tmp = Buffer.allocUnsafe(4);
      if (!parseIpv4(s, i, n, tmp, 0)) return false;
      words.push((tmp[0]! << 8) | tmp[1]!, (tmp[2]! << 8) | tmp[3]!);
      i = n;
      break;
    }
    if (j === i || j - i > 4) return false;
    words.push(val);
    if (words.length > 8) return false;
    if (j === n) {
      i = n;
      break;
    }
    if (s.charCodeAt(j) !== 58) return false;
    if (j + 1 < n && s.charCodeAt(j + 1) === 58) {
      if (gap >= 0) return false;
      gap = words.length;
      i = j + 2;
      if (i === n) break;
    } else {
      i = j + 1;
      if (i === n) return false; // trailing single colon
    }
  }
  if (gap < 0 ? words.length !== 8 : words.length > 7) return false;
  const fill = 8 - words.length;
  let k = 0;
  for (let w = 0; w < 8; w++) {
    let v = 0;
    if (gap >= 0 && w >= gap && w < gap + fill) v = 0;
    else v = words[k++]!;
    out[at + 2 * w] = v >>> 8;
    out[at + 2 * w + 1] = v & 0xff;
  }
  return true;
}

/**
 * Parses s into out[at..): returns 4 or 16 (bytes written), or 0 if s is not an address. Never throws; the encoders
 * use it to write addresses straight into the message without an intermediate Buffer.
 */
export function parseIpInto(s: string, out: Uint8Array, at: number): 0 | 4 | 16 {
  if (s.indexOf(':') >= 0) return parseIpv6(s, out, at) ? 16 : 0;
  return parseIpv4(s, 0, s.length, out, at) ? 4 : 0;
}

/** Address text (config or CLI input) as 4 or 16 bytes; throws AddressError (CTS_ERR_BAD_ADDRESS) on bad input. */
export function textToIp(s: string): Buffer {
  const out = Buffer.alloc(16);
  const n = typeof s === 'string' ? parseIpInto(s, out, 0) : 0;
  if (n === 0) throw new AddressError(String(s));
  return n === 4 ? out.subarray(0, 4) : out;
}
