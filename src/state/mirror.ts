// Keeps a LocalTable equal to one kernel table: an initial dump, then events, and a dump-and-diff after every
// event overrun (the only cure for lost events) and on every periodic timeout refresh.
import type { Logger } from 'pino';
import { Conntrack } from '../kernel/conntrack.js';
import { EventStream } from '../kernel/events.js';
import { newPlainFlow, scanPlainFlow, type PlainFlow } from '../kernel/flow-codec.js';
import type { Flow, FlowEvent } from '../kernel/types.js';
import type { Clock } from './clock.js';
import { flowKey, flowKeyFromAttrs, keyFromPlain } from './key.js';
import { LocalTable, type DiffResult, type LocalChange } from './local-table.js';

export interface MirrorOptions {
  netns?: string;
  /** Event socket buffer (bytes). */
  rcvbuf?: number;
  /** Microseconds the event stream must stay empty after events before onQuiet (NetfilterSocketOptions.settleUs). */
  settleUs?: number;
  /** Microseconds a trickle of events may queue up in the kernel between reads (NetfilterSocketOptions.holdUs). */
  holdUs?: number;
  /**
   * Only flows this accepts are mirrored (the synced set); a flow that stops matching leaves the table. When it
   * also has `plain` (the same predicate over a message read in place, see compileFilter), NEW events of the
   * plain form skip decoding into a Flow: they reach onChange without an event (like a resync's changes). A dump's
   * lines for entries held unchanged but for the timeout are read in place with that predicate, or without a
   * filter (they reach onChange only when something changed, and then decoded).
   */
  filter?: ((f: Flow) => boolean) & { plain?: (f: PlainFlow, buf: Buffer) => boolean };
  /** Keys kept out of the table whatever the filter says (a warm standby's entries: the peers' flows, not ours). */
  exclude?: (key: string) => boolean;
  clock: Clock;
  log: Logger;
  /** Versions must keep growing across restarts (see LocalTable). */
  firstVersion?: number;
  /**
   * A new flow joins the table (and so is synced) only once it is this old, ms (FortiGate's session-pickup-delay):
   * short-lived flows cost nothing. Flows found by a dump are taken as old enough. Default 0.
   */
  minAgeMs?: number;
}

export interface MirrorStats {
  resyncs: number;
  resyncFailures: number;
  lastResyncAt: number;
  lastResyncChanges: number;
  filtered: number;
}

/** A refresh: the kernel's remaining timeout for a flow whose copy elsewhere has drifted from it. */
export interface TimeoutDrift {
  /** The table's own string, not the dump line's copy: the engine keeps it until the peer acks the refresh. */
  key: string;
  timeout: number;
}

// timeoutVerdict()'s answers
const KEEP = 0;
const DRIFT = 1;
const TAKE = 2;

export class KernelMirror {
  readonly events: EventStream;
  readonly ct: Conntrack;
  readonly local: LocalTable;
  readonly stats: MirrorStats = { resyncs: 0, resyncFailures: 0, lastResyncAt: 0, lastResyncChanges: 0, filtered: 0 };
  /**
   * A key changed in a way its replicas need (or went away); reborn = a new connection on that tuple. `slot` is
   * the key's slot in the local table when the change was an event's (-1 or absent otherwise).
   */
  onChange: (key: string, change: LocalChange, ev?: FlowEvent, slot?: number) => void = () => {};
  /** A dump-and-diff finished (after an overrun, at start, or on a refresh). */
  onResync: (diff: DiffResult, reason: string) => void = () => {};
  /** The kernel destroyed an entry the table does not hold (one the filter keeps out, such as a warm standby's). */
  onForeignDestroy: (key: string) => void = () => {};
  /** Kernel events were lost (a socket overrun). */
  onEventsLost: () => void = () => {};
  /**
   * A dump-and-diff (any: refresh, overrun, after our own writes ...) found flows whose kernel timeout moved away from
   * our copy's by more than a tenth (at least 5 s): the replicas need them as refreshes, since our copy now holds
   * the kernel's value and the next refresh would see no drift.
   */
  onDrift: (drift: TimeoutDrift[]) => void = () => {};
  /** Kernel events came, then none for settleUs: whatever they changed can go out now. */
  onQuiet: () => void = () => {};
  private running?: Promise<void>;
  private again?: string;
  private holds = 0;
  private readonly filter: (f: Flow) => boolean;
  private readonly exclude: (key: string) => boolean;
  /** Flows younger than minAgeMs: key → first seen and latest state. */
  private readonly young = new Map<string, { seen: number; flow: Flow }>();
  private youngTimer?: NodeJS.Timeout;
  private readonly scratch = newPlainFlow();

  constructor(private readonly opts: MirrorOptions) {
    this.filter = opts.filter ?? (() => true);
    this.exclude = opts.exclude ?? (() => false);
    this.local = new LocalTable({ clock: opts.clock, firstVersion: opts.firstVersion });
    // events first: nothing that happens while the first dump runs is lost
    this.events = new EventStream({
      netns: opts.netns,
      keyOf: flowKeyFromAttrs,
      keyOfPlain: keyFromPlain,
      ...(opts.rcvbuf ? { rcvbuf: opts.rcvbuf } : {}),
      settleUs: opts.settleUs,
      holdUs: opts.holdUs,
    });
    this.events.onQuiet = () => this.onQuiet();
    this.ct = new Conntrack({ netns: opts.netns });
    this.events.ourPorts.add(this.ct.portId);
    this.events.onEvent = (ev) => this.onEvent(ev);
    // held-back young flows need the decoded Flow (promote() replays it): no fast path with minAgeMs
    // (not without a filter: `ct watch` prints each event it is handed, so it needs them)
    const plain = opts.filter?.plain;
    if (plain !== undefined && !opts.minAgeMs) this.events.onPlainNew = (key, f, buf) => this.onPlainNew(key, f, buf, plain);
    this.events.onOverrun = () => {
      this.onEventsLost();
      opts.log.warn({ overruns: this.events.stats.overruns }, 'kernel events were lost (socket overrun); resyncing from a dump');
      this.resync('overrun').catch(() => {}); // failures are logged and counted by runResync
    };
  }

  /** Events first, then the initial dump: the table is exact once this resolves. */
  async start(): Promise<void> {
    await this.resync('start');
  }

  private closed = false;

  close(): void {
    this.closed = true;
    if (this.youngTimer) clearInterval(this.youngTimer);
    this.events.close();
    this.ct.close();
  }

  private onEvent(ev: FlowEvent): void {
    if (this.opts.minAgeMs && ev.origin === 'kernel' && this.holdYoung(ev)) return;
    if (ev.kind !== 'destroy' && (!this.filter(ev.flow) || (this.opts.exclude && this.exclude(ev.key ?? flowKey(ev.flow))))) {
      this.stats.filtered++;
      // it matched before (e.g. a TCP state outside sync.tcpStates now): it leaves the synced set
      const key = ev.key ?? flowKey(ev.flow);
      if (this.local.has(key)) {
        const r = this.local.applyEvent({ ...ev, kind: 'destroy' });
        this.onChange(r.key, r.change, ev);
      }
      return;
    }
    const r = this.local.applyEvent(ev);
    if (r.change === 'unknown') {
      if (ev.kind === 'destroy') this.onForeignDestroy(r.key);
    } else if (r.change !== 'unchanged' && r.change !== 'ignored') this.onChange(r.key, r.change, ev, r.slot);
  }

  /** A plain NEW event read in place; false (not taken) when the filter refuses it: onEvent handles that case. */
  private onPlainNew(key: string, f: PlainFlow, buf: Buffer, plain: (f: PlainFlow, buf: Buffer) => boolean): boolean {
    if (!plain(f, buf) || this.exclude(key)) return false;
    const r = this.local.applyPlainNew(key, f);
    this.onChange(r.key, r.change, undefined, r.slot);
    return true;
  }

  /** Keeps a flow out of the table until it is minAgeMs old; true if the event was taken here. */
  private holdYoung(ev: FlowEvent): boolean {
    const key = flowKey(ev.flow);
    const held = this.young.get(key);
    if (ev.kind === 'destroy') return held ? (this.young.delete(key), true) : false;
    if (this.local.has(key)) return false;
    if (held) held.flow = ev.flow;
    else this.young.set(key, { seen: this.opts.clock.now(), flow: ev.flow });
    this.youngTimer ??= setInterval(() => this.promote(), Math.max(50, Math.min(1000, this.opts.minAgeMs! / 2))).unref();
    return true;
  }

  private promote(): void {
    const ripe = this.opts.clock.now() - this.opts.minAgeMs!;
    for (const [key, y] of this.young) {
      if (y.seen > ripe) continue;
      this.young.delete(key);
      this.onEvent({ kind: 'new', flow: y.flow, origin: 'kernel', portId: 0 });
    }
  }

  /**
   * Dump and diff; one at a time, and an overrun during one schedules one more after it (events lost while the
   * dump ran may not be in it). Every one reports timeout drift through onDrift; `drift` also receives it.
   */
  resync(reason: string, drift?: TimeoutDrift[]): Promise<void> {
    if (this.closed) return Promise.resolve();
    // while events are paused the release runs one resync anyway
    if (this.holds && reason === 'overrun') return Promise.resolve();
    if (this.running) {
      this.again = reason;
      return this.running;
    }
    this.running = this.runResync(reason, drift).finally(() => {
      this.running = undefined;
      const again = this.again;
      this.again = undefined;
      if (again) this.resync(again).catch(() => {});
    });
    return this.running;
  }

  /**
   * Stop listening while the caller floods the table with its own writes (a commit: the kernel then builds no
   * events, and the writes go several times faster). The returned release listens again and repairs what was
   * missed meanwhile with one dump-and-diff, which it returns.
   */
  pauseEvents(): () => Promise<void> {
    this.holds++;
    if (this.holds === 1) this.events.pause();
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      if (--this.holds > 0) return;
      this.events.resume();
      await this.resync('after own writes');
    };
  }

  /** The kernel's timeouts for flows whose copies drifted (the kernel never reports timeout refreshes). */
  async refresh(): Promise<TimeoutDrift[]> {
    if (this.running) await this.running.catch(() => {});
    const drift: TimeoutDrift[] = [];
    await this.resync('refresh', drift);
    return drift;
  }

  private async runResync(reason: string, drift: TimeoutDrift[] = []): Promise<void> {
    const local = this.local;
    const t0 = this.opts.clock.now();
    local.beginResync(); // before the dump: events during it are tracked and win over its lines
    const now = this.opts.clock.now();
    const young = new Set<string>();
    /**
     * What a line's timeout (-1: none) does to the entry at slot: KEEP our (= the replicas') estimate, since the
     * line has none or it is within a tenth (at least 5 s) of ours; DRIFT, a refresh the replicas need; or TAKE it
     * (we have no estimate).
     */
    const timeoutVerdict = (slot: number, timeout: number): number => {
      if (timeout < 0) return KEEP;
      const est = slot >= 0 ? local.table.remainingAt(slot, now) : undefined;
      if (est === undefined) return TAKE;
      return Math.abs(timeout - est) > Math.max(5, timeout / 10) ? DRIFT : KEEP;
    };
    // a key the table does not track for now (filtered out, excluded, or young): true once handled
    const passOver = (key: string): boolean => {
      if (this.exclude(key)) return true;
      if (!this.young.size || !this.young.has(key)) return false;
      young.add(key);
      return true;
    };
    // streamed: each dump line is applied as it arrives, so a big table is never held twice in memory
    const onFlow = (flow: Flow): void => {
      if (!this.filter(flow)) return;
      const key = flowKey(flow); // resyncFlow needs it too: built once per line
      if (passOver(key)) return;
      const slot = local.table.slotOf(key);
      const v = timeoutVerdict(slot, flow.timeout ?? -1);
      if (v === DRIFT) drift.push({ key: local.table.keyAt(slot)!, timeout: flow.timeout! });
      local.resyncFlow(flow, key, slot, v === KEEP);
    };
    // the common line, an entry we hold that is unchanged but for its timeout, read in place: no Flow, no garbage
    // (all lines pass without a filter; a filter without an in-place form has every line decoded)
    const plain = this.opts.filter === undefined ? () => true : this.opts.filter.plain;
    const line = this.scratch;
    const onLine = plain === undefined ? undefined : (buf: Buffer, off: number, end: number, family: number): boolean => {
      if (!scanPlainFlow(buf, off, end, family, line, true)) return false;
      if (!plain(line, buf)) return true;
      const key = keyFromPlain(buf, line);
      if (passOver(key)) return true;
      const slot = local.table.slotOf(key);
      if (slot < 0) return false;
      const v = timeoutVerdict(slot, line.timeout);
      if (local.resyncPlain(key, line, slot, v === KEEP) === undefined) return false;
      if (v === DRIFT) drift.push({ key: local.table.keyAt(slot)!, timeout: line.timeout });
      return true;
    };
    try {
      await this.ct.dumpEach(onFlow, {}, () => {
        // an interrupted dump is repeated whole; lines already applied are simply applied again
        drift.length = 0;
      }, onLine);
    } catch (err) {
      local.abortResync();
      if (this.closed) return; // shutting down: the dump was cut short on purpose
      this.stats.resyncFailures++;
      this.opts.log.error({ err, reason }, 'conntrack dump failed; the local table may be behind until the next resync');
      throw err;
    }
    // young flows the dump no longer shows died while their events were lost
    for (const [k, y] of this.young) if (!young.has(k) && y.seen < t0) this.young.delete(k);
    const diff = local.endResync();
    for (const k of diff.added) this.onChange(k, 'added');
    for (const k of diff.changed) this.onChange(k, 'replaced');
    for (const r of diff.removed) this.onChange(r.key, 'removed');
    const changes = diff.added.length + diff.changed.length + diff.removed.length;
    this.stats.resyncs++;
    this.stats.lastResyncAt = this.opts.clock.now();
    this.stats.lastResyncChanges = changes;
    if (reason !== 'refresh' || changes) this.opts.log.info({ reason, entries: local.size, added: diff.added.length, changed: diff.changed.length, removed: diff.removed.length }, `local table resynced (${reason})`);
    this.onResync(diff, reason);
    if (drift.length) this.onDrift(drift);
  }

  /** Resolves once no resync is running or scheduled. */
  async settled(): Promise<void> {
    while (this.running) await this.running.catch(() => {});
  }
}
