// Options of the TCP/TLS peer link: the typed object with a documented default per key, its validation, and the
// loading of key material (pre-shared key file, CA/cert/key files).

import { readFileSync, statSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { ID_RE, TransportError, parseHostPort, type Clock } from '../types.js';
import type { BackoffOptions } from './backoff.js';

export interface TcpPeerOptions {
  /** The peer's node id. Its hello must carry exactly this id (and in mTLS mode its certificate must name it). */
  nodeId: string;
  /**
   * `host:port` or `[v6]:port`, most preferred first: the dedicated sync link, then fallback paths. The link
   * fails over down the list and returns to the first address when it answers again (see `failbackMs`).
   */
  addresses: string[];
}

/**
 * How the link is authenticated. Exactly one of `pskFile` or (`caFile`, `certFile`, `keyFile`) unless `insecure`.
 *
 * - PSK: TLS 1.2 with PSK cipher suites (see PSK_CIPHERS); the PSK identity is the cluster id. Verified on Node 20
 *   / OpenSSL 3.0: ECDHE-PSK-CHACHA20-POLY1305 (forward secret, preferred) and PSK-AES256-GCM-SHA384 work; DHE-PSK
 *   suites do not (no DH parameters); TLS 1.3 cannot be used with Node's pskCallback without a certificate.
 * - mTLS: TLS 1.2+ with certificates both ways, verified against `caFile`; the peer certificate's CN or a DNS
 *   subjectAltName must equal the peer's node id.
 */
export interface TcpSecurityOptions {
  /** File holding the cluster's pre-shared key, hex or base64, at least 32 bytes once decoded. No default. */
  pskFile?: string;
  /** PEM CA bundle used to verify peer certificates (mTLS). No default. */
  caFile?: string;
  /** PEM certificate of this node (mTLS). No default. */
  certFile?: string;
  /** PEM private key of this node (mTLS). No default. */
  keyFile?: string;
}

export interface TcpTransportOptions {
  /** This node's id, sent in the hello; the lower id of a pair wins connection tie-breaks. Required. */
  nodeId: string;
  /** Cluster id; a peer with another id is refused. Also the TLS-PSK identity. Required. */
  clusterId: string;
  /** Where to accept peer connections. Default `{ host: '0.0.0.0', port: 7801 }`; port 0 picks a free port. */
  listen?: { host?: string; port?: number };
  /** Peers to keep a link with (unicast). Required, at least one. */
  peers: TcpPeerOptions[];
  /** Key material; required unless `insecure`. */
  tls?: TcpSecurityOptions;
  /** Plaintext, unauthenticated link. Default false. Logs a warning at every start. Test labs only. */
  insecure?: boolean;
  /** Send a heartbeat when nothing else was sent for 1.25 × this, ms (the sync engine beats every heartbeatMs). Default 1000. */
  heartbeatMs?: number;
  /**
   * The caller writes a frame every heartbeatMs while a link is up (the sync engine's heartbeat), so the transport
   * sends none of its own and its timer wakes for deadlines only. Default false.
   */
  callerHeartbeats?: boolean;
  /** No bytes received for this long → the link is down, ms. Default 3000; must be ≥ 2 × heartbeatMs. */
  deadAfterMs?: number;
  /** TCP connect + TLS handshake must finish within this, ms. Default 3000. */
  connectTimeoutMs?: number;
  /** The hello must arrive within this after the secure channel is up, ms. Default 5000. */
  helloTimeoutMs?: number;
  /** Reconnect backoff (full jitter). Default `{ initialMs: 100, maxMs: 10000, factor: 2 }`. */
  backoff?: Partial<BackoffOptions>;
  /**
   * The higher node id waits this much before each dial round, ms, so that after a shared outage the lower id's
   * connection (which wins the tie-break anyway) usually arrives first. Default 200.
   */
  dialStaggerMs?: number;
  /** While up on a fallback address, probe the first address this often and move back to it, ms. Default 30000; 0 disables. */
  failbackMs?: number;
  /** Largest frame payload accepted or sent, bytes. A larger incoming length drops the connection. Default 16 MiB. */
  maxFrameBytes?: number;
  /**
   * Per-peer hard cap on bytes queued in the socket. A frame that would pass it is not sent and the connection is
   * dropped (`queue_full`), so the peer never gets frames after a lost one on the same connection. Once every up
   * peer is past a quarter of it the link reports itself congested (the sync layer holds new changes until it
   * drains). Default 64 MiB.
   */
  maxQueuedBytes?: number;
  /** pino logger; the transport makes children per peer. Default: a silent logger. */
  logger?: Logger;
  /** Injected time. Default: the system clock. */
  clock?: Clock;
  /** Injected randomness for jitter, returns [0, 1). Default Math.random. */
  random?: () => number;
}

export interface ResolvedPeer {
  nodeId: string;
  addresses: Array<{ host: string; port: number; text: string }>;
}

export interface ResolvedTcpOptions {
  nodeId: string;
  clusterId: string;
  listen: { host: string; port: number };
  peers: ResolvedPeer[];
  tls: TcpSecurityOptions;
  insecure: boolean;
  heartbeatMs: number;
  callerHeartbeats: boolean;
  deadAfterMs: number;
  connectTimeoutMs: number;
  helloTimeoutMs: number;
  backoff: BackoffOptions;
  dialStaggerMs: number;
  failbackMs: number;
  maxFrameBytes: number;
  maxQueuedBytes: number;
}

export const TCP_DEFAULTS = Object.freeze({
  listen: Object.freeze({ host: '0.0.0.0', port: 7801 }),
  insecure: false,
  heartbeatMs: 1000,
  callerHeartbeats: false,
  deadAfterMs: 3000,
  connectTimeoutMs: 3000,
  helloTimeoutMs: 5000,
  backoff: Object.freeze({ initialMs: 100, maxMs: 10_000, factor: 2 }),
  dialStaggerMs: 200,
  failbackMs: 30_000,
  maxFrameBytes: 16 * 1024 * 1024,
  maxQueuedBytes: 64 * 1024 * 1024,
});

/** Validates and fills defaults. Throws one CTS_ERR_CONFIG_INVALID naming every bad key. */
export function resolveTcpOptions(o: TcpTransportOptions): ResolvedTcpOptions {
  const bad: string[] = [];
  const posInt = (key: string, v: number | undefined, dflt: number, min = 1): number => {
    const x = v ?? dflt;
    if (!Number.isInteger(x) || x < min) bad.push(`${key}: must be an integer ≥ ${min} (got ${String(v)})`);
    return x;
  };
  if (typeof o.nodeId !== 'string' || !ID_RE.test(o.nodeId)) bad.push(`nodeId: must match ${ID_RE.source}`);
  if (typeof o.clusterId !== 'string' || !ID_RE.test(o.clusterId)) bad.push(`clusterId: must match ${ID_RE.source}`);
  const listen = {
    host: o.listen?.host ?? TCP_DEFAULTS.listen.host,
    port: o.listen?.port ?? TCP_DEFAULTS.listen.port,
  };
  if (!Number.isInteger(listen.port) || listen.port < 0 || listen.port > 65535) bad.push('listen.port: must be 0-65535');
  const peers: ResolvedPeer[] = [];
  if (!Array.isArray(o.peers) || o.peers.length === 0) bad.push('peers: at least one peer is required');
  const seen = new Set<string>();
  (o.peers ?? []).forEach((p, i) => {
    if (typeof p?.nodeId !== 'string' || !ID_RE.test(p.nodeId)) bad.push(`peers[${i}].nodeId: must match ${ID_RE.source}`);
    else if (p.nodeId === o.nodeId) bad.push(`peers[${i}].nodeId: equals this node's nodeId`);
    else if (seen.has(p.nodeId)) bad.push(`peers[${i}].nodeId: duplicate ${p.nodeId}`);
    seen.add(p?.nodeId);
    const addrs: ResolvedPeer['addresses'] = [];
    if (!Array.isArray(p?.addresses) || p.addresses.length === 0) bad.push(`peers[${i}].addresses: at least one host:port`);
    (p?.addresses ?? []).forEach((a, j) => {
      const hp = typeof a === 'string' ? parseHostPort(a) : null;
      if (!hp) bad.push(`peers[${i}].addresses[${j}]: expected host:port or [v6]:port (got ${String(a)})`);
      else addrs.push({ ...hp, text: a });
    });
    peers.push({ nodeId: p?.nodeId, addresses: addrs });
  });
  const insecure = o.insecure ?? TCP_DEFAULTS.insecure;
  const tls = o.tls ?? {};
  const hasPsk = tls.pskFile !== undefined;
  const certKeys = (['caFile', 'certFile', 'keyFile'] as const).filter((k) => tls[k] !== undefined);
  if (insecure) {
    if (hasPsk || certKeys.length > 0) bad.push('insecure: true cannot be combined with tls.* keys (pick one)');
  } else if (hasPsk && certKeys.length > 0) {
    bad.push('tls: set either tls.pskFile or tls.caFile/certFile/keyFile, not both');
  } else if (!hasPsk && certKeys.length === 0) {
    bad.push('tls: the peer link must be authenticated: set tls.pskFile, or tls.caFile + tls.certFile + tls.keyFile (insecure: true only for labs)');
  } else if (!hasPsk && certKeys.length < 3) {
    for (const k of ['caFile', 'certFile', 'keyFile'] as const) if (tls[k] === undefined) bad.push(`tls.${k}: required for certificate mode`);
  }
  const heartbeatMs = posInt('heartbeatMs', o.heartbeatMs, TCP_DEFAULTS.heartbeatMs);
  const deadAfterMs = posInt('deadAfterMs', o.deadAfterMs, TCP_DEFAULTS.deadAfterMs);
  if (deadAfterMs < 2 * heartbeatMs) bad.push(`deadAfterMs: must be ≥ 2 × heartbeatMs (${2 * heartbeatMs}), or one late heartbeat drops the link`);
  const backoff: BackoffOptions = {
    initialMs: posInt('backoff.initialMs', o.backoff?.initialMs, TCP_DEFAULTS.backoff.initialMs),
    maxMs: posInt('backoff.maxMs', o.backoff?.maxMs, TCP_DEFAULTS.backoff.maxMs),
    factor: o.backoff?.factor ?? TCP_DEFAULTS.backoff.factor,
  };
  if (!(backoff.factor >= 1)) bad.push('backoff.factor: must be ≥ 1');
  if (backoff.maxMs < backoff.initialMs) bad.push('backoff.maxMs: must be ≥ backoff.initialMs');
  const r: ResolvedTcpOptions = {
    nodeId: o.nodeId,
    clusterId: o.clusterId,
    listen,
    peers,
    tls,
    insecure,
    heartbeatMs,
    callerHeartbeats: o.callerHeartbeats ?? TCP_DEFAULTS.callerHeartbeats,
    deadAfterMs,
    connectTimeoutMs: posInt('connectTimeoutMs', o.connectTimeoutMs, TCP_DEFAULTS.connectTimeoutMs),
    helloTimeoutMs: posInt('helloTimeoutMs', o.helloTimeoutMs, TCP_DEFAULTS.helloTimeoutMs),
    backoff,
    dialStaggerMs: posInt('dialStaggerMs', o.dialStaggerMs, TCP_DEFAULTS.dialStaggerMs, 0),
    failbackMs: posInt('failbackMs', o.failbackMs, TCP_DEFAULTS.failbackMs, 0),
    maxFrameBytes: posInt('maxFrameBytes', o.maxFrameBytes, TCP_DEFAULTS.maxFrameBytes),
    maxQueuedBytes: posInt('maxQueuedBytes', o.maxQueuedBytes, TCP_DEFAULTS.maxQueuedBytes),
  };
  if (bad.length > 0) {
    throw new TransportError('CTS_ERR_CONFIG_INVALID', `invalid transport options: ${bad.join('; ')}`);
  }
  return r;
}

/** Bytes a key needs once decoded (256 bits). */
export const MIN_PSK_BYTES = 32;

/**
 * Reads and decodes the pre-shared key. Hex is tried first (an even-length string of hex digits), then base64.
 * Refuses keys shorter than 32 bytes and keys with too little byte variety (a typed pattern rather than random
 * bytes), and a file other users can read, since anyone holding the key can write conntrack entries.
 */
export function loadPsk(path: string, key = 'tls.pskFile'): Buffer {
  let text: string;
  let mode: number;
  try {
    mode = statSync(path).mode;
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new TransportError('CTS_ERR_KEY_READ', `cannot read ${key} ${path}: ${(err as Error).message}`, { cause: err });
  }
  if ((mode & 0o004) !== 0) {
    throw new TransportError('CTS_ERR_KEY_WEAK', `${key} ${path} is readable by every user; run chmod 600 on it`);
  }
  const s = text.trim();
  let bytes: Buffer | null = null;
  if (/^[0-9A-Fa-f]+$/.test(s) && s.length % 2 === 0) bytes = Buffer.from(s, 'hex');
  else if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(s)) bytes = Buffer.from(s, s.includes('-') || s.includes('_') ? 'base64url' : 'base64');
  const remedy = 'generate one with `openssl rand -hex 32`';
  if (!bytes || bytes.length === 0) {
    throw new TransportError('CTS_ERR_KEY_WEAK', `${key} ${path} is neither hex nor base64; ${remedy}`);
  }
  if (bytes.length < MIN_PSK_BYTES) {
    throw new TransportError('CTS_ERR_KEY_WEAK', `${key} ${path} decodes to ${bytes.length} bytes; at least ${MIN_PSK_BYTES} random bytes are required; ${remedy}`);
  }
  // 32 random bytes have ~30 distinct values; fewer than 16 means a pattern, not a key.
  if (new Set(bytes).size < 16) {
    throw new TransportError('CTS_ERR_KEY_WEAK', `${key} ${path} has too little variety to be a random key; ${remedy}`);
  }
  return bytes;
}

/** What the errors of `loadCerts` call the three files: the transport's option names unless the caller's differ. */
export interface CertNames {
  caFile: string;
  certFile: string;
  keyFile: string;
}
const TLS_CERT_NAMES: CertNames = { caFile: 'tls.caFile', certFile: 'tls.certFile', keyFile: 'tls.keyFile' };

/**
 * Reads certificate mode's CA bundle, certificate and private key, and checks that they make a TLS context. Refuses a
 * private key other users can read, as `loadPsk` refuses such a key file: whoever holds it can write conntrack entries.
 */
export function loadCerts(files: CertNames, names: CertNames = TLS_CERT_NAMES): { ca: Buffer; cert: Buffer; key: Buffer } {
  const read = (k: keyof CertNames) => {
    try {
      return { bytes: readFileSync(files[k]), mode: statSync(files[k]).mode };
    } catch (err) {
      throw new TransportError('CTS_ERR_KEY_READ', `cannot read ${names[k]} ${files[k]}: ${(err as Error).message}`, { cause: err });
    }
  };
  const [ca, cert, key] = (['caFile', 'certFile', 'keyFile'] as const).map(read);
  if ((key.mode & 0o004) !== 0) throw new TransportError('CTS_ERR_KEY_WEAK', `${names.keyFile} ${files.keyFile} is readable by every user; run chmod 600 on it`);
  const pems = { ca: ca.bytes, cert: cert.bytes, key: key.bytes };
  try {
    createSecureContext({ ...pems, minVersion: 'TLSv1.2' });
  } catch (err) {
    const which = `${names.certFile} / ${names.keyFile} / ${names.caFile}`;
    throw new TransportError('CTS_ERR_CONFIG_INVALID', `${which} do not form a usable TLS context: ${(err as Error).message}`, { cause: err });
  }
  return pems;
}
