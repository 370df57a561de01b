// Warm standby (commit.warm): while this node is not MASTER, what the peers send is written into the kernel as it
// arrives, so a takeover only writes what changed since the last round instead of the whole table.
//
// What it keeps: the keys it wrote (and so holds in the kernel) and the keys changed since (from the peer tables'
// onChange). Each round writes the changed ones: upsert while a peer holds the flow, delete once none does. The
// entries it wrote are not this node's own flows: the mirror's filter asks holds() and keeps them out of the local
// table (else they would go back to the peer as ours). A kernel DESTROY of one (it expired here first) makes it
// changed again. Events can be lost (an overrun): then the set of written keys is no longer trusted, and the
// takeover writes the whole table (a cold commit) instead of the delta.
import type { Logger } from 'pino';
import type { Conntrack, WriteOp } from '../kernel/conntrack.js';
import type { Flow } from '../kernel/types.js';
import { invertTuple, type WritePolicy } from '../kernel/write-rules.js';
import { decodeKey } from './key.js';
import type { PeerTable } from './peer-table.js';

export interface WarmStats {
  /** Entries this node holds in its kernel for its peers. */
  held: number;
  /** Changed since the last round, not yet written. */
  pending: number;
  rounds: number;
  written: number;
  deleted: number;
  failed: number;
  /** The written set can be trusted (no event was lost since it was built). */
  trusted: boolean;
}

/** Entries per round at most: a round stays short, the rest waits for the next. */
const ROUND_MAX = 20_000;

export class WarmStandby {
  private readonly held = new Set<string>();
  private readonly pending = new Set<string>();
  /** Refused by the kernel: not retried every round (it would refuse again), but part of the takeover's delta. */
  private readonly refused = new Set<string>();
  private active = true;
  private trusted = true;
  private running?: Promise<void>;
  private timer?: NodeJS.Timeout;
  private readonly counters = { rounds: 0, written: 0, deleted: 0, failed: 0 };

  constructor(
    private readonly ct: Conntrack,
    private readonly tables: () => Iterable<PeerTable>,
    private readonly policy: () => WritePolicy,
    private readonly now: () => number,
    private readonly log: Logger,
    private readonly intervalMs = 1000,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.round(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** A peer table entry changed (added, updated, refreshed or removed). */
  changed(key: string): void {
    if (this.active) this.pending.add(key);
  }

  /** True for a kernel entry this node wrote for a peer (not one of its own flows). */
  holds(key: string): boolean {
    return this.active && this.held.has(key);
  }

  /** The kernel destroyed an entry (expiry here, a flush): write it again if a peer still holds it. */
  destroyed(key: string): void {
    if (this.active && this.held.delete(key)) this.pending.add(key);
  }

  /** Events were lost: which written entries the kernel still has is unknown until the next cold commit. */
  eventsLost(): void {
    if (this.active && this.held.size) this.trusted = false;
  }

  stats(): WarmStats {
    return { held: this.held.size, pending: this.pending.size + this.refused.size, ...this.counters, trusted: this.trusted };
  }

  /**
   * Takeover: stop following the peers and say what is left to write: the keys changed since the last round
   * (undefined when the written set cannot be trusted: write everything). From now on the entries are ours.
   */
  async takeOver(): Promise<string[] | undefined> {
    if (!this.active) return undefined; // not following (an earlier commit): what is in the kernel is unknown
    this.stop();
    await this.running;
    this.active = false;
    const delta = this.trusted ? [...this.pending, ...this.refused] : undefined;
    this.pending.clear();
    this.refused.clear();
    this.held.clear();
    return delta;
  }

  /** Back to BACKUP: follow the peers again; everything they hold is written in the next rounds. */
  resume(): void {
    if (this.active) return;
    this.active = true;
    this.trusted = true;
    for (const t of this.tables()) t.table.forEach((k) => this.pending.add(k));
    this.start();
  }

  /** One round: write what changed. Exposed for tests; the timer calls it. */
  round(): Promise<void> {
    if (!this.active || !this.pending.size) return Promise.resolve();
    this.running ??= this.write().finally(() => (this.running = undefined));
    return this.running;
  }

  private async write(): Promise<void> {
    const now = this.now();
    const keys: string[] = [];
    for (const k of this.pending) {
      keys.push(k);
      if (keys.length >= ROUND_MAX) break;
    }
    const ops: WriteOp[] = [];
    const opKeys: string[] = [];
    for (const k of keys) {
      this.pending.delete(k);
      const flow = this.peerFlow(k, now);
      if (flow) ops.push({ op: 'upsert', flow });
      else if (this.held.has(k)) ops.push({ op: 'delete', flow: flowOfKey(k) });
      else continue;
      opKeys.push(k);
    }
    if (!ops.length) return;
    let r;
    try {
      r = await this.ct.write(ops, this.policy());
    } catch (err) {
      for (const k of opKeys) this.pending.add(k);
      this.log.warn({ err }, 'warm standby: kernel write failed; retrying next round');
      return;
    }
    this.counters.rounds++;
    r.results.forEach((res, i) => {
      const k = opKeys[i]!;
      if (ops[i]!.op === 'delete') {
        this.held.delete(k);
        if (res.outcome !== 'failed') this.counters.deleted++;
      } else if (res.outcome === 'failed') {
        this.counters.failed++;
        this.held.delete(k); // not in the kernel as we want it: the takeover writes it
        this.refused.add(k);
      } else {
        this.held.add(k);
        this.refused.delete(k);
        this.counters.written++;
      }
    });
    if (r.counts.failed) this.log.debug({ failed: r.failedByErrno }, 'warm standby: the kernel refused some entries; the takeover writes them again');
  }

  /** The flow a peer holds under key, with its remaining timeout; undefined when none does or it has run out. */
  private peerFlow(key: string, now: number): Flow | undefined {
    for (const t of this.tables()) {
      const slot = t.table.slotOf(key);
      if (slot < 0) continue;
      const f = t.table.flowAt(slot, now);
      return f.timeout === 0 ? undefined : f;
    }
    return undefined;
  }
}

/** Enough of a flow to delete it by its original tuple. */
export function flowOfKey(key: string): Flow {
  const p = decodeKey(key);
  const f: Flow = { family: p.family, orig: p.orig, reply: invertTuple(p.orig) };
  if (p.ctZone !== undefined) f.zone = p.ctZone;
  return f;
}
