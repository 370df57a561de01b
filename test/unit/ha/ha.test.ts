// keepalived argument and FIFO parsing, the transition machine (order, idempotence, staleness) and readiness.
import { describe, expect, test } from 'vitest';
import pino from 'pino';
import { parseFifoLine, parseNotifyArgs } from '../../../src/ha/notify.js';
import { HaMachine, type HaActions } from '../../../src/ha/machine.js';
import { peerReadiness, readiness, syncPeerIds } from '../../../src/ha/readiness.js';
import type { Config } from '../../../src/config/load.js';
import type { PeerStatus } from '../../../src/sync/engine.js';
import type { CommitReport } from '../../../src/state/commit.js';

const log = pino({ level: 'silent' });

function report(failed = 0): CommitReport {
  return { entries: 10, counts: { created: 10 - failed, updated: 0, replaced: 0, deleted: 0, absent: 0, failed }, failedByErrno: failed ? { EINVAL: failed } : {}, expiredSkipped: 0, workers: 0, durationMs: 1, ratePerSec: 10000 };
}

function actions(calls: string[], opts: { commitMs?: number; failCommit?: number } = {}): HaActions {
  return {
    commit: async () => {
      calls.push('commit');
      await new Promise((r) => setTimeout(r, opts.commitMs ?? 0));
      return report(opts.failCommit ?? 0);
    },
    takeOver: async () => void calls.push('takeOver'),
    requestResync: () => void calls.push('resync'),
    schedulePurge: () => void calls.push('purge'),
    cancelPurge: () => void calls.push('cancelPurge'),
    flushSends: () => void calls.push('flush'),
  };
}

describe('keepalived notify arguments', () => {
  test('generic notify and per-state words parse; anything else says what is expected', () => {
    expect(parseNotifyArgs(['GROUP', 'G1', 'MASTER', '0'])).toEqual({ ok: true, value: { state: 'MASTER', scope: 'GROUP', name: 'G1', priority: 0 } });
    expect(parseNotifyArgs(['INSTANCE', 'VI_1', 'BACKUP', '100'])).toMatchObject({ ok: true, value: { state: 'BACKUP', priority: 100 } });
    expect(parseNotifyArgs(['fault'])).toEqual({ ok: true, value: { state: 'FAULT' } });
    const bad = [['promote'], ['GROUP', 'G1'], ['VRRP', 'G1', 'MASTER', '1'], ['GROUP', 'G1', 'DELETED', '0'], ['GROUP', 'G1', 'MASTER', 'high']];
    for (const b of bad) {
      const p = parseNotifyArgs(b);
      expect(p.ok, b.join(' ')).toBe(false);
      if (!p.ok) expect(p.error.length).toBeGreaterThan(10);
    }
  });

  test('FIFO lines: transitions, ignored reports, and malformed lines', () => {
    expect(parseFifoLine('INSTANCE "VI_1" MASTER 100')).toEqual({ ok: true, value: { state: 'MASTER', scope: 'INSTANCE', name: 'VI_1', priority: 100 } });
    expect(parseFifoLine('GROUP "G 1" BACKUP 0')).toMatchObject({ ok: true, value: { name: 'G 1', state: 'BACKUP' } });
    expect(parseFifoLine('INSTANCE "VI_1" MASTER_RX_LOWER_PRI 100')).toMatchObject({ ok: 'ignored' });
    expect(parseFifoLine('INSTANCE "VI_1" MASTER_PRIORITY 90')).toMatchObject({ ok: 'ignored' });
    expect(parseFifoLine('garbage')).toMatchObject({ ok: false });
    expect(parseFifoLine('INSTANCE VI_1 MASTER 100')).toMatchObject({ ok: false });
  });
});

describe('transition machine', () => {
  test('MASTER commits then takes over; a repeat is a no-op; BACKUP resyncs and schedules a purge', async () => {
    const calls: string[] = [];
    const m = new HaMachine(actions(calls), log);
    const r = await m.apply({ state: 'MASTER' }, 'fifo');
    expect(r).toMatchObject({ state: 'MASTER', result: 'ok', commit: { entries: 10 } });
    expect((await m.apply({ state: 'MASTER', scope: 'INSTANCE', name: 'VI_2' }, 'fifo')).result).toBe('noop');
    expect(calls).toEqual(['cancelPurge', 'commit', 'takeOver']);
    await m.apply({ state: 'BACKUP' }, 'fifo');
    expect(calls.slice(3)).toEqual(['resync', 'purge']);
    expect(m.role).toBe('backup');
    expect(m.last).toMatchObject({ state: 'BACKUP', result: 'ok' });
  });

  test('two transitions at once are applied one after the other, in arrival order', async () => {
    const calls: string[] = [];
    const m = new HaMachine(actions(calls, { commitMs: 30 }), log);
    const a = m.apply({ state: 'MASTER' }, 'notify');
    const b = m.apply({ state: 'BACKUP' }, 'notify');
    const [ra, rb] = await Promise.all([a, b]);
    expect(ra.result).toBe('ok');
    expect(rb.result).toBe('ok');
    expect(calls).toEqual(['cancelPurge', 'commit', 'takeOver', 'resync', 'purge']);
    expect(m.role).toBe('backup');
  });

  test('a notify script forked earlier but arriving later is superseded, not applied', async () => {
    const calls: string[] = [];
    const m = new HaMachine(actions(calls), log);
    await m.apply({ state: 'BACKUP' }, 'notify', 200);
    const late = await m.apply({ state: 'MASTER' }, 'notify', 150);
    expect(late.result).toBe('superseded');
    expect(m.role).toBe('backup');
    expect(calls).not.toContain('commit');
  });

  test('a failed commit is reported and retried by the next MASTER', async () => {
    const calls: string[] = [];
    const m = new HaMachine(actions(calls, { failCommit: 3 }), log);
    const r = await m.apply({ state: 'MASTER' }, 'cli');
    expect(r.result).toBe('failed');
    expect(r.error).toMatch(/3 entries failed/);
    await m.apply({ state: 'MASTER' }, 'cli');
    expect(calls.filter((c) => c === 'commit')).toHaveLength(2);
  });
});

describe('readiness', () => {
  const peer = (link: 'up' | 'down' | 'connecting', haveCopy: boolean, downForMs = 0) => [{ nodeId: 'fw2', link, haveCopy, downForMs }];
  test('not ready while a reachable peer has not sent its first complete copy', () => {
    expect(readiness(peer('up', true), 30000, false)).toEqual({ ready: true, reasons: [], stale: [] });
    expect(readiness(peer('up', false), 30000, false)).toEqual({ ready: false, reasons: ['initial bulk from fw2 not complete'], stale: [] });
  });
  test('an unreachable peer makes the copy stale but never takes the only candidate out of VRRP', () => {
    expect(readiness(peer('down', true, 5000), 30000, false)).toEqual({ ready: true, reasons: [], stale: [] });
    expect(readiness(peer('down', true, 45000), 30000, false)).toEqual({ ready: true, reasons: [], stale: ['link to fw2 down for 45 s'] });
    expect(readiness(peer('connecting', false, 1), 30000, false, 60000)).toEqual({ ready: true, reasons: [], stale: ['never synced with fw2'] });
  });
  test('a node that never synced waits for its peer during the startup grace', () => {
    const r = readiness(peer('connecting', false, 1), 30000, false, 5000);
    expect(r.ready).toBe(false);
    expect(r.reasons[0]).toMatch(/^waiting for fw2 \(never synced/);
  });
  test('a master is always ready: it holds the real state', () => {
    expect(readiness(peer('up', false), 30000, true).ready).toBe(true);
  });
  test('over redis it waits for the nodes of redis.peers, also those not listed in peers', () => {
    const cfg = { transport: 'redis' as const, peers: [{ id: 'fw2', addresses: ['10.0.0.2:3780'] }], redis: { peers: ['fw2', 'fw3'] } } as Pick<Config, 'transport' | 'peers' | 'redis'>;
    expect(syncPeerIds(cfg)).toEqual(['fw2', 'fw3']);
    expect(syncPeerIds({ ...cfg, redis: { ...cfg.redis, peers: [] } })).toEqual(['fw2']);
    expect(syncPeerIds({ ...cfg, transport: 'tcp' })).toEqual(['fw2']);
    // fw2's snapshot is loaded; fw3 is up but its snapshot is not, and fw4 (not ours) is ignored
    const status = [
      { nodeId: 'fw2', link: 'up', haveCopy: true, since: 1000 },
      { nodeId: 'fw3', link: 'up', haveCopy: false, since: 1000 },
      { nodeId: 'fw4', link: 'up', haveCopy: false, since: 1000 },
    ] as PeerStatus[];
    const peers = peerReadiness(status, syncPeerIds(cfg), 0, 5000);
    expect(peers.map((p) => p.nodeId)).toEqual(['fw2', 'fw3']);
    expect(readiness(peers, 30000, false, 5000)).toEqual({ ready: false, reasons: ['initial bulk from fw3 not complete'], stale: [] });
    // a node the engine has not heard of yet counts as connecting since our start: waited for during the grace
    const r = readiness(peerReadiness(status.slice(0, 1), syncPeerIds(cfg), 0, 5000), 30000, false, 5000);
    expect(r.ready).toBe(false);
    expect(r.reasons[0]).toMatch(/^waiting for fw3 \(never synced/);
    expect(peerReadiness([], ['fw3'], 1000, 5000)).toEqual([{ nodeId: 'fw3', link: 'connecting', haveCopy: false, downForMs: 4000 }]);
  });
});
