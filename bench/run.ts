// Runs the three kernel benchmarks one after another and gathers their tables into bench/results/kernel.{json,md}.
//
// Run by hand, as root:  npx tsc -p . && node dist/bench/run.js [--quick]   (or: npm run build && npm run bench)
// --quick: one repetition and smaller sizes, to check the setup in a few minutes. --collect: run nothing, only gather
// the latest bench/results/{ingest,writes,dump}.* into kernel.*. Each benchmark cleans up after itself.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { nodeChild, repoRoot } from './lib/proc.js';
import { environment, writeResults } from './lib/stats.js';

const quick = process.argv.includes('--quick');
const collect = process.argv.includes('--collect');
const BENCHES: [string, string[]][] = [
  ['ingest', quick ? ['--quick'] : []],
  ['writes', quick ? ['--reps', '1', '--sizes', '100000'] : []],
  ['dump', quick ? ['--reps', '1', '--size', '200000'] : []],
];


const env = environment();
const json: Record<string, unknown> = { env };
const md: string[] = ['# ctsync kernel benchmarks', '', `${env.date}: kernel ${env.kernel}, ${env.cpus} × ${env.cpu}, node ${env.node}`, ''];
let failed = 0;
for (const [name, args] of BENCHES) {
  const [node, script, ...rest] = nodeChild(name, args);
  const r = collect ? { status: 0, signal: null } : spawnSync(node!, [script!, ...rest], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) {
    failed++;
    md.push(`## ${name}: FAILED (exit ${r.status ?? r.signal})`, '');
    continue;
  }
  const dir = process.env.CTSYNC_BENCH_RESULTS ?? path.join(repoRoot(), 'bench', 'results');
  json[name] = JSON.parse(readFileSync(path.join(dir, `${name}.json`), 'utf8'));
  md.push(readFileSync(path.join(dir, `${name}.md`), 'utf8').replace(/^# /, '## '), '');
}
const files = writeResults('kernel', json, md.join('\n'));
process.stdout.write(md.join('\n') + `\nwrote ${files.json} and ${files.md}\n`);
process.exitCode = failed ? 1 : 0;
