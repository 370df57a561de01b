// The daemon's state as one JSON document: what `ctsync stats` shows and metrics are derived from.
import type { Daemon } from './daemon.js';
import type { PeerStatus } from '../sync/engine.js';
import { systemClock } from '../state/clock.js';

import type { WarmStats } from '../state/warm.js';

export interface DaemonStats {
  node: string;
  cluster: string;
  uptimeS: number;
  /** Every configured peer's link is up and both directions are in sync. */
  inSync: boolean;
  kernel: { entries: number; events: Record<string, number>; overruns: number; resyncs: number; lastResyncAgoS: number | null; malformed: number };
  peers: (PeerStatus & { configured: boolean })[];
  sync: { framesOut: number; framesIn: number; entriesOut: number; entriesIn: number; deletesOut: number; refreshesOut: number; bulks: number; resumes: number; digests: number; divergentBuckets: number; lastSeq: number };
  drops: Record<string, number>;
  control: { requests: number; bad: number };
  ha: { role: string; ready: boolean; notReady: string[]; stale: string[]; trackFile: string; lastTransition: unknown; warm?: WarmStats };
  /** The peer transport: its kind, and for Redis its own state (status, outage buffer, resyncs, gaps). */
  transport: { kind: string; redis?: Record<string, unknown> };
}

export function buildStats(d: Daemon): DaemonStats {
  const ev = d.mirror.events.stats;
  const ms = d.mirror.stats;
  const sc = d.engine.counters;
  const configured = new Set(d.cfg.peers.map((p) => p.id));
  const status = d.engine.status();
  for (const id of configured) if (!status.some((s) => s.nodeId === id)) status.push({ nodeId: id, state: 'connecting', since: d.startedAt, link: 'connecting', unackedFrames: 0, oldestUnackedMs: 0, peerTableSize: 0, peerInSync: false, haveCopy: false, lastFrameAgoMs: -1, divergentBuckets: 0 });
  const peers = status.map((p) => ({ ...p, oldestUnackedMs: Math.round(p.oldestUnackedMs), lastFrameAgoMs: Math.round(p.lastFrameAgoMs), configured: configured.has(p.nodeId) }));
  const t = d.transport.stats();
  const drops: Record<string, number> = {};
  const add = (src: Record<string, number>, prefix = '') => {
    for (const [k, v] of Object.entries(src)) if (v) drops[prefix + k] = (drops[prefix + k] ?? 0) + v;
  };
  add(sc.dropped);
  add(t.dropped, 'link_');
  add(t.refused, 'refused_');
  for (const p of t.peers) add(p.refused, 'refused_');
  if (ev.malformed) drops.kernel_malformed = ev.malformed;
  return {
    node: d.cfg.nodeId,
    cluster: d.cfg.clusterId,
    uptimeS: Math.round((Date.now() - d.startedAt) / 1000),
    inSync: peers.filter((p) => p.configured).every((p) => p.link === 'up' && p.state === 'in_sync' && p.peerInSync),
    kernel: {
      entries: d.mirror.local.size,
      events: { new: ev.new, update: ev.update, destroy: ev.destroy, ours: ev.ours },
      overruns: ev.overruns,
      resyncs: ms.resyncs,
      lastResyncAgoS: ms.lastResyncAt ? Math.round((systemClock.now() - ms.lastResyncAt) / 1000) : null,
      malformed: ev.malformed,
    },
    peers,
    sync: { framesOut: sc.framesOut, framesIn: sc.framesIn, entriesOut: sc.entriesOut, entriesIn: sc.entriesIn, deletesOut: sc.deletesOut, refreshesOut: sc.refreshesOut, bulks: sc.bulks, resumes: sc.resumes, digests: sc.digests, divergentBuckets: sc.divergentBuckets, lastSeq: d.engine.lastSeq },
    drops,
    control: { ...d.control.stats },
    transport: { kind: t.kind, ...('redis' in t ? { redis: (t as { redis: Record<string, unknown> }).redis } : {}) },
    ha: { role: d.ha.role, ready: d.notReady.length === 0, notReady: d.notReady, stale: d.stale, trackFile: d.cfg.ha.trackFile, lastTransition: d.ha.last ?? null, ...(d.warm ? { warm: d.warm.stats() } : {}) },
  };
}
