// Commit: write what peers sent into this kernel at takeover, in batches, with a report of every outcome.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { encodeCreate, type Conntrack, type Outcome, type WriteOp, type WriteReport } from '../kernel/conntrack.js';
import { flowOfKey } from './warm.js';
import { encodeCreateAt } from './create-encode.js';
import { WritePool } from '../kernel/write-pool.js';
import type { Flow } from '../kernel/types.js';
import type { WritePolicy } from '../kernel/write-rules.js';
import type { PeerTable } from './peer-table.js';

export interface CommitReport {
  entries: number;
  counts: Record<Outcome, number>;
  failedByErrno: Record<string, number>;
  expiredSkipped: number;
  /** Threads that sent the creates (0: this one; a small commit does not start any). */
  workers: number;
  /** A warm standby's takeover: only what changed since its last round was written. */
  warm?: boolean;
  durationMs: number;
  ratePerSec: number;
}

/** Entries per Conntrack.write call: big enough for full batches, small enough for progress and fairness. */
const CHUNK = 20_000;
/** Below this many entries a commit writes from our own thread: starting workers would cost more than they save. */
const POOL_MIN = 50_000;
/** Worker threads sending creates. One already keeps the kernel busy while we encode; two use both cores here. */
const POOL_SIZE = 2;

/**
 * Write every flow the peers hold into the kernel. Each flow gets its remaining timeout (last refresh minus the
 * time since); masters go before related flows and NAT is set at create (Conntrack.write); a local entry for the
 * same tuples (traffic that arrived before the commit) is replaced, so the synced NAT and state win.
 * A large commit sends its creates from worker threads (WritePool) while this thread encodes the next chunk.
 */
export async function commitPeerTables(
  ct: Conntrack,
  tables: Iterable<PeerTable>,
  policy: WritePolicy,
  now: number,
  progress?: (done: number, total: number) => void,
  netns?: string,
): Promise<CommitReport> {
  const t0 = performance.now();
  const counts: Record<Outcome, number> = { created: 0, updated: 0, replaced: 0, deleted: 0, absent: 0, failed: 0 };
  const failedByErrno: Record<string, number> = {};
  const list = [...tables];
  const total = list.reduce((n, t) => n + t.size, 0);
  let entries = 0;
  let expiredSkipped = 0;
  const tally = (r: Pick<WriteReport, 'counts' | 'failedByErrno'>, n: number) => {
    for (const [k, v] of Object.entries(r.counts) as [Outcome, number][]) counts[k] += v;
    for (const [k, v] of Object.entries(r.failedByErrno)) failedByErrno[k] = (failedByErrno[k] ?? 0) + v;
    entries += n;
    progress?.(entries, total);
  };
  const write = async (flows: Flow[]) => {
    tally(await ct.write(flows.map((flow) => ({ op: 'replace' as const, flow })), policy), flows.length);
    // a large commit must not starve the peer link, heartbeats or the control socket
    await new Promise((r) => setImmediate(r));
  };
  const pool = total >= POOL_MIN ? WritePool.open(POOL_SIZE, netns) : undefined;
  const inflight: Promise<void>[] = [];
  // Creates through the pool, encoded straight from the table. By the time the answers come the link may have
  // changed the table, so what needs a second try (EEXIST: a stray entry to replace) is looked up again by key.
  const sendPooled = async (p: WritePool, t: PeerTable, keys: string[], errnos: Promise<number[]>) => {
    const got = await errnos.catch(() => undefined); // undefined: the worker died; this chunk again, from here
    const again: Flow[] = [];
    let created = 0;
    keys.forEach((k, i) => {
      if (got?.[i] === 0) created++;
      else {
        const f = t.get(k, now);
        if (f) again.push(f); // EEXIST, or anything Conntrack.write should report per entry
      }
    });
    tally({ counts: { created } as Record<Outcome, number>, failedByErrno: {} }, created);
    if (again.length) await write(again);
  };
  // Streamed chunk by chunk (a 1M-entry table never exists twice as objects). Related flows wait for a second
  // pass: the kernel needs their masters first.
  const related: Flow[] = [];
  const plain = new Uint32Array(4);
  try {
    for (const t of list) {
      const table = t.table;
      for (let cursor = 0; cursor >= 0; ) {
        const slots: number[] = [];
        // by slot, not t.get(key): skips an index lookup per entry
        cursor = table.scan(cursor, CHUNK, (_key, slot) => {
          if (table.remainingOrNoneAt(slot, now) === 0) expiredSkipped++;
          else if (table.isPlainOrSynproxyAt(slot, plain)) slots.push(slot);
          else {
            const f = table.flowAt(slot, now);
            if (f.master) related.push(f);
            else slots.push(slot);
          }
        });
        if (!slots.length) continue;
        if (!pool) {
          await write(slots.map((s) => table.flowAt(s, now)));
          continue;
        }
        // encoded now, in this tick: the slots are only valid until we yield
        const errnos = pool.send(slots, (w, slot, seq, ack) => {
          if (!encodeCreateAt(w, table, slot, now, policy, seq, ack)) encodeCreate(w, table.flowAt(slot, now), policy, seq, ack);
        });
        inflight.push(sendPooled(pool, t, slots.map((s) => table.keyAt(s)!), errnos));
        // two chunks per worker in flight: one being sent, one queued behind it
        if (inflight.length >= 2 * pool.size) await inflight.shift();
        await new Promise((r) => setImmediate(r)); // the link, heartbeats and the control socket get their turn
      }
    }
    await Promise.all(inflight);
  } finally {
    await pool?.close();
  }
  for (let i = 0; i < related.length; i += CHUNK) await write(related.slice(i, i + CHUNK));
  return finish(t0, { entries, counts, failedByErrno, expiredSkipped, workers: pool?.size ?? 0 });
}

/**
 * A warm standby's takeover: only the flows under `keys` (changed since its last round), from whichever peer table
 * holds each. The same report as a full commit.
 */
export async function commitKeys(ct: Conntrack, tables: Iterable<PeerTable>, keys: Iterable<string>, policy: WritePolicy, now: number): Promise<CommitReport> {
  const t0 = performance.now();
  const list = [...tables];
  const ops: WriteOp[] = [];
  let expiredSkipped = 0;
  for (const k of keys) {
    const f = list.find((p) => p.has(k))?.get(k, now);
    // gone at the peer (or run out) since the last round: a kernel entry written for it must go too
    if (!f || f.timeout === 0) ops.push({ op: 'delete', flow: flowOfKey(k) });
    if (f?.timeout === 0) expiredSkipped++;
    else if (f) ops.push({ op: 'replace', flow: f });
  }
  const r = await ct.write(ops, policy);
  const written = ops.filter((o) => o.op === 'replace').length;
  return finish(t0, { entries: written, counts: r.counts, failedByErrno: r.failedByErrno, expiredSkipped, workers: 0 });
}

/** The report with the duration since t0 and the rate it makes. */
function finish(t0: number, r: Omit<CommitReport, 'durationMs' | 'ratePerSec'>): CommitReport {
  const ms = performance.now() - t0;
  return { ...r, durationMs: Math.round(ms * 10) / 10, ratePerSec: r.entries ? Math.round(r.entries / (ms / 1000)) : 0 };
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
