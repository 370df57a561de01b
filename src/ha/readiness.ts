// Readiness fed back into VRRP through keepalived's track_file: 0 when this node may win an election, else 100.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Config } from '../config/load.js';
import type { PeerStatus } from '../sync/engine.js';

/** Value written while not ready: with `weight -1` it lowers the priority by 100, with `weight 0` it means FAULT. */
export const NOT_READY = 100;

export interface PeerReadiness {
  nodeId: string;
  link: PeerStatus['link'];
  /** A complete copy of the peer's table arrived at least once since we started. */
  haveCopy: boolean;
  /** How long the link has been down (ms), 0 while up. */
  downForMs: number;
}

export interface Readiness {
  /** Nothing stops this node from becoming master. */
  ready: boolean;
  /** Why it must not: a reachable peer holds state this node has not received yet. */
  reasons: string[];
  /** Warnings that do not take the node out of VRRP: its copy may be old, but no peer can do better. */
  stale: string[];
}

/** The nodes this one syncs with, and so waits for: over Redis (or both) `redis.peers` when set, else the ids of `peers`. */
export function syncPeerIds(cfg: Pick<Config, 'transport' | 'peers' | 'redis'>): string[] {
  return cfg.transport !== 'tcp' && cfg.redis.peers.length ? [...cfg.redis.peers] : cfg.peers.map((p) => p.id);
}

/** Each expected peer as the engine sees it; one the engine has not heard of yet is connecting since our start. */
export function peerReadiness(status: PeerStatus[], expected: string[], startedAt: number, now: number): PeerReadiness[] {
  return expected.map((nodeId) => {
    const p = status.find((s) => s.nodeId === nodeId);
    const link = p?.link ?? 'connecting';
    return { nodeId, link, haveCopy: p?.haveCopy ?? false, downForMs: link === 'up' ? 0 : now - (p?.since ?? startedAt) };
  });
}

/**
 * Readiness for the track file. A master is always ready (it holds the real state). A node is not ready while a
 * peer is reachable and its first complete copy from that peer has not arrived: the peer must win the election.
 * A peer that is unreachable (for too long, or since we started) makes the copy stale, which is reported, but it
 * does not take this node out of VRRP: it is then the only candidate, and refusing would turn a sync problem into
 * an outage. Except at startup: a node that has never synced waits `maxLinkDownMs` for its peer to be reachable
 * (a booting node whose sync link comes up late must not take the VIPs back with an empty table).
 */
export function readiness(peers: PeerReadiness[], maxLinkDownMs: number, isMaster: boolean, uptimeMs = Infinity): Readiness {
  const reasons: string[] = [];
  const stale: string[] = [];
  for (const p of peers) {
    if (p.link === 'up' && !p.haveCopy) reasons.push(`initial bulk from ${p.nodeId} not complete`);
    else if (p.link !== 'up' && !p.haveCopy && uptimeMs < maxLinkDownMs) reasons.push(`waiting for ${p.nodeId} (never synced; up ${Math.round(uptimeMs / 1000)} s of ${Math.round(maxLinkDownMs / 1000)} s grace)`);
    else if (p.link !== 'up' && !p.haveCopy) stale.push(`never synced with ${p.nodeId}`);
    else if (p.link !== 'up' && p.downForMs > maxLinkDownMs) stale.push(`link to ${p.nodeId} down for ${Math.round(p.downForMs / 1000)} s`);
  }
  if (isMaster) return { ready: true, reasons: [], stale: [...reasons, ...stale] };
  return { ready: reasons.length === 0, reasons, stale };
}

/** Writes the track file atomically (keepalived may read at any moment). */
export function writeTrackFile(path: string, ready: boolean): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, `${ready ? 0 : NOT_READY}\n`);
  renameSync(tmp, path);
}
