// Benchmark: dump of a 1M-entry table, entries/s and peak memory, Conntrack.dump() vs `conntrack -L`.
//
// Run by hand, as root:  npx tsc -p . && node dist/bench/dump.js [--reps 3] [--size 1000000]
// Writes bench/results/dump.{json,md}. One throwaway `ctsb-*` namespace, filled by Conntrack.write, deleted at the end;
// the global nf_conntrack_max is raised for the run when needed (it cannot be set per namespace here) and restored.
//
// - ctsync: a child node process, dump() into Flow objects (what the daemon keeps); peak = VmHWM − RSS before.
// - conntrack -L: output to /dev/null, `/usr/bin/time -v` for its max RSS; it formats and prints, it keeps nothing.
import { LineChild, nodeChild } from './lib/proc.js';
import { environment, fmt, summarize, table, writeResults, type Summary } from './lib/stats.js';
import { tableCount, withTableLab } from './lib/lab.js';
import { opt } from './lib/args.js';

const REPS = Number(opt('--reps') ?? 3);
const SIZE = Number(opt('--size') ?? 1_000_000);
const MiB = 1 << 20;

interface Run {
  tool: string;
  ms: number;
  entries: number;
  rate: number;
  peakMiB: number; // memory for the dump: RSS growth (ctsync) or max RSS of the whole process (conntrack -L)
  maxRssMiB: number; // the process's max RSS
}

async function main(): Promise<void> {
  const runs: Run[] = [];
  let inTable = 0;
  await withTableLab(SIZE, async (lab) => {
    const ns = await lab.addNamespace('dump');
    const filler = new LineChild(lab, ns, nodeChild('writes-child', [SIZE, 9]));
    if ((await filler.next(120_000)) !== 'ready') throw new Error('filler not ready');
    const filled = JSON.parse(await filler.ask('go', 600_000)) as { counts: Record<string, number>; failedByErrno: Record<string, number> };
    await filler.proc.stop();
    inTable = await tableCount(lab, ns);
    // another process on the machine may put the global nf_conntrack_max back while we fill: say so, go on
    if (inTable !== SIZE) process.stderr.write(`table holds ${inTable} of ${SIZE}: ${JSON.stringify(filled.failedByErrno)}\n`);
    for (let rep = 0; rep < REPS; rep++) {
      const child = new LineChild(lab, ns, nodeChild('dump-child', []));
      const r = JSON.parse(await child.next(600_000)) as { ms: number; entries: number; rssBefore: number; rssPeak: number };
      await child.proc.stop();
      runs.push({ tool: 'ctsync Conntrack.dump()', ms: r.ms, entries: r.entries, rate: r.entries / (r.ms / 1000), peakMiB: (r.rssPeak - r.rssBefore) / MiB, maxRssMiB: r.rssPeak / MiB });

      const t0 = performance.now();
      const res = await lab.exec(ns, ['sh', '-c', 'exec /usr/bin/time -v conntrack -L >/dev/null'], { timeoutMs: 600_000 });
      const ms = performance.now() - t0;
      const shown = Number(/(\d+) flow entries have been shown/.exec(res.stderr)?.[1] ?? NaN);
      const maxRss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(res.stderr)?.[1] ?? NaN) * 1024;
      runs.push({ tool: 'conntrack -L', ms, entries: shown, rate: shown / (ms / 1000), peakMiB: maxRss / MiB, maxRssMiB: maxRss / MiB });
      for (const x of runs.slice(-2)) process.stderr.write(`${x.tool.padEnd(24)} ${x.entries} in ${x.ms.toFixed(0)} ms = ${Math.round(x.rate)}/s, peak ${x.peakMiB.toFixed(1)} MiB\n`);
    }
  });
  const rows: { tool: string; rate: Summary; ms: Summary; peakMiB: Summary; maxRssMiB: Summary; complete: boolean }[] = [];
  for (const tool of ['ctsync Conntrack.dump()', 'conntrack -L']) {
    const mine = runs.filter((r) => r.tool === tool);
    rows.push({
      tool,
      rate: summarize(mine.map((r) => r.rate)),
      ms: summarize(mine.map((r) => r.ms)),
      peakMiB: summarize(mine.map((r) => r.peakMiB)),
      maxRssMiB: summarize(mine.map((r) => r.maxRssMiB)),
      complete: mine.every((r) => r.entries === inTable),
    });
  }
  const md = [
    `# Dump of ${SIZE} entries, ${REPS} run(s), median (±half the spread)`,
    '',
    table(
      ['tool', 'entries/s', 'time ms', 'memory for the dump MiB', 'bytes/entry', 'max RSS MiB', 'all entries'],
      rows.map((r) => [r.tool, fmt(r.rate, 1, 'k'), fmt(r.ms, 0), fmt(r.peakMiB, 0), r.tool.startsWith('ctsync') ? Math.round((r.peakMiB.median * MiB) / inTable) : '-', fmt(r.maxRssMiB, 0), r.complete ? 'yes' : 'NO']),
    ),
    '',
    `Table: ${inTable} entries. ` +
      'ctsync: dump() returns all entries as Flow objects; memory = VmHWM − RSS before the dump, bytes/entry = that / entries. ' +
      'conntrack -L prints each entry (to /dev/null) and keeps nothing; memory = its max RSS (/usr/bin/time -v).',
  ].join('\n');
  const files = writeResults('dump', { env: environment(), reps: REPS, size: SIZE, inTable, rows, runs }, md);
  process.stdout.write(md + `\n\nwrote ${files.json} and ${files.md}\n`);
}

main().catch((e) => {
  process.stderr.write(`dump bench failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
