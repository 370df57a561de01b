// Prometheus metrics derived from the daemon's stats document (one source of truth for stats and metrics).
import type { Metric } from './metrics.js';
import type { DaemonStats } from './stats.js';

export function collectMetrics(s: DaemonStats): Metric[] {
  const g = (name: string, help: string, samples: Metric['samples'], type: Metric['type'] = 'gauge'): Metric => ({ name: `ctsync_${name}`, help, type, samples });
  const peer = (fn: (p: DaemonStats['peers'][number]) => number) => s.peers.map((p) => [{ peer: p.nodeId }, fn(p)] as [Record<string, string>, number]);
  return [
    g('in_sync', '1 when every configured peer link is up and both directions are in sync', [[{}, s.inSync ? 1 : 0]]),
    g('local_entries', 'Flows in the local table (the synced subset of this kernel table)', [[{}, s.kernel.entries]]),
    g('peer_entries', 'Flows held for each peer', peer((p) => p.peerTableSize)),
    g('peer_link_up', '1 while the link to the peer is up', peer((p) => (p.link === 'up' ? 1 : 0))),
    g('peer_unacked_frames', 'Frames sent to the peer and not yet acknowledged: how far behind it is', peer((p) => p.unackedFrames)),
    g('peer_lag_seconds', 'Age of the oldest frame the peer has not acknowledged', peer((p) => p.oldestUnackedMs / 1000)),
    g('peer_last_data_seconds', 'Time since a frame that changes the peer\'s table here (upsert, delete, refresh, bulk, repair) was applied, -1 if never', peer((p) => (p.lastDataAgoMs < 0 ? -1 : p.lastDataAgoMs / 1000))),
    // transport both: each path's own link and how long since it heard from the peer
    ...(s.peers.some((p) => p.paths)
      ? [
          g('path_link_up', '1 while this path to the peer is up (transport: both)', s.peers.flatMap((p) => Object.entries(p.paths ?? {}).map(([path, v]) => [{ peer: p.nodeId, path }, v.link === 'up' ? 1 : 0] as [Record<string, string>, number]))),
          g('path_last_frame_seconds', 'Time since this path last carried a frame from the peer, -1 if never (transport: both)', s.peers.flatMap((p) => Object.entries(p.paths ?? {}).map(([path, v]) => [{ peer: p.nodeId, path }, v.lastFrameAgoMs < 0 ? -1 : v.lastFrameAgoMs / 1000] as [Record<string, string>, number]))),
          g('path_chosen', '1 for the path a commit takes the peer\'s flows from (transport: both)', s.peers.flatMap((p) => Object.keys(p.paths ?? {}).map((path) => [{ peer: p.nodeId, path }, path === p.via ? 1 : 0] as [Record<string, string>, number]))),
        ]
      : []),
    g('peer_divergent_buckets', 'Digest buckets that differed at the last anti-entropy check', peer((p) => p.divergentBuckets)),
    g('kernel_events_total', 'Conntrack events received', Object.entries(s.kernel.events).map(([k, v]) => [{ kind: k }, v]), 'counter'),
    g('kernel_overruns_total', 'Event socket overruns (lost events, each repaired by a dump)', [[{}, s.kernel.overruns]], 'counter'),
    g('kernel_resyncs_total', 'Dump-and-diff resyncs of the local table', [[{}, s.kernel.resyncs]], 'counter'),
    g('sync_pending_changes', 'Local changes not sent yet: coalescing, or held while the link is congested', [[{}, s.sync.pending]]),
    g('sync_held_seconds', 'How long changes have waited for a congested link to drain, 0 when none wait', [[{}, s.sync.heldMs / 1000]]),
    g('sync_holds_total', 'Times changes began waiting for a congested link', [[{}, s.sync.holds]], 'counter'),
    g('sync_entries_sent_total', 'Flow entries sent to peers', [[{}, s.sync.entriesOut]], 'counter'),
    g('sync_entries_received_total', 'Flow entries received from peers', [[{}, s.sync.entriesIn]], 'counter'),
    g('sync_bulks_total', 'Full bulk transfers sent', [[{}, s.sync.bulks]], 'counter'),
    g('sync_divergent_buckets_total', 'Digest buckets found different and repaired', [[{}, s.sync.divergentBuckets]], 'counter'),
    ...(s.transport.redis
      ? [
          g('redis_up', '1 while Redis answers (transport: redis or both)', [[{}, s.transport.redis.status === 'ready' ? 1 : 0]]),
          g('redis_buffered_frames', 'Frames waiting for Redis during an outage', [[{}, Number(s.transport.redis.queuedFrames ?? 0)]]),
          g('redis_outages_total', 'Redis outages seen', [[{}, Number(s.transport.redis.outages ?? 0)]], 'counter'),
        ]
      : []),
    ...(s.ha.warm
      ? [
          g('warm_held_entries', 'Peer flows a warm standby holds in this kernel (commit.warm)', [[{}, s.ha.warm.held]]),
          g('warm_pending_entries', 'Peer changes a warm standby has not written yet: the size of a takeover now', [[{}, s.ha.warm.pending]]),
        ]
      : []),
    g('drops_total', 'Frames, connections or messages dropped, by reason', Object.entries(s.drops).map(([k, v]) => [{ reason: k }, v]), 'counter'),
  ];
}
