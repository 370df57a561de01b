// Replication policy: what to send when (coalesced changes, refreshes, bulks, resume, digests) and how what
// peers send is applied to their tables. Knows nothing about roles or the kernel; the daemon feeds it.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Flow } from '../kernel/types.js';
import type { Clock } from '../state/clock.js';
import { flowKey, decodeKey, keyFromTupleBytes, keyTupleBytes, type KeyZones } from '../state/key.js';
import { DIRTY_STATE, type LocalTable } from '../state/local-table.js';
import { PeerTable } from '../state/peer-table.js';
import { diffDigests } from '../state/table.js';
import type { LinkState, PeerInfo, Transport } from '../transport/types.js';
import { checkFrame, decodeEnvelope, encodeFrame, encodeUpsertFrame, MIN_PROTOCOL_VERSION, type MacKey } from '../wire/envelope.js';
import { EntryBatch, entryToFlow, keyFromWire, keyToWire, refreshFromWire, refreshToWire, type FlowKey, type PlainEntry } from '../wire/entry.js';
import { Entry, type pb } from '../wire/proto.js';
import { bytesEqual, newPlainWireEntry, PlainUpsert, scanPlainUpsert } from '../wire/upsert-scan.js';
import type { DropReason } from '../wire/errors.js';

export interface SyncOptions {
  nodeId: string;
  clusterId: string;
  /**
   * Longest time (ms) a change waits to be batched with others into one frame. A batch goes out earlier once changes
   * pause for QUIET_MS (the end of a burst, or a lone change) or once it fills a frame. (The daemon also sends a
   * batch at each quiet of the kernel's event stream, whose reader gathers a trickle for up to coalesceMs.)
   */
  coalesceMs: number;
  /** Digest exchange period (ms); 0 disables anti-entropy. */
  digestIntervalMs: number;
  /** Sync-level heartbeat period (ms): carries table size and sequence numbers for lag. */
  heartbeatMs: number;
  maxFrameBytes: number;
  macKey?: MacKey;
  /** Entries per frame: ~28 B each on the wire. */
  entriesPerFrame?: number;
  /** Frames remembered for resume; a longer gap costs a full bulk (so does one whose frames carried more than twice
   * as many keys as the table holds). */
  resumeFrames?: number;
}

/**
 * Optional capability of a transport whose frames persist (Redis Streams): every peer reads this node's frames
 * from the medium, and a node that joins or restarts loads a snapshot of each peer's table plus the tail after it.
 * With such a transport no peer ever needs a bulk on hello; instead this node publishes its whole table when the
 * medium asks (`onResyncNeeded`: at start, after frames were lost), and applies peers' snapshots (`onSnapshot`).
 */
export interface DurableReplay {
  readonly durable: true;
  /** Authenticated single-entry Upsert frames making up the peer's table as of `at.seq` of its session `at.session`. */
  onSnapshot?: (peer: PeerInfo, at: { session: number; seq: number }, frames: Buffer[]) => void;
  onResyncNeeded?: (reason: string) => void;
  /** True while the transport's own queue is above its high-water mark, peers up or not; onDrain follows. */
  writeBlocked?(): boolean;
}

/** Marks of a queued slot (SyncEngine.changed). */
const QUEUED = 1;
const QUEUED_REBORN = 2;

function durableOf(t: Transport): (Transport & DurableReplay) | undefined {
  return (t as Partial<DurableReplay>).durable === true ? (t as Transport & DurableReplay) : undefined;
}

/** Where a peer stands, as this node sees it. */
export type PeerSyncState = 'connecting' | 'handshake' | 'bulk' | 'in_sync' | 'down';

interface Rx {
  table: PeerTable;
  session: number; // the peer's sender session we are reading
  offset: number; // versions of this session = offset + seq, so they keep growing across peer restarts
  maxVersion: number;
  lastSeq: number; // highest seq received from the peer in `session`
  bulkId: number; // a full bulk from the peer in progress
  bulkReceived: number;
  bulkDone: boolean; // at least one complete full bulk (or a resume) since the peer's session began
  bulkResume: boolean; // its last hello listed BULK_RESUME: it finishes a bulk of its that a cut left half-received here
  lastFrameAt: number;
  lastDataAt: number; // a frame that can change the table (SEQUENCED) was last applied
  lastDigestDiff?: number;
  repair?: { digestId: number; buckets: number[]; nBuckets: number; seen: Set<string> };
}

interface Tx {
  state: PeerSyncState;
  since: number;
  why: string; // of the last state change
  acked: number; // highest of our seqs the peer acknowledged
  ackedAt: number;
  helloDone: boolean;
  /** The peer has had a hello from this session: until it acknowledges, the log keeps what it may lack. */
  joined: boolean;
}

/** Where a bulk's scan of the local table stands (slots stay put, so a cursor outlives changes to the table). */
interface BulkCursor {
  bulkId: number;
  cursor: number;
  sent: number;
}

/** Hello capability: this node finishes, after a resume, a bulk the peer was in the middle of (Hello.peer_bulk_id). */
const BULK_RESUME = 'bulk-resume';

interface LogFrame {
  seq: number;
  at: number;
  keys: string[];
}

export interface PeerStatus {
  nodeId: string;
  state: PeerSyncState;
  since: number;
  /** Why it got into that state (also in the log line of the change): e.g. why a full bulk rather than a resume. */
  why: string;
  link: LinkState;
  /** Our frames the peer has not acknowledged, and how long the oldest has waited: how far behind it is. */
  unackedFrames: number;
  oldestUnackedMs: number;
  peerTableSize: number;
  peerInSync: boolean;
  /** A complete copy of the peer's table (a full bulk or a resume) arrived since its session began. */
  haveCopy: boolean;
  lastFrameAgoMs: number;
  /** Since a frame that can change its table here (upsert, delete, refresh, bulk, repair) was applied; -1 if never. */
  lastDataAgoMs: number;
  divergentBuckets: number;
}

export interface SyncCounters {
  framesOut: number;
  framesIn: number;
  entriesOut: number;
  entriesIn: number;
  deletesOut: number;
  refreshesOut: number;
  bulks: number;
  resumes: number;
  /** Peer snapshots loaded from a durable transport (instead of a bulk). */
  snapshots: number;
  digests: number;
  divergentBuckets: number;
  repairedEntries: number;
  /** Times changes began waiting for a congested link (see flush). */
  holds: number;
  dropped: Record<string, number>;
}

/** A hold of changes for a congested link this long (ms) or longer is logged when it ends; shorter ones are counted. */
const LONG_HOLD_MS = 1000;

/** A batch goes out once changes paused this long (ms): see SyncEngine.flushCheck. */
const QUIET_MS = 1;
/** While changes are held for a congested link, the soonest (ms) flush looks again whether it is (see startHold). */
const HOLD_CHECK_MS = 50;

const SEQUENCED = new Set(['upsert', 'delete', 'refresh', 'bulkBegin', 'bulkEnd', 'digestRepair']);

export class SyncEngine {
  readonly counters: SyncCounters = {
    framesOut: 0, framesIn: 0, entriesOut: 0, entriesIn: 0, deletesOut: 0, refreshesOut: 0, bulks: 0, resumes: 0, snapshots: 0,
    digests: 0, divergentBuckets: 0, repairedEntries: 0, holds: 0, dropped: {},
  };
  /** Random per start: the peer knows our seqs restarted. Below 2^53 so it stays an exact JS number. */
  readonly session = randomBytes(6).readUIntBE(0, 6) || 1;
  /** A peer's table was created (on its first frame or link event): a warm standby hooks its changes here. */
  onPeerTable: (nodeId: string, table: PeerTable) => void = () => {};
  /** A peer's state or the completeness of its copy changed: the daemon re-checks its readiness. */
  onStatusChange: () => void = () => {};
  /** About once a second, on the heartbeat's wake-up: the daemon's own periodic checks ride on it. */
  onChores: () => void = () => {};
  private seq = 0;
  // Changes waiting for the next send. A change the caller made in a known table slot is queued by slot: a mark per
  // slot (QUEUED, or QUEUED_REBORN when one of the changes was a new connection on the tuple) and the slot in
  // `queued`, no hashing; the send takes whatever key the slot holds then. Any other change (a removal, a dump's) is
  // queued by key in `dirty` (→ reborn). A key deleted and re-added meanwhile may be in both; it is sent once.
  private dirty = new Map<string, boolean>();
  private queued: number[] = [];
  private marks = new Uint8Array(1024);
  private log: LogFrame[] = [];
  private flushTimer?: NodeJS.Timeout;
  /** Clock time the pending batch was opened, and the change counts the quiet check compares. */
  private batchOpenedAt = 0;
  private changes = 0;
  private changesAtCheck = 0;
  private timers: NodeJS.Timeout[] = [];
  private readonly rx = new Map<string, Rx>();
  private readonly tx = new Map<string, Tx>();
  private readonly link = new Map<string, LinkState>();
  private bulkRunning?: Promise<void>;
  private bulkAgain = false;
  /** The id of the bulk under way, 0 if none. */
  private bulkRunningId = 0;
  /** A bulk that every peer's link left before its end: where it stopped, so that a receiver left in its middle gets
   * the rest after a resume instead of starting over (a 1M-entry bulk is ~38 MB). */
  private cutBulk?: BulkCursor;
  /** The last bulk sent to its end: a receiver that missed only the end gets it again after a resume. */
  private lastBulk = { id: 0, count: 0 };
  private digestId = 0;
  private drainWaiters: (() => void)[] = [];
  private stopped = false;
  private readonly perFrame: number;
  private readonly resumeFrames: number;
  /** Keys the log's frames carry, in all. */
  private logKeys = 0;
  /** When the newest frame dropped from the log was sent: the lag of a peer whose oldest unacknowledged frames went
   * is at least the time since then. */
  private trimmedAt = 0;
  private readonly durable?: Transport & DurableReplay;
  /** Send-path scratch, reused by every frame (single-threaded; sendKeys never re-enters itself). */
  private readonly batch = new EntryBatch();
  private readonly plain: PlainEntry & KeyZones = {
    tuple: Buffer.allocUnsafe(40), tupleLen: 0, zone: -1, origZone: -1, status: 0, timeout: -1, mark: 0,
    tcp: new Int16Array(5), tcpState: -1, replyZone: -1, ctZone: -1, synproxy: new Uint32Array(4),
  };
  /** Receive-path scratch for Upsert frames read in place (single-threaded; receive never re-enters itself). */
  private readonly rxScan = new PlainUpsert();
  private readonly rxEntry = newPlainWireEntry();
  /** opts.clusterId as UTF-8, compared with a frame's bytes; undefined (no in-place reads) if it does not round-trip. */
  private readonly clusterBytes: Buffer | undefined;
  /** Each peer's node id as UTF-8 (null: it does not round-trip, so its frames always take protobufjs's path). */
  private readonly nodeIdBytes = new Map<string, Buffer | null>();

  constructor(
    private readonly opts: SyncOptions,
    private readonly local: LocalTable,
    private readonly transport: Transport,
    private readonly clock: Clock,
    private readonly log_: Logger,
  ) {
    this.perFrame = opts.entriesPerFrame ?? 1000;
    this.resumeFrames = opts.resumeFrames ?? 8192;
    const cb = Buffer.from(opts.clusterId, 'utf8');
    this.clusterBytes = cb.toString('utf8') === opts.clusterId ? cb : undefined;
    transport.onFrame = (frame, from) => this.receive(frame, from);
    transport.onLink = (peer, state, reason) => this.onLink(peer, state, reason);
    this.durable = durableOf(transport);
    if (this.durable) {
      this.durable.onSnapshot = (peer, at, frames) => this.loadSnapshot(peer, at, frames);
      this.durable.onResyncNeeded = (reason) => this.republish(reason);
    }
    transport.onDrain = () => {
      this.backpressured = false;
      const w = this.drainWaiters;
      this.drainWaiters = [];
      for (const f of w) f();
      if (this.heldAt >= 0) this.flush();
    };
  }

  /**
   * One timer for the steady chores: a heartbeat every heartbeatMs, housekeeping about once a second on the same
   * beat. An idle daemon's CPU is its wake-ups (about 0.2 ms each on a small VM), so chores share them.
   */
  start(): void {
    const beat = this.opts.heartbeatMs > 0 ? this.opts.heartbeatMs : 1000;
    const choresEvery = Math.max(1, Math.round(1000 / beat));
    let beats = 0;
    this.timers.push(
      setInterval(() => {
        if (this.opts.heartbeatMs > 0) this.heartbeat();
        if (++beats % choresEvery === 0) {
          this.housekeeping();
          this.onChores();
        }
      }, beat),
    );
    if (this.opts.digestIntervalMs > 0) this.timers.push(setInterval(() => this.sendDigest(), this.opts.digestIntervalMs));
    for (const t of this.timers) t.unref();
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    if (this.flushTimer) clearTimeout(this.flushTimer);
  }

  // ---- sender: local changes out -------------------------------------------------------------------------

  /**
   * A key of the local table changed (or went away); `reborn` = a new connection on that tuple; `slot` = the key's
   * slot in the local table, when the caller knows it.
   */
  changed(key: string, reborn = false, slot = -1): void {
    if (slot >= 0) this.queue(slot, reborn);
    else if (reborn) this.dirty.set(key, true);
    else if (!this.dirty.has(key)) this.dirty.set(key, false);
    this.changes++;
    if (!this.flushTimer && !this.stopped && this.heldAt < 0) {
      this.batchOpenedAt = this.clock.now();
      this.changesAtCheck = this.changes;
      this.flushTimer = setTimeout(this.flushCheck, Math.min(QUIET_MS, this.opts.coalesceMs));
    }
  }

  /**
   * Every QUIET_MS while a batch is open: send it when no change came since the last check (a burst ended, or a
   * lone change), when it fills a frame, or when it is coalesceMs old; otherwise look again. A steady stream of
   * changes thus still goes out in coalesceMs batches, while the tail of a burst waits ~QUIET_MS, not coalesceMs.
   */
  private readonly flushCheck = (): void => {
    this.flushTimer = undefined;
    if (this.changes === this.changesAtCheck || this.dirty.size + this.queued.length >= this.perFrame || this.clock.now() - this.batchOpenedAt >= this.opts.coalesceMs) {
      this.flush();
      return;
    }
    this.changesAtCheck = this.changes;
    if (!this.stopped) this.flushTimer = setTimeout(this.flushCheck, QUIET_MS);
  };

  /** Send every pending change now (also before a digest, so the digest covers exactly what was sent). */
  flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (!this.dirty.size && !this.queued.length) return;
    // hold changes while a peer's hello is pending: its resume point decides what it still needs
    if ([...this.tx.values()].some((t) => t.state === 'handshake')) {
      this.flushTimer = setTimeout(() => this.flush(), this.opts.coalesceMs);
      return;
    }
    // hold them while the link is congested (far behind): they coalesce here, at most one entry per flow, instead
    // of queueing frames nobody reads yet (past the link's cap, TCP drops the link and Redis its frames, a full
    // resync); the drain sends them, each entry's state as it is then. Mere backpressure does not hold: it is sending.
    // A flush too big for what the link has left stops between two frames once it turns congested (sendCurrent)
    if (this.congested()) return this.startHold();
    if (this.heldAt >= 0) this.endHold();
    const t = this.local.table;
    const dels: string[] = [];
    // by key first: one that is back in the table joins the queued slots (once, if its slot is queued already)
    for (const [k, reborn] of this.dirty) {
      const slot = t.slotOf(k);
      if (slot >= 0) this.queue(slot, reborn);
      else dels.push(k);
    }
    this.dirty = new Map();
    const upKeys: string[] = [];
    const upSlots: number[] = [];
    const reborn: boolean[] = [];
    const marks = this.marks;
    for (const slot of this.queued) {
      const key = t.keyAt(slot);
      // an empty slot's key was removed: its delete is in dels, from `dirty`
      if (key !== undefined) {
        upKeys.push(key);
        upSlots.push(slot);
        reborn.push(marks[slot] === QUEUED_REBORN);
      }
      marks[slot] = 0;
    }
    this.queued = [];
    this.sendCurrent(upKeys, upSlots, dels, { reborn, holdable: true });
  }

  /** Queues the entry in `slot` for the next send (once, however often it changes). */
  private queue(slot: number, reborn: boolean): void {
    if (slot >= this.marks.length) {
      const m = new Uint8Array(Math.max(2 * this.marks.length, slot + 1));
      m.set(this.marks);
      this.marks = m;
    }
    const m = this.marks[slot]!;
    if (m === 0) this.queued.push(slot);
    if (m !== QUEUED_REBORN) this.marks[slot] = reborn ? QUEUED_REBORN : QUEUED;
  }

  /** Current state of each key: present → upsert, gone → delete. Used by resume and repair (flush knows its slots). */
  private sendKeys(keys: string[], how: { authoritative?: boolean; bulkId?: number }): void {
    const t = this.local.table;
    const upKeys: string[] = [];
    const upSlots: number[] = [];
    const dels: string[] = [];
    for (const k of keys) {
      const slot = t.slotOf(k);
      if (slot >= 0) {
        upKeys.push(k);
        upSlots.push(slot);
      } else dels.push(k);
    }
    this.sendCurrent(upKeys, upSlots, dels, how);
  }

  /**
   * Upserts of the entries in upSlots (keys upKeys; reborn[i]: a new incarnation), deletes of dels. `holdable` (a
   * flush): once the link turns congested between two frames, the rest waits with the next changes (see flush).
   */
  private sendCurrent(upKeys: string[], upSlots: number[], dels: string[], how: { reborn?: boolean[]; holdable?: boolean; authoritative?: boolean; bulkId?: number }): void {
    const now = this.clock.now();
    const t = this.local.table;
    for (const slot of upSlots) t.setDirty(slot, 0); // queued now: what local.takeDirty() does, without a second lookup
    const batch = this.batch;
    let frames = 0;
    const holdRest = (upFrom: number, delsFrom: number): boolean => {
      if (!how.holdable || frames === 0 || !this.congested()) return false;
      for (let j = upFrom; j < upSlots.length; j++) this.queue(upSlots[j]!, how.reborn?.[j] === true);
      for (let j = delsFrom; j < dels.length; j++) this.dirty.set(dels[j]!, false);
      this.startHold();
      return true;
    };
    for (let i = 0; i < upKeys.length; i += this.perFrame) {
      if (holdRest(i, 0)) return;
      const end = Math.min(i + this.perFrame, upKeys.length);
      batch.reset();
      const rebornIdx: number[] = [];
      const sent: string[] = [];
      for (let j = i; j < end; j++) {
        const key = upKeys[j]!;
        if (!this.addEntry(batch, key, upSlots[j]!, now)) continue;
        if (how.reborn?.[j] === true) rebornIdx.push(batch.count - 1);
        sent.push(key);
      }
      if (!batch.count) continue;
      this.sendUpsert(batch, { reborn: rebornIdx, authoritative: how.authoritative ?? false, bulkId: how.bulkId ?? 0 }, sent);
      this.counters.entriesOut += batch.count;
      frames++;
    }
    for (let i = 0; i < dels.length; i += this.perFrame) {
      if (holdRest(upKeys.length, i)) return;
      const chunk = dels.slice(i, i + this.perFrame);
      this.sendSequenced({ delete: { keys: chunk.map((k) => keyToWire(keyOf(k))), bulkId: how.bulkId ?? 0 } }, chunk);
      this.counters.deletesOut += chunk.length;
      frames++;
    }
  }

  /**
   * Encodes the entry in `slot` as of `now` into the batch; false if it cannot be (counted, logged). The common
   * flow (no NAT, labels, helper ...) is written from the table's columns: decoding it into a Flow and a pb.IEntry
   * first cost more than the rest of the send path together. Anything else takes flowToEntry's path.
   */
  private addEntry(batch: EntryBatch, key: string, slot: number, now: number): boolean {
    const t = this.local.table;
    const e = this.plain;
    if (t.isPlainOrSynproxyAt(slot, e.synproxy)) {
      e.tupleLen = keyTupleBytes(key, e.tuple, 0, e);
      if (e.tupleLen > 0) {
        e.zone = e.ctZone;
        e.status = t.statusAt(slot) ?? 0;
        e.timeout = t.remainingOrNoneAt(slot, now);
        e.mark = t.markAt(slot) ?? 0;
        e.tcpState = t.tcpInto(slot, e.tcp) ? e.tcp[0]! : -1;
        if (batch.addPlain(e)) return true;
      }
    }
    try {
      batch.addFlow(t.flowAt(slot, now));
      return true;
    } catch (err) {
      this.count('encode_error');
      this.log_.debug({ err, key }, 'flow not encodable');
      return false;
    }
  }

  /** Remaining timeouts re-read from the kernel, for flows the standby would otherwise misjudge. */
  sendRefreshes(items: { key: string; timeout: number }[]): void {
    for (let i = 0; i < items.length; i += this.perFrame) {
      if (this.congested()) {
        // held with the changes instead: the upsert the drain sends carries the remaining timeout as it is then
        for (let j = i; j < items.length; j++) this.changed(items[j]!.key);
        return;
      }
      const chunk = items.slice(i, i + this.perFrame);
      // logged with their keys: if the frame is lost in a cut, resume re-sends these entries' current state
      this.sendSequenced({ refresh: { items: chunk.map((r) => refreshToWire(keyOf(r.key), r.timeout)) } }, chunk.map((r) => r.key));
      this.counters.refreshesOut += chunk.length;
    }
  }

  private sendSequenced(body: pb.IEnvelope, keys: string[]): boolean {
    return this.send({ ...body, seq: this.nextSeq(keys) });
  }

  /** sendSequenced for an Upsert whose entries the batch holds already encoded. */
  private sendUpsert(batch: EntryBatch, upsert: Omit<pb.IUpsert, 'entries'>, keys: string[]): boolean {
    const env = { clusterId: this.opts.clusterId, nodeId: this.opts.nodeId, seq: this.nextSeq(keys) };
    return this.sendFrame(encodeUpsertFrame(env, upsert, batch.view(), { macKey: this.opts.macKey }));
  }

  /** The next seq, remembered with the keys its frame carries (for resume). */
  private nextSeq(keys: string[]): number {
    const seq = ++this.seq;
    this.log.push({ seq, at: this.clock.now(), keys });
    this.logKeys += keys.length;
    // the oldest frames go, acknowledged or not, past resumeFrames frames or twice the table's keys (plus a frame),
    // so that a peer that stays away holds no more than that here; when it comes back it gets a full bulk
    const maxKeys = 2 * this.local.size + this.perFrame;
    let drop = 0;
    for (let keys = this.logKeys; this.log.length - drop > this.resumeFrames || (keys > maxKeys && drop < this.log.length - 1); ) keys -= this.log[drop++].keys.length;
    if (drop) this.forget(drop);
    return seq;
  }

  /** When the frame after seq `acked` was sent. The log's seqs run without gaps; once its oldest frames went, that
   * frame may have gone with them: it was sent no later than the newest frame dropped. */
  private sentAfter(acked: number): number {
    const i = acked + 1 - (this.log[0]?.seq ?? Infinity);
    return i >= 0 ? this.log[i]!.at : this.trimmedAt;
  }

  /** Drops the log's oldest n frames. */
  private forget(n: number): void {
    for (let i = 0; i < n; i++) this.logKeys -= this.log[i].keys.length;
    this.trimmedAt = this.log[n - 1].at;
    this.log.splice(0, n);
  }

  private send(env: pb.IEnvelope): boolean {
    return this.sendFrame(encodeFrame({ clusterId: this.opts.clusterId, nodeId: this.opts.nodeId, ...env }, { macKey: this.opts.macKey }));
  }

  private sendFrame(frame: Buffer): boolean {
    if (this.stopped) return false; // a transport may outlive us a little (a Redis stop flushes its queue)
    this.counters.framesOut++;
    const ok = this.transport.send(frame);
    if (!ok && (this.anyPeerUp() || this.writeBlocked())) this.backpressured = true;
    return ok;
  }

  private waitDrain(): Promise<void> {
    return new Promise((r) => this.drainWaiters.push(r));
  }

  /**
   * Full bulk: the whole local table, spread over event-loop turns so events keep flowing, with backpressure.
   * The receiver drops what the bulk did not list. One at a time; a request during one runs another after it.
   */
  bulk(from?: BulkCursor): Promise<void> {
    if (this.bulkRunning) {
      this.bulkAgain = true;
      return this.bulkRunning;
    }
    this.bulkRunning = this.runBulk(from).finally(() => {
      this.bulkRunning = undefined;
      this.bulkRunningId = 0;
      if (this.bulkAgain) {
        this.bulkAgain = false;
        void this.bulk();
      }
    });
    return this.bulkRunning;
  }

  /** A bulk from its beginning, or the rest of one that was cut short (`from`). */
  private async runBulk(from?: BulkCursor): Promise<void> {
    const bulkId = from?.bulkId ?? this.seq + 1;
    let cursor = from?.cursor ?? 0;
    let sent = from?.sent ?? 0;
    this.bulkRunningId = bulkId;
    this.cutBulk = undefined;
    if (from) this.log_.info({ bulkId, sent }, 'bulk send resumed');
    else {
      this.counters.bulks++;
      this.log_.info({ bulkId, entries: this.local.size }, 'bulk send started');
      this.sendSequenced({ bulkBegin: { bulkId, count: this.local.size, full: true } }, []);
    }
    while (cursor >= 0 && !this.stopped) {
      const keys: string[] = [];
      cursor = this.local.table.scan(cursor, this.perFrame, (k) => keys.push(k));
      // keys with a pending change go out with it; sending them here too would be harmless, just redundant
      this.sendKeys(keys, { authoritative: true, bulkId });
      sent += keys.length;
      this.log_.debug({ cursor, n: keys.length, bp: this.backpressured }, "bulk chunk");
      if (!this.anyPeerUp() && !this.durable) {
        // a receiver that comes back in its middle resumes and gets the rest (finishBulk); any other, a new bulk
        this.cutBulk = { bulkId, cursor, sent };
        this.log_.info({ bulkId, sent }, 'bulk send interrupted: no peer up');
        return;
      }
      await this.pace();
    }
    // stopped: no end, or the receiver would take the part it got for the whole table and drop the rest
    if (this.stopped) return;
    this.sendSequenced({ bulkEnd: { bulkId, count: sent } }, []);
    this.lastBulk = { id: bulkId, count: sent };
    this.log_.info({ bulkId, entries: sent }, 'bulk send finished');
  }

  /**
   * After a resume into bulk `id` (its re-send done): the rest of the bulk and its end; or, if the receiver missed
   * only the end, the end again. True once that bulk, or a later one the receiver then got whole, has ended.
   */
  private async finishBulk(id: number): Promise<boolean> {
    if (this.cutBulk?.bulkId === id) await this.bulk(this.cutBulk);
    else if (this.bulkRunning) await this.bulkRunning;
    else if (this.lastBulk.id === id) this.sendSequenced({ bulkEnd: { bulkId: id, count: this.lastBulk.count } }, []);
    return this.lastBulk.id >= id;
  }

  /**
   * Resume's re-send: the current state of `keys`, a frame at a time, paced as a bulk is. Sent
   * at once, a long gap's worth could pass the link's queue cap, which drops the link, and the next resume would
   * start over. Ends if no peer is up: their next hello resumes again. True if it sent everything.
   */
  private async resend(keys: string[]): Promise<boolean> {
    for (let i = 0; i < keys.length && !this.stopped; i += this.perFrame) {
      this.sendKeys(keys.slice(i, i + this.perFrame), { authoritative: true });
      if (!this.anyPeerUp()) return false;
      await this.pace();
    }
    return !this.stopped;
  }

  /** Between the frames of a bulk or a resume: wait out backpressure, or at least a turn so that events keep flowing. */
  private pace(): Promise<void> {
    return this.backpressured ? this.waitDrain() : new Promise((r) => setImmediate(r));
  }

  private backpressured = false;
  /** Clock time flush() began holding changes for a congested link; -1 while it is not. */
  private heldAt = -1;

  /** The link is far behind (see Transport.congested): changes wait here instead of queueing towards its cap. */
  private congested(): boolean {
    return this.transport.congested?.() === true;
  }

  /**
   * A flush found the link congested: changes wait, coalescing, for its drain, and are looked at again a little
   * later: a transport's drain may wait for every peer (TCP), while one of several congested ones that recovered
   * already ends the congestion. The look comes HOLD_CHECK_MS after the hold began, then later as the hold lasts (a
   * quarter of its age, at most 1 s): a short hold ends soon after the link recovers, a Redis outage costs few wake-ups.
   */
  private startHold(): void {
    const now = this.clock.now();
    if (this.heldAt < 0) {
      this.heldAt = now;
      this.counters.holds++;
    }
    const lookIn = Math.min(1000, Math.max(HOLD_CHECK_MS, (now - this.heldAt) / 4));
    if (!this.stopped) this.flushTimer ??= setTimeout(() => this.flush(), lookIn);
  }

  /** A hold ends (the link drained): one log line if it lasted long enough for an operator to notice. */
  private endHold(): void {
    const heldMs = this.clock.now() - this.heldAt;
    this.heldAt = -1;
    if (heldMs >= LONG_HOLD_MS) {
      this.log_.warn({ heldMs: Math.round(heldMs), changes: this.pending().changes }, 'link was congested: held changes go out now that it drained');
    }
  }

  /** Changes not sent yet: coalescing (a few ms), or held for a congested link (since heldMs ago). */
  pending(): { changes: number; heldMs: number } {
    return { changes: this.dirty.size + this.queued.length, heldMs: this.heldAt >= 0 ? this.clock.now() - this.heldAt : 0 };
  }

  private anyPeerUp(): boolean {
    return [...this.link.values()].some((s) => s === 'up');
  }

  private heartbeat(): void {
    if (!this.anyPeerUp()) return;
    this.send({ heartbeat: { timeMs: Date.now(), tableSize: this.local.size, lastSentSeq: this.seq, intervalMs: this.opts.heartbeatMs }, ack: this.maxRxSeq() });
  }

  private maxRxSeq(): number {
    let m = 0;
    for (const r of this.rx.values()) m = Math.max(m, r.lastSeq);
    return m;
  }

  private sendDigest(): void {
    if (!this.anyPeerUp()) return;
    this.flush();
    // changes held for a congested link: the peer is behind, not divergent; compare once it caught up
    if (this.heldAt >= 0) return;
    const n = 256;
    const d = this.local.digest(n);
    this.counters.digests++;
    this.send({ digest: { digestId: ++this.digestId, bucketCount: n, algorithm: 1, hashBytes: 8, hashes: Buffer.from(d.buffer, d.byteOffset, d.byteLength), tableSize: this.local.size } });
  }

  private housekeeping(): void {
    const now = this.clock.now();
    for (const r of this.rx.values()) r.table.expire(now);
    // acks let us forget what peers hold; what a peer whose link is down has not acknowledged stays, for its resume
    const acked = Math.min(...[...this.tx.values()].filter((t) => t.joined).map((t) => t.acked), this.seq);
    let drop = 0;
    while (drop < this.log.length && this.log[drop].seq <= acked) drop++;
    if (drop) this.forget(drop);
    this.sendAcks();
  }

  private lastAckSent = 0;
  private sendAcks(): void {
    const seq = this.maxRxSeq();
    if (seq !== this.lastAckSent && this.anyPeerUp()) {
      this.lastAckSent = seq;
      this.send({ sack: { cumulative: seq }, ack: seq });
    }
  }

  // ---- link lifecycle ------------------------------------------------------------------------------------

  private txOf(nodeId: string): Tx {
    let t = this.tx.get(nodeId);
    if (!t) {
      t = { state: 'connecting', since: this.clock.now(), why: 'not linked yet', acked: 0, ackedAt: 0, helloDone: false, joined: false };
      this.tx.set(nodeId, t);
    }
    return t;
  }

  /** Whether we hold a complete copy of the peer's table: part of the status the daemon's readiness follows. */
  private setHaveCopy(rx: Rx, done: boolean): void {
    rx.bulkDone = done;
    this.onStatusChange();
  }

  private rxOf(nodeId: string): Rx {
    let r = this.rx.get(nodeId);
    if (!r) {
      r = { table: new PeerTable({ clock: this.clock }), session: 0, offset: 0, maxVersion: 0, lastSeq: 0, bulkId: 0, bulkReceived: 0, bulkDone: false, bulkResume: false, lastFrameAt: 0, lastDataAt: 0 };
      this.rx.set(nodeId, r);
      this.onPeerTable(nodeId, r.table);
    }
    return r;
  }

  private setState(nodeId: string, state: PeerSyncState, why: string): void {
    const t = this.txOf(nodeId);
    if (t.state === state) return;
    this.log_.info({ peer: nodeId, from: t.state, to: state, why }, `peer ${nodeId} ${state}`);
    t.state = state;
    t.since = this.clock.now();
    t.why = why;
    this.onStatusChange();
  }

  private onLink(peer: PeerInfo, state: LinkState, reason?: string): void {
    this.link.set(peer.nodeId, state);
    const rx = this.rxOf(peer.nodeId);
    rx.table.setLinkUp(state === 'up');
    const t = this.txOf(peer.nodeId);
    if (state === 'up' && this.durable) {
      // the peer reads our stream and snapshot: nothing to negotiate
      t.helloDone = t.joined = true;
      this.setState(peer.nodeId, 'in_sync', reason ?? 'link up (durable transport)');
    } else if (state === 'up') {
      t.helloDone = false;
      this.setState(peer.nodeId, 'handshake', reason ?? 'link up');
      // our resume point: the peer re-sends what we may have missed since lastSeq of its session. A bulk we were
      // in the middle of ends with the end that sweeps what it did not list: a peer that finishes bulks after a
      // resume is told which; to any other there is no session to resume, so it starts a full bulk
      const peerSession = rx.bulkId && !rx.bulkResume ? 0 : rx.session;
      const peerBulkId = rx.bulkResume ? rx.bulkId : 0;
      const me = { version: 1, minVersion: 1, clusterId: this.opts.clusterId, nodeId: this.opts.nodeId, capabilities: [BULK_RESUME], session: this.session };
      this.send({ hello: { ...me, peerSession, lastSeq: rx.lastSeq, peerBulkId, maxFrameBytes: this.opts.maxFrameBytes } });
    } else {
      t.helloDone = false;
      this.setState(peer.nodeId, state === 'connecting' ? 'connecting' : 'down', reason ?? state);
    }
  }

  // ---- receiver: peer frames in --------------------------------------------------------------------------

  private count(reason: string): void {
    this.counters.dropped[reason] = (this.counters.dropped[reason] ?? 0) + 1;
  }

  private receive(frame: Buffer, from: PeerInfo): void {
    if (frame.length === 0) return;
    const expect = { clusterId: this.opts.clusterId, macKey: this.opts.macKey };
    // size limit, header and MAC first, whichever way the Envelope is then read
    const c = checkFrame(frame, { maxFrameBytes: this.opts.maxFrameBytes }, expect);
    if (!c.ok) {
      this.count(c.reason);
      this.log_.debug({ peer: from.nodeId, reason: c.reason, detail: c.detail }, 'frame dropped');
      return;
    }
    if (this.receivePlain(frame, c.end, from)) return;
    const r = decodeEnvelope(frame, c.end, expect);
    if (!r.ok) {
      this.count(r.reason as DropReason);
      this.log_.debug({ peer: from.nodeId, reason: r.reason, detail: r.detail }, 'frame dropped');
      return;
    }
    const env = r.env;
    if (env.nodeId !== from.nodeId) {
      this.count('wrong_node');
      return;
    }
    this.counters.framesIn++;
    const rx = this.rxOf(from.nodeId);
    rx.lastFrameAt = this.clock.now();
    if (env.ack) this.onAck(from.nodeId, env.ack);
    const body = env.body;
    const sequenced = !!body && SEQUENCED.has(body);
    if (sequenced) {
      const seq = env.seq;
      if (!(seq > rx.lastSeq)) {
        this.count('replayed');
        return;
      }
      rx.lastSeq = seq;
    }
    try {
      this.apply(env, rx, from.nodeId);
    } catch (err) {
      this.count('apply_error');
      this.log_.warn({ err, peer: from.nodeId, body }, 'frame could not be applied');
    }
    if (sequenced) rx.lastDataAt = this.clock.now();
  }

  /**
   * receive() for an Upsert frame whose entries all have the plain shape (wire/upsert-scan.ts): read in place, keyed
   * from the tuple bytes and stored without Flow objects, with the same outcome as decodeEnvelope + apply. False,
   * having done nothing, for any other frame (including one that would be dropped): the caller decodes it.
   */
  private receivePlain(frame: Buffer, end: number, from: PeerInfo): boolean {
    if (!this.scanPlainFrom(frame, end, from.nodeId)) return false;
    const u = this.rxScan;
    this.counters.framesIn++;
    const rx = this.rxOf(from.nodeId);
    rx.lastFrameAt = this.clock.now();
    if (u.ack) this.onAck(from.nodeId, u.ack);
    if (!(u.seq > rx.lastSeq)) {
      this.count('replayed');
      return true;
    }
    rx.lastSeq = u.seq;
    try {
      this.applyPlainUpsert(frame, u, rx);
    } catch (err) {
      this.count('apply_error');
      this.log_.warn({ err, peer: from.nodeId, body: 'upsert' }, 'frame could not be applied');
    }
    rx.lastDataAt = this.clock.now();
    return true;
  }

  /**
   * Reads a checked frame into rxScan when it is a plain Upsert that decodeEnvelope would pass (version, cluster id)
   * and that comes from `nodeId`; false for anything else.
   */
  private scanPlainFrom(frame: Buffer, end: number, nodeId: string): boolean {
    const u = this.rxScan;
    if (this.clusterBytes === undefined || !scanPlainUpsert(frame, end, u, this.rxEntry)) return false;
    if (!(u.version >= MIN_PROTOCOL_VERSION) || !bytesEqual(frame, u.clusterAt, u.clusterLen, this.clusterBytes)) return false;
    let nb = this.nodeIdBytes.get(nodeId);
    if (nb === undefined) {
      const b = Buffer.from(nodeId, 'utf8');
      nb = b.toString('utf8') === nodeId ? b : null;
      this.nodeIdBytes.set(nodeId, nb);
    }
    return nb !== null && bytesEqual(frame, u.nodeAt, u.nodeLen, nb);
  }

  /**
   * Entry i of a frame scanPlainUpsert accepted (already loaded into rxEntry) into `pt`: in place, or, for a merge
   * that keeps stored protoinfo the entry lacks, through its Flow as apply() would. False if it does not decode.
   */
  private upsertScanned(frame: Buffer, i: number, pt: PeerTable, key: string, v: number, born: number, slot: number, now: number): boolean {
    if (pt.upsertPlain(key, this.rxEntry, v, born, slot, now) !== undefined) return true;
    const u = this.rxScan;
    const d = entryToFlow(Entry.decode(frame.subarray(u.entryAt[i]!, u.entryEnd[i]!)));
    if (!d.ok) {
      this.count(d.reason);
      return false;
    }
    pt.upsert(d.value, v, born, key);
    return true;
  }

  /** apply()'s 'upsert' case for a frame scanPlainUpsert accepted. */
  private applyPlainUpsert(frame: Buffer, u: PlainUpsert, rx: Rx): void {
    const v = this.version(rx, u.seq);
    const e = this.rxEntry;
    const pt = rx.table;
    const t = pt.table;
    // one clock read per frame: its entries arrived together
    const now = this.clock.now();
    for (let i = 0; i < u.count; i++) {
      u.load(frame, i, e);
      // defined: readPlainEntry accepts only the tuples keyFromTupleBytes takes
      const key = keyFromTupleBytes(frame, e.tupleAt, e.tupleLen, e.zone, e.origZone, e.replyZone)!;
      const slot = t.slotOf(key);
      const born = u.authoritative || u.rebornAt[i] === 1 || slot < 0 ? v : t.bornAt(slot);
      if (!this.upsertScanned(frame, i, pt, key, v, born, slot, now)) continue;
      rx.repair?.seen.add(key);
      this.counters.entriesIn++;
      if (rx.bulkId && u.bulkId === rx.bulkId) rx.bulkReceived++;
    }
  }

  private version(rx: Rx, seq: number): number {
    const v = rx.offset + seq;
    if (v > rx.maxVersion) rx.maxVersion = v;
    return v;
  }

  private apply(env: pb.Envelope, rx: Rx, peer: string): void {
    switch (env.body) {
      case 'hello':
        return this.onHello(env.hello!, rx, peer);
      case 'upsert': {
        const u = env.upsert!;
        const v = this.version(rx, env.seq);
        const reborn = new Set(u.reborn ?? []);
        const entries = u.entries ?? [];
        for (let i = 0; i < entries.length; i++) {
          const d = entryToFlow(entries[i]);
          if (!d.ok) {
            this.count(d.reason);
            continue;
          }
          const key = flowKey(d.value);
          const slot = rx.table.table.slotOf(key);
          // replace (born = this version) for a new connection or the sender's authoritative state; else merge
          const born = u.authoritative || reborn.has(i) || slot < 0 ? v : rx.table.table.bornAt(slot);
          rx.table.upsert(d.value, v, born, key);
          rx.repair?.seen.add(key);
          this.counters.entriesIn++;
          if (rx.bulkId && u.bulkId === rx.bulkId) rx.bulkReceived++;
        }
        return;
      }
      case 'delete': {
        const v = this.version(rx, env.seq);
        for (const k of env.delete!.keys ?? []) {
          const d = keyFromWire(k);
          if (!d.ok) {
            this.count(d.reason);
            continue;
          }
          rx.table.delete(flowKey(keyFlow(d.value)), v);
        }
        return;
      }
      case 'refresh':
        for (const it of env.refresh!.items ?? []) {
          const d = refreshFromWire(it);
          if (!d.ok) {
            this.count(d.reason);
            continue;
          }
          rx.table.refresh(flowKey(keyFlow(d.value.key)), d.value.timeout);
        }
        return;
      case 'bulkBegin': {
        const b = env.bulkBegin!;
        if (b.full) {
          rx.bulkId = Number(b.bulkId ?? 0);
          rx.bulkReceived = 0;
          rx.table.beginBulk();
          this.log_.info({ peer, bulkId: b.bulkId, entries: b.count }, 'bulk from peer started');
        }
        return;
      }
      case 'bulkEnd': {
        const b = env.bulkEnd!;
        if (rx.bulkId && b.bulkId === rx.bulkId) {
          const swept = rx.table.endBulk();
          rx.bulkId = 0;
          this.setHaveCopy(rx, true);
          this.log_.info({ peer, bulkId: b.bulkId, entries: b.count, swept, size: rx.table.size }, 'bulk from peer complete');
        }
        return;
      }
      case 'resyncRequest':
        this.log_.info({ peer }, 'peer asked for a full resync');
        void this.bulk();
        return;
      case 'sack':
        this.onAck(peer, Number(env.sack!.cumulative ?? 0));
        return;
      case 'heartbeat':
        return;
      case 'digest':
        return this.onDigest(env.digest!, rx, peer);
      case 'digestRepairRequest': {
        const q = env.digestRepairRequest!;
        const keys: string[] = [];
        this.flush();
        this.local.table.forEachInBuckets(q.buckets ?? [], q.bucketCount ?? 0, (k) => keys.push(k));
        this.sendSequenced({ digestRepair: { digestId: q.digestId, bucketCount: q.bucketCount, buckets: q.buckets, last: false } }, []);
        this.sendKeys(keys, { authoritative: true });
        this.sendSequenced({ digestRepair: { digestId: q.digestId, bucketCount: q.bucketCount, buckets: q.buckets, last: true } }, []);
        return;
      }
      case 'digestRepair': {
        const p = env.digestRepair!;
        if (!p.last) {
          rx.repair = { digestId: Number(p.digestId ?? 0), buckets: p.buckets ?? [], nBuckets: p.bucketCount ?? 0, seen: new Set() };
          return;
        }
        const rep = rx.repair;
        rx.repair = undefined;
        if (!rep || rep.digestId !== p.digestId) return;
        // what the repair did not list in its buckets is gone at the peer
        const gone: string[] = [];
        rx.table.table.forEachInBuckets(rep.buckets, rep.nBuckets, (k) => rep.seen.has(k) || gone.push(k));
        const v = this.version(rx, env.seq);
        for (const k of gone) rx.table.delete(k, v);
        this.counters.repairedEntries += rep.seen.size + gone.length;
        return;
      }
      default:
        this.count('unknown_body'); // a newer peer's message: tolerated
    }
  }

  private onHello(h: pb.IHello, rx: Rx, peer: string): void {
    if (h.clusterId !== this.opts.clusterId) {
      this.count('wrong_cluster');
      return;
    }
    const session = Number(h.session ?? 0);
    rx.bulkResume = h.capabilities?.includes(BULK_RESUME) === true;
    if (session !== rx.session) {
      // a new sender session: its seqs restart, so its versions continue above everything seen so far
      if (rx.session !== 0) this.log_.info({ peer, session }, 'peer restarted (new session)');
      rx.session = session;
      rx.offset = rx.maxVersion + 1;
      rx.lastSeq = 0;
      this.setHaveCopy(rx, false);
    }
    const t = this.txOf(peer);
    t.helloDone = t.joined = true;
    if (this.durable) return; // a hello on a durable transport only announces a new session (handled above)
    const theirLast = Number(h.lastSeq ?? 0);
    const theirBulk = Number(h.peerBulkId ?? 0);
    const bulkFor = this.fullBulkFor(Number(h.peerSession ?? 0), theirLast, theirBulk);
    if (!bulkFor) {
      // resume: re-send the current state of whatever changed in frames they did not get
      t.acked = theirLast;
      const keys = new Set<string>();
      for (const f of this.log) if (f.seq > theirLast) for (const k of f.keys) keys.add(k);
      this.counters.resumes++;
      const resumed = `resumed ${keys.size} entries after seq ${theirLast}`;
      if (theirBulk) {
        // the bulk the peer was in the middle of: the frames it missed, then the rest and the end
        this.setState(peer, 'bulk', `${resumed}, in bulk ${theirBulk}: finishing it`);
        void this.resend([...keys])
          .then((done) => done && this.finishBulk(theirBulk))
          .then((done) => done && this.txOf(peer).state === 'bulk' && this.setState(peer, 'in_sync', `${resumed}, and finished bulk ${theirBulk}`));
      } else {
        this.setState(peer, 'in_sync', resumed);
        if (keys.size) void this.resend([...keys]);
      }
      this.flush();
    } else {
      this.setState(peer, 'bulk', `full bulk: ${bulkFor}`);
      void this.bulk().then(() => {
        if (this.txOf(peer).state === 'bulk') this.setState(peer, 'in_sync', `full bulk sent: ${bulkFor}`);
      });
      this.flush();
    }
  }

  /** Why a peer's hello (its copy of our `session`, up to `theirLast`, in the middle of bulk `theirBulk` if not 0)
   * needs a full bulk; undefined: a resume does. The log line carries it: at 1M entries a bulk is costly. */
  private fullBulkFor(session: number, theirLast: number, theirBulk: number): string | undefined {
    const oldest = this.log.length ? this.log[0].seq : this.seq + 1;
    if (this.cutBulk && theirBulk !== this.cutBulk.bulkId) return 'our last bulk to it was cut short';
    if (this.bulkRunning && theirBulk !== this.bulkRunningId) return 'a bulk is under way';
    if (theirBulk && !this.cutBulk && !this.bulkRunning && theirBulk !== this.lastBulk.id) return `it was in the middle of bulk ${theirBulk}, which a later one replaced`;
    if (session === 0) return 'it holds no complete copy (it is new or restarted, or was cut off in the middle of a bulk)';
    if (session !== this.session) return 'its copy is from before we restarted';
    if (theirLast < oldest - 1) return `it missed more than the resume log holds (it has up to seq ${theirLast}, the log starts at ${oldest})`;
    return undefined;
  }

  private onAck(peer: string, seq: number): void {
    const t = this.txOf(peer);
    if (seq > t.acked) {
      t.acked = seq;
      t.ackedAt = this.clock.now();
    }
  }

  private onDigest(d: pb.IDigest, rx: Rx, peer: string): void {
    // compare only with a settled view: during a bulk the table is legitimately incomplete
    if (rx.bulkId) return;
    const n = d.bucketCount ?? 0;
    const hashes = d.hashes ?? new Uint8Array();
    if (d.algorithm !== 1 || d.hashBytes !== 8 || n <= 0 || (n & (n - 1)) !== 0 || hashes.length !== n * 8) {
      this.count('bad_digest');
      return;
    }
    const theirs = new Uint32Array(Uint8Array.from(hashes).buffer);
    const ours = rx.table.digest(n);
    const diff = diffDigests(theirs, ours);
    rx.lastDigestDiff = diff.length;
    if (!diff.length) return;
    this.counters.divergentBuckets += diff.length;
    this.log_.warn({ peer, buckets: diff.length, of: n }, 'peer table diverged from the peer; repairing those buckets');
    this.send({ digestRepairRequest: { digestId: d.digestId, bucketCount: n, buckets: diff } });
  }

  /** Durable transport: its own queue is above its high-water mark (onDrain will follow). */
  private writeBlocked(): boolean {
    return this.durable?.writeBlocked?.() === true;
  }

  /** Durable transport: publish our whole table (start, frames lost at the medium): a new session, then a bulk. */
  private republish(reason: string): void {
    if (this.stopped) return;
    this.log_.info({ reason, entries: this.local.size }, 'publishing the whole table to the durable transport');
    this.send({ hello: { version: 1, minVersion: 1, clusterId: this.opts.clusterId, nodeId: this.opts.nodeId, session: this.session, maxFrameBytes: this.opts.maxFrameBytes } });
    void this.bulk();
  }

  /** Durable transport: a peer's table from its snapshot replaces what we hold; its stream continues after at.seq. */
  private loadSnapshot(peer: PeerInfo, at: { session: number; seq: number }, frames: Buffer[]): void {
    const rx = this.rxOf(peer.nodeId);
    rx.session = at.session;
    rx.offset = rx.maxVersion + 1;
    rx.lastSeq = at.seq;
    rx.bulkId = 0;
    rx.repair = undefined;
    const v = this.version(rx, at.seq);
    rx.table.beginBulk();
    let n = 0;
    const expect = { clusterId: this.opts.clusterId, macKey: this.opts.macKey };
    const now = this.clock.now();
    for (const f of frames) {
      // size and MAC once; then a plain Upsert is read in place (stored at version = born = v), anything else decoded
      const c = checkFrame(f, { maxFrameBytes: this.opts.maxFrameBytes }, expect);
      if (!c.ok) {
        this.count(c.reason);
        continue;
      }
      if (this.scanPlainFrom(f, c.end, peer.nodeId)) {
        const e = this.rxEntry;
        for (let i = 0; i < this.rxScan.count; i++) {
          this.rxScan.load(f, i, e);
          const key = keyFromTupleBytes(f, e.tupleAt, e.tupleLen, e.zone, e.origZone, e.replyZone)!;
          if (this.upsertScanned(f, i, rx.table, key, v, v, rx.table.table.slotOf(key), now)) n++;
        }
        continue;
      }
      const r = decodeEnvelope(f, c.end, expect);
      if (!r.ok) {
        this.count(r.reason as DropReason);
        continue;
      }
      if (r.env.nodeId !== peer.nodeId || r.env.body !== 'upsert') {
        this.count('wrong_node');
        continue;
      }
      for (const e of r.env.upsert!.entries ?? []) {
        const d = entryToFlow(e);
        if (!d.ok) {
          this.count(d.reason);
          continue;
        }
        rx.table.upsert(d.value, v, v);
        n++;
      }
    }
    const swept = rx.table.endBulk();
    this.setHaveCopy(rx, true);
    this.counters.snapshots++;
    this.counters.entriesIn += n;
    this.log_.info({ peer: peer.nodeId, entries: n, swept, session: at.session, seq: at.seq }, 'loaded peer snapshot');
  }

  /** Ask every peer for a full bulk (BACKUP transition, `ctsync resync`). */
  requestResync(): void {
    this.send({ resyncRequest: { full: true } });
  }

  // ---- what the daemon shows -----------------------------------------------------------------------------

  peerTables(): Map<string, PeerTable> {
    return new Map([...this.rx].map(([id, r]) => [id, r.table]));
  }

  status(): PeerStatus[] {
    const now = this.clock.now();
    const ids = new Set([...this.tx.keys(), ...this.rx.keys()]);
    return [...ids].map((id) => {
      const t = this.txOf(id);
      const r = this.rxOf(id);
      return {
        nodeId: id,
        state: t.state,
        since: t.since,
        why: t.why,
        link: this.link.get(id) ?? 'connecting',
        unackedFrames: Math.max(0, this.seq - t.acked),
        oldestUnackedMs: this.seq <= t.acked ? 0 : now - this.sentAfter(t.acked),
        peerTableSize: r.table.size,
        peerInSync: r.bulkDone && !r.bulkId && (r.lastDigestDiff ?? 0) === 0,
        haveCopy: r.bulkDone,
        lastFrameAgoMs: r.lastFrameAt ? now - r.lastFrameAt : -1,
        lastDataAgoMs: r.lastDataAt ? now - r.lastDataAt : -1,
        divergentBuckets: r.lastDigestDiff ?? 0,
      };
    });
  }

  get lastSeq(): number {
    return this.seq;
  }
}

function keyOf(key: string): FlowKey {
  const p = decodeKey(key);
  const orig = { ...p.orig };
  const k: FlowKey = { family: p.family, orig };
  if (p.ctZone !== undefined) k.zone = p.ctZone;
  return k;
}

/** A Flow-shaped value carrying only a key's fields, for flowKey(). */
function keyFlow(k: FlowKey): Flow {
  const reply = { src: k.orig.dst, dst: k.orig.src, proto: k.orig.proto };
  return { family: k.family, orig: k.orig, reply, ...(k.zone !== undefined ? { zone: k.zone } : {}) };
}

