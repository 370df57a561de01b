// Commit: write what peers sent into this kernel at takeover, in batches, with a report of every outcome.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Conntrack, Outcome } from '../kernel/conntrack.js';
import type { Flow } from '../kernel/types.js';
import type { WritePolicy } from '../kernel/write-rules.js';
import type { PeerTable } from './peer-table.js';

export interface CommitReport {
  entries: number;
  counts: Record<Outcome, number>;
  failedByErrno: Record<string, number>;
  expiredSkipped: number;
  durationMs: number;
  ratePerSec: number;
}

/** Entries per Conntrack.write call: big enough for full batches, small enough for progress and fairness. */
const CHUNK = 20_000;

/**
 * Write every flow the peers hold into the kernel. Each flow gets its remaining timeout (last refresh minus the
 * time since); masters go before related flows and NAT is set at create (Conntrack.write); a local entry for the
 * same tuples (traffic that arrived before the commit) is replaced, so the synced NAT and state win.
 */
export async function commitPeerTables(
  ct: Conntrack,
  tables: Iterable<PeerTable>,
  policy: WritePolicy,
  now: number,
  progress?: (done: number, total: number) => void,
): Promise<CommitReport> {
  const t0 = performance.now();
  const counts: Record<Outcome, number> = { created: 0, updated: 0, replaced: 0, deleted: 0, absent: 0, failed: 0 };
  const failedByErrno: Record<string, number> = {};
  const list = [...tables];
  const total = list.reduce((n, t) => n + t.size, 0);
  let entries = 0;
  let expiredSkipped = 0;
  const write = async (flows: Flow[]) => {
    const r = await ct.write(flows.map((flow) => ({ op: 'replace' as const, flow })), policy);
    for (const [k, v] of Object.entries(r.counts) as [Outcome, number][]) counts[k] += v;
    for (const [k, v] of Object.entries(r.failedByErrno)) failedByErrno[k] = (failedByErrno[k] ?? 0) + v;
    entries += flows.length;
    progress?.(entries, total);
    // a large commit must not starve the peer link, heartbeats or the control socket
    await new Promise((r) => setImmediate(r));
  };
  // Streamed chunk by chunk (a 1M-entry table never exists twice as objects). Related flows wait for a second
  // pass: the kernel needs their masters first.
  const related: Flow[] = [];
  for (const t of list) {
    const table = t.table;
    for (let cursor = 0; cursor >= 0; ) {
      const chunk: Flow[] = [];
      // by slot, not t.get(key): skips a string-keyed index lookup per entry
      cursor = table.scan(cursor, CHUNK, (_key, slot) => {
        const f = table.flowAt(slot, now);
        if (f.timeout === 0) expiredSkipped++;
        else if (f.master) related.push(f);
        else chunk.push(f);
      });
      if (chunk.length) await write(chunk);
    }
  }
  for (let i = 0; i < related.length; i += CHUNK) await write(related.slice(i, i + CHUNK));
  const flowsWritten = entries;
  const durationMs = performance.now() - t0;
  return { entries: flowsWritten, counts, failedByErrno, expiredSkipped, durationMs: Math.round(durationMs * 10) / 10, ratePerSec: flowsWritten ? Math.round(flowsWritten / (durationMs / 1000)) : 0 };
}

/** Labels can be written only if the loaded ruleset uses `ct label` (else ENOSPC): ask nft in our namespace. */
export async function rulesetUsesLabels(netns?: string): Promise<boolean> {
  const argv = netns ? ['ip', ['netns', 'exec', netns, 'nft', 'list', 'ruleset']] : ['nft', ['list', 'ruleset']];
  try {
    const { stdout } = await promisify(execFile)(argv[0] as string, argv[1] as string[], { timeout: 5000, maxBuffer: 64 << 20 });
    return /\bct label\b/.test(stdout);
  } catch {
    return false;
  }
}
