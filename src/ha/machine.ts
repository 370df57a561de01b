// The failover state machine: each keepalived transition is one daemon-side transaction with one result,
// applied in order and idempotently, whatever order keepalived's scripts reach us in.
import type { Logger } from 'pino';
import type { CommitReport } from '../state/commit.js';
import type { HaState, Transition } from './notify.js';

export type Role = 'unknown' | 'master' | 'backup' | 'fault' | 'stopped';

/** What the daemon does on each transition (injected, so the machine is tested without a kernel). */
export interface HaActions {
  commit(progress?: (done: number, total: number) => void): Promise<CommitReport>;
  /** After a commit the committed flows are ours: re-read the kernel and send our table to the peers. */
  takeOver(): Promise<void>;
  requestResync(): void;
  schedulePurge(): void;
  cancelPurge(): void;
  flushSends(): void;
}

export interface TransitionResult {
  state: HaState;
  source: string;
  name?: string;
  at: string; // ISO time the transaction finished
  result: 'ok' | 'failed' | 'noop' | 'superseded';
  durationMs: number;
  commit?: CommitReport;
  error?: string;
}

const ROLE_OF: Record<HaState, Role> = { MASTER: 'master', BACKUP: 'backup', FAULT: 'fault', STOP: 'stopped' };

export class HaMachine {
  role: Role = 'unknown';
  last?: TransitionResult;
  readonly history: TransitionResult[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  /** Fork time (clock ticks since boot) of the newest notify process applied: an older one arriving late is stale. */
  private newestFork = -1;

  constructor(
    private readonly actions: HaActions,
    private readonly log: Logger,
  ) {}

  /**
   * Apply one transition. Calls are serialized: a second one waits for the first to finish. `forkedAt` (the
   * notifying process's start time) lets a script that keepalived started earlier but that reached us later be
   * recognised as superseded instead of undoing the newer state.
   */
  apply(t: Transition, source: string, forkedAt?: number, progress?: (done: number, total: number) => void): Promise<TransitionResult> {
    const run = this.queue.then(() => this.run(t, source, forkedAt, progress));
    this.queue = run.catch(() => {});
    return run;
  }

  private async run(t: Transition, source: string, forkedAt: number | undefined, progress?: (done: number, total: number) => void): Promise<TransitionResult> {
    const t0 = performance.now();
    const base = { state: t.state, source, ...(t.name ? { name: t.name } : {}) };
    const done = (r: Omit<TransitionResult, 'state' | 'source' | 'at' | 'durationMs'>): TransitionResult => {
      const out: TransitionResult = { ...base, ...r, at: new Date().toISOString(), durationMs: Math.round((performance.now() - t0) * 10) / 10 };
      if (r.result !== 'noop' && r.result !== 'superseded') {
        this.last = out;
        this.history.push(out);
        if (this.history.length > 20) this.history.shift();
      }
      const level = r.result === 'failed' ? 'error' : r.result === 'ok' ? 'info' : 'debug';
      this.log[level]({ transition: out }, `transition ${t.state}: ${r.result}`);
      return out;
    };
    if (forkedAt !== undefined && forkedAt < this.newestFork) return done({ result: 'superseded' });
    if (forkedAt !== undefined) this.newestFork = forkedAt;
    const role = ROLE_OF[t.state];
    // idempotent: a repeated state is a no-op, unless the last attempt at it failed
    if (role === this.role && !(this.last?.state === t.state && this.last.result === 'failed')) return done({ result: 'noop' });
    const previous = this.role;
    this.role = role;
    try {
      switch (t.state) {
        case 'MASTER': {
          this.actions.cancelPurge();
          const commit = await this.actions.commit(progress);
          await this.actions.takeOver();
          return done({ result: commit.counts.failed ? 'failed' : 'ok', commit, ...(commit.counts.failed ? { error: `${commit.counts.failed} entries failed: ${JSON.stringify(commit.failedByErrno)}` } : {}) });
        }
        case 'BACKUP':
          this.actions.requestResync();
          this.actions.schedulePurge();
          return done({ result: 'ok' });
        case 'FAULT':
          this.actions.schedulePurge();
          return done({ result: 'ok' });
        case 'STOP':
          this.actions.flushSends();
          return done({ result: 'ok' });
      }
    } catch (err) {
      if (t.state !== 'MASTER') this.role = previous;
      return done({ result: 'failed', error: (err as Error).message });
    }
  }
}
