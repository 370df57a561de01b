// Injected time: the one place tables and ageing read "now" from, so expiry is tested with fake time, not sleeps.

/** Milliseconds on a monotonic scale. Only differences matter: never compare with wall-clock time. */
export interface Clock {
  now(): number;
}

/** Monotonic process clock: immune to NTP steps, which would otherwise age every entry at once. */
export const systemClock: Clock = {
  now: () => performance.now(),
};

/**
 * The host's CLOCK_MONOTONIC in ms (process.hrtime): the same in every process on this host, so a stats answer and
 * a tool reading it can compare moments without the answer's own delay.
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** A clock that moves only when told to (tests, simulations). */
export class FakeClock implements Clock {
  constructor(private t = 0) {}

  now(): number {
    return this.t;
  }

  advance(ms: number): void {
    this.t += ms;
  }

  set(ms: number): void {
    this.t = ms;
  }
}
