// Readiness fed back into VRRP through keepalived's track_file: 0 when this node may win an election, else 100.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
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

/** Why this node must not become master now; empty when ready. */
export function notReadyReasons(peers: PeerReadiness[], maxLinkDownMs: number): string[] {
  const out: string[] = [];
  for (const p of peers) {
    if (p.link === 'up' && !p.haveCopy) out.push(`initial bulk from ${p.nodeId} not complete`);
    else if (p.link !== 'up' && !p.haveCopy) out.push(`never synced with ${p.nodeId}`);
    else if (p.link !== 'up' && p.downForMs > maxLinkDownMs) out.push(`link to ${p.nodeId} down for ${Math.round(p.downForMs / 1000)} s`);
  }
  return out;
}

/** Writes the track file atomically (keepalived may read at any moment). */
export function writeTrackFile(path: string, ready: boolean): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, `${ready ? 0 : NOT_READY}\n`);
  renameSync(tmp, path);
}
