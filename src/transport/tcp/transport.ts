// The TCP/TLS peer link: listener, dialing with failover and backoff, hello, tie-break to one connection per
// peer, heartbeats and dead-link detection, framing, backpressure, and the per-peer link state.

import net from 'node:net';
import tls from 'node:tls';
import { pino, type Logger } from 'pino';
import {
  TransportError,
  countReason,
  systemClock,
  type Clock,
  type LinkState,
  type PeerInfo,
  type PeerStats,
  type Transport,
  type TransportStats,
} from '../types.js';
import { AddressPlan, backoffDelay } from './backoff.js';
import { LinkFrame, LinkFrameDecoder, encodeLinkFrame } from './framing.js';
import {
  LINK_PROTOCOL_MIN_VERSION,
  LINK_PROTOCOL_VERSION,
  checkHello,
  decodeHello,
  encodeHello,
  keepsOver,
  lowerOf,
  type ConnKey,
} from './hello.js';
import {
  loadPsk,
  loadCerts,
  resolveTcpOptions,
  type ResolvedPeer,
  type ResolvedTcpOptions,
  type TcpTransportOptions,
} from './options.js';

/** TLS-PSK suites, forward-secret first. Verified on Node 20 / OpenSSL 3.0 (see options.ts). */
export const PSK_CIPHERS = 'ECDHE-PSK-CHACHA20-POLY1305:ECDHE-PSK-AES256-CBC-SHA384:PSK-AES256-GCM-SHA384';

/** Lifecycle of the transport as a whole. */
export type TcpTransportStatus = 'idle' | 'starting' | 'running' | 'stopping' | 'stopped';

type AnySocket = net.Socket | tls.TLSSocket;

interface Conn {
  id: number;
  socket: AnySocket;
  direction: 'inbound' | 'outbound';
  address: string;
  /** Index in the peer's address list (outbound only). */
  addressIndex: number;
  /** Known from the start for outbound, from the hello for inbound. */
  peer?: PeerSlot;
  key?: ConnKey;
  openedAt: number;
  securedAt?: number;
  helloSent: boolean;
  up: boolean;
  closed: boolean;
  needDrain: boolean;
  lastRx: number;
  lastTx: number;
  decoder: LinkFrameDecoder;
}

interface PeerSlot {
  cfg: ResolvedPeer;
  log: Logger;
  state: LinkState;
  since: number;
  everUp: boolean;
  conn?: Conn;
  /** At most one outbound attempt at a time (a dial while down, or a failback probe while up). */
  dialing?: Conn;
  plan: AddressPlan;
  dialTimer?: unknown;
  /** Last refusal reason logged at warn; a repeat of the same reason goes to debug only. */
  lastRefusal?: string;
  stats: Omit<PeerStats, 'nodeId' | 'state' | 'since' | 'address' | 'via'>;
  errors: Record<string, number>;
}

/** Marks a dial queued as a microtask (no clock timer to clear). */
class ImmediateDial {}

/** Error codes OpenSSL / Node use for handshake and certificate failures (as opposed to network errors). */
function isTlsFailure(err: NodeJS.ErrnoException): boolean {
  const c = err.code ?? '';
  return (
    c.startsWith('ERR_SSL_') ||
    c.startsWith('ERR_TLS_') ||
    c.startsWith('CERT_') ||
    c.includes('CERT') ||
    c === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' ||
    c === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' ||
    c === 'ECONNRESET_TLS'
  );
}

/** True when the certificate's CN or one of its DNS subjectAltNames equals `nodeId`. */
function certNames(cert: tls.PeerCertificate | undefined, nodeId: string): boolean {
  if (!cert || Object.keys(cert).length === 0) return false;
  if (cert.subject?.CN === nodeId) return true;
  const sans = (cert.subjectaltname ?? '').split(',').map((s) => s.trim());
  return sans.includes(`DNS:${nodeId}`);
}

/** How early a due heartbeat or deadline may be handled by a timer that fired early (see tick). */
const TICK_SLACK_MS = 5;

export class TcpTransport implements Transport {
  readonly kind = 'tcp';
  onFrame: (frame: Buffer, from: PeerInfo) => void = () => {};
  onLink: (peer: PeerInfo, state: LinkState, reason?: string) => void = () => {};
  onDrain: () => void = () => {};

  private readonly opts: ResolvedTcpOptions;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly peers = new Map<string, PeerSlot>();
  private readonly conns = new Set<Conn>();
  private readonly lower: (peer: string) => string;
  private status: TcpTransportStatus = 'idle';
  private server?: net.Server;
  private tickTimer?: unknown;
  private tickAt = 0;
  private boot = 0;
  private dialSeq = 0;
  private nextConnId = 1;
  private waitingDrain = false;
  private serverTlsOptions?: tls.TlsOptions;
  private clientTls?: (peer: ResolvedPeer) => tls.ConnectionOptions;
  private readonly refused: Record<string, number> = {};
  private readonly dropped: Record<string, number> = {};
  private lastGlobalRefusal?: string;

  /** Validates options at once (throws CTS_ERR_CONFIG_INVALID listing every bad key); key files are read by start(). */
  constructor(options: TcpTransportOptions) {
    this.opts = resolveTcpOptions(options);
    this.log = (options.logger ?? pino({ level: 'silent' })).child({ component: 'transport', kind: 'tcp' });
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.lower = (peer) => lowerOf(this.opts.nodeId, peer);
    for (const cfg of this.opts.peers) {
      this.peers.set(cfg.nodeId, {
        cfg,
        log: this.log.child({ peer: cfg.nodeId }),
        state: 'closed',
        since: this.clock.now(),
        everUp: false,
        plan: new AddressPlan(cfg.addresses.length),
        stats: { bytesIn: 0, bytesOut: 0, framesIn: 0, framesOut: 0, reconnects: 0, refused: {} },
        errors: {},
      });
    }
  }

  /** The bound listen address (useful with port 0). */
  address(): { host: string; port: number } | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? { host: a.address, port: a.port } : undefined;
  }

  getStatus(): TcpTransportStatus {
    return this.status;
  }

  async start(): Promise<void> {
    if (this.status === 'running' || this.status === 'starting') return;
    this.setStatus('starting');
    try {
      this.loadSecurity();
    } catch (err) {
      this.setStatus('stopped', (err as Error).message);
      throw err;
    }
    if (this.opts.insecure) {
      // Every start, on purpose: a plaintext link must never go unnoticed in the logs.
      this.log.warn(
        { insecure: true },
        'peer link is PLAINTEXT and UNAUTHENTICATED (insecure: true): anyone who can reach the listen port can write conntrack entries; set tls.pskFile or tls.caFile/certFile/keyFile',
      );
    }
    this.boot = this.clock.now();
    const server = this.opts.insecure
      ? net.createServer((s) => this.accept(s))
      : tls.createServer({ ...this.serverTlsOptions!, handshakeTimeout: this.opts.connectTimeoutMs }, (s) => this.accept(s));
    if (!this.opts.insecure) {
      server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
        this.refuseGlobal('tls', { err: err.message, code: err.code, remote: socket.remoteAddress });
        socket.destroy();
      });
    }
    server.on('error', (err) => this.log.error({ err }, 'listener error'));
    try {
      await new Promise<void>((resolve, reject) => {
        const onErr = (err: Error): void => reject(err);
        server.once('error', onErr);
        server.listen(this.opts.listen.port, this.opts.listen.host, () => {
          server.off('error', onErr);
          resolve();
        });
      });
    } catch (err) {
      this.setStatus('stopped', 'listen failed');
      throw new TransportError(
        'CTS_ERR_LISTEN',
        `cannot listen on ${this.opts.listen.host}:${this.opts.listen.port} (see listen.host / listen.port): ${(err as Error).message}`,
        { cause: err },
      );
    }
    this.server = server;
    this.setStatus('running');
    for (const p of this.peers.values()) {
      p.everUp = false;
      p.plan.succeed();
      this.setPeerState(p, 'connecting');
      // The lower id dials at once; the higher one waits a little so simultaneous dials rarely cross.
      this.scheduleDial(p, this.staggerFor(p));
    }
  }

  async stop(): Promise<void> {
    if (this.status === 'idle' || this.status === 'stopped' || this.status === 'stopping') return;
    this.setStatus('stopping');
    if (this.tickTimer !== undefined) this.clock.clearTimeout(this.tickTimer);
    this.tickTimer = undefined;
    for (const p of this.peers.values()) {
      this.cancelDial(p);
      p.dialTimer = undefined;
    }
    const closed = [...this.conns].map(
      (c) => new Promise<void>((resolve) => (c.socket.destroyed && c.closed ? resolve() : c.socket.once('close', () => resolve()))),
    );
    for (const c of [...this.conns]) {
      this.closeConn(c, 'stopped');
      // Also the ones already closing politely (Refuse + end): stop() does not wait for a far end.
      c.socket.destroy();
    }
    const server = this.server;
    this.server = undefined;
    await Promise.all([
      ...closed,
      new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())),
    ]);
    this.conns.clear();
    for (const p of this.peers.values()) this.setPeerState(p, 'closed', 'stopped');
    this.waitingDrain = false;
    this.setStatus('stopped');
  }

  send(frame: Buffer): boolean {
    if (this.status !== 'running') {
      countReason(this.dropped, 'stopped');
      return false;
    }
    if (frame.length > this.opts.maxFrameBytes) {
      countReason(this.dropped, 'too_large');
      return false;
    }
    const [header, payload] = encodeLinkFrame(LinkFrame.Data, frame);
    let any = false;
    let ok = true;
    for (const p of this.peers.values()) {
      const c = p.conn;
      if (!c || !c.up || c.closed) continue;
      if (c.socket.writableLength + frame.length > this.opts.maxQueuedBytes) {
        // the peer cannot keep up. Skipping this frame while later ones still reach it would leave a hole nobody
        // notices; dropping the connection turns it into a loss the sync layer repairs (resume) when it is back.
        countReason(this.dropped, 'queue_full');
        this.closeConn(c, 'queue_full');
        ok = false;
        continue;
      }
      any = true;
      p.stats.framesOut += 1;
      if (!this.write(c, header, payload)) {
        c.needDrain = true;
        this.waitingDrain = true;
        ok = false;
      }
    }
    if (!any) {
      if (ok) countReason(this.dropped, 'no_link');
      return false;
    }
    return ok;
  }

  /**
   * Every up peer has a quarter of its cap queued. One slow peer among others does not hold changes up for all: it
   * reaches its cap, loses its link and resumes when it is back, while the rest keep up.
   */
  congested(): boolean {
    let up = false;
    for (const p of this.peers.values()) {
      const c = p.conn;
      if (!c?.up || c.closed) continue;
      if (c.socket.writableLength <= this.opts.maxQueuedBytes / 4) return false;
      up = true;
    }
    return up;
  }

  stats(): TransportStats {
    const peers: PeerStats[] = [];
    for (const p of this.peers.values()) {
      const c = p.state === 'up' ? p.conn : undefined;
      peers.push({
        nodeId: p.cfg.nodeId,
        state: p.state,
        since: p.since,
        ...(c ? { address: c.address, via: c.direction } : {}),
        ...p.stats,
        refused: { ...p.stats.refused },
      });
    }
    return { kind: this.kind, peers, refused: { ...this.refused }, dropped: { ...this.dropped } };
  }

  /** Per-peer non-refusal failures (connect_failed, dead, too_large, peer_closed, superseded …), for diagnostics. */
  errorCounts(nodeId: string): Record<string, number> {
    return { ...(this.peers.get(nodeId)?.errors ?? {}) };
  }

  // ---- status -------------------------------------------------------------------------------------------------

  private setStatus(next: TcpTransportStatus, reason?: string): void {
    if (next === this.status) return;
    this.log.info({ from: this.status, to: next, reason }, 'transport status');
    this.status = next;
  }

  /** The one setter of a peer's link state: logs the transition and tells the sync layer. */
  private setPeerState(p: PeerSlot, next: LinkState, reason?: string): void {
    if (p.state === next) return;
    const from = p.state;
    p.state = next;
    p.since = this.clock.now();
    if (next === 'up') {
      if (p.everUp) p.stats.reconnects += 1;
      p.everUp = true;
      p.lastRefusal = undefined;
    }
    const address = p.conn?.address;
    p.log.info({ from, to: next, reason, address }, 'peer link state');
    this.safeCall('onLink', () => this.onLink({ nodeId: p.cfg.nodeId, ...(address ? { address } : {}) }, next, reason));
  }

  private safeCall(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      countReason(this.dropped, 'handler_error');
      this.log.error({ err, handler: what }, 'transport callback threw; the error was contained');
    }
  }

  // ---- security -------------------------------------------------------------------------------------------------

  private loadSecurity(): void {
    if (this.opts.insecure) return;
    const t = this.opts.tls;
    if (t.pskFile !== undefined) {
      const psk = loadPsk(t.pskFile);
      const clusterId = this.opts.clusterId;
      const common = { ciphers: PSK_CIPHERS, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' } as const;
      this.serverTlsOptions = {
        ...common,
        pskCallback: (_socket: tls.TLSSocket, identity: string) => {
          if (identity === clusterId) return psk;
          // A wrong identity fails the handshake; the tlsClientError that follows counts it as 'tls'.
          return null;
        },
      };
      this.clientTls = () => ({
        ...common,
        pskCallback: () => ({ psk, identity: clusterId }),
        // PSK authenticates both ends by the key itself; there is no certificate to check a name against.
        checkServerIdentity: () => undefined,
      });
      return;
    }
    const common = { ...loadCerts({ caFile: t.caFile!, certFile: t.certFile!, keyFile: t.keyFile! }), minVersion: 'TLSv1.2' } as const;
    this.serverTlsOptions = { ...common, requestCert: true, rejectUnauthorized: true };
    this.clientTls = (peer) => ({
      ...common,
      rejectUnauthorized: true,
      checkServerIdentity: (_host: string, c: tls.PeerCertificate) =>
        certNames(c, peer.nodeId)
          ? undefined
          : Object.assign(new Error(`peer certificate does not name node ${peer.nodeId} (CN or DNS subjectAltName)`), {
              code: 'ERR_TLS_CERT_ALTNAME_INVALID',
            }),
    });
  }

  private refuseGlobal(reason: string, fields: Record<string, unknown>): void {
    countReason(this.refused, reason);
    if (this.lastGlobalRefusal !== reason) {
      this.lastGlobalRefusal = reason;
      this.log.warn({ reason, ...fields }, 'refused a connection before identifying the peer');
    } else {
      this.log.debug({ reason, ...fields }, 'refused a connection before identifying the peer');
    }
  }

  private refusePeer(p: PeerSlot, reason: string, fields: Record<string, unknown> = {}): void {
    countReason(p.stats.refused, reason);
    if (p.lastRefusal !== reason) {
      p.lastRefusal = reason;
      p.log.warn({ reason, ...fields }, 'peer connection refused');
    } else {
      p.log.debug({ reason, ...fields }, 'peer connection refused');
    }
  }

  // ---- connections ----------------------------------------------------------------------------------------------

  private newConn(socket: AnySocket, direction: Conn['direction'], address: string, addressIndex: number, peer?: PeerSlot): Conn {
    const now = this.clock.now();
    const c: Conn = {
      id: this.nextConnId++,
      socket,
      direction,
      address,
      addressIndex,
      peer,
      openedAt: now,
      helloSent: false,
      up: false,
      closed: false,
      needDrain: false,
      lastRx: now,
      lastTx: now,
      decoder: new LinkFrameDecoder(this.opts.maxFrameBytes, (type, payload) => this.onLinkFrame(c, type, payload)),
    };
    this.conns.add(c);
    this.tickBy(this.dueOf(c));
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      if (c.closed) return;
      c.lastRx = this.clock.now();
      if (c.peer) c.peer.stats.bytesIn += chunk.length;
      const r = c.decoder.push(chunk);
      if (!r.ok) {
        // An up connection is counted by closeConn under the same reason; count only the ones it will not.
        if (!c.up) {
          if (c.peer) countReason(c.peer.errors, r.reason);
          else countReason(this.refused, r.reason);
        }
        this.closeConn(c, r.reason);
      }
    });
    socket.on('drain', () => {
      c.needDrain = false;
      this.maybeDrained();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => this.onSocketError(c, err));
    socket.on('close', () => {
      this.conns.delete(c);
      if (!c.closed) this.closeConn(c, c.up ? 'peer_closed' : 'closed_before_hello');
    });
    // A half-closed peer is gone for our purposes: end our side too so 'close' follows.
    socket.on('end', () => {
      if (!c.closed) this.closeConn(c, c.up ? 'peer_closed' : 'closed_before_hello');
    });
    return c;
  }

  private accept(socket: AnySocket): void {
    if (this.status !== 'running') {
      socket.destroy();
      return;
    }
    const address = `${socket.remoteAddress}:${socket.remotePort}`;
    const c = this.newConn(socket, 'inbound', address, -1);
    c.securedAt = this.clock.now(); // the server hands us sockets only after the handshake
    this.tickBy(this.dueOf(c));
  }

  private dial(p: PeerSlot, index: number): void {
    p.dialTimer = undefined;
    if (this.status !== 'running' || p.dialing) return;
    const a = p.cfg.addresses[index]!;
    p.log.debug({ address: a.text, index }, 'dialing');
    const socket = this.opts.insecure
      ? net.connect({ host: a.host, port: a.port })
      : tls.connect({ host: a.host, port: a.port, ...this.clientTls!(p.cfg) });
    const c = this.newConn(socket, 'outbound', a.text, index, p);
    c.key = { dialer: this.opts.nodeId, boot: this.boot, seq: ++this.dialSeq };
    p.dialing = c;
    socket.once(this.opts.insecure ? 'connect' : 'secureConnect', () => {
      if (c.closed) return;
      c.securedAt = this.clock.now();
      this.writeControl(c, LinkFrame.Hello, this.helloFor(c.key!.seq));
      c.helloSent = true;
      this.tickBy(this.dueOf(c));
    });
  }

  private helloFor(seq: number): Buffer {
    return encodeHello({
      v: LINK_PROTOCOL_VERSION,
      minV: LINK_PROTOCOL_MIN_VERSION,
      cluster: this.opts.clusterId,
      node: this.opts.nodeId,
      boot: this.boot,
      seq,
    });
  }

  private onSocketError(c: Conn, err: NodeJS.ErrnoException): void {
    if (c.closed) return;
    if (!c.securedAt && isTlsFailure(err)) {
      if (c.peer) this.refusePeer(c.peer, 'tls', { err: err.message, code: err.code, address: c.address });
      else this.refuseGlobal('tls', { err: err.message, code: err.code });
      this.closeConn(c, 'tls');
      return;
    }
    const reason = c.securedAt ? 'socket_error' : 'connect_failed';
    if (c.peer) countReason(c.peer.errors, reason);
    (c.peer?.log ?? this.log).debug({ err, address: c.address }, 'peer socket error');
    this.closeConn(c, reason);
  }

  /** Receive path: never throws; anything before an accepted hello other than a hello closes the connection. */
  private onLinkFrame(c: Conn, type: number, payload: Buffer): void {
    if (c.closed) return;
    if (!c.up) {
      if (type === LinkFrame.Hello) return this.onHello(c, payload);
      if (type === LinkFrame.Refuse) {
        const why = payload.toString('utf8').slice(0, 64).replace(/[^\w.-]/g, '?');
        if (c.peer) this.refusePeer(c.peer, `remote_${why}`, { address: c.address });
        else this.refuseGlobal(`remote_${why}`, { address: c.address });
        return this.closeConn(c, `refused_by_peer:${why}`);
      }
      // Data or heartbeat before hello: never delivered, whoever sent it.
      if (c.peer) this.refusePeer(c.peer, 'before_hello', { address: c.address });
      else this.refuseGlobal('before_hello', { address: c.address });
      return this.closeConn(c, 'before_hello');
    }
    const p = c.peer!;
    switch (type) {
      case LinkFrame.Data:
        if (p.conn !== c) return; // a superseded connection still draining: its frames are not ours to deliver
        p.stats.framesIn += 1;
        this.safeCall('onFrame', () => this.onFrame(payload, { nodeId: p.cfg.nodeId, address: c.address }));
        return;
      case LinkFrame.Heartbeat:
        return;
      case LinkFrame.Refuse: {
        const why = payload.toString('utf8').slice(0, 64).replace(/[^\w.-]/g, '?');
        countReason(p.errors, `remote_${why}`);
        return this.closeConn(c, `closed_by_peer:${why}`);
      }
      case LinkFrame.Hello:
        countReason(p.errors, 'bad_frame');
        return this.closeConn(c, 'bad_frame');
      default:
        // A newer peer may add link frame types; skip them rather than drop the link.
        countReason(p.errors, 'unknown_frame_type');
    }
  }

  private onHello(c: Conn, payload: Buffer): void {
    const h = decodeHello(payload);
    const check = checkHello(h, {
      clusterId: this.opts.clusterId,
      nodeId: this.opts.nodeId,
      isKnownPeer: (id) => this.peers.has(id),
    });
    const refuse = (reason: string, p?: PeerSlot): void => {
      if (p) this.refusePeer(p, reason, { address: c.address, cluster: h?.cluster, node: h?.node, v: h?.v });
      else this.refuseGlobal(reason, { address: c.address, cluster: h?.cluster, node: h?.node, v: h?.v });
      this.closeConn(c, reason, reason);
    };
    if (!check.ok) return refuse(check.reason, c.peer);
    const hello = h!;
    if (c.direction === 'outbound') {
      const p = c.peer!;
      if (hello.node !== p.cfg.nodeId) return refuse('identity_mismatch', p);
      return this.promote(p, c);
    }
    const p = this.peers.get(hello.node)!;
    c.peer = p;
    if (!this.opts.insecure && this.opts.tls.pskFile === undefined) {
      const cert = (c.socket as tls.TLSSocket).getPeerCertificate();
      if (!certNames(cert, hello.node)) return refuse('identity_mismatch', p);
    }
    c.key = { dialer: hello.node, boot: hello.boot, seq: hello.seq };
    const current = p.conn;
    if (current && current.up && !keepsOver(c.key, current.key!, this.lower(p.cfg.nodeId))) {
      return refuse('duplicate', p);
    }
    this.writeControl(c, LinkFrame.Hello, this.helloFor(0));
    c.helloSent = true;
    this.promote(p, c);
  }

  /** Makes `c` the peer's connection, after the tie-break against any current one. */
  private promote(p: PeerSlot, c: Conn): void {
    if (p.dialing === c) p.dialing = undefined;
    const current = p.conn;
    if (current && current !== c && current.up && !current.closed) {
      if (!keepsOver(c.key!, current.key!, this.lower(p.cfg.nodeId))) {
        this.closeConn(c, 'duplicate', 'duplicate');
        return;
      }
      // The old connection loses; frames in flight on it may be lost, so tell the sync layer (down, then up).
      p.conn = undefined;
      this.closeConn(current, 'superseded', 'superseded');
      this.setPeerState(p, 'down', 'superseded');
    }
    c.up = true;
    p.conn = c;
    this.tickBy(this.dueOf(c));
    p.plan.succeed();
    this.cancelDial(p);
    p.dialTimer = undefined;
    // A dial still in TCP/TLS setup (no hello sent) is abandoned safely: the far end never saw a hello on it.
    if (p.dialing && !p.dialing.helloSent) this.closeConn(p.dialing, 'not_needed');
    this.setPeerState(p, 'up', c.direction);
    this.scheduleFailback(p);
  }

  /**
   * Closes a connection once. `refuse` sends a Refuse frame first (flushed by end()). If it was the peer's live
   * connection the peer goes down and redialing starts; if it was an attempt, the attempt counts as failed.
   */
  private closeConn(c: Conn, reason: string, refuse?: string): void {
    if (c.closed) return;
    c.closed = true;
    c.decoder.abort();
    if (refuse && !c.socket.destroyed && this.status === 'running') {
      const [h, b] = encodeLinkFrame(LinkFrame.Refuse, Buffer.from(refuse, 'utf8'));
      c.socket.end(Buffer.concat([h, b]));
      // end() waits for the far side; do not let a silent peer keep the socket.
      c.socket.setTimeout(1000, () => c.socket.destroy());
    } else {
      c.socket.destroy();
    }
    const p = c.peer;
    if (!p) return;
    if (c.needDrain) {
      c.needDrain = false;
      this.maybeDrained();
    }
    if (this.status !== 'running') return;
    if (p.conn === c) {
      p.conn = undefined;
      if (c.up) countReason(p.errors, reason.split(':')[0]!);
      this.setPeerState(p, 'down', reason);
      if (p.dialing) return; // an attempt is already under way
      this.cancelDial(p);
      p.dialTimer = undefined;
      this.scheduleDial(p, this.staggerFor(p) + backoffDelay(0, this.opts.backoff, this.random));
      return;
    }
    if (p.dialing === c) {
      p.dialing = undefined;
      if (p.conn) {
        // A failback probe failed: try again later, the link itself is fine.
        this.scheduleFailback(p);
        return;
      }
      if (reason === 'not_needed') return;
      const { next, endOfRound } = p.plan.fail();
      const delay = endOfRound ? this.staggerFor(p) + backoffDelay(p.plan.rounds() - 1, this.opts.backoff, this.random) : 0;
      if (endOfRound) p.log.debug({ delay, rounds: p.plan.rounds(), reason }, 'every peer address failed; backing off');
      this.scheduleDial(p, delay, next);
    }
  }

  private cancelDial(p: PeerSlot): void {
    if (p.dialTimer !== undefined && !(p.dialTimer instanceof ImmediateDial)) this.clock.clearTimeout(p.dialTimer);
    p.dialTimer = undefined;
  }

  private staggerFor(p: PeerSlot): number {
    return this.lower(p.cfg.nodeId) === this.opts.nodeId ? 0 : this.opts.dialStaggerMs;
  }

  private scheduleDial(p: PeerSlot, delayMs: number, index = p.plan.current()): void {
    if (this.status !== 'running' || p.dialTimer !== undefined) return;
    if (delayMs <= 0) {
      // Failover to the next address is immediate; a microtask (not a 0 ms timer) keeps it out of the socket
      // callback that reported the failure, and stays cancellable through the token.
      const token = new ImmediateDial();
      p.dialTimer = token;
      queueMicrotask(() => {
        if (p.dialTimer === token) this.dial(p, index);
      });
      return;
    }
    p.dialTimer = this.clock.setTimeout(() => this.dial(p, index), delayMs);
  }

  /** While up on an outbound fallback address, probe the preferred (first) address now and then. */
  private scheduleFailback(p: PeerSlot): void {
    const c = p.conn;
    if (!c || c.direction !== 'outbound' || c.addressIndex === 0 || this.opts.failbackMs === 0) return;
    if (p.dialTimer !== undefined) return;
    p.dialTimer = this.clock.setTimeout(() => {
      p.dialTimer = undefined;
      if (p.conn && p.conn.direction === 'outbound' && p.conn.addressIndex > 0) this.dial(p, 0);
    }, this.opts.failbackMs);
  }

  // ---- writing, heartbeats, dead links --------------------------------------------------------------------------

  private write(c: Conn, header: Buffer, payload: Buffer): boolean {
    c.lastTx = this.clock.now();
    if (c.peer) c.peer.stats.bytesOut += header.length + payload.length;
    c.socket.cork();
    c.socket.write(header);
    const ok = payload.length > 0 ? c.socket.write(payload) : true;
    c.socket.uncork();
    return ok && c.socket.writableLength <= c.socket.writableHighWaterMark;
  }

  private writeControl(c: Conn, type: LinkFrame, payload?: Buffer): void {
    const [h, b] = encodeLinkFrame(type, payload);
    if (!this.write(c, h, b)) c.needDrain = true;
  }

  private maybeDrained(): void {
    if (!this.waitingDrain) return;
    for (const p of this.peers.values()) if (p.conn?.needDrain) return;
    this.waitingDrain = false;
    this.safeCall('onDrain', () => this.onDrain());
  }

  /**
   * One timer for every connection, armed for the soonest thing due (dueOf) rather than ticking, so an idle link
   * wakes the daemon only when a heartbeat or a deadline needs it; none while there is no connection.
   */
  private tickBy(at: number): void {
    if (this.status !== 'running' || (this.tickTimer !== undefined && this.tickAt <= at)) return;
    if (this.tickTimer !== undefined) this.clock.clearTimeout(this.tickTimer);
    this.tickAt = at;
    this.tickTimer = this.clock.setTimeout(() => {
      this.tickTimer = undefined;
      this.tick();
    }, Math.max(1, at - this.clock.now()));
  }

  /**
   * When a connection next needs looking at: its connect or hello deadline; once up, a heartbeat or link-down check.
   * Our heartbeat is due after 1.25 × heartbeatMs of silence, not heartbeatMs: a caller beating every heartbeatMs
   * would otherwise get ours beside its own. A caller that beats (callerHeartbeats: the daemon's sync engine) gets
   * none, and no timer for one: armed 1.25 × heartbeatMs after a write, it fired a quarter heartbeat after each of
   * the caller's beats to find nothing due (an idle daemon's CPU is its wake-ups). Link-down checks alone wake about
   * once per deadAfterMs.
   */
  private dueOf(c: Conn): number {
    const o = this.opts;
    if (!c.securedAt) return c.openedAt + o.connectTimeoutMs;
    if (!c.up) return c.securedAt + o.helloTimeoutMs;
    const dead = c.lastRx + o.deadAfterMs;
    return o.callerHeartbeats ? dead : Math.min(dead, c.lastTx + o.heartbeatMs + Math.floor(o.heartbeatMs / 4));
  }

  /** Connect and hello deadlines, link-down detection, and a heartbeat on a link nothing was written to for a while (dueOf). */
  private tick(): void {
    const now = this.clock.now();
    const o = this.opts;
    let next = Infinity;
    for (const c of [...this.conns]) {
      if (c.closed) continue;
      // a timer runs from the event loop's cached time, which lags this clock by however long the turn that armed
      // it had run, so it can fire a little before `at`: what is due that soon is done now, not re-armed for (a
      // wake-up for nothing). A heartbeat or deadline a few ms early changes nothing
      if (now + TICK_SLACK_MS >= this.dueOf(c)) {
        if (!c.securedAt) {
          if (c.peer) countReason(c.peer.errors, 'connect_timeout');
          this.closeConn(c, 'connect_timeout');
        } else if (!c.up) {
          if (c.peer) this.refusePeer(c.peer, 'hello_timeout', { address: c.address, helloTimeoutMs: o.helloTimeoutMs });
          else this.refuseGlobal('hello_timeout', { address: c.address, helloTimeoutMs: o.helloTimeoutMs });
          this.closeConn(c, 'hello_timeout');
        } else if (now + TICK_SLACK_MS - c.lastRx >= o.deadAfterMs) this.closeConn(c, 'dead');
        else this.writeControl(c, LinkFrame.Heartbeat);
      }
      if (!c.closed) next = Math.min(next, this.dueOf(c));
    }
    if (next !== Infinity) this.tickBy(next);
  }
}

/** Creates the TCP/TLS peer link (see TcpTransportOptions for every option and its default). */
export function createTcpTransport(options: TcpTransportOptions): TcpTransport {
  return new TcpTransport(options);
}
