// The one interface every peer transport implements (TCP/TLS, the in-memory pair, Redis Streams later), its stats and errors.

/**
 * State of the link to one peer, as the sync layer sees it. Transitions are reported through `onLink`, once per
 * real change (a retry loop does not flap the state):
 *
 * - `connecting`: the transport has started and has never had this peer up yet (first attempts).
 * - `up`: hello exchanged and accepted; frames flow. Every `up` may follow a loss of frames that were in flight
 *   on an earlier connection: the sync layer resumes (re-sends unacknowledged state) on each `up`.
 * - `down`: the link was up and is lost (peer closed, `deadAfterMs` without bytes, error, superseded by a better
 *   connection); the transport keeps retrying in the background without changing state until it is up again.
 * - `closed`: this transport was stopped. Terminal until the next `start()`.
 */
export type LinkState = 'connecting' | 'up' | 'down' | 'closed';

/** Who a frame came from or which link changed. `nodeId` is the peer's authenticated node id (from the hello). */
export interface PeerInfo {
  nodeId: string;
  /** Remote `host:port` of the connection in use, when the transport has one. */
  address?: string;
}

/** Counters for one peer. `since` is the clock time (ms) of the last state change. */
export interface PeerStats {
  nodeId: string;
  state: LinkState;
  since: number;
  address?: string;
  /** Which side dialed the connection in use (absent while not up or when the transport has no such notion). */
  via?: 'inbound' | 'outbound';
  bytesIn: number;
  bytesOut: number;
  framesIn: number;
  framesOut: number;
  /** Times the link came up again after having been up once. */
  reconnects: number;
  /** Connections to or from this peer refused or dropped before or after hello, by reason. */
  refused: Record<string, number>;
}

export interface TransportStats {
  kind: string;
  peers: PeerStats[];
  /** Refusals that cannot be tied to a known peer (TLS handshake failures, unknown node, bad hello), by reason. */
  refused: Record<string, number>;
  /** Frames `send()` did not hand to any peer (`no_link`, `queue_full`, `stopped`), or received frames dropped (`handler_error`). */
  dropped: Record<string, number>;
}

/**
 * A transport moves opaque frames between this node and its peers. It owns connection management, peer
 * authentication (when the medium allows it) and framing; sequence numbers, acks and resume live in src/sync.
 *
 * Callbacks are plain assignable properties (default no-ops) so the sync layer wires them once; they are called
 * synchronously from the transport's I/O path and must not throw (a throw is caught and counted as
 * `dropped.handler_error`, never allowed to kill a socket handler).
 */
export interface Transport {
  /** `tcp`, `memory`, `redis` … for logs and stats. */
  readonly kind: string;
  /** Binds listeners and starts dialing. Rejects with a `TransportError` on bad options or a bind failure. */
  start(): Promise<void>;
  /** Closes every socket and timer. Resolves when nothing is left running; `onLink(…, 'closed')` fires per peer. */
  stop(): Promise<void>;
  /**
   * Sends one frame to every peer that is `up`.
   *
   * Returns `true` when every up peer took the frame without backpressure. Returns `false` in two cases the
   * caller tells apart by the link state it tracks through `onLink`:
   * - some peer is up but its buffer is above the high-water mark: the frame IS queued and will be delivered;
   *   wait for `onDrain` before sending more;
   * - no peer is up (or the transport is stopped, or a peer's queue would pass its hard cap, which takes that
   *   peer's link down): the frame is NOT delivered anywhere and is counted in `stats().dropped` (`no_link`,
   *   `stopped`, `queue_full`). Nothing is buffered for later: the sync layer re-sends current state after the
   *   next `up`. A peer never receives a frame sent after one it lost without its link going down in between.
   */
  send(frame: Buffer): boolean;
  /** A frame from an authenticated peer, intact and in the order that peer sent it. */
  onFrame: (frame: Buffer, from: PeerInfo) => void;
  /** A link state change; `reason` is a short stable word or message for logs (`peer_closed`, `dead`, …). */
  onLink: (peer: PeerInfo, state: LinkState, reason?: string) => void;
  /** Every peer that reported backpressure has drained below its high-water mark. */
  onDrain: () => void;
  /**
   * The link is far behind, not just past its high-water mark (TCP: every up peer with a quarter of its queue cap
   * queued; Redis: a quarter of its send buffer, in an outage too); onDrain follows. The sync layer then holds new changes,
   * coalescing them, instead of queueing frames towards the cap. Optional: a transport without it is never congested.
   */
  congested?(): boolean;
  stats(): TransportStats;
}

/** Stable error codes of the transport layer. */
export type TransportErrorCode =
  | 'CTS_ERR_CONFIG_INVALID' // an option is missing or invalid; the message names the key
  | 'CTS_ERR_KEY_WEAK' // the pre-shared key file decodes to too few bytes or too little variety
  | 'CTS_ERR_KEY_READ' // the key / cert file cannot be read
  | 'CTS_ERR_LISTEN' // the listener could not bind
  | 'CTS_ERR_PEER_AUTH' // a peer failed TLS authentication
  | 'CTS_ERR_PEER_REFUSED'; // a peer was refused at hello (cluster, version, node id)

export class TransportError extends Error {
  readonly code: TransportErrorCode;
  constructor(code: TransportErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TransportError';
    this.code = code;
  }
}

/** Injected time, so backoff, heartbeats and dead-link detection are testable with fake timers. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real clock. Looks the globals up at call time so `vi.useFakeTimers()` installed later still applies. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/** Node ids and cluster ids travel in hellos, logs, certificate names and Redis key tags: a safe alphabet. */
export const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export const ID_RULE = '1-63 of A-Z a-z 0-9 . _ -, starting with a letter or digit';

/** Parses `host:port` / `[v6]:port` with a port of 1-65535; null when malformed. */
export function parseHostPort(text: string): { host: string; port: number } | null {
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]\s]+):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return null;
  return { host: m[1]!, port };
}

/** Increments a by-reason counter. */
export function countReason(counters: Record<string, number>, reason: string, n = 1): void {
  counters[reason] = (counters[reason] ?? 0) + n;
}
