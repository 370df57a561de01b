// `transport: both`: one sync engine per path (the direct peer link, Redis Streams), all fed by the same local table.
// Each engine keeps its own session, sequence numbers and copy of every peer's table, so a fault on one path never
// mixes into the other. What a peer sent is taken from one path per peer: the one holding a complete copy that
// heard from that peer last; paths within `tieMs` of each other count as level, and the first path listed (the
// direct link, the lower-latency one) wins. With one transport this is a thin pass-through.
import type { PeerTable } from '../state/peer-table.js';
import type { PeerStatus, SyncEngine } from './engine.js';

export interface SyncPath {
  /** `tcp`, `redis`, … as in the config and in stats. */
  name: string;
  engine: SyncEngine;
}

/** A peer as every path sees it, merged, plus which path a commit would take its flows from. */
export interface MergedPeerStatus extends PeerStatus {
  /** The path whose copy of this peer's table counts (commit, dump --peer, warm standby). */
  via: string;
  /** Each path's own view, when there is more than one path. */
  paths?: Record<string, PeerStatus>;
}

export class SyncPaths {
  /** A peer's copy now comes from another path (its previous and new tables are both passed). */
  onSwitch: (nodeId: string, from: PeerTable | undefined, to: PeerTable) => void = () => {};
  private readonly chosen = new Map<string, string>();

  constructor(
    readonly paths: readonly SyncPath[],
    private readonly tieMs: number,
  ) {
    if (!paths.length) throw new Error('SyncPaths needs at least one path');
  }

  get primary(): SyncEngine {
    return this.paths[0]!.engine;
  }

  start(): void {
    for (const p of this.paths) p.engine.start();
  }

  stop(): void {
    for (const p of this.paths) {
      p.engine.flush();
      p.engine.stop();
    }
  }

  changed(key: string, reborn = false, slot = -1): void {
    for (const p of this.paths) p.engine.changed(key, reborn, slot);
  }

  flush(): void {
    for (const p of this.paths) p.engine.flush();
  }

  async bulk(): Promise<void> {
    await Promise.all(this.paths.map((p) => p.engine.bulk()));
  }

  requestResync(): void {
    for (const p of this.paths) p.engine.requestResync();
  }

  sendRefreshes(items: { key: string; timeout: number }[]): void {
    for (const p of this.paths) p.engine.sendRefreshes(items);
  }

  /** Every table of every path (flush peer clears them all). */
  allPeerTables(): PeerTable[] {
    return this.paths.flatMap((p) => [...p.engine.peerTables().values()]);
  }

  /** Per peer, the table of the path chosen for it. Reports a change of path through onSwitch. */
  peerTables(): Map<string, PeerTable> {
    const out = new Map<string, PeerTable>();
    for (const s of this.status()) {
      const table = this.engineOf(s.via).peerTables().get(s.nodeId);
      if (table) out.set(s.nodeId, table);
    }
    return out;
  }

  /** One status per peer: the chosen path's, with the link up and the copy complete if any path has them. */
  status(): MergedPeerStatus[] {
    const perPath = this.paths.map((p) => ({ name: p.name, status: p.engine.status() }));
    const ids = new Set(perPath.flatMap((p) => p.status.map((s) => s.nodeId)));
    const out: MergedPeerStatus[] = [];
    for (const id of ids) {
      const views = perPath.flatMap((p) => p.status.filter((s) => s.nodeId === id).map((s) => ({ name: p.name, s })));
      const best = views.reduce((a, b) => (this.better(b.s, a.s) ? b : a));
      const up = views.some((v) => v.s.link === 'up');
      const merged: MergedPeerStatus = {
        ...best.s,
        link: up ? 'up' : views.some((v) => v.s.link === 'down') ? 'down' : best.s.link,
        // down on every path: since the last of them went down
        since: up ? best.s.since : Math.max(...views.map((v) => v.s.since)),
        haveCopy: views.some((v) => v.s.haveCopy),
        peerInSync: views.some((v) => v.s.peerInSync),
        via: best.name,
        ...(this.paths.length > 1 ? { paths: Object.fromEntries(views.map((v) => [v.name, v.s])) } : {}),
      };
      out.push(merged);
      const was = this.chosen.get(id);
      if (was !== best.name) {
        this.chosen.set(id, best.name);
        const to = this.engineOf(best.name).peerTables().get(id);
        if (was !== undefined && to) this.onSwitch(id, this.engineOf(was).peerTables().get(id), to);
      }
    }
    return out;
  }

  /** b beats a: a complete copy beats none; then b heard from the peer more than tieMs later than a did. */
  private better(b: PeerStatus, a: PeerStatus): boolean {
    if (b.haveCopy !== a.haveCopy) return b.haveCopy;
    const last = (s: PeerStatus) => (s.lastFrameAgoMs < 0 ? -Infinity : -s.lastFrameAgoMs);
    return last(b) > last(a) + this.tieMs;
  }

  private engineOf(name: string): SyncEngine {
    return (this.paths.find((p) => p.name === name) ?? this.paths[0]!).engine;
  }
}
