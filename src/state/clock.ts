// Injected time: the one place tables and ageing read "now" from, so expiry is tested with fake time, not sleeps.

/** Milliseconds on a monotonic scale. Only differences matter: never compare with wall-clock time. */
export interface Clock {
  now(): number;
}

/** Monotonic process clock: immune to NTP steps, which would otherwise age every entry at once. */
export const systemClock: Clock = {
  now: () => performance.now(),
};

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
