// Benchmark: CPU of one timeout refresh (the active's periodic dump-and-diff, `sync.refreshInterval`) of a table of
// --size entries, with the dump's lines read in place (the daemon's path) and all decoded into Flows (the path
// before it), against `conntrack -L` reading the same table once, interleaved in the same run.
//
// Run by hand, as root:  npx tsc -p . && node dist/bench/refresh.js [--reps 5] [--size 100000] [--figures]
// (--figures: conntrack accounting and timestamps on in the namespace, so every line also carries counters and a
// start time, as on firewalls that keep per-flow byte counts).
// Writes bench/results/refresh-SIZE[-figures].{json,md}. One throwaway `ctsb-*` namespace, filled with the sync benchmark's burst
// flows (TCP ESTABLISHED, as a busy firewall's table mostly is), deleted at the end. The mirrors run in this
// process with the daemon's default `sync` selection; CPU = this process's user + system time around refresh().
// conntrackd has no counterpart: it never re-reads timeouts (its standby guesses them), so `conntrack -L` is the
// reference for the cost of reading the table once.
import { execFileSync } from 'node:child_process';
import pino from 'pino';
import { systemClock } from '../src/state/clock.js';
import { KernelMirror } from '../src/state/mirror.js';
import { compileFilter } from '../src/sync/filter.js';
import { buildConfig } from '../src/config/load.js';
import { burst } from './ref/harness.js';
import { environment, fmt, summarize, table, writeResults, type Summary } from './lib/stats.js';
import { tableCount, withTableLab } from './lib/lab.js';
import { flag, opt } from './lib/args.js';

const REPS = Number(opt('--reps') ?? 5);
const SIZE = Number(opt('--size') ?? 100_000);
const FIGURES = flag('--figures');
const INTERVAL_S = 30; // sync.refreshInterval's default: what a share of one core is figured at

const WAYS = ['ctsync refresh, lines read in place', 'ctsync refresh, every line decoded', 'conntrack -L'] as const;
type Way = (typeof WAYS)[number];

interface Run {
  way: Way;
  cpuS: number;
  sysS: number;
  ms: number;
  entries: number;
}


async function refreshOnce(m: KernelMirror, way: Way): Promise<Run> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const drift = await m.refresh();
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  if (drift.length) process.stderr.write(`${way}: ${drift.length} drifted (the table changed under the bench?)\n`);
  return { way, cpuS: (c.user + c.system) / 1e6, sysS: c.system / 1e6, ms, entries: m.local.size };
}

/** conntrack -L to /dev/null; CPU is its own user + system time, from bash's `time`. */
function conntrackList(ns: string): Run {
  const t0 = performance.now();
  const script = "TIMEFORMAT='cpu %U %S'; exec 3>&1; { time conntrack -L 2>&3 >/dev/null; } 2>&1";
  const out = execFileSync('ip', ['netns', 'exec', ns, 'bash', '-c', script], { encoding: 'utf8' });
  const ms = performance.now() - t0;
  const [user, sys] = (/cpu ([\d.]+) ([\d.]+)/.exec(out)?.slice(1) ?? ['NaN', 'NaN']).map(Number);
  return { way: 'conntrack -L', cpuS: user! + sys!, sysS: sys!, ms, entries: Number(/(\d+) flow entries have been shown/.exec(out)?.[1] ?? NaN) };
}

async function main(): Promise<void> {
  const runs: Run[] = [];
  const log = pino({ level: 'warn' });
  const mirrors: KernelMirror[] = [];
  let inTable = 0;
  await withTableLab(SIZE, async (lab) => {
    try {
      const ns = await lab.addNamespace('rf');
      if (FIGURES) await lab.exec(ns, ['sysctl', '-qw', 'net.netfilter.nf_conntrack_acct=1', 'net.netfilter.nf_conntrack_timestamp=1']);
      for (let done = 0; done < SIZE; done += 100_000) await burst(ns, Math.min(100_000, SIZE - done), done);
      inTable = await tableCount(lab, ns);
      const filter = compileFilter(buildConfig({ nodeId: 'bench' }).sync); // the daemon's default selection
      // the same predicate without its in-place form: the mirror then decodes every line
      const decoding = Object.assign((f: Parameters<typeof filter>[0]) => filter(f), {});
      const inPlace = new KernelMirror({ netns: ns, clock: systemClock, log, filter });
      const decoded = new KernelMirror({ netns: ns, clock: systemClock, log, filter: decoding });
      mirrors.push(inPlace, decoded);
      for (const m of mirrors) await m.start();
      for (let rep = 0; rep < REPS; rep++) {
        runs.push(await refreshOnce(inPlace, WAYS[0]), await refreshOnce(decoded, WAYS[1]), conntrackList(ns));
        for (const x of runs.slice(-3)) process.stderr.write(`${x.way.padEnd(36)} ${x.entries} entries: ${x.cpuS.toFixed(3)} s CPU (${x.sysS.toFixed(3)} system), ${x.ms.toFixed(0)} ms\n`);
      }
    } finally {
      for (const m of mirrors) m.close();
    }
  });
  const rows: { way: Way; cpuS: Summary; sysS: Summary; ms: Summary; usPerEntry: number; coreShare: number }[] = WAYS.map((way) => {
    const mine = runs.filter((r) => r.way === way);
    const cpuS = summarize(mine.map((r) => r.cpuS));
    return { way, cpuS, sysS: summarize(mine.map((r) => r.sysS)), ms: summarize(mine.map((r) => r.ms)), usPerEntry: (cpuS.median * 1e6) / inTable, coreShare: cpuS.median / INTERVAL_S };
  });
  const md = [
    `# Timeout refresh of ${inTable} entries${FIGURES ? ' (accounting and timestamps on)' : ''}, ${REPS} run(s) interleaved, median (±half the spread)`,
    '',
    table(
      ['way', 'CPU s', 'of it system s', 'wall ms', 'CPU µs/entry', `share of a core at ${INTERVAL_S} s`],
      rows.map((r) => [r.way, fmt(r.cpuS, 3), fmt(r.sysS, 3), fmt(r.ms, 0), r.usPerEntry.toFixed(2), `${(r.coreShare * 100).toFixed(2)}%`]),
    ),
    '',
    'ctsync: KernelMirror.refresh() in this process (the daemon default `sync` selection), CPU = process.cpuUsage() around it; ' +
      '"every line decoded" is the same mirror without the filter\'s in-place form. conntrack -L prints every entry to /dev/null; ' +
      'CPU = its user + system time (bash `time`). conntrackd does no such refresh.',
  ].join('\n');
  const name = `refresh-${SIZE >= 1e6 ? `${SIZE / 1e6}m` : `${SIZE / 1e3}k`}${FIGURES ? '-figures' : ''}`;
  const files = writeResults(name, { env: environment(), reps: REPS, size: SIZE, figures: FIGURES, inTable, intervalS: INTERVAL_S, rows, runs }, md);
  process.stdout.write(md + `\n\nwrote ${files.json} and ${files.md}\n`);
}

main().catch((e) => {
  process.stderr.write(`refresh bench failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
