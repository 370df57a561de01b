import { describe, expect, it } from 'vitest';
import type { FlowEvent } from '../../../src/kernel/types.js';
import { FakeClock } from '../../../src/state/clock.js';
import { flowKey } from '../../../src/state/key.js';
import { LocalTable } from '../../../src/state/local-table.js';
import { PeerTable } from '../../../src/state/peer-table.js';
import { diffDigests } from '../../../src/state/table.js';
import { natUdpFlow, tcpFlow, withTcp } from './flows.js';

function peer(opts: { ttl?: number; max?: number } = {}): { p: PeerTable; clock: FakeClock } {
  const clock = new FakeClock(0);
  const p = new PeerTable({ clock, tombstoneTtlMs: opts.ttl, maxTombstones: opts.max });
  return { p, clock };
}

describe('PeerTable ageing', () => {
  it('expires entries by their last known remaining timeout only while the link is down', () => {
    const { p, clock } = peer();
    p.upsert(tcpFlow(1, { timeout: 30 }), 1, 1);
    p.upsert(tcpFlow(2, { timeout: 100 }), 2, 2);
    p.upsert(tcpFlow(3, { timeout: undefined }), 3, 3);
    clock.advance(20_000);
    p.refresh(flowKey(tcpFlow(2)), 40); // re-read at 20 s: 40 s left → dies at 60 s
    clock.advance(40_000); // t = 60 s
    expect(p.expire()).toBe(0); // link up: the peer decides
    expect(p.size).toBe(3);
    expect(p.counters.expireSkippedLinkUp).toBe(1);
    p.setLinkUp(false);
    expect(p.remainingTimeout(flowKey(tcpFlow(1)))).toBe(0);
    expect(p.expire()).toBe(2);
    expect(p.has(flowKey(tcpFlow(3)))).toBe(true); // no known timeout: kept
    expect(p.counters.expired).toBe(2);
  });

  it('gives the remaining lifetime for a commit', () => {
    const { p, clock } = peer();
    const key = flowKey(natUdpFlow(1));
    p.upsert(natUdpFlow(1), 1, 1); // timeout 120
    clock.advance(45_500);
    expect(p.remainingTimeout(key)).toBe(75);
    expect(p.get(key, clock.now())!.timeout).toBe(75);
    expect(p.remainingTimeout('nope')).toBeUndefined();
  });

  it('applies a duplicate re-send as a timeout refresh only', () => {
    const { p, clock } = peer();
    p.upsert(tcpFlow(1, { timeout: 10 }), 5, 5);
    clock.advance(8000);
    expect(p.upsert(tcpFlow(1, { timeout: 50 }), 5, 5)).toBe('duplicate');
    expect(p.remainingTimeout(flowKey(tcpFlow(1)))).toBe(50);
    expect(p.refresh(flowKey(tcpFlow(9)), 5)).toBe(false);
    expect(p.refresh(flowKey(tcpFlow(1)), 5, 4)).toBe(false);
    expect(p.counters.refreshUnknown + p.counters.refreshStale).toBe(2);
  });
});

describe('PeerTable deletion authority', () => {
  it('refuses a late upsert after a delete until the tombstone expires', () => {
    const { p, clock } = peer({ ttl: 10_000 });
    const f = tcpFlow(1);
    const key = flowKey(f);
    p.upsert(f, 1, 1);
    expect(p.delete(key, 2)).toBe('deleted');
    expect(p.upsert(f, 1, 1)).toBe('tombstoned'); // in flight before the delete
    expect(p.has(key)).toBe(false);
    expect(p.counters.tombstoned).toBe(1);
    clock.advance(10_000);
    expect(p.expireTombstones()).toBe(1);
    expect(p.tombstoneCount).toBe(0);
    // A new connection on the tuple is always accepted.
    expect(p.upsert(f, 3, 3)).toBe('added');
  });

  it('records a delete for an unknown key, and ignores a delete of an older incarnation', () => {
    const { p } = peer();
    const key = flowKey(tcpFlow(1));
    expect(p.delete(key, 4)).toBe('unknown');
    expect(p.upsert(tcpFlow(1), 3, 3)).toBe('tombstoned');
    expect(p.upsert(tcpFlow(1), 6, 6)).toBe('added');
    expect(p.isTombstoned(key)).toBe(false);
    expect(p.delete(key, 5)).toBe('stale');
    expect(p.has(key)).toBe(true);
  });

  it('bounds the number of tombstones, dropping the oldest', () => {
    const { p } = peer({ max: 100 });
    for (let i = 0; i < 250; i++) p.delete(flowKey(tcpFlow(i)), i + 1);
    expect(p.tombstoneCount).toBe(100);
    expect(p.counters.tombstonesEvicted).toBe(150);
    expect(p.isTombstoned(flowKey(tcpFlow(249)))).toBe(true);
    expect(p.isTombstoned(flowKey(tcpFlow(0)))).toBe(false);
  });

  it('drops what a full bulk did not list', () => {
    const { p } = peer();
    for (let i = 0; i < 10; i++) p.upsert(tcpFlow(i), i + 1, i + 1);
    p.beginBulk();
    for (let i = 0; i < 6; i++) p.upsert(tcpFlow(i), i + 1, i + 1); // duplicates: still listed
    p.upsert(tcpFlow(6), 100, 7);
    expect(p.endBulk()).toBe(3);
    expect(p.size).toBe(7);
    expect(p.counters.bulkSwept).toBe(3);
  });
});

describe('local table → peer table', () => {
  it('yields equal digests once everything is delivered, and finds a lost update', () => {
    const clock = new FakeClock(0);
    const local = new LocalTable({ clock });
    const p = new PeerTable({ clock });
    const send = (ev: FlowEvent) => {
      const r = local.applyEvent(ev);
      if (r.change === 'removed') p.delete(r.key, r.version);
      else if (r.change === 'added' || r.change === 'replaced' || r.change === 'changed') {
        const m = local.meta(r.key)!;
        p.upsert(local.get(r.key)!, m.version, m.born, r.key);
      }
    };
    for (let i = 0; i < 300; i++) send({ kind: 'new', flow: i % 3 ? tcpFlow(i) : natUdpFlow(i), origin: 'kernel', portId: 0 });
    for (let i = 0; i < 300; i += 7) send({ kind: 'destroy', flow: tcpFlow(i), origin: 'kernel', portId: 0 });
    for (let i = 1; i < 300; i += 11) send({ kind: 'update', flow: withTcp(tcpFlow(i, { timeout: 99 }), 5), origin: 'kernel', portId: 0 });
    expect(p.size).toBe(local.size);
    expect(diffDigests(local.digest(256), p.digest(256))).toEqual([]);

    // One update never reaches the peer: exactly its bucket differs.
    local.applyEvent({ kind: 'update', flow: tcpFlow(2, { mark: 77 }), origin: 'kernel', portId: 0 });
    const diff = diffDigests(local.digest(256), p.digest(256));
    expect(diff.length).toBe(1);
    const repair: string[] = [];
    local.table.forEachInBuckets(diff, 256, (k) => repair.push(k));
    expect(repair).toContain(flowKey(tcpFlow(2)));
  });
});
