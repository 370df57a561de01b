// What one peer told us: its flows merged monotonically, its deletes as tombstones, and ageing while its link is down.
//
// Deletion authority (FortiGate known issue 1064728): while the link is up nothing but the peer's own delete (or a
// full bulk that no longer lists the entry) removes an entry, so our count converges to the peer's exactly, and a
// late upsert never resurrects what the peer destroyed (a tombstone holds the delete's version for tombstoneTtlMs).
// While the link is down entries age by their last known remaining timeout: expire() removes the run-out ones.

import type { PlainFlow } from '../kernel/flow-codec.js';
import type { Flow } from '../kernel/types.js';
import type { Clock } from './clock.js';
import { flowKey } from './key.js';
import { isTcpBackwards, judgeDelete, judgeUpsert, judgeUpsertAt, mergeStatus, STICKY_STATUS } from './merge.js';
import type { UpsertVerdict } from './merge.js';
import { FlowTable } from './table.js';
import type { EntryMeta, FlowTableOptions } from './table.js';

export interface PeerTableOptions extends FlowTableOptions {
  clock: Clock;
  /**
   * How long a delete is remembered (ms). It must outlast anything that can still be in flight or re-sent from
   * before the delete: one link's queue and retransmit window. Default 30000.
   */
  tombstoneTtlMs?: number;
  /** Most tombstones kept; the oldest go first (counted as tombstonesEvicted). Default 500000 (~40 MB at most). */
  maxTombstones?: number;
}

export type UpsertOutcome = 'added' | 'updated' | 'reincarnated' | 'duplicate' | 'stale' | 'tombstoned';
export type DeleteOutcome = 'deleted' | 'unknown' | 'stale';

/** Every outcome, counted: what the sync layer exports as metrics. */
export interface PeerCounters {
  added: number;
  updated: number;
  reincarnated: number;
  duplicate: number;
  stale: number; // upsert older than the stored version or incarnation
  tombstoned: number; // upsert not newer than the peer's delete: resurrection refused
  tcpBackwardsBlocked: number; // same incarnation, TCP state would have moved backwards: kept the later state
  stickyStatusKept: number; // same incarnation, ASSURED/SEEN_REPLY would have been cleared: kept them
  deleted: number;
  deleteUnknown: number;
  deleteStale: number; // delete of an older incarnation than the one stored
  refreshed: number;
  refreshUnknown: number;
  refreshStale: number;
  expired: number;
  expireSkippedLinkUp: number; // expire() calls refused because the peer is the deletion authority now
  tombstonesExpired: number;
  tombstonesEvicted: number;
  bulkSwept: number; // entries a full bulk no longer listed
}

function zeroCounters(): PeerCounters {
  return {
    added: 0, updated: 0, reincarnated: 0, duplicate: 0, stale: 0, tombstoned: 0, tcpBackwardsBlocked: 0,
    stickyStatusKept: 0, deleted: 0, deleteUnknown: 0, deleteStale: 0, refreshed: 0, refreshUnknown: 0,
    refreshStale: 0, expired: 0, expireSkippedLinkUp: 0, tombstonesExpired: 0, tombstonesEvicted: 0, bulkSwept: 0,
  };
}

export class PeerTable {
  readonly table: FlowTable;
  readonly counters: PeerCounters = zeroCounters();
  private readonly clock: Clock;
  private readonly ttl: number;
  private readonly maxTombs: number;
  private readonly tombs = new Map<string, number>(); // key → version of the delete
  // FIFO of tombstones in creation order (the TTL is fixed, so this is also expiry order).
  private tqKeys: string[] = [];
  private tqVers: number[] = [];
  private tqAt: number[] = [];
  private tqHead = 0;
  private up = true;
  /** Called with the key of every entry added, changed (timeouts included) or removed: a warm standby follows it. */
  onChange: (key: string) => void = () => {};

  constructor(opts: PeerTableOptions) {
    this.table = new FlowTable(opts);
    this.clock = opts.clock;
    this.ttl = opts.tombstoneTtlMs ?? 30_000;
    this.maxTombs = opts.maxTombstones ?? 500_000;
  }

  get size(): number {
    return this.table.size;
  }

  get tombstoneCount(): number {
    return this.tombs.size;
  }

  get linkUp(): boolean {
    return this.up;
  }

  /** The sync layer says whether this peer is reachable; only while it is not do entries age here. */
  setLinkUp(up: boolean): void {
    this.up = up;
  }

  /**
   * Merges a flow the peer sent at (version, born) (see merge.ts). Its timeout counts from now. Within one
   * incarnation the TCP state never moves backwards and ASSURED/SEEN_REPLY are never cleared; an upsert without
   * protoinfo or timeout (an offloaded flow) keeps the stored ones.
   */
  upsert(flow: Flow, version: number, born: number, key: string = flowKey(flow)): UpsertOutcome {
    const t = this.table;
    const c = this.counters;
    const slot = t.slotOf(key);
    const tomb = this.tombs.get(key);
    const verdict: UpsertVerdict = judgeUpsert(
      slot < 0 ? undefined : { version: t.versionAt(slot), born: t.bornAt(slot) },
      tomb,
      version,
      born,
    );
    const now = this.clock.now();
    switch (verdict) {
      case 'tombstoned':
        c.tombstoned++;
        return 'tombstoned';
      case 'stale':
        c.stale++;
        if (t.isSweeping) t.touch(slot); // the entry exists at the peer: a bulk must not sweep it
        return 'stale';
      case 'duplicate':
        c.duplicate++;
        if (flow.timeout !== undefined) {
          t.setTimeoutAt(slot, flow.timeout, now);
          this.onChange(key);
        }
        t.touch(slot);
        return 'duplicate';
      case 'new':
        if (tomb !== undefined) this.tombs.delete(key);
        t.set(key, flow, version, born, now);
        c.added++;
        this.onChange(key);
        return 'added';
      case 'reincarnation':
        t.set(key, flow, version, born, now);
        c.reincarnated++;
        this.onChange(key);
        return 'reincarnated';
      case 'update':
        break;
    }

    // Same connection, newer version: merge monotonically.
    let f = flow;
    const storedState = t.tcpStateAt(slot);
    const inTcp = f.protoinfo?.tcp;
    if (f.protoinfo === undefined) {
      const pi = t.protoinfoAt(slot);
      if (pi !== undefined) f = { ...f, protoinfo: pi };
    } else if (inTcp !== undefined && storedState >= 0 && isTcpBackwards(storedState, inTcp.state)) {
      f = { ...f, protoinfo: { ...f.protoinfo, tcp: { ...inTcp, state: storedState } } };
      c.tcpBackwardsBlocked++;
    }
    const storedStatus = t.statusAt(slot);
    if (storedStatus !== undefined && storedStatus & STICKY_STATUS) {
      const merged = mergeStatus(storedStatus, f.status ?? 0);
      if (merged !== f.status) {
        f = { ...f, status: merged };
        c.stickyStatusKept++;
      }
    }
    const keepTimeout = f.timeout === undefined ? t.timeoutAt(slot) : undefined;
    const keptAt = t.reportedAtAt(slot);
    t.set(key, f, version, born, now);
    if (keepTimeout !== undefined) t.setTimeoutAt(slot, keepTimeout, keptAt);
    c.updated++;
    this.onChange(key);
    return 'updated';
  }

  /**
   * upsert() for a plain entry read in place (wire/upsert-scan.ts), stored without a Flow: the same verdicts,
   * merge rules, counters and onChange calls as upsert() of the Flow entryToFlow makes of that entry. `slot` is
   * table.slotOf(key), which the caller looked up anyway; `now` the clock's time (read once per frame). Returns undefined, having changed nothing, in the one
   * case it leaves to upsert(): a merge that keeps stored protoinfo the entry lacks (which may be more than TCP).
   * `f` is scratch: the merge may rewrite its TCP state and status. The verdict switch repeats upsert()'s on
   * purpose: this is the standby's hot path, and sharing it through helpers measured slower (bench/ref/README.md).
   */
  upsertPlain(key: string, f: PlainFlow, version: number, born: number, slot: number, now: number): UpsertOutcome | undefined {
    const t = this.table;
    const c = this.counters;
    const tomb = this.tombs.size === 0 ? undefined : this.tombs.get(key);
    const verdict = judgeUpsertAt(slot >= 0, slot < 0 ? 0 : t.versionAt(slot), slot < 0 ? 0 : t.bornAt(slot), tomb, version, born);
    switch (verdict) {
      case 'tombstoned':
        c.tombstoned++;
        return 'tombstoned';
      case 'stale':
        c.stale++;
        if (t.isSweeping) t.touch(slot);
        return 'stale';
      case 'duplicate':
        c.duplicate++;
        if (f.timeout >= 0) {
          t.setTimeoutAt(slot, f.timeout, now);
          this.onChange(key);
        }
        t.touch(slot);
        return 'duplicate';
      case 'new':
        if (tomb !== undefined) this.tombs.delete(key);
        t.setPlain(key, f, version, born, now, slot);
        c.added++;
        this.onChange(key);
        return 'added';
      case 'reincarnation':
        t.setPlain(key, f, version, born, now, slot);
        c.reincarnated++;
        this.onChange(key);
        return 'reincarnated';
      case 'update':
        break;
    }
    // Same connection, newer version: merge monotonically (upsert()'s rules).
    if (!f.protoinfo) {
      if (t.hasProtoinfoAt(slot)) return undefined;
    } else {
      const storedState = t.tcpStateAt(slot);
      if (f.tcpState >= 0 && storedState >= 0 && isTcpBackwards(storedState, f.tcpState)) {
        f.tcpState = storedState;
        c.tcpBackwardsBlocked++;
      }
    }
    const storedStatus = t.statusAt(slot);
    if (storedStatus !== undefined && storedStatus & STICKY_STATUS) {
      const merged = mergeStatus(storedStatus, f.status);
      if (merged !== f.status) {
        f.status = merged;
        c.stickyStatusKept++;
      }
    }
    const keepTimeout = f.timeout < 0 ? t.timeoutAt(slot) : undefined;
    const keptAt = t.reportedAtAt(slot);
    t.setPlain(key, f, version, born, now, slot);
    if (keepTimeout !== undefined) t.setTimeoutAt(slot, keepTimeout, keptAt);
    c.updated++;
    this.onChange(key);
    return 'updated';
  }

  /**
   * A timeout refresh from the peer (its kernel re-read): sets the remaining lifetime without a version change.
   * With `born`, a refresh meant for another incarnation is ignored.
   */
  refresh(key: string, timeout: number, born?: number): boolean {
    const t = this.table;
    const slot = t.slotOf(key);
    if (slot < 0) {
      this.counters.refreshUnknown++;
      return false;
    }
    if (born !== undefined && born !== t.bornAt(slot)) {
      this.counters.refreshStale++;
      return false;
    }
    t.setTimeoutAt(slot, timeout, this.clock.now());
    this.counters.refreshed++;
    this.onChange(key);
    return true;
  }

  /** The peer destroyed the flow at `version`. Leaves a tombstone either way, so a late upsert cannot bring it back. */
  delete(key: string, version: number): DeleteOutcome {
    const t = this.table;
    const slot = t.slotOf(key);
    const verdict = judgeDelete(slot < 0 ? undefined : t.versionAt(slot), version);
    if (verdict === 'stale') {
      this.counters.deleteStale++;
      return 'stale';
    }
    this.addTombstone(key, version);
    if (verdict === 'unknown') {
      this.counters.deleteUnknown++;
      return 'unknown';
    }
    t.delete(key);
    this.counters.deleted++;
    this.onChange(key);
    return 'deleted';
  }

  private addTombstone(key: string, version: number): void {
    const prev = this.tombs.get(key);
    if (prev !== undefined && prev >= version) return;
    this.tombs.set(key, version);
    this.tqKeys.push(key);
    this.tqVers.push(version);
    this.tqAt.push(this.clock.now());
    while (this.tombs.size > this.maxTombs && this.tqHead < this.tqKeys.length) {
      if (this.popTombstone()) this.counters.tombstonesEvicted++;
    }
  }

  /** Drops the oldest queued tombstone; true if it was still the live one for its key. */
  private popTombstone(): boolean {
    const h = this.tqHead++;
    const k = this.tqKeys[h]!;
    let live = false;
    if (this.tombs.get(k) === this.tqVers[h]) {
      this.tombs.delete(k);
      live = true;
    }
    if (this.tqHead > 1024 && this.tqHead * 2 > this.tqKeys.length) {
      this.tqKeys = this.tqKeys.slice(this.tqHead);
      this.tqVers = this.tqVers.slice(this.tqHead);
      this.tqAt = this.tqAt.slice(this.tqHead);
      this.tqHead = 0;
    }
    return live;
  }

  /** Forgets tombstones older than tombstoneTtlMs; returns how many. Runs whether or not the link is up. */
  expireTombstones(now: number = this.clock.now()): number {
    let n = 0;
    while (this.tqHead < this.tqKeys.length && this.tqAt[this.tqHead]! + this.ttl <= now) {
      if (this.popTombstone()) n++;
    }
    this.counters.tombstonesExpired += n;
    return n;
  }

  /**
   * Periodic housekeeping: expires tombstones and, only while the link is down, removes the entries whose last
   * known remaining timeout has run out (entries without a known timeout stay). Returns the entries removed.
   * O(entries): call it at most about once a second.
   */
  expire(now: number = this.clock.now()): number {
    this.expireTombstones(now);
    if (this.up) {
      this.counters.expireSkippedLinkUp++;
      return 0;
    }
    const t = this.table;
    const dead: string[] = [];
    t.forEach((key, slot) => {
      if (t.remainingAt(slot, now) === 0) dead.push(key);
    });
    for (const k of dead) {
      t.delete(k);
      this.onChange(k);
    }
    this.counters.expired += dead.length;
    return dead.length;
  }

  /** Seconds the flow has left at `now` by its last known timeout (what a commit writes), or undefined. */
  remainingTimeout(key: string, now: number = this.clock.now()): number | undefined {
    const slot = this.table.slotOf(key);
    return slot < 0 ? undefined : this.table.remainingAt(slot, now);
  }

  /** A full bulk from the peer starts: entries it does not re-send before endBulk() are then removed. */
  beginBulk(): void {
    this.table.beginSweep();
  }

  /** The bulk is complete: removes what it did not list; returns how many. */
  endBulk(): number {
    const n = this.table.endSweep((k) => this.onChange(k));
    this.counters.bulkSwept += n;
    return n;
  }

  /** Drops everything (the peer restarted with a new sequence epoch, or was removed from the config). */
  clear(): void {
    this.table.forEach((k) => this.onChange(k));
    this.table.clear();
    this.tombs.clear();
    this.tqKeys = [];
    this.tqVers = [];
    this.tqAt = [];
    this.tqHead = 0;
  }

  get(key: string, now?: number): Flow | undefined {
    return this.table.get(key, now);
  }

  has(key: string): boolean {
    return this.table.has(key);
  }

  meta(key: string): EntryMeta | undefined {
    return this.table.meta(key);
  }

  isTombstoned(key: string): boolean {
    return this.tombs.has(key);
  }

  forEach(fn: (key: string, slot: number) => void): void {
    this.table.forEach(fn);
  }

  digest(nBuckets?: number): Uint32Array {
    return this.table.digest(nBuckets);
  }
}
