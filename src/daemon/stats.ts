// The daemon's state as one JSON document: what `ctsync stats` shows and metrics are derived from.
import type { Daemon } from './daemon.js';
import type { MergedPeerStatus } from '../sync/paths.js';
import { monotonicMs as hostMonotonicMs, systemClock } from '../state/clock.js';

import type { WarmStats } from '../state/warm.js';

export interface DaemonStats {
  node: string;
  cluster: string;
  uptimeS: number;
  /**
   * CLOCK_MONOTONIC in ms when this answer was built: a tool on the same host subtracts an *AgoMs figure from it to
   * place that moment on its own monotonic clock (process.hrtime), untouched by the answer's own delay.
   */
  monotonicMs: number;
  /** Every configured peer's link is up and both directions are in sync. */
  inSync: boolean;
  /**
   * reads: how the event socket's datagrams reached the JS thread: wakeups are the bursts the reader thread found
   * (reads of an empty socket that found data), handoffs the pieces it handed over (datagrams / handoffs = events
   * per handoff, large while JS is behind), and quiets the times events stopped for sync.quiet, each of which sent the
   * pending batch at once.
   */
  kernel: { entries: number; events: Record<string, number>; overruns: number; resyncs: number; lastResyncAgoS: number | null; malformed: number; reads: { wakeups: number; handoffs: number; datagrams: number; quiets: number } };
  /** One per peer, over every path (`transport: both`: `via` names the path a commit takes it from, `paths` each one's view). */
  peers: (MergedPeerStatus & { configured: boolean })[];
  sync: { framesOut: number; framesIn: number; entriesOut: number; entriesIn: number; deletesOut: number; refreshesOut: number; bulks: number; resumes: number; digests: number; divergentBuckets: number; lastSeq: number;
    /** Changes not sent yet; heldMs: how long they have waited for a congested link to drain (0: not held); holds: how often that began. */
    pending: number; heldMs: number; holds: number };
  drops: Record<string, number>;
  control: { requests: number; bad: number };
  ha: { role: string; ready: boolean; notReady: string[]; stale: string[]; trackFile: string; lastTransition: unknown; warm?: WarmStats };
  /** The peer transport: its kind (`tcp+redis` for both), and for Redis its own state (status, outage buffer, resyncs, gaps). */
  transport: { kind: string; redis?: Record<string, unknown> };
}

export function buildStats(d: Daemon): DaemonStats {
  const ev = d.mirror.events.stats;
  const rs = d.mirror.events.sock.stats;
  const ms = d.mirror.stats;
  const engines = d.sync.paths.map((p) => p.engine);
  const pending = engines.map((e) => e.pending());
  const sum = (f: (c: (typeof engines)[number]['counters']) => number) => engines.reduce((n, e) => n + f(e.counters), 0);
  const configured = new Set(d.cfg.peers.map((p) => p.id));
  const status = d.sync.status();
  for (const id of configured) if (!status.some((s) => s.nodeId === id)) status.push({ nodeId: id, state: 'connecting', since: d.startedAt, why: 'not linked yet', link: 'connecting', unackedFrames: 0, oldestUnackedMs: 0, peerTableSize: 0, peerInSync: false, haveCopy: false, lastFrameAgoMs: -1, lastDataAgoMs: -1, divergentBuckets: 0, via: d.sync.paths[0]!.name });
  const monotonicMs = hostMonotonicMs();
  // lastDataAgoMs keeps µs: with monotonicMs it tells a bench when the last change landed, to well under a ms
  const peers = status.map((p) => ({ ...p, oldestUnackedMs: Math.round(p.oldestUnackedMs), lastFrameAgoMs: Math.round(p.lastFrameAgoMs), lastDataAgoMs: Math.round(p.lastDataAgoMs * 1000) / 1000, configured: configured.has(p.nodeId) }));
  const ts = d.transports.map((t) => t.stats());
  const drops: Record<string, number> = {};
  const add = (src: Record<string, number>, prefix = '') => {
    for (const [k, v] of Object.entries(src)) if (v) drops[prefix + k] = (drops[prefix + k] ?? 0) + v;
  };
  for (const e of engines) add(e.counters.dropped);
  for (const t of ts) {
    add(t.dropped, 'link_');
    add(t.refused, 'refused_');
    for (const p of t.peers) add(p.refused, 'refused_');
  }
  const redis = ts.find((t) => 'redis' in t) as { redis: Record<string, unknown> } | undefined;
  if (ev.malformed) drops.kernel_malformed = ev.malformed;
  return {
    node: d.cfg.nodeId,
    cluster: d.cfg.clusterId,
    uptimeS: Math.round((Date.now() - d.startedAt) / 1000),
    monotonicMs,
    inSync: peers.filter((p) => p.configured).every((p) => p.link === 'up' && p.state === 'in_sync' && p.peerInSync),
    kernel: {
      entries: d.mirror.local.size,
      events: { new: ev.new, update: ev.update, destroy: ev.destroy, ours: ev.ours },
      overruns: ev.overruns,
      resyncs: ms.resyncs,
      lastResyncAgoS: ms.lastResyncAt ? Math.round((systemClock.now() - ms.lastResyncAt) / 1000) : null,
      malformed: ev.malformed,
      reads: { wakeups: rs.wakeups, handoffs: rs.batches, datagrams: rs.datagrams, quiets: rs.quiets },
    },
    peers,
    // summed over the paths (with transport both, every change is counted once per path)
    sync: {
      framesOut: sum((c) => c.framesOut), framesIn: sum((c) => c.framesIn), entriesOut: sum((c) => c.entriesOut), entriesIn: sum((c) => c.entriesIn),
      deletesOut: sum((c) => c.deletesOut), refreshesOut: sum((c) => c.refreshesOut), bulks: sum((c) => c.bulks), resumes: sum((c) => c.resumes),
      digests: sum((c) => c.digests), divergentBuckets: sum((c) => c.divergentBuckets), lastSeq: d.sync.primary.lastSeq,
      pending: pending.reduce((n, p) => n + p.changes, 0), heldMs: Math.round(Math.max(...pending.map((p) => p.heldMs))),
      holds: sum((c) => c.holds),
    },
    drops,
    control: { ...d.control.stats },
    transport: { kind: ts.map((t) => t.kind).join('+'), ...(redis ? { redis: redis.redis } : {}) },
    ha: { role: d.ha.role, ready: d.notReady.length === 0, notReady: d.notReady, stale: d.stale, trackFile: d.cfg.ha.trackFile, lastTransition: d.ha.last ?? null, ...(d.warm ? { warm: d.warm.stats() } : {}) },
  };
}
