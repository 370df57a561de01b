// Reconnect timing and address choice for the peer link: capped exponential backoff with full jitter, and the
// ordered address plan (dedicated sync link first, fallback paths after it).

export interface BackoffOptions {
  /** Ceiling of the first retry delay, ms. */
  initialMs: number;
  /** Largest ceiling any retry can reach, ms. */
  maxMs: number;
  /** Growth of the ceiling per failed round. */
  factor: number;
}

/** Ceiling for retry number `attempt` (0-based): initialMs·factor^attempt, capped at maxMs. */
export function backoffCeiling(attempt: number, o: BackoffOptions): number {
  // Computed in the exponent's domain so a long outage cannot overflow to Infinity before the cap applies.
  const exp = Math.min(attempt, 1024);
  const raw = o.initialMs * Math.pow(o.factor, exp);
  return Number.isFinite(raw) ? Math.min(o.maxMs, raw) : o.maxMs;
}

/**
 * "Full jitter": a uniform delay in [0, ceiling). Spreads retries of nodes that lost the link at the same instant,
 * so two peers restarting together do not dial each other in lockstep.
 */
export function backoffDelay(attempt: number, o: BackoffOptions, random: () => number = Math.random): number {
  const r = random();
  const clamped = r < 0 ? 0 : r >= 1 ? 0.999999 : r;
  return Math.floor(clamped * backoffCeiling(attempt, o));
}

/**
 * Which peer address to dial next. Addresses are tried in configured order; a failure moves to the next address
 * at once (the fallback path should take over quickly), and only a failure of the whole list counts as a failed
 * round that grows the backoff. After a success the next attempt starts again from the first (preferred) address.
 */
export class AddressPlan {
  private index = 0;
  private failedRounds = 0;

  constructor(private readonly count: number) {
    if (count < 1) throw new RangeError('AddressPlan needs at least one address');
  }

  /** The address index to dial now. */
  current(): number {
    return this.index;
  }

  /** Rounds that failed in a row (the backoff attempt number for the next round). */
  rounds(): number {
    return this.failedRounds;
  }

  /**
   * Records a failed dial of `current()`. Returns the next index and whether the whole list has just failed
   * (then the caller waits `backoffDelay(rounds() - 1)` before dialing again; otherwise it dials at once).
   */
  fail(): { next: number; endOfRound: boolean } {
    this.index += 1;
    if (this.index >= this.count) {
      this.index = 0;
      this.failedRounds += 1;
      return { next: 0, endOfRound: true };
    }
    return { next: this.index, endOfRound: false };
  }

  /** The link came up (on any address): the next outage starts from the preferred address with no backoff. */
  succeed(): void {
    this.index = 0;
    this.failedRounds = 0;
  }
}
