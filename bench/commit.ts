// Commit benchmark: `ctsync commit` of N entries (default 1M) beside `conntrackd -c` in the same run.
//
// Run by hand, as root (never a timed test):
//   npx tsc -p . && node dist/bench/commit.js [--n 1000000] [--ref-n 1000000] [--repeats 3] [--prefix ctsx-]
//                                             [--profile DIR] [--out bench/results] [--impl both|LIST]
// --impl takes conntrackd, ctsync and ctsync-warm (comma-separated); ctsync-warm runs the standby with
// `commit.warm: true` and starts the clock once it reports nothing left to write, so it measures a warm takeover.
// Each repeat, for each implementation (interleaved: conntrackd, ctsync, conntrackd, ...), builds a fresh two-node lab
// (bench/ref/harness.ts), starts the pair, bursts N established TCP flows into the active's kernel table, waits
// until the standby daemon holds all of them, kills the active (SIGKILL by PID, a power loss), then asks the standby
// to commit them into its (empty; warm: already filled) kernel table.
// Figures: the command's wall time and entries/s (request sent → answer received; both daemons answer only after
// the kernel acknowledged the last write, and the standby's nf_conntrack_count is checked right after), plus
// ctsync's own report (durationMs inside the daemon).
//
// HOST CHANGE: a namespace cannot hold more entries than the host's net.netfilter.nf_conntrack_max (262144 by
// default), nor change the hash size (262144 buckets here). When they are below what the run needs, this script
// raises both (bench/lib/sysctl.ts) for the run only and restores them afterwards — on success, on failure and on
// Ctrl-C — unless someone else changed them meanwhile (then they are left alone, with a note). Every
// implementation in the run gets the same host.
//
// --profile DIR: the ctsync daemons run with `node --cpu-prof --cpu-prof-dir=DIR`; the standby's profile (written on
// its clean SIGTERM exit) is summarized as self time per function into the results.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Lab } from '../src/lab/netns.js';
import { conntrackdPair } from './ref/conntrackd.js';
import { ctsyncPair, type CtsyncPair } from './ref/ctsync.js';
import { burst, kernelCount, pollUntil, sleep, type SyncPair } from './ref/harness.js';
import { raiseConntrackBuckets, raiseConntrackMax } from './lib/sysctl.js';

interface Args {
  n: number;
  refN: number;
  repeats: number;
  prefix: string;
  profile: string;
  out: string;
  impls: string[];
}

function parseArgs(argv: string[]): Args {
  const a: Args = { n: 1_000_000, refN: 1_000_000, repeats: 3, prefix: 'ctsx-', profile: '', out: 'bench/results', impls: ['conntrackd', 'ctsync'] };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1] ?? '';
    if (k === '--') continue;
    if (k === '--n') (a.n = Number(v)), i++;
    else if (k === '--ref-n') (a.refN = Number(v)), i++;
    else if (k === '--repeats') (a.repeats = Number(v)), i++;
    else if (k === '--prefix') (a.prefix = v), i++;
    else if (k === '--profile') (a.profile = resolve(v)), i++;
    else if (k === '--out') (a.out = v), i++;
    else if (k === '--impl') (a.impls = v === 'both' ? ['conntrackd', 'ctsync'] : v.split(',')), i++;
    else throw new Error(`unknown argument ${k} (see the header of bench/commit.ts)`);
  }
  for (const impl of a.impls) if (!['conntrackd', 'ctsync', 'ctsync-warm'].includes(impl)) throw new Error(`--impl: conntrackd, ctsync, ctsync-warm (a list), or both; not ${impl}`);
  for (const x of [a.n, a.refN, a.repeats]) if (!Number.isInteger(x) || x <= 0) throw new Error('--n, --ref-n and --repeats need positive integers');
  return a;
}

interface CommitRun {
  impl: string;
  n: number;
  loadAvg1: number;
  insertMs: number;
  syncWaitMs: number;
  commitMs: number;
  perSec: number;
  /** ctsync only: the daemon's own measurement (without the control round trip). */
  daemonMs?: number;
  daemonPerSec?: number;
  kernelBefore: number;
  kernelAfter: number;
  output: string;
}

async function once(impl: string, n: number, prefix: string, profileDir: string): Promise<CommitRun> {
  const loadAvg1 = loadavg()[0]!;
  const lab = new Lab({ prefix });
  let pair: SyncPair | undefined;
  try {
    const warm = impl === 'ctsync-warm';
    pair =
      impl === 'conntrackd'
        ? await conntrackdPair(lab, { capacity: n })
        : await ctsyncPair(lab, { capacity: n, ...(profileDir ? { cpuProfDir: profileDir } : {}), ...(warm ? { extraYaml: ['commit: { warm: true }'] } : {}) });
    await sleep(300);
    const base = await pair.peerTableSize();
    const b = await burst(pair.topo.act, n);
    if (b.created !== n) throw new Error(`burst created ${b.created}/${n}: ${JSON.stringify(b.report().failedByErrno)}`);
    const p = pair;
    const w = await pollUntil(() => p.peerTableSize(), (v) => v >= base + n, { intervalMs: 100, timeoutMs: 600_000 });
    await sleep(500); // let the link's acks and the standby's bookkeeping settle before the clock starts
    if (warm) {
      // a warm standby has written the copy into its kernel by now; the takeover writes what is left
      const st = (pair as CtsyncPair).stats;
      await pollUntil(async () => (await st('standby')).ha.warm?.pending ?? -1, (v) => v === 0, { intervalMs: 100, timeoutMs: 600_000 });
    }
    await powerOff(pair.activePid);
    const kernelBefore = await kernelCount(lab, pair.topo.sby);
    const t0 = performance.now();
    const c = await pair.commit();
    const commitMs = performance.now() - t0;
    const kernelAfter = await kernelCount(lab, pair.topo.sby);
    const run: CommitRun = {
      impl,
      n,
      loadAvg1,
      insertMs: b.lastInsertAt - b.firstInsertAt,
      syncWaitMs: w.doneAt - b.lastInsertAt,
      commitMs,
      perSec: n / (commitMs / 1000),
      kernelBefore,
      kernelAfter,
      output: c.output.slice(0, 2000),
    };
    const report = (pair as Partial<CtsyncPair>).lastCommit;
    if (report) Object.assign(run, { daemonMs: report.durationMs, daemonPerSec: report.ratePerSec });
    if ((warm ? kernelAfter : kernelAfter - kernelBefore) < n) throw new Error(`after the commit the standby kernel holds ${kernelAfter - kernelBefore}/${n}: ${run.output}`);
    return run;
  } finally {
    await pair?.stop().catch(() => {});
    await lab.teardown();
  }
}

/**
 * A failover commits because the active died: SIGKILL it (by PID) first. Besides being the real situation, it keeps
 * the active's event socket from taxing the commit: the kernel asks whether anyone listens to conntrack events per
 * protocol, not per namespace, so a listener in the active's namespace makes the kernel build an event for every
 * entry the standby writes (250k writes: 300k/s without it, 180k/s with it, measured by hand with a Conntrack.write
 * child and an EventStream in a second namespace).
 */
async function powerOff(pid: number): Promise<void> {
  process.kill(pid, 'SIGKILL');
  await pollUntil(async () => (existsSync(`/proc/${pid}`) ? 0 : 1), (v) => v === 1, { intervalMs: 20, timeoutMs: 10_000 });
}

/** Self time per function (top 25) of the newest .cpuprofile in dir, and total sampled ms. */
function summarizeProfile(dir: string): { file: string; totalMs: number; top: { fn: string; selfMs: number; pct: number }[] } | undefined {
  const sby = join(dir, 'sby');
  let files: string[];
  try {
    files = readdirSync(sby).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(sby, f));
  } catch {
    return undefined;
  }
  if (!files.length) return undefined;
  const file = files.sort((x, y) => statSync(y).mtimeMs - statSync(x).mtimeMs)[0]!; // the last run's standby
  const prof = JSON.parse(readFileSync(file, 'utf8')) as {
    nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(prof.nodes.map((nd) => [nd.id, nd]));
  const self = new Map<string, number>();
  let total = 0;
  prof.samples.forEach((id, i) => {
    const dt = prof.timeDeltas[i] ?? 0;
    total += dt;
    const cf = byId.get(id)?.callFrame;
    const key = cf ? `${cf.functionName || '(anonymous)'} ${cf.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${cf.lineNumber + 1}` : '?';
    self.set(key, (self.get(key) ?? 0) + dt);
  });
  const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25).map(([fn, us]) => ({ fn, selfMs: Math.round(us / 100) / 10, pct: Math.round((us / total) * 1000) / 10 }));
  return { file, totalMs: Math.round(total / 1000), top };
}

function median(xs: number[]): { median: number; min: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return { median: s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2, min: s[0]!, max: s[s.length - 1]! };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) {
    console.error('commit bench needs root (namespaces, ctnetlink, sysctl): skipped');
    process.exit(2);
  }
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      console.error(`\n${sig}: tearing down`);
      process.exit(130); // 'exit' handlers: labs torn down, daemons killed, work dirs removed, sysctl restored
    });
  }
  const swept = Lab.sweep(args.prefix);
  if (swept.length) console.error(`removed leftover namespaces: ${swept.join(' ')}`);
  if (args.profile) mkdirSync(args.profile, { recursive: true });

  const sizes: Record<string, number> = { conntrackd: args.refN, ctsync: args.n, 'ctsync-warm': args.n };
  const need = Math.max(...args.impls.map((i) => sizes[i]!)) + 10_000;
  const limit = raiseConntrackMax(need);
  const buckets = raiseConntrackBuckets(2 * need); // both namespaces share the host hash
  const runs: CommitRun[] = [];
  const failures: string[] = [];
  let restored = '';
  try {
    for (let r = 0; r < args.repeats; r++) {
      for (const impl of args.impls) {
        try {
          const x = await once(impl, sizes[impl]!, args.prefix, args.profile);
          runs.push(x);
          console.error(
            `${impl} n=${x.n} run ${r + 1}/${args.repeats}: commit ${x.commitMs.toFixed(0)} ms, ${x.perSec.toFixed(0)}/s` +
              (x.daemonMs !== undefined ? ` (daemon: ${x.daemonMs} ms)` : '') +
              `; insert ${x.insertMs.toFixed(0)} ms, standby caught up ${x.syncWaitMs.toFixed(0)} ms after the last insert; load ${x.loadAvg1.toFixed(1)}`,
          );
        } catch (err) {
          const msg = `${impl} run ${r + 1}: failed: ${(err as Error).message}`;
          console.error(msg);
          failures.push(msg);
        }
      }
    }
  } finally {
    restored = `${limit.restore()}; ${buckets.restore()}`;
    console.error(restored);
  }

  const summary: Record<string, { n: number; runs: number; commitMs: ReturnType<typeof median>; perSec: ReturnType<typeof median>; daemonMs?: ReturnType<typeof median> }> = {};
  for (const impl of args.impls) {
    const rs = runs.filter((x) => x.impl === impl);
    if (!rs.length) continue;
    summary[impl] = { n: sizes[impl]!, runs: rs.length, commitMs: median(rs.map((x) => x.commitMs)), perSec: median(rs.map((x) => x.perSec)) };
    if (impl !== 'conntrackd') summary[impl]!.daemonMs = median(rs.map((x) => x.daemonMs ?? NaN));
  }
  const profile = args.profile ? summarizeProfile(args.profile) : undefined;
  const command = `node dist/bench/commit.js ${process.argv.slice(2).join(' ')}`.trim();
  const env = {
    date: new Date().toISOString(),
    command,
    kernel: execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(),
    nproc: execFileSync('nproc', { encoding: 'utf8' }).trim(),
    hostNfConntrackMax: { before: limit.before, during: limit.during },
    hostConntrackBuckets: { before: buckets.before, during: buckets.during },
    hostRestore: restored,
  };
  mkdirSync(args.out, { recursive: true });
  const base = join(args.out, 'commit');
  writeFileSync(`${base}.json`, JSON.stringify({ env, summary, runs, failures, profile }, null, 2) + '\n');

  const f0 = (x: number): string => (Number.isFinite(x) ? x.toFixed(0) : String(x));
  const lines = [`# Commit: ctsync vs conntrackd -c, same run (${env.date})`, '', `Command: \`${command}\`  `];
  lines.push(`Machine: ${env.nproc} vCPU, kernel ${env.kernel}. Host nf_conntrack_max ${limit.before} → ${limit.during} and hash buckets ${buckets.before} → ${buckets.during} during the run; ${restored}.`, '');
  lines.push('| impl | entries | runs | commit ms, median [min – max] | entries/s, median [min – max] | daemon-side ms |', '|---|---:|---:|---:|---:|---:|');
  for (const [impl, s] of Object.entries(summary)) {
    lines.push(`| ${impl} | ${s.n} | ${s.runs} | ${f0(s.commitMs.median)} [${f0(s.commitMs.min)} – ${f0(s.commitMs.max)}] | ${f0(s.perSec.median)} [${f0(s.perSec.min)} – ${f0(s.perSec.max)}] | ${s.daemonMs ? f0(s.daemonMs.median) : ''} |`);
  }
  const a = summary['conntrackd'];
  const b = summary['ctsync'];
  if (a && b) lines.push('', `ctsync / conntrackd commit rate: **${(b.perSec.median / a.perSec.median).toFixed(2)}x** (goal ≥ 3x); ctsync ${b.n} entries in ${(b.commitMs.median / 1000).toFixed(2)} s (goal < 4 s for 1M).`);
  lines.push('', '| run | impl | entries | load avg | insert ms | standby caught up (ms after last insert) | commit ms | entries/s |', '|---:|---|---:|---:|---:|---:|---:|---:|');
  runs.forEach((x, i) => lines.push(`| ${i + 1} | ${x.impl} | ${x.n} | ${x.loadAvg1.toFixed(1)} | ${f0(x.insertMs)} | ${f0(x.syncWaitMs)} | ${f0(x.commitMs)} | ${f0(x.perSec)} |`));
  for (const f of failures) lines.push('', `Failed: ${f}`);
  if (profile) {
    lines.push('', `## Profile of the ctsync standby (${profile.totalMs} ms sampled, whole daemon life), self time`, '', '| function | self ms | % |', '|---|---:|---:|');
    for (const t of profile.top) lines.push(`| \`${t.fn}\` | ${t.selfMs} | ${t.pct} |`);
  }
  const md = lines.join('\n') + '\n';
  writeFileSync(`${base}.md`, md);
  process.stdout.write(md);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
