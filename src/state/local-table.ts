// The mirror of this node's kernel conntrack table: events applied, dumps diffed, every change classified and versioned.
//
// Versions: one node-wide sequence; an entry takes the next number whenever something the standby needs changes
// (and on removal), and `born` marks where its current incarnation began. A kernel NEW, a new conntrack id, a TCP
// state moving backwards or a sticky status bit disappearing all mean the kernel replaced the connection on that
// tuple (it kills and re-creates on reopen after TIME_WAIT/CLOSE), so they start a new incarnation, which lets the
// standby accept a move its monotonic merge would otherwise refuse (see merge.ts).

import type { Flow, FlowEvent } from '../kernel/types.js';
import type { PlainFlow } from '../kernel/flow-codec.js';
import type { Clock } from './clock.js';
import { flowKey } from './key.js';
import { isTcpBackwards, STICKY_STATUS } from './merge.js';
import { FlowTable, SET_MINOR, SET_SIGNIFICANT } from './table.js';
import type { EntryMeta, FlowTableOptions } from './table.js';

/** Dirty bits kept per entry for the sync layer's coalescing. */
export const DIRTY_STATE = 1; // something the standby needs changed: send the entry
export const DIRTY_TIMEOUT = 2; // only the timeout (or window flags) changed: a compact refresh can wait

/**
 * What an event or dump line did:
 * added / replaced (new incarnation) / changed: the standby needs the entry now;
 * refreshed: timeout or TCP window flags only; unchanged: nothing it keeps;
 * removed: gone; unknown: a destroy for an entry we did not hold; ignored: our own write's echo, or a dump line
 * older than an event seen during the same resync.
 */
export type LocalChange = 'added' | 'replaced' | 'changed' | 'refreshed' | 'unchanged' | 'removed' | 'unknown' | 'ignored';

/**
 * What a change means to the replicas: true = send, a new connection on the tuple (added, replaced); false = send
 * (changed, removed); undefined = nothing to send (unchanged; refreshed, which refreshes carry; ignored; unknown).
 */
export function rebornOf(change: LocalChange): boolean | undefined {
  if (change === 'added' || change === 'replaced') return true;
  return change === 'changed' || change === 'removed' ? false : undefined;
}

export interface Applied {
  change: LocalChange;
  key: string;
  /** The entry's version after the change (for removed: the version the delete is sent with); 0 if none. */
  version: number;
  /** The entry's slot in the table after the change; -1 if it holds none. */
  slot: number;
}

/** The outcome of a dump-and-diff resync: exactly what the dump showed differently from what we held. */
export interface DiffResult {
  added: string[];
  changed: string[]; // includes replaced (new incarnations)
  refreshed: string[];
  removed: { key: string; version: number }[];
  unchanged: number;
}

export interface LocalCounters {
  events: number;
  ignoredOurs: number;
  added: number;
  replaced: number;
  changed: number;
  refreshed: number;
  unchanged: number;
  removed: number;
  destroyUnknown: number;
  resyncs: number;
  resyncLinesSkipped: number; // dump lines for keys an event touched during the same resync
}

export interface LocalTableOptions extends FlowTableOptions {
  clock: Clock;
  /**
   * First version handed out. Versions must keep growing across daemon restarts for the standby's merge to accept
   * the new ones, so the daemon seeds this from the clock (e.g. Date.now() * 1000); default 1.
   */
  firstVersion?: number;
}

export class LocalTable {
  readonly table: FlowTable;
  readonly counters: LocalCounters = {
    events: 0, ignoredOurs: 0, added: 0, replaced: 0, changed: 0, refreshed: 0, unchanged: 0, removed: 0,
    destroyUnknown: 0, resyncs: 0, resyncLinesSkipped: 0,
  };
  private readonly clock: Clock;
  private seq: number;
  private touchedInResync: Set<string> | undefined;
  private pending: DiffResult | undefined;

  constructor(opts: LocalTableOptions) {
    this.table = new FlowTable(opts);
    this.clock = opts.clock;
    this.seq = (opts.firstVersion ?? 1) - 1;
  }

  get size(): number {
    return this.table.size;
  }

  /** The last version handed out. */
  get version(): number {
    return this.seq;
  }

  /** Applies one kernel event. Echoes of our own writes (origin 'ours') are ignored: they are not this kernel's news. */
  applyEvent(ev: FlowEvent): Applied {
    this.counters.events++;
    const key = ev.key ?? flowKey(ev.flow);
    if (ev.origin === 'ours') {
      this.counters.ignoredOurs++;
      return { change: 'ignored', key, version: 0, slot: -1 };
    }
    this.touchedInResync?.add(key);
    if (ev.kind === 'destroy') return this.remove(key);
    const change = this.upsert(key, ev.flow, ev.kind === 'update' ? 'partial' : 'new');
    // upsert() always set()s the key, so the slot it wrote is the entry's
    const slot = this.table.lastSetSlot;
    return { change, key, version: this.table.versionAt(slot), slot };
  }

  /**
   * applyEvent() for a kernel NEW event read in place (scanPlainFlow) instead of decoded: the same outcome
   * (added, or replaced: a NEW on a held key is a new incarnation), counters and versions.
   */
  applyPlainNew(key: string, flow: PlainFlow): Applied {
    this.counters.events++;
    this.touchedInResync?.add(key);
    const t = this.table;
    const slot = t.slotOf(key);
    const v = ++this.seq;
    t.setPlain(key, flow, v, v, this.clock.now(), slot);
    if (slot < 0) {
      const added = t.lastSetSlot;
      t.setDirty(added, DIRTY_STATE);
      this.counters.added++;
      return { change: 'added', key, version: v, slot: added };
    }
    t.setDirty(slot, t.dirtyAt(slot) | DIRTY_STATE);
    this.counters.replaced++;
    return { change: 'replaced', key, version: v, slot };
  }

  private remove(key: string): Applied {
    if (!this.table.delete(key)) {
      this.counters.destroyUnknown++;
      return { change: 'unknown', key, version: 0, slot: -1 };
    }
    this.counters.removed++;
    return { change: 'removed', key, version: ++this.seq, slot: -1 };
  }

  /**
   * mode 'new': a kernel NEW (a new incarnation if the key is held); 'partial': an update event, which omits what
   * did not change (protoinfo, mark, labels, helper, ...); 'complete': a dump line, which lists everything except
   * timeout and protoinfo of offloaded flows.
   */
  private upsert(key: string, flow: Flow, mode: 'new' | 'partial' | 'complete', slot = this.table.slotOf(key), keepTimeout = false): LocalChange {
    const t = this.table;
    const now = this.clock.now();
    if (slot < 0) {
      const v = ++this.seq;
      const s = this.setNew(key, flow, v, now);
      t.setDirty(s, DIRTY_STATE);
      this.counters.added++;
      return 'added';
    }
    if (mode === 'new' || this.isReborn(slot, flow.id ?? -1, flow.protoinfo?.tcp?.state ?? -1, flow.status ?? -1)) {
      const v = ++this.seq;
      t.set(key, flow, v, v, now, slot);
      t.setDirty(slot, t.dirtyAt(slot) | DIRTY_STATE);
      this.counters.replaced++;
      return 'replaced';
    }
    let f = flow;
    if (mode === 'partial') {
      f = { ...flow };
      t.fillMissing(slot, f);
    } else if (flow.protoinfo === undefined && t.hasProtoinfoAt(slot)) {
      f = { ...flow, protoinfo: t.protoinfoAt(slot) };
    }
    // a line or update without a timeout leaves the entry's as it is
    return this.settle(slot, t.set(key, f, t.versionAt(slot), t.bornAt(slot), now, slot, keepTimeout || f.timeout === undefined));
  }

  /** Versions, dirty bits and counters for what set() reported about an entry it held already. */
  private settle(slot: number, r: number): LocalChange {
    const t = this.table;
    if (r & SET_SIGNIFICANT) {
      t.setVersionAt(slot, ++this.seq);
      t.setDirty(slot, t.dirtyAt(slot) | DIRTY_STATE);
      this.counters.changed++;
      return 'changed';
    }
    if (r & SET_MINOR) {
      t.setDirty(slot, t.dirtyAt(slot) | DIRTY_TIMEOUT);
      this.counters.refreshed++;
      return 'refreshed';
    }
    this.counters.unchanged++;
    return 'unchanged';
  }

  private setNew(key: string, flow: Flow, v: number, now: number): number {
    this.table.set(key, flow, v, v, now, -1);
    return this.table.lastSetSlot;
  }

  /**
   * Signs that the kernel killed the connection on this tuple and created another one (see the file comment), from
   * the incoming id, TCP state and status (-1 = absent).
   */
  private isReborn(slot: number, id: number, tcpState: number, status: number): boolean {
    const t = this.table;
    const oldId = t.idAt(slot);
    if (id >= 0 && oldId !== undefined && id !== oldId) return true;
    const st = t.tcpStateAt(slot);
    if (tcpState >= 0 && st >= 0 && isTcpBackwards(st, tcpState)) return true;
    const oldStatus = t.statusAt(slot);
    if (oldStatus !== undefined && status >= 0 && oldStatus & STICKY_STATUS & ~status) return true;
    return false;
  }

  // ---- dump and diff ----

  /**
   * Starts a dump-and-diff resync (after an event overrun). Events may keep arriving while the dump is read: for
   * a key an event touched meanwhile, the event wins and the dump line is skipped, since the dump may have read
   * it before the event.
   */
  beginResync(): void {
    this.counters.resyncs++;
    this.table.beginSweep();
    this.touchedInResync = new Set();
    this.pending = { added: [], changed: [], refreshed: [], removed: [], unchanged: 0 };
  }

  /**
   * One line of the dump. A caller that computed the line's key (and its slotOf) already passes them: a refresh
   * of a big table would otherwise build and look up every key twice. With keepTimeout (or a line without one),
   * an entry the table holds keeps its timeout: the line's is close enough to it.
   */
  resyncFlow(flow: Flow, key = flowKey(flow), slot?: number, keepTimeout = false): LocalChange {
    if (this.skipLine(key, slot)) return 'ignored';
    return this.noteLine(key, this.upsert(key, flow, 'complete', slot, keepTimeout));
  }

  /**
   * resyncFlow() for a dump line read in place (scanPlainFlow), of an entry the table holds at `slot`, with the
   * same keepTimeout. Undefined, having done nothing, when only the decoded line can say what it means (a new
   * incarnation, or an entry whose protoinfo the line lacks): the caller then decodes it and calls resyncFlow().
   */
  resyncPlain(key: string, f: PlainFlow, slot: number, keepTimeout: boolean): LocalChange | undefined {
    const t = this.table;
    const keep = keepTimeout || f.timeout < 0;
    if (this.skipLine(key, slot)) return 'ignored';
    if ((!f.protoinfo && t.hasProtoinfoAt(slot)) || this.isReborn(slot, f.id, f.tcpState, f.status)) return undefined;
    if (keep && t.holdsPlain(slot, f)) {
      t.touch(slot);
      this.counters.unchanged++;
      return this.noteLine(key, 'unchanged');
    }
    const r = t.setPlain(key, f, t.versionAt(slot), t.bornAt(slot), this.clock.now(), slot, keep);
    return this.noteLine(key, this.settle(slot, r));
  }

  /** True (the line is skipped, its entry kept) when an event touched the key since the resync began. */
  private skipLine(key: string, slot: number | undefined): boolean {
    if (this.pending === undefined) throw new Error('a dump line outside beginResync()/endResync()');
    if (!this.touchedInResync!.has(key)) return false;
    const s = slot ?? this.table.slotOf(key);
    if (s >= 0) this.table.touch(s);
    this.counters.resyncLinesSkipped++;
    return true;
  }

  /** Adds a dump line's outcome to the resync's diff. */
  private noteLine(key: string, change: LocalChange): LocalChange {
    const pend = this.pending!;
    switch (change) {
      case 'added':
        pend.added.push(key);
        break;
      case 'replaced':
      case 'changed':
        pend.changed.push(key);
        break;
      case 'refreshed':
        pend.refreshed.push(key);
        break;
      default:
        pend.unchanged++;
    }
    return change;
  }

  /** Ends the resync: every entry neither in the dump nor touched by an event meanwhile is removed. */
  endResync(): DiffResult {
    const pend = this.pending ?? { added: [], changed: [], refreshed: [], removed: [], unchanged: 0 };
    this.table.endSweep((key) => {
      pend.removed.push({ key, version: ++this.seq });
    });
    this.counters.removed += pend.removed.length;
    this.pending = undefined;
    this.touchedInResync = undefined;
    return pend;
  }

  /** Abandons a resync whose dump failed: nothing is removed, and events are no longer tracked for it. */
  abortResync(): void {
    this.table.abortSweep();
    this.pending = undefined;
    this.touchedInResync = undefined;
  }

  /** True between beginResync() and endResync()/abortResync(). */
  get resyncing(): boolean {
    return this.pending !== undefined;
  }

  /** Makes the table equal to a complete dump and says exactly what differed. */
  diff(dump: Iterable<Flow>): DiffResult {
    this.beginResync();
    for (const f of dump) this.resyncFlow(f);
    return this.endResync();
  }

  /** Same as diff(): the initial fill is a diff against an empty table. */
  replaceAll(dump: Iterable<Flow>): DiffResult {
    return this.diff(dump);
  }

  // ---- reads ----

  get(key: string, now?: number): Flow | undefined {
    return this.table.get(key, now);
  }

  has(key: string): boolean {
    return this.table.has(key);
  }

  meta(key: string): EntryMeta | undefined {
    return this.table.meta(key);
  }

  /** Returns the entry's DIRTY_* bits and clears them (the sync layer has queued what they asked for). */
  takeDirty(key: string): number {
    const slot = this.table.slotOf(key);
    if (slot < 0) return 0;
    const d = this.table.dirtyAt(slot);
    this.table.setDirty(slot, 0);
    return d;
  }

  forEach(fn: (key: string, slot: number) => void): void {
    this.table.forEach(fn);
  }

  digest(nBuckets?: number): Uint32Array {
    return this.table.digest(nBuckets);
  }
}
