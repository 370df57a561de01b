// Reconnect timing and address choice of the TCP peer link: backoff/jitter bounds, the address plan, the dial
// schedule under fake timers, and failover to / failback from the fallback address.

import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AddressPlan, TcpTransport, backoffCeiling, backoffDelay } from '../../../src/transport/tcp/index.js';
import { freePort, freshPskFile, loopbackRelay, perTest } from '../../contract/tcp-fixtures.js';
import { record, waitFor } from '../../contract/transport-contract.js';
import { captureLogger } from './log-capture.js';

describe('backoff with full jitter', () => {
  const o = { initialMs: 100, maxMs: 10_000, factor: 2 };

  it('ceiling grows by factor per round and stops at maxMs', () => {
    expect([0, 1, 2, 3, 6, 7, 50, 5000].map((n) => backoffCeiling(n, o))).toEqual([100, 200, 400, 800, 6400, 10_000, 10_000, 10_000]);
  });

  it('every delay lies in [0, ceiling) and never above maxMs, whatever the random source returns', () => {
    fc.assert(
      fc.property(fc.nat(100_000), fc.double({ min: -1, max: 2, noNaN: true }), (attempt, r) => {
        const d = backoffDelay(attempt, o, () => r);
        const c = backoffCeiling(attempt, o);
        return Number.isInteger(d) && d >= 0 && d < c && d < o.maxMs;
      }),
    );
  });

  it('spreads delays over the whole window (full jitter, not equal jitter)', () => {
    expect(backoffDelay(3, o, () => 0)).toBe(0);
    expect(backoffDelay(3, o, () => 0.5)).toBe(400);
    expect(backoffDelay(3, o, () => 0.999)).toBe(799);
  });
});

describe('AddressPlan', () => {
  it('tries addresses in order, counts a round only when all failed, and restarts from the first after success', () => {
    const p = new AddressPlan(3);
    expect(p.current()).toBe(0);
    expect(p.fail()).toEqual({ next: 1, endOfRound: false });
    expect(p.fail()).toEqual({ next: 2, endOfRound: false });
    expect(p.fail()).toEqual({ next: 0, endOfRound: true });
    expect(p.rounds()).toBe(1);
    p.fail();
    p.fail();
    p.fail();
    expect(p.rounds()).toBe(2);
    p.fail(); // now on the fallback (index 1) …
    p.succeed(); // … which connected: the next outage starts from the preferred address without backoff
    expect(p.current()).toBe(0);
    expect(p.rounds()).toBe(0);
  });
});

describe('dial schedule (fake timers)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fails over to the next address at once and backs off between rounds, capped, with jitter', async () => {
    // Only the transport's timers and Date are faked; socket I/O (ECONNREFUSED) still runs for real.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const [p1, p2] = [await freePort(), await freePort()];
    const { logger, lines } = captureLogger('debug');
    const t = new TcpTransport({
      nodeId: 'fw-a',
      clusterId: 'lab',
      listen: { host: '127.0.0.1', port: 0 },
      peers: [{ nodeId: 'fw-b', addresses: [`127.0.0.1:${p1}`, `127.0.0.1:${p2}`] }],
      insecure: true,
      backoff: { initialMs: 100, maxMs: 400, factor: 2 },
      random: () => 0.5,
      logger,
    });
    const dials = (): string[] => lines.filter((l) => l.msg === 'dialing').map((l) => String(l.address));
    const backoffs = (): number[] => lines.filter((l) => l.msg.startsWith('every peer address failed')).map((l) => Number(l.delay));
    /** Fires due fake timers and lets real socket I/O run until `cond` holds. */
    const settle = async (cond: () => boolean): Promise<void> => {
      for (let i = 0; i < 2000 && !cond(); i++) {
        await vi.advanceTimersByTimeAsync(0);
        await new Promise((r) => setImmediate(r));
      }
      if (!cond()) console.log(lines);
      expect(cond()).toBe(true);
    };
    try {
      await t.start();
      await settle(() => backoffs().length === 1);
      expect(dials()).toEqual([`127.0.0.1:${p1}`, `127.0.0.1:${p2}`]);
      expect(backoffs()).toEqual([50]); // 0.5 × 100
      // Nothing is dialed before the backoff delay has passed …
      await vi.advanceTimersByTimeAsync(49);
      for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
      expect(dials()).toHaveLength(2);
      // … and the next round starts from the preferred address again once it has.
      await vi.advanceTimersByTimeAsync(1);
      await settle(() => backoffs().length === 2);
      expect(dials().slice(2)).toEqual([`127.0.0.1:${p1}`, `127.0.0.1:${p2}`]);
      for (const n of [3, 4]) {
        await vi.advanceTimersByTimeAsync(backoffs().at(-1)!);
        await settle(() => backoffs().length === n);
      }
      expect(backoffs()).toEqual([50, 100, 200, 200]); // capped at 0.5 × maxMs
      expect(t.stats().peers[0]!.state).toBe('connecting');
    } finally {
      vi.useRealTimers();
      await t.stop();
    }
  });
});

describe('fallback address', () => {
  const scratch = perTest();

  it('uses the fallback while the first address is down, returns to the first when it answers, fails over again when it breaks', async () => {
    const pskFile = freshPskFile(scratch.dir());
    const [pb, pRelay, nowhere] = [await freePort(), await freePort(), await freePort()];
    const fast = { heartbeatMs: 100, deadAfterMs: 400, connectTimeoutMs: 1000, helloTimeoutMs: 1000, backoff: { initialMs: 20, maxMs: 100 }, tls: { pskFile }, clusterId: 'lab' };
    // fw-b cannot reach fw-a (nobody listens at `nowhere`), so every connection here is dialed by fw-a.
    const b = new TcpTransport({ ...fast, nodeId: 'fw-b', listen: { host: '127.0.0.1', port: pb }, peers: [{ nodeId: 'fw-a', addresses: [`127.0.0.1:${nowhere}`] }] });
    const a = new TcpTransport({
      ...fast,
      nodeId: 'fw-a',
      listen: { host: '127.0.0.1', port: 0 },
      peers: [{ nodeId: 'fw-b', addresses: [`127.0.0.1:${pRelay}`, `127.0.0.1:${pb}`] }],
      failbackMs: 150,
    });
    const link = loopbackRelay(pRelay, pb);
    scratch.defer(() => b.stop(), () => a.stop(), () => link.off());
    const ra = record(a);
    const rb = record(b);
    await b.start();
    await a.start();

    const peerA = () => a.stats().peers[0]!;
    await waitFor('up via the fallback', () => peerA().state === 'up' && peerA().address === `127.0.0.1:${pb}`);

    await link.on();
    await waitFor('back on the preferred address', () => peerA().state === 'up' && peerA().address === `127.0.0.1:${pRelay}`);
    expect(ra.links.some((l) => l.state === 'down' && (l.reason ?? '').includes('superseded'))).toBe(true);
    a.send(Buffer.from('via preferred'));
    await waitFor('frame over the preferred path', () => rb.frames.some((f) => f.toString() === 'via preferred'));

    const downsBefore = ra.links.filter((l) => l.state === 'down').length;
    await link.off();
    await waitFor('lost the preferred path', () => ra.links.filter((l) => l.state === 'down').length > downsBefore);
    await waitFor('failed over to the fallback', () => peerA().state === 'up' && peerA().address === `127.0.0.1:${pb}`);
    a.send(Buffer.from('via fallback'));
    await waitFor('frame over the fallback', () => rb.frames.some((f) => f.toString() === 'via fallback'));
    expect(peerA().via).toBe('outbound');
  });
});
