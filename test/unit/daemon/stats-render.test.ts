// What an operator reads: `ctsync stats` text and the metrics, both from one stats document; here with
// transport both, where each peer has two paths and one of them counts.
import { describe, expect, test } from 'vitest';
import { renderStats } from '../../../src/cli/control.js';
import { collectMetrics } from '../../../src/daemon/metrics-daemon.js';
import type { DaemonStats } from '../../../src/daemon/stats.js';
import type { PeerStatus } from '../../../src/sync/engine.js';

const path = (s: Partial<PeerStatus>): PeerStatus => ({
  nodeId: 'fw1', state: 'in_sync', since: 0, why: 'resumed 12 entries after seq 40', link: 'up', unackedFrames: 0, oldestUnackedMs: 0, peerTableSize: 220, peerInSync: true, haveCopy: true, lastFrameAgoMs: 40, lastDataAgoMs: 40, divergentBuckets: 0, ...s,
});

function doc(): DaemonStats {
  const tcp = path({ link: 'down', state: 'down', peerTableSize: 150, lastFrameAgoMs: 12_500 });
  const redis = path({});
  return {
    node: 'fw2', cluster: 'c', uptimeS: 60, monotonicMs: 1000, inSync: true,
    kernel: { entries: 0, events: { new: 0, update: 0, destroy: 0, ours: 0 }, overruns: 0, resyncs: 1, lastResyncAgoS: 50, malformed: 0, reads: { wakeups: 0, handoffs: 0, datagrams: 0, quiets: 0 } },
    peers: [{ ...redis, via: 'redis', paths: { tcp, redis }, configured: true }],
    sync: { framesOut: 0, framesIn: 0, entriesOut: 0, entriesIn: 0, deletesOut: 0, refreshesOut: 0, bulks: 0, resumes: 0, digests: 0, divergentBuckets: 0, lastSeq: 0, pending: 0, heldMs: 0, holds: 0 },
    drops: {}, control: { requests: 1, bad: 0 },
    ha: { role: 'backup', ready: true, notReady: [], stale: [], trackFile: '/t', lastTransition: null },
    transport: { kind: 'tcp+redis', redis: { status: 'ready', queuedFrames: 0, needsResync: false, outages: 0, resyncsRequested: 1 } },
  };
}

describe('stats with two paths', () => {
  test('the text names the path that counts and shows each path\'s link and copy', () => {
    const text = renderStats(doc());
    expect(text).toMatch(/its flows held here: 220 \(complete, from redis\)/);
    expect(text).toMatch(/via tcp {4}link down, down; 150 flows \(complete\), last frame 12\.5 s ago/);
    expect(text).toMatch(/via redis {2}link up, in sync; 220 flows \(complete\), last frame 40 ms ago/);
  });

  test('a Redis that refuses the connection set-up says what it refused', () => {
    expect(renderStats(doc())).toMatch(/\n {2}redis {4}ready; 0 frames buffered/);
    const refused = doc();
    refused.transport.redis = { ...refused.transport.redis, status: 'connecting', refusal: 'SELECT 5: ERR DB index is out of range' };
    expect(renderStats(refused)).toMatch(/\n {2}redis {4}connecting \(refused: SELECT 5: ERR DB index is out of range\); 0 frames buffered/);
  });

  test('changes held for a congested link show as the peer being behind, in the text and the metrics', () => {
    expect(renderStats(doc())).toMatch(/link up, in sync \(resumed 12 entries after seq 40\); our changes: caught up/);
    const held = doc();
    Object.assign(held.sync, { pending: 1500, heldMs: 800, holds: 2 });
    held.peers[0]!.unackedFrames = 3;
    held.peers[0]!.oldestUnackedMs = 950;
    expect(renderStats(held)).toMatch(/our changes: behind by 3 frames \(oldest 950 ms\), 1500 changes held 800 ms for a congested link/);
    const m = new Map(collectMetrics(held).map((x) => [x.name, x.samples]));
    expect(m.get('ctsync_sync_pending_changes')).toEqual([[{}, 1500]]);
    expect(m.get('ctsync_sync_held_seconds')).toEqual([[{}, 0.8]]);
    expect(m.get('ctsync_sync_holds_total')).toEqual([[{}, 2]]);
  });

  test('the metrics carry one sample per peer and path, and mark the chosen one', () => {
    const m = new Map(collectMetrics(doc()).map((x) => [x.name, x.samples]));
    expect(m.get('ctsync_path_link_up')).toEqual([[{ peer: 'fw1', path: 'tcp' }, 0], [{ peer: 'fw1', path: 'redis' }, 1]]);
    expect(m.get('ctsync_path_chosen')).toEqual([[{ peer: 'fw1', path: 'tcp' }, 0], [{ peer: 'fw1', path: 'redis' }, 1]]);
    expect(m.get('ctsync_path_last_frame_seconds')).toEqual([[{ peer: 'fw1', path: 'tcp' }, 12.5], [{ peer: 'fw1', path: 'redis' }, 0.04]]);
    expect(m.get('ctsync_peer_last_data_seconds')).toEqual([[{ peer: 'fw1' }, 0.04]]);
    const never = doc();
    never.peers[0]!.lastDataAgoMs = -1;
    expect(new Map(collectMetrics(never).map((x) => [x.name, x.samples])).get('ctsync_peer_last_data_seconds')).toEqual([[{ peer: 'fw1' }, -1]]);
    const one = doc();
    delete one.peers[0]!.paths;
    expect(collectMetrics(one).some((x) => x.name.startsWith('ctsync_path_'))).toBe(false);
  });
});
