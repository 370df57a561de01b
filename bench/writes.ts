// Benchmark: batched upserts of 100k and 1M entries with a result per entry, vs `conntrack -R FILE` and `conntrackd -c`.
//
// Run by hand, as root:  npx tsc -p . && node dist/bench/writes.js [--reps 3] [--sizes 100000,1000000] [--no-conntrackd]
// Writes bench/results/writes.{json,md}. Works in throwaway `ctsb-*` namespaces, deleted at the end. The global
// nf_conntrack_max is raised for the run when it is below the largest size (it cannot be set per namespace here)
// and restored afterwards.
//
// - ctsync: a child node process runs Conntrack.write(upsert × N) into an empty table (time measured around write()).
// - conntrack -R: the same entries as `-I` lines in a file; wall time of the whole command (it stops at the first
//   error and reports nothing per entry).
// - conntrackd -c: an FTFW pair over UDP on a veth; the active's table holds the entries, the standby receives them
//   into its external cache (resync request -n), then `conntrackd -c` commits them into the standby's empty table;
//   wall time of the command, which returns when the commit is done.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Lab } from '../src/lab/netns.js';
import { conntrackLine, flush } from './lib/flows.js';
import { conntrackdPair } from './ref/conntrackd.js';
import { waitFor } from './lib/proc.js';
import { LineChild, nodeChild } from './lib/proc.js';
import { environment, fmt, summarize, table, writeResults, type Summary } from './lib/stats.js';
import { raiseConntrackBuckets, raiseConntrackMax } from './lib/sysctl.js';
import { tableCount } from './lib/lab.js';
import { flag, opt } from './lib/args.js';

const REPS = Number(opt('--reps') ?? 3);
const SIZES = (opt('--sizes') ?? '100000,1000000').split(',').map(Number);
const CONNTRACKD = !flag('--no-conntrackd');
const SEED = 7;

interface Run {
  tool: string;
  size: number;
  ms: number;
  rate: number;
  inTable: number; // entries in the table afterwards: must equal size
  detail?: unknown;
}


async function ours(lab: Lab, ns: string, size: number): Promise<Omit<Run, 'inTable'>> {
  const child = new LineChild(lab, ns, nodeChild('writes-child', [size, SEED]));
  try {
    if ((await child.next(120_000)) !== 'ready') throw new Error('writes-child not ready');
    const r = JSON.parse(await child.ask('go', 600_000)) as { ms: number; results: number; counts: Record<string, number> };
    if (r.results !== size || r.counts.created !== size) throw new Error(`ctsync wrote ${JSON.stringify(r)}`);
    return { tool: 'ctsync Conntrack.write (upsert)', size, ms: r.ms, rate: size / (r.ms / 1000), detail: r };
  } finally {
    await child.proc.stop();
  }
}

async function conntrackR(lab: Lab, ns: string, size: number, file: string): Promise<Omit<Run, 'inTable'>> {
  const t0 = performance.now();
  await lab.exec(ns, ['conntrack', '-R', file], { timeoutMs: 600_000 });
  const ms = performance.now() - t0;
  return { tool: 'conntrack -R', size, ms, rate: size / (ms / 1000) };
}

function writeLoadFile(dir: string, size: number): string {
  const file = path.join(dir, `load-${size}.txt`);
  const lines: string[] = [];
  for (let i = 0; i < size; i++) lines.push(conntrackLine(i, SEED));
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces)');
  Lab.sweep('ctsb-');
  const biggest = Math.max(...SIZES);
  // two full tables at once in the conntrackd runs (active + standby), plus headroom; the limit is per namespace
  const restoreMax = raiseConntrackMax(Math.max(262144, Math.ceil(biggest * 1.1)));
  const restoreBuckets = raiseConntrackBuckets(Math.max(262144, biggest));
  const dir = mkdtempSync(path.join(tmpdir(), 'ctsb-writes-'));
  const lab = new Lab({ prefix: 'ctsb-' });
  const runs: Run[] = [];
  const count = (ns: string) => tableCount(lab, ns);
  const record = (r: Omit<Run, 'inTable'>, inTable: number) => {
    runs.push({ ...r, inTable });
    process.stderr.write(`${r.tool.padEnd(32)} ${String(r.size).padStart(8)} in ${r.ms.toFixed(0)} ms = ${Math.round(r.rate)}/s, table ${inTable}\n`);
  };
  try {
    const ns = await lab.addNamespace('wr');
    for (const size of SIZES) {
      const file = writeLoadFile(dir, size);
      for (let rep = 0; rep < REPS; rep++) {
        await flush(ns);
        record(await ours(lab, ns, size), await count(ns));
        await flush(ns);
        record(await conntrackR(lab, ns, size, file), await count(ns));
      }
      if (CONNTRACKD) {
        // the same conntrackd pair as the sync reference (bench/ref/conntrackd.ts), in a lab of its own
        const pairLab = new Lab({ prefix: 'ctsb-' });
        try {
          const pair = await conntrackdPair(pairLab, { capacity: size });
          const [act, sby] = [pair.active.ns, pair.standby.ns];
          const pcount = (ns: string) => tableCount(pairLab, ns);
          try {
            await pairLab.exec(act, ['conntrack', '-R', file], { timeoutMs: 600_000 });
            await pair.cli('standby', ['-n']); // ask the active for everything it has
            await waitFor(async () => (await pair.statsExternal()) >= size, 300_000, `standby external cache of ${size}`);
            for (let rep = 0; rep < REPS; rep++) {
              await flush(sby);
              const t0 = performance.now();
              await pair.cli('standby', ['-c']);
              const ms = performance.now() - t0;
              const inTable = await pcount(sby);
              record({ tool: 'conntrackd -c (FTFW standby)', size, ms, rate: inTable / (ms / 1000) }, inTable);
            }
          } finally {
            await pair.stop();
          }
        } finally {
          await pairLab.teardown();
        }
      }
      rmSync(file, { force: true });
    }
  } finally {
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
    restoreMax.restore();
    restoreBuckets.restore();
  }

  const rows: { tool: string; size: number; rate: Summary; ms: Summary; complete: boolean }[] = [];
  for (const size of SIZES) {
    for (const tool of [...new Set(runs.map((r) => r.tool))]) {
      const mine = runs.filter((r) => r.size === size && r.tool === tool);
      if (mine.length) rows.push({ tool, size, rate: summarize(mine.map((r) => r.rate)), ms: summarize(mine.map((r) => r.ms)), complete: mine.every((r) => r.inTable === size) });
    }
  }
  const md = [
    `# Batched writes into an empty table, ${REPS} run(s), median (±half the spread)`,
    '',
    table(
      ['entries', 'tool', 'entries/s', 'time ms', 'all in table', 'per-entry results'],
      rows.map((r) => [r.size, r.tool, fmt(r.rate, 1, 'k'), fmt(r.ms, 0), r.complete ? 'yes' : 'NO', r.tool.startsWith('ctsync') ? 'yes' : 'no']),
    ),
    '',
    'Goal: ≥ 250k entries/s. Entries: TCP ESTABLISHED, IPv4, timeout 1800 s. conntrack -R stops at the first failing line; ' +
      'conntrackd -c reports only success or failure of the whole commit.',
  ].join('\n');
  const files = writeResults('writes', { env: environment(), reps: REPS, sizes: SIZES, rows, runs }, md);
  process.stdout.write(md + `\n\nwrote ${files.json} and ${files.md}\n`);
}

main().catch((e) => {
  process.stderr.write(`writes bench failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
