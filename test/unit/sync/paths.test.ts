// transport both: which path's copy of a peer counts, and the merged view of the peer that stats and readiness see.
import { describe, expect, test } from 'vitest';
import { SyncPaths } from '../../../src/sync/paths.js';
import type { PeerStatus, SyncEngine } from '../../../src/sync/engine.js';
import { PeerTable } from '../../../src/state/peer-table.js';
import { systemClock } from '../../../src/state/clock.js';

/** An engine stub: what SyncPaths reads (status, peerTables) and records what it forwards. */
function stub(peers: Record<string, Partial<PeerStatus>>) {
  const tables = new Map(Object.keys(peers).map((id) => [id, new PeerTable({ clock: systemClock })]));
  const calls: string[] = [];
  const engine = {
    status: () =>
      Object.entries(peers).map(([nodeId, s]) => ({
        nodeId, state: 'in_sync', since: 0, link: 'up', unackedFrames: 0, oldestUnackedMs: 0, peerTableSize: 0, peerInSync: true, haveCopy: true, lastFrameAgoMs: 10, lastDataAgoMs: 10, divergentBuckets: 0, ...s,
      }) as PeerStatus),
    peerTables: () => tables,
    changed: (k: string) => calls.push(`changed ${k}`),
    requestResync: () => calls.push('resync'),
    flush: () => calls.push('flush'),
    bulk: async () => void calls.push('bulk'),
    sendRefreshes: (items: unknown[]) => calls.push(`refresh ${items.length}`),
  };
  return { engine: engine as unknown as SyncEngine, peers, tables, calls };
}

describe('sync paths', () => {
  test('level paths (within tieMs): the first one listed counts', () => {
    const tcp = stub({ fw2: { lastFrameAgoMs: 150 } });
    const redis = stub({ fw2: { lastFrameAgoMs: 20 } });
    const p = new SyncPaths([{ name: 'tcp', engine: tcp.engine }, { name: 'redis', engine: redis.engine }], 200);
    expect(p.status()[0]!.via).toBe('tcp');
    expect(p.peerTables().get('fw2')).toBe(tcp.tables.get('fw2'));
  });

  test('the path that heard from the peer more than tieMs later counts, and a switch is reported once', () => {
    const tcp = stub({ fw2: { lastFrameAgoMs: 50 } });
    const redis = stub({ fw2: { lastFrameAgoMs: 40 } });
    const p = new SyncPaths([{ name: 'tcp', engine: tcp.engine }, { name: 'redis', engine: redis.engine }], 200);
    const switches: [string, PeerTable | undefined, PeerTable][] = [];
    p.onSwitch = (id, from, to) => switches.push([id, from, to]);
    expect(p.status()[0]!.via).toBe('tcp');
    tcp.peers.fw2 = { lastFrameAgoMs: 5000, link: 'down', since: 100 };
    const s = p.status()[0]!;
    expect(s.via).toBe('redis');
    expect(s.link).toBe('up'); // up on some path
    expect(s.paths?.tcp?.link).toBe('down');
    expect(p.peerTables().get('fw2')).toBe(redis.tables.get('fw2'));
    expect(switches).toEqual([['fw2', tcp.tables.get('fw2'), redis.tables.get('fw2')]]);
  });

  test('a complete copy beats a fresher incomplete one; the merged copy is complete if any path has one', () => {
    const tcp = stub({ fw2: { lastFrameAgoMs: 9000, haveCopy: true } });
    const redis = stub({ fw2: { lastFrameAgoMs: 1, haveCopy: false, peerInSync: false } });
    const p = new SyncPaths([{ name: 'tcp', engine: tcp.engine }, { name: 'redis', engine: redis.engine }], 200);
    expect(p.status()[0]).toMatchObject({ via: 'tcp', haveCopy: true });
    tcp.peers.fw2 = { haveCopy: false, peerInSync: false, lastFrameAgoMs: 9000 };
    redis.peers.fw2 = { haveCopy: false, peerInSync: false, lastFrameAgoMs: 1 };
    expect(p.status()[0]).toMatchObject({ via: 'redis', haveCopy: false, peerInSync: false });
  });

  test('down on every path: down since the last path went down; a peer only one path knows is still listed', () => {
    const tcp = stub({ fw2: { link: 'down', since: 100, lastFrameAgoMs: 900 }, fw3: { link: 'connecting', lastFrameAgoMs: -1, haveCopy: false } });
    const redis = stub({ fw2: { link: 'down', since: 700, lastFrameAgoMs: 300 } });
    const p = new SyncPaths([{ name: 'tcp', engine: tcp.engine }, { name: 'redis', engine: redis.engine }], 200);
    const [fw2, fw3] = p.status();
    expect(fw2).toMatchObject({ nodeId: 'fw2', link: 'down', since: 700, via: 'redis' });
    expect(fw3).toMatchObject({ nodeId: 'fw3', link: 'connecting', via: 'tcp' });
    expect(Object.keys(fw3!.paths!)).toEqual(['tcp']);
  });

  test('one path: no per-path detail; every change, resync, flush, bulk and refresh reaches every path', async () => {
    const only = stub({ fw2: {} });
    expect(new SyncPaths([{ name: 'tcp', engine: only.engine }], 200).status()[0]!.paths).toBeUndefined();
    const a = stub({});
    const b = stub({});
    const p = new SyncPaths([{ name: 'tcp', engine: a.engine }, { name: 'redis', engine: b.engine }], 200);
    p.changed('k1');
    p.requestResync();
    p.flush();
    await p.bulk();
    p.sendRefreshes([{ key: 'k1', timeout: 5 }]);
    expect(a.calls).toEqual(['changed k1', 'resync', 'flush', 'bulk', 'refresh 1']);
    expect(b.calls).toEqual(a.calls);
    expect(() => new SyncPaths([], 200)).toThrow();
  });
});
