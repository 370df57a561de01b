// The Redis Streams transport: each node XADDs its frames to its own stream and keeps a snapshot of its table;
// each node reads every peer's stream from where it stopped, and loads a peer's snapshot when it starts or when
// it finds a gap (a trimmed stream, frames lost in an outage) instead of asking the peer for a bulk.
//
// Writer: send() queues the frame with the snapshot ops it implies (SnapshotTracker); one MULTI per batch appends
// the frames (fields i, n, f), applies the ops and updates the meta hash, so snapshot, meta and stream always
// agree; a timeout refresh starts a batch of its own, as the values it patches are read once all before it is
// written. While Redis is away the queue keeps up to maxBufferBytes; beyond it frames are dropped (still numbered,
// so readers see the gap) and, once Redis is back, the upper layer is asked for a full resync (onResyncNeeded).
// A failed EXEC is retried: a frame may be appended twice, never reordered; readers skip what they saw (i, n).
// Each time the connection is back, the meta hash must still show the last batch Redis acknowledged (a restart
// without persistence, a failover to a lagging replica lose some): otherwise the snapshot is rebuilt from scratch.
//
// Reader (one blocking connection per peer): XREAD from the cursor; entries must continue the writer's numbering
// (same incarnation n+1, or a new incarnation at n = 1), otherwise the snapshot is reloaded (MULTI: snapshot,
// meta, last stream id) and reading goes on after it. The cursor is kept in Redis ({reader}:cursors).
//
// Link state: a peer is up while our Redis connection is ready, its presence key (TTL deadAfterMs, refreshed
// every heartbeatMs) exists, and we hold its snapshot. Frames sent while no peer is up still reach Redis (the
// snapshot and any reader that comes back within the stream's length), but send() says false / no_link.

import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { Cluster, type Redis } from 'ioredis';
import { decodeFrame, type MacKey } from '../../wire/envelope.js';
import { countReason, TransportError, type LinkState, type PeerInfo, type PeerStats, type Transport, type TransportStats } from '../types.js';
import { nodeKeys, type NodeKeys } from './keys.js';
import { createClient, resolveRedisOptions, type RedisClient, type RedisTransportOptions, type ResolvedRedisOptions } from './options.js';
import { SnapshotTracker, type SnapshotOps } from './snapshot.js';

/** Where a loaded snapshot stands in the writer's sync session (what the next tail frame continues). */
export interface SnapshotPoint {
  session: number;
  seq: number;
}

/** The transport's own status, set through one logged setter. */
export type RedisStatus = 'stopped' | 'connecting' | 'ready' | 'outage';

export interface RedisTransportStats extends TransportStats {
  redis: {
    status: RedisStatus;
    queuedFrames: number;
    queuedBytes: number;
    /** Frames dropped because the outage buffer was full; a full resync follows when Redis is back. */
    needsResync: boolean;
    resyncsRequested: number;
    outages: number;
    batches: number;
    retriedBatches: number;
    snapshotFields: number;
    snapshotLoads: Record<string, number>;
    gaps: Record<string, number>;
    duplicatesSkipped: number;
    /** Snapshot values whose timeout a refresh frame replaced. */
    snapshotRefreshes: number;
    /** Times the client had given up reconnecting and was started again. */
    restarts: number;
    /** Times Redis stopped answering for link.deadAfter with the connection open (a blackholed path): an outage. */
    stalls: number;
    /** What Redis refused while a connection was set up (the SELECT of redis.db, the ACL user's AUTH), until one is ready. */
    refusal?: string;
  };
}

interface Queued {
  frame?: Buffer;
  n: number;
  ops: SnapshotOps;
  /** Meta-only item: reset the snapshot (DEL) and/or mark it incomplete. */
  reset?: boolean;
  incomplete?: boolean;
}

interface PeerReader {
  id: string;
  keys: NodeKeys;
  conn?: RedisClient;
  loop?: Promise<void>;
  cursor: string;
  inc: string;
  n: number;
  loaded: boolean;
  alive: boolean;
  state: LinkState;
  since: number;
  everUp: boolean;
  stats: Omit<PeerStats, 'nodeId' | 'state' | 'since'>;
  suspended: boolean;
  wake?: () => void;
}

export interface RedisTransportRuntime {
  /**
   * The cluster's frame MAC key: snapshot values are MAC'd with it, and a stream entry whose frame does not verify
   * is skipped (refused.bad_auth) before it can take the place of the writer's real frame. The sync layer checks
   * every frame again.
   */
  macKey?: MacKey;
}

const UNLIMITED = { maxFrameBytes: Number.MAX_SAFE_INTEGER };
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class RedisTransport implements Transport {
  readonly kind = 'redis';
  /** Capability read by the sync layer: frames persist; a joining or restarting node needs no bulk. */
  readonly durable = true as const;
  onFrame: (frame: Buffer, from: PeerInfo) => void = () => {};
  onLink: (peer: PeerInfo, state: LinkState, reason?: string) => void = () => {};
  onDrain: () => void = () => {};
  /** A peer's snapshot: authenticated single-entry Upsert frames; the stream tail follows after `at.seq`. */
  onSnapshot?: (peer: PeerInfo, at: SnapshotPoint, frames: Buffer[]) => void;
  /**
   * Set by a sync layer that republishes its table on request: then the snapshot starts empty and incomplete at
   * each start, and this is called when Redis is first ready, after frames were dropped, or after Redis lost data;
   * the snapshot is complete again at the end of the full bulk it sends.
   */
  onResyncNeeded?: (reason: string) => void;

  private readonly o: ResolvedRedisOptions;
  private readonly keys: NodeKeys;
  private readonly log?: Logger;
  private status: RedisStatus = 'stopped';
  /** See RedisTransportStats.redis.refusal. */
  private refusal: string | undefined;
  private main?: RedisClient;
  private inc = '';
  private n = 0;
  /** The last frame number Redis acknowledged (an EXEC that succeeded); -1 before the first. */
  private written = -1;
  private queue: Queued[] = [];
  private queueBytes = 0;
  private needDrain = false;
  private pumping?: Promise<void>;
  private ticking = false;
  private needsResync = false;
  private resyncPending?: string;
  private tracker: SnapshotTracker;
  private tickTimer?: NodeJS.Timeout;
  private readonly readers = new Map<string, PeerReader>();
  private readonly dropped: Record<string, number> = {};
  private readonly counters = { resyncsRequested: 0, outages: 0, batches: 0, retriedBatches: 0, duplicatesSkipped: 0, snapshotRefreshes: 0, restarts: 0, stalls: 0 };
  private readonly snapshotLoads: Record<string, number> = {};
  private readonly gaps: Record<string, number> = {};

  constructor(
    opts: RedisTransportOptions,
    private readonly rt: RedisTransportRuntime = {},
  ) {
    this.o = resolveRedisOptions(opts);
    this.keys = nodeKeys(this.o.clusterId, this.o.nodeId);
    this.log = this.o.logger;
    this.tracker = new SnapshotTracker(this.o.clusterId, this.o.nodeId, rt.macKey);
    for (const id of this.o.peers) this.readers.set(id, this.newReader(id));
  }

  private newReader(id: string): PeerReader {
    return {
      id, keys: nodeKeys(this.o.clusterId, id), cursor: '0-0', inc: '', n: 0, loaded: false, alive: false, state: 'closed',
      since: Date.now(), everUp: false, suspended: false,
      stats: { bytesIn: 0, bytesOut: 0, framesIn: 0, framesOut: 0, reconnects: 0, refused: {} },
    };
  }

  private setStatus(next: RedisStatus, why: string): void {
    if (next === this.status) return;
    const from = this.status;
    this.status = next;
    if (next === 'outage') this.counters.outages++;
    const lvl = next === 'outage' ? 'warn' : 'info';
    this.log?.[lvl]({ from, to: next, why }, `redis ${next}`);
  }

  // ---- lifecycle -------------------------------------------------------------------------------------------

  async start(): Promise<void> {
    if (this.status !== 'stopped') return;
    this.inc = randomBytes(6).toString('hex');
    this.n = 0;
    this.written = -1;
    this.queue = [];
    this.queueBytes = 0;
    this.needDrain = false;
    this.needsResync = false;
    this.tracker = new SnapshotTracker(this.o.clusterId, this.o.nodeId, this.rt.macKey);
    this.refusal = undefined;
    this.setStatus('connecting', 'start');
    const main = createClient(this.o.redis, `ctsync:${this.o.nodeId}`, true);
    this.main = main;
    main.on('ready', () => this.onReady());
    main.on('close', () => this.onConnLost('connection closed'));
    main.on('error', (err: Error) => this.connError(err));
    // A new incarnation starts from an empty snapshot; with a republishing upper layer it is incomplete until
    // that layer's first full bulk ends, so readers wait instead of loading half a table.
    this.enqueue({ n: 0, ops: { set: [], del: [], complete: !this.onResyncNeeded }, reset: true, incomplete: !!this.onResyncNeeded });
    this.resyncPending = undefined;
    for (const r of this.readers.values()) {
      Object.assign(r, { cursor: '0-0', inc: '', n: 0, loaded: false, alive: false, suspended: false });
      this.setPeer(r, 'connecting', 'start');
      r.conn = createClient(this.o.redis, `ctsync:${this.o.nodeId}:read:${r.id}`);
      r.conn.on('error', (err: Error) => this.connError(err));
    }
    main.connect().catch((err: Error) => this.log?.warn({ err }, 'redis: first connection attempt failed; retrying'));
    for (const r of this.readers.values()) {
      r.conn!.connect().catch(() => {});
      r.loop = this.readLoop(r);
    }
    this.tickTimer = setInterval(() => void this.tick(), this.o.heartbeatMs);
    // the upper layer publishes its whole table now: queued behind the reset, written when Redis is ready
    if (this.onResyncNeeded) {
      this.counters.resyncsRequested++;
      this.guard(() => this.onResyncNeeded!('start'));
    }
  }

  async stop(): Promise<void> {
    if (this.status === 'stopped') return;
    const main = this.main!;
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.tickTimer = undefined;
    // Last writes, when Redis is there: what is queued, then our presence goes away so peers see us down now.
    if (this.status === 'ready') {
      await this.pump().catch(() => {});
      await withTimeout(main.del(this.keys.alive), 500).catch(() => {});
    }
    this.setStatus('stopped', 'stop');
    const readers = [...this.readers.values()];
    for (const r of readers) r.wake?.();
    // closing a reader's connection rejects its pending XREAD, which ends its loop
    await Promise.all([main, ...readers.map((r) => r.conn)].map((c) => c && closeClient(c)));
    await Promise.all(readers.map((r) => r.loop));
    this.main = undefined;
    for (const r of readers) {
      r.conn = undefined;
      r.loop = undefined;
      this.setPeer(r, 'closed', 'stopped');
    }
    this.queue = [];
    this.queueBytes = 0;
  }

  private onReady(): void {
    if (this.status === 'stopped') return;
    void this.afterReady();
  }

  private async afterReady(): Promise<void> {
    const main = this.main!;
    // Did Redis lose what it acknowledged (restart without persistence, FLUSHALL, a failover to a replica that had
    // not received our last batches yet, or writes that went to a master already replaced)? Then its meta hash is
    // not ours or is behind the last batch it acknowledged. Asking fails: assume lost (a republish costs a bulk).
    if (this.written >= 0 && !this.queue.some((q) => q.reset)) {
      const [inc, n] = await main.hmget(this.keys.meta, 'i', 'n').catch(() => ['?', '?']);
      if (inc !== this.inc || !(Number(n) >= this.written)) {
        this.log?.warn({ had: `${inc}/${n}`, wrote: `${this.inc}/${this.written}` }, 'redis lost writes of this node: republishing the whole table');
        this.enqueue({ n: 0, ops: { set: [], del: [], complete: !this.onResyncNeeded }, reset: true, incomplete: !!this.onResyncNeeded }, true);
        if (this.onResyncNeeded) this.resyncPending ??= 'redis_data_lost';
      }
    }
    if (this.status === 'stopped') return;
    // after a sentinel failover the readers may still be on the old master, which serves reads until it is demoted
    if (this.status === 'outage' && this.o.redis.mode === 'sentinel') for (const r of this.readers.values()) r.conn?.disconnect(true);
    this.refusal = undefined;
    this.setStatus('ready', 'connection ready');
    void this.pump();
    void this.tick();
  }

  private onConnLost(why: string): void {
    if (this.status === 'stopped' || this.status === 'connecting' || this.status === 'outage') {
      if (this.status === 'connecting' || this.status === 'outage') for (const r of this.readers.values()) this.setPeer(r, r.everUp ? 'down' : 'connecting', 'redis_down');
      return;
    }
    this.setStatus('outage', why);
    for (const r of this.readers.values()) this.setPeer(r, 'down', 'redis_down');
  }

  // ---- writer ------------------------------------------------------------------------------------------------

  send(frame: Buffer): boolean {
    if (this.status === 'stopped') {
      countReason(this.dropped, 'stopped');
      return false;
    }
    const n = ++this.n;
    if (this.queueBytes + frame.length > this.o.maxBufferBytes) {
      // Numbered anyway: readers see the gap and reload the snapshot, which a full resync will repair.
      countReason(this.dropped, 'buffer_full');
      if (!this.needsResync) this.log?.warn({ queuedBytes: this.queueBytes }, 'redis send buffer full: dropping frames; a full resync follows when redis is back (see redis.maxBuffer)');
      this.needsResync = true;
      return false;
    }
    const copy = Buffer.from(frame);
    this.enqueue({ frame: copy, n, ops: this.tracker.track(copy) });
    let upPeers = 0;
    for (const r of this.readers.values()) {
      if (r.state !== 'up') continue;
      upPeers++;
      r.stats.framesOut++;
      r.stats.bytesOut += frame.length;
    }
    const high = this.queueBytes > this.o.highWaterMarkBytes;
    if (high) this.needDrain = true;
    if (!upPeers) {
      countReason(this.dropped, 'no_link');
      return false;
    }
    return !high;
  }

  /** The queue is above its high-water mark (with or without peers up); onDrain follows when it is not. */
  writeBlocked(): boolean {
    return this.needDrain;
  }

  /**
   * Connection errors come and go with outages: debug. A command Redis refuses while a connection is set up (the
   * SELECT of redis.db, the AUTH of the ACL user) is a setting to fix: the connection is dropped and retried with
   * the backoff (createClient), and each new refusal is logged as an error once, not once per retry.
   */
  private connError(err: Error): void {
    if (err.name !== 'ReplyError') return void this.log?.debug({ err }, 'redis connection error');
    const cmd = (err as Error & { command?: { name: string; args: unknown[] } }).command;
    const refusal = cmd?.name === 'select' ? `SELECT ${String(cmd.args[0])}: ${err.message}` : err.message;
    if (refusal === this.refusal) return;
    this.refusal = refusal;
    this.log?.error({ err }, 'redis refused a command setting up a connection: check redis.db and the ACL user; retrying');
  }

  /**
   * A quarter of the send buffer queued (or the high-water mark, if more), Redis up or in an outage: new changes
   * wait in the sync layer, one entry per flow however often it changes, instead of filling the buffer towards a
   * full resync. Only while a drain is owed, so that onDrain ends it.
   */
  congested(): boolean {
    return this.needDrain && this.queueBytes > Math.max(this.o.highWaterMarkBytes, this.o.maxBufferBytes / 4);
  }

  private enqueue(q: Queued, front = false): void {
    if (front) this.queue.unshift(q);
    else this.queue.push(q);
    this.queueBytes += q.frame?.length ?? 0;
    if (this.status === 'ready' && !this.pumping) setImmediate(() => void this.pump());
  }

  private pump(): Promise<void> {
    if (!this.pumping) this.pumping = this.pumpLoop().finally(() => (this.pumping = undefined));
    return this.pumping;
  }

  private async pumpLoop(): Promise<void> {
    while (this.status === 'ready' && this.main) {
      if (!this.queue.length) this.maybeResync();
      if (!this.queue.length) break;
      const batch: Queued[] = [];
      let bytes = 0;
      for (const q of this.queue) {
        if (batch.length && (q.ops.refresh || batch.length >= this.o.batchFrames || bytes + (q.frame?.length ?? 0) > 4 << 20)) break;
        batch.push(q);
        bytes += q.frame?.length ?? 0;
      }
      const k = this.keys;
      let patched: Buffer[];
      try {
        patched = await this.patchTimeouts(batch[0]!.ops.refresh);
      } catch (err) {
        this.counters.retriedBatches++;
        this.log?.debug({ err }, 'redis read for a timeout refresh failed; retrying when the connection is back');
        return;
      }
      const m = this.main.multi();
      let complete: boolean | undefined;
      let lastN = -1;
      for (const q of batch) {
        if (q.reset) m.del(k.snap);
        if (q.reset || q.incomplete) complete = !q.incomplete;
        if (q.reset) lastN = Math.max(lastN, 0);
        if (q.frame) {
          m.xadd(k.stream, 'MAXLEN', '~', String(this.o.maxLen), '*', 'i', this.inc, 'n', String(q.n), 'f', q.frame);
          lastN = q.n;
        }
        if (q === batch[0] && patched.length) m.hset(k.snap, ...patched);
        if (q.ops.set.length) m.hset(k.snap, ...q.ops.set);
        if (q.ops.del.length) m.hdel(k.snap, ...q.ops.del);
        if (q.ops.complete) complete = true;
      }
      const meta: (string | number)[] = ['i', this.inc, 's', this.tracker.session, 'q', this.tracker.seq];
      if (lastN >= 0) meta.push('n', lastN);
      if (complete !== undefined) meta.push('c', complete ? 1 : 0);
      m.hset(k.meta, ...meta);
      let res: [Error | null, unknown][] | null;
      try {
        res = await m.exec();
      } catch (err) {
        this.counters.retriedBatches++;
        this.log?.debug({ err }, 'redis batch failed; retrying when the connection is back');
        return;
      }
      if (!res) {
        this.counters.retriedBatches++;
        return;
      }
      const failed = res.find(([e]) => e);
      if (failed) {
        countReason(this.dropped, 'redis_error', batch.length);
        this.log?.error({ err: failed[0] }, 'redis refused a write (ACL permissions? wrong key type?); those frames are lost: resync requested');
        this.needsResync = true;
      }
      this.counters.batches++;
      this.counters.snapshotRefreshes += patched.length / 2;
      if (lastN >= 0) this.written = lastN;
      this.queue.splice(0, batch.length);
      this.queueBytes -= bytes;
      if (this.needDrain && this.queueBytes <= this.o.highWaterMarkBytes) {
        this.needDrain = false;
        this.guard(() => this.onDrain());
      }
    }
  }

  /** The snapshot values a refresh changes (field, value, …): read now, so after every batch queued before it. */
  private async patchTimeouts(r: SnapshotOps['refresh']): Promise<Buffer[]> {
    if (!r) return [];
    const values = await this.main!.hmgetBuffer(this.keys.snap, ...r.fields);
    const set: Buffer[] = [];
    values.forEach((v, i) => {
      // gone meanwhile (a delete, a reset): nothing to refresh; not ours (forged): not re-signed
      const p = v ? this.tracker.withTimeout(v, r.timeouts[i]!) : undefined;
      if (p) set.push(r.fields[i]!, p);
    });
    return set;
  }

  /** Queue drained with Redis up: ask the upper layer to republish when frames were lost or it is a new start. */
  private maybeResync(): void {
    if (!this.onResyncNeeded) {
      this.needsResync = false;
      return;
    }
    let reason = this.resyncPending;
    if (this.needsResync) {
      reason ??= 'frames_dropped';
      this.needsResync = false;
      // until the bulk ends the snapshot is not exact: readers that load it now wait for c = 1
      this.enqueue({ n: 0, ops: { set: [], del: [], complete: false }, incomplete: true });
    }
    if (!reason) return;
    this.resyncPending = undefined;
    this.counters.resyncsRequested++;
    this.log?.info({ reason }, 'asking the sync layer to republish its whole table');
    this.guard(() => this.onResyncNeeded!(reason));
  }

  // ---- presence --------------------------------------------------------------------------------------------

  private async tick(): Promise<void> {
    const main = this.main;
    if (main && this.status !== 'stopped' && this.status !== 'ready' && this.revive(main, 'writer')) return;
    if (!main || this.status !== 'ready' || this.ticking) return;
    this.ticking = true;
    try {
      // A path that silently drops packets (a cut link, a dead server behind it) never closes the socket: without
      // this bound, every command would wait forever while the status said ready.
      const alive = await withTimeout(
        main.set(this.keys.alive, this.inc, 'PX', this.o.deadAfterMs).then(() => Promise.all([...this.readers.values()].map((r) => main.exists(r.keys.alive)))),
        this.o.deadAfterMs,
      );
      let i = 0;
      for (const r of this.readers.values()) {
        r.alive = alive[i++] === 1;
        this.evaluate(r);
      }
    } catch (err) {
      if ((err as Error).message === 'timeout' && this.main === main && this.status === 'ready') this.stalled(main);
      else this.log?.debug({ err }, 'presence update failed');
    } finally {
      this.ticking = false;
    }
  }

  /** Redis did not answer within link.deadAfter: an outage. Every connection starts over (and its pending commands fail). */
  private stalled(main: RedisClient): void {
    this.counters.stalls++;
    this.onConnLost(`no answer within ${this.o.deadAfterMs} ms (link.deadAfter)`);
    main.disconnect(true);
    for (const r of this.readers.values()) r.conn?.disconnect(true);
  }

  private evaluate(r: PeerReader, reason?: string): void {
    if (this.status === 'stopped') return;
    const up = this.status === 'ready' && r.alive && r.loaded;
    this.setPeer(r, up ? 'up' : r.everUp ? 'down' : 'connecting', reason ?? (up ? undefined : !r.alive ? 'peer_absent' : 'loading'));
  }

  private setPeer(r: PeerReader, next: LinkState, reason?: string): void {
    if (next === r.state) return;
    if (next === 'down' && r.state === 'connecting') return;
    r.state = next;
    r.since = Date.now();
    if (next === 'up') {
      if (r.everUp) r.stats.reconnects++;
      r.everUp = true;
    }
    if (next === 'closed') r.everUp = false;
    this.guard(() => this.onLink({ nodeId: r.id }, next, reason));
  }

  // ---- readers ---------------------------------------------------------------------------------------------

  /**
   * ioredis can give up for good ('end') although its retryStrategy never does: seen when a sentinel's
   * +switch-master lands while a reconnect is half way (1 run in 7 of the sentinel failover test). We still want
   * Redis: connect again. True if it had given up.
   */
  private revive(c: RedisClient, which: string): boolean {
    if (c.status !== 'end') return false;
    this.counters.restarts++;
    this.log?.warn({ connection: which }, 'a redis connection had stopped reconnecting: connecting again');
    c.connect().catch((err: Error) => this.log?.debug({ err, connection: which }, 'redis connect failed'));
    return true;
  }

  private async readLoop(r: PeerReader): Promise<void> {
    let failures = 0;
    const running = () => this.status !== 'stopped' && r.conn !== undefined;
    while (running()) {
      const conn = r.conn!;
      if (r.suspended || conn.status !== 'ready') {
        if (!r.suspended) this.revive(conn, `reader of ${r.id}`);
        await new Promise<void>((res) => {
          const t = setTimeout(res, r.suspended ? 20 : Math.min(200, this.o.heartbeatMs));
          r.wake = () => {
            clearTimeout(t);
            res();
          };
        });
        r.wake = undefined;
        continue;
      }
      try {
        if (!r.loaded) {
          if (!(await this.loadSnapshot(r, conn))) {
            await sleep(Math.min(100, this.o.heartbeatMs));
            continue;
          }
        }
        const res = (await conn.xreadBuffer('COUNT', this.o.batchFrames, 'BLOCK', this.o.blockMs, 'STREAMS', r.keys.stream, r.cursor)) as
          | [Buffer, [Buffer, Buffer[]][]][]
          | null;
        failures = 0;
        if (!res || !running() || r.suspended) continue;
        this.consume(r, res[0]![1]);
        void this.main?.hset(this.keys.cursors, r.id, r.cursor).catch(() => {});
      } catch (err) {
        if (!running()) break;
        failures++;
        this.log?.debug({ err, peer: r.id }, 'stream read failed');
        await sleep(Math.min(1000, 20 * failures));
      }
    }
  }

  private consume(r: PeerReader, entries: [Buffer, Buffer[]][]): void {
    for (const [idBuf, fields] of entries) {
      let inc = '';
      let n = -1;
      let frame: Buffer | undefined;
      for (let j = 0; j + 1 < fields.length; j += 2) {
        const name = fields[j]!.toString('latin1');
        if (name === 'i') inc = fields[j + 1]!.toString('latin1');
        else if (name === 'n') n = Number(fields[j + 1]!.toString('latin1'));
        else if (name === 'f') frame = fields[j + 1]!;
      }
      const id = idBuf.toString('latin1');
      if (inc === r.inc && n <= r.n) {
        this.counters.duplicatesSkipped++;
        r.cursor = id;
        continue;
      }
      const continues = inc === r.inc ? n === r.n + 1 : n === 1;
      if (!continues || !frame) {
        // Trimmed past our cursor, or frames the writer dropped: what we hold is no longer exact.
        countReason(this.gaps, r.id);
        this.log?.warn({ peer: r.id, had: `${r.inc}/${r.n}`, got: `${inc}/${n}`, id }, 'gap in a peer stream: reloading its snapshot');
        r.loaded = false;
        this.evaluate(r, 'gap');
        return;
      }
      if (this.rt.macKey && !decodeFrame(frame, UNLIMITED, { clusterId: this.o.clusterId, macKey: this.rt.macKey }).ok) {
        // not from a key holder: skipped without taking the place (i, n) of the writer's real frame
        countReason(r.stats.refused, 'bad_auth');
        r.cursor = id;
        continue;
      }
      r.inc = inc;
      r.n = n;
      r.cursor = id;
      r.stats.framesIn++;
      r.stats.bytesIn += frame.length;
      this.guard(() => this.onFrame(frame!, { nodeId: r.id }));
    }
  }

  /** Loads the peer's snapshot and the stream position it matches; false when it is not complete yet. */
  private async loadSnapshot(r: PeerReader, conn: RedisClient): Promise<boolean> {
    const k = r.keys;
    const res = await conn.multi().hget(k.meta, 'c').hgetall(k.meta).hvalsBuffer(k.snap).xrevrange(k.stream, '+', '-', 'COUNT', 1).exec();
    if (!res) return false;
    const err = res.find(([e]) => e);
    if (err) throw err[0];
    const c = res[0]![1] as string | null;
    const meta = res[1]![1] as Record<string, string>;
    const frames = res[2]![1] as Buffer[];
    const top = res[3]![1] as [string, string[]][];
    if (c !== '1') return false;
    r.inc = meta.i ?? '';
    r.n = Number(meta.n ?? 0);
    r.cursor = top.length ? top[0]![0] : '0-0';
    r.loaded = true;
    countReason(this.snapshotLoads, r.id);
    this.log?.info({ peer: r.id, entries: frames.length, at: `${r.inc}/${r.n}` }, 'loaded peer snapshot');
    this.guard(() => this.onSnapshot?.({ nodeId: r.id }, { session: Number(meta.s ?? 0), seq: Number(meta.q ?? 0) }, frames));
    this.evaluate(r);
    return true;
  }

  // ---- test hooks and stats --------------------------------------------------------------------------------

  /** @internal tests: stop reading `peer`'s stream (as a stuck reader would) until called with false. */
  suspendReading(peer: string, suspended: boolean): void {
    const r = this.readers.get(peer);
    if (!r) throw new TransportError('CTS_ERR_CONFIG_INVALID', `no peer '${peer}'`);
    r.suspended = suspended;
    r.wake?.();
  }

  stats(): RedisTransportStats {
    return {
      kind: this.kind,
      peers: [...this.readers.values()].map((r) => ({ nodeId: r.id, state: r.state, since: r.since, ...r.stats, refused: { ...r.stats.refused } })),
      refused: {},
      dropped: { ...this.dropped },
      redis: {
        status: this.status,
        queuedFrames: this.queue.filter((q) => q.frame).length,
        queuedBytes: this.queueBytes,
        needsResync: this.needsResync,
        snapshotFields: this.tracker.size,
        snapshotLoads: { ...this.snapshotLoads },
        gaps: { ...this.gaps },
        ...this.counters,
        ...(this.refusal ? { refusal: this.refusal } : {}),
      },
    };
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch {
      countReason(this.dropped, 'handler_error');
    }
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, rej) => (t = setTimeout(() => rej(new Error('timeout')), ms)))]).finally(() => clearTimeout(t));
}

/** Closes a client and resolves once its sockets are gone (so no socket outlives stop()). */
function closeClient(c: RedisClient): Promise<void> {
  // ioredis closes these with c but does not wait for them: a Cluster's node connections, and the sentinel
  // connections of the failover detector (sentinel mode)
  const inner = c instanceof Cluster ? c.nodes('all') : ((c as unknown as { connector?: { failoverDetector?: { sentinels?: { client: Redis }[] } | null } }).connector?.failoverDetector?.sentinels ?? []).map((s) => s.client);
  const gone = [c, ...inner].map(ended);
  c.disconnect();
  return Promise.all(gone).then(() => {});
}

/** The client's 'end'; at once without a socket ('reconnecting': disconnect() only cancels the retry, no 'end' follows). */
function ended(c: RedisClient): Promise<void> {
  if (c.status === 'end' || c.status === 'wait' || c.status === 'reconnecting') return Promise.resolve();
  return new Promise<void>((res) => c.once('end', () => res()));
}
