// The link hello (first frame each way, sent only inside the secure channel), its checks, and the connection
// ranking that leaves exactly one connection per peer pair when both sides dial.

/** Version of the link protocol (framing + hello + heartbeat) this build speaks, and the oldest it accepts. */
export const LINK_PROTOCOL_VERSION = 1;
export const LINK_PROTOCOL_MIN_VERSION = 1;

/** Hellos are tiny; anything bigger is not a hello. */
const MAX_HELLO_BYTES = 1024;

export interface Hello {
  /** Newest link protocol version the sender speaks. */
  v: number;
  /** Oldest version the sender accepts. */
  minV: number;
  cluster: string;
  node: string;
  /** Sender's start time (ms); with `seq`, orders connections the same node dialed (newer wins). */
  boot: number;
  /** Per-start dial counter of the sender (0 in an acceptor's reply). */
  seq: number;
}

export function encodeHello(h: Hello): Buffer {
  return Buffer.from(JSON.stringify(h), 'utf8');
}

/** Untrusted input: never throws, returns null for anything that is not a well-formed hello. */
export function decodeHello(buf: Buffer): Hello | null {
  if (buf.length > MAX_HELLO_BYTES) return null;
  let o: unknown;
  try {
    o = JSON.parse(buf.toString('utf8'));
  } catch {
    return null;
  }
  if (typeof o !== 'object' || o === null) return null;
  const r = o as Record<string, unknown>;
  const int = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  if (!int(r.v) || !int(r.minV) || !int(r.boot) || !int(r.seq)) return null;
  if (typeof r.cluster !== 'string' || typeof r.node !== 'string') return null;
  if (r.node.length === 0 || r.node.length > 63 || r.cluster.length > 63) return null;
  return { v: r.v, minV: r.minV, cluster: r.cluster, node: r.node, boot: r.boot, seq: r.seq };
}

export type HelloRefusal = 'bad_hello' | 'bad_cluster' | 'bad_version' | 'self' | 'unknown_node';

/** Checks a received hello against this node. Versions are compatible when the two [minV, v] ranges overlap. */
export function checkHello(
  h: Hello | null,
  local: { clusterId: string; nodeId: string; isKnownPeer: (nodeId: string) => boolean },
): { ok: true; version: number } | { ok: false; reason: HelloRefusal } {
  if (!h) return { ok: false, reason: 'bad_hello' };
  if (h.cluster !== local.clusterId) return { ok: false, reason: 'bad_cluster' };
  const version = Math.min(h.v, LINK_PROTOCOL_VERSION);
  if (version < h.minV || version < LINK_PROTOCOL_MIN_VERSION) return { ok: false, reason: 'bad_version' };
  if (h.node === local.nodeId) return { ok: false, reason: 'self' };
  if (!local.isKnownPeer(h.node)) return { ok: false, reason: 'unknown_node' };
  return { ok: true, version };
}

/** Identifies a connection the same way on both ends: who dialed it, and that dialer's (boot, seq). */
export interface ConnKey {
  dialer: string;
  boot: number;
  seq: number;
}

/**
 * True when connection `a` should be kept over `b` (both to the same peer pair, `lowerNode` = the smaller of the
 * two node ids by code-unit order). Both ends evaluate this on the same keys, so they always keep the same one:
 * 1. a connection dialed by the lower node id beats one dialed by the higher (settles simultaneous dials);
 * 2. between two dialed by the same node, the newer (boot, seq) wins (a restarted or failing-back dialer knows
 *    why it dialed again; its old connection may be half-open).
 */
export function keepsOver(a: ConnKey, b: ConnKey, lowerNode: string): boolean {
  if (a.dialer !== b.dialer) return a.dialer === lowerNode;
  if (a.boot !== b.boot) return a.boot > b.boot;
  return a.seq > b.seq;
}

export function lowerOf(x: string, y: string): string {
  return x < y ? x : y;
}
