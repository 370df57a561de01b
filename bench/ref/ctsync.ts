// ctsync as a benchmark subject: two `ctsync daemon` processes (act, sby) linked over the sync veth with TLS-PSK,
// driven through their control sockets (one JSON request per query, no client process) and measured from /proc.
//
// What the figures depend on:
// - The daemons are spawned as `node dist/src/cli/main.js daemon -c FILE` through `ip netns exec` (which execs), so
//   the LabProcess PID is node itself: CPU and RSS are the daemon's, libuv threads included. Build first
//   (`npx tsc -p .`): the benchmark runs what dist/ holds.
// - The burst is written by the bench process through ctnetlink; to the active daemon those are NEW events from
//   another port id (origin 'kernel'), synced like traffic — the same as for conntrackd.
// - peerTableSize() is one `stats` request on the standby's control socket (peers[0].peerTableSize).
// - commit() is one `commit` request on the standby: the daemon answers after its last batch was acked by the
//   kernel, so the entries are in the table when it resolves (sync-ref.ts re-checks with nf_conntrack_count).
// - Security mode psk (TLS 1.2 with a pre-shared key, ECDHE-PSK-CHACHA20-POLY1305 here; what users run); conntrackd has
//   no encryption at all.
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { request } from '../../src/control/client.js';
import type { CommitReport } from '../../src/state/commit.js';
import type { DaemonStats } from '../../src/daemon/stats.js';
import type { Lab, LabProcess } from '../../src/lab/netns.js';
import { pairWorkDir, pollUntil, syncTopology, type CommitResult, type PairOptions, type SyncPair, type SyncTopology } from './harness.js';

/** The built CLI. From bench/ref/ctsync.ts (vite-node) and dist/bench/ref/ctsync.js alike: find the repo root. */
function repoRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return here.includes("/dist/") ? resolve(here, '../../..') : resolve(here, '../..');
}
export const CTSYNC_MAIN = join(repoRoot(), 'dist/src/cli/main.js');

export const CTSYNC_PORT = 3780;

export interface CtsyncNode {
  role: 'active' | 'standby';
  ns: string;
  confPath: string;
  socketPath: string;
  proc: LabProcess;
}

export interface CtsyncPair extends SyncPair {
  readonly active: CtsyncNode;
  readonly standby: CtsyncNode;
  readonly workDir: string;
  stats(role: 'active' | 'standby'): Promise<DaemonStats>;
  /**
   * From the standby's answer to the last peerTableSize(): when (CLOCK_MONOTONIC ms, the daemon's own clock) it last
   * applied a frame that changes the peer table; undefined before any. Later than the moment it came to hold what it
   * reported if a later data frame (a timeout refresh, say) landed before the answer; never earlier.
   */
  lastDataAtMonoMs(): number | undefined;
  /** The daemon's own commit report of the last commit() (durationMs inside the daemon, counts by outcome). */
  lastCommit?: CommitReport;
}

export interface CtsyncPairOptions extends PairOptions {
  /** Event socket receive buffer (kernel.eventBuffer). Default 256 MiB, like conntrackd's NetlinkBufferSizeMaxGrowth. */
  eventBuffer?: number;
  /** Extra YAML lines for both nodes (e.g. 'link: { heartbeat: 200 }'; not `sync`, which this file writes already). */
  extraYaml?: string[];
  /** Extra keys inside both nodes' `sync` mapping, as flow-style YAML (e.g. 'coalesce: 10'). */
  syncYaml?: string;
  /** Extra argv before node (e.g. ['chrt', '-r', '99'] for like-for-like scheduling with conntrackd). */
  wrap?: string[];
  /** Extra node flags for both daemons (e.g. ['--max-old-space-size=4096']). */
  nodeFlags?: string[];
  /** Run both daemons with `node --cpu-prof`, profiles under DIR/act and DIR/sby (written at their SIGTERM exit). */
  cpuProfDir?: string;
  /** Append each daemon's stdout and stderr (logs, V8 traces) to DIR/act.log and DIR/sby.log. */
  logDir?: string;
}

function yaml(c: { nodeId: string; peerId: string; self: string; peer: string; keyFile: string; socket: string; trackFile: string; eventBuffer: number; ignore: string[]; sync: string; extra: string[] }): string {
  return [
    '# written by bench/ref/ctsync.ts for one benchmark run',
    `nodeId: ${c.nodeId}`,
    'clusterId: bench',
    `listen: ${c.self}:${CTSYNC_PORT}`,
    'peers:',
    `  - id: ${c.peerId}`,
    `    addresses: ['${c.peer}:${CTSYNC_PORT}']`,
    `security: { mode: psk, keyFile: ${c.keyFile} }`,
    `control: { socket: ${c.socket} }`,
    "metrics: { listen: '' }",
    'log: { level: warn }',
    `kernel: { eventBuffer: ${c.eventBuffer} }`,
    `sync: { ignoreCidrs: [${c.ignore.map((x) => `'${x}'`).join(', ')}]${c.sync ? `, ${c.sync}` : ''} }`,
    `ha: { trackFile: ${c.trackFile} }`,
    ...c.extra,
    '',
  ].join('\n');
}

/**
 * Starts ctsync on act and sby and resolves when both answer on their control sockets and each sees the other's
 * link up. Everything they write (configs, key, sockets, track files) lives under workDir; stop() ends them by PID.
 */
export async function ctsyncPair(lab: Lab, opts: CtsyncPairOptions = {}): Promise<CtsyncPair> {
  const topo: SyncTopology = opts.topo ?? (await syncTopology(lab));
  const { dir: workDir, remove: removeDir } = pairWorkDir(opts.workDir, 'ctsx-');
  const keyFile = join(workDir, 'cluster.key');
  execFileSync(process.execPath, [CTSYNC_MAIN, 'keygen', keyFile], { stdio: 'ignore' });
  const linkNet = `${topo.actAddr.split('.').slice(0, 3).join('.')}.0/24`;
  if (opts.logDir) mkdirSync(opts.logDir, { recursive: true });

  const start = (role: 'active' | 'standby'): CtsyncNode => {
    const tag = role === 'active' ? 'act' : 'sby';
    const ns = role === 'active' ? topo.act : topo.sby;
    const confPath = join(workDir, `${tag}.yaml`);
    const socketPath = join(workDir, `${tag}.sock`);
    writeFileSync(
      confPath,
      yaml({
        nodeId: tag,
        peerId: role === 'active' ? 'sby' : 'act',
        self: role === 'active' ? topo.actAddr : topo.sbyAddr,
        peer: role === 'active' ? topo.sbyAddr : topo.actAddr,
        keyFile,
        socket: socketPath,
        trackFile: join(workDir, `${tag}.track`),
        eventBuffer: opts.eventBuffer ?? 256 << 20,
        ignore: [linkNet, '127.0.0.0/8', '::1/128'],
        sync: opts.syncYaml ?? '',
        extra: opts.extraYaml ?? [],
      }),
    );
    const prof = opts.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${join(opts.cpuProfDir, tag)}`] : [];
    const argv = [...(opts.wrap ?? []), process.execPath, ...prof, ...(opts.nodeFlags ?? []), CTSYNC_MAIN, 'daemon', '-c', confPath];
    const keep = opts.logDir ? (l: string) => appendFileSync(join(opts.logDir!, `${tag}.log`), `${l}\n`) : () => {};
    const proc = lab.spawn(ns, argv, { onLine: keep, onErrLine: keep });
    return { role, ns, confPath, socketPath, proc };
  };

  const active = start('active');
  const standby = start('standby');
  const nodes = { active, standby };
  const stats = async (role: 'active' | 'standby'): Promise<DaemonStats> => (await request(nodes[role].socketPath, 'stats', {}, undefined, 60_000)) as DaemonStats;
  try {
    for (const n of [active, standby]) {
      await pollUntil(
        async () => {
          if (!n.proc.running) throw new Error(`ctsync (${n.role}) exited at start:\n${n.proc.stderrTail.join('\n')}`);
          try {
            const s = await stats(n.role);
            return s.peers.some((p) => p.link === 'up') ? 1 : 0;
          } catch {
            return 0;
          }
        },
        (v) => v === 1,
        { intervalMs: 50, timeoutMs: 15_000 },
      );
    }
  } catch (err) {
    await Promise.all([active.proc.stop(2000), standby.proc.stop(2000)]);
    removeDir();
    throw err;
  }

  let lastDataAt: number | undefined;
  const pair: CtsyncPair = {
    impl: 'ctsync',
    topo,
    active,
    standby,
    workDir,
    activePid: active.proc.pid,
    standbyPid: standby.proc.pid,
    stats,
    async peerTableSize() {
      const s = await stats('standby');
      const p = s.peers[0];
      lastDataAt = p && p.lastDataAgoMs >= 0 ? s.monotonicMs - p.lastDataAgoMs : undefined;
      return p?.peerTableSize ?? 0;
    },
    lastDataAtMonoMs: () => lastDataAt,
    localTableSize: async () => (await stats('active')).kernel.entries,
    async commit(): Promise<CommitResult> {
      const t0 = performance.now();
      const report = (await request(standby.socketPath, 'commit', {}, undefined, 600_000)) as CommitReport;
      const durationMs = performance.now() - t0;
      pair.lastCommit = report;
      return { durationMs, output: JSON.stringify(report) };
    },
    async diagnostics() {
      const out: Record<string, number | string> = {};
      for (const role of ['active', 'standby'] as const) {
        const s = await stats(role);
        const p = role === 'active' ? 'act' : 'sby';
        out[`${p}.kernelEntries`] = s.kernel.entries;
        out[`${p}.events.new`] = s.kernel.events.new ?? 0;
        out[`${p}.events.ours`] = s.kernel.events.ours ?? 0;
        out[`${p}.overruns`] = s.kernel.overruns;
        out[`${p}.resyncs`] = s.kernel.resyncs;
        out[`${p}.eventsPerRead`] = Number((s.kernel.reads.datagrams / Math.max(1, s.kernel.reads.handoffs)).toFixed(1));
        out[`${p}.quiets`] = s.kernel.reads.quiets;
        out[`${p}.framesOut`] = s.sync.framesOut;
        out[`${p}.entriesOut`] = s.sync.entriesOut;
        out[`${p}.entriesIn`] = s.sync.entriesIn;
        out[`${p}.bulks`] = s.sync.bulks;
        out[`${p}.holds`] = s.sync.holds;
        out[`${p}.peerTableSize`] = s.peers[0]?.peerTableSize ?? -1;
        out[`${p}.peerState`] = `${s.peers[0]?.state}/${s.peers[0]?.link}`;
        for (const [k, v] of Object.entries(s.drops)) out[`${p}.drop.${k}`] = v;
      }
      return out;
    },
    async stop() {
      await Promise.all([active.proc.stop(3000), standby.proc.stop(3000)]);
      removeDir();
    },
  };
  return pair;
}
