// Repeat-run statistics and result files (bench/results/NAME.json + NAME.md) shared by the kernel benchmarks.
import { mkdirSync, writeFileSync } from 'node:fs';
import { arch, cpus, release } from 'node:os';
import path from 'node:path';
import { repoRoot } from './proc.js';

export interface Summary {
  median: number;
  min: number;
  max: number;
  /** (max - min) / median: the noise band of the runs, 0 for one run. */
  spread: number;
  runs: number[];
}

export function summarize(runs: number[]): Summary {
  const s = [...runs].sort((a, b) => a - b);
  const n = s.length;
  const median = n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
  const min = s[0] ?? NaN;
  const max = s[n - 1] ?? NaN;
  return { median, min, max, spread: median ? (max - min) / median : 0, runs };
}

/** "123.4k (±5%)": a median and its spread, for tables. */
export function fmt(s: Summary, digits = 1, unit: 'k' | '' = ''): string {
  const v = unit === 'k' ? s.median / 1000 : s.median;
  const spread = s.runs.length > 1 ? ` (±${Math.round((s.spread * 100) / 2)}%)` : '';
  return `${v.toFixed(digits)}${unit}${spread}`;
}

export function table(head: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

/** Where the machine and kernel stand, recorded with every result. */
export function environment(): Record<string, string | number> {
  return { kernel: release(), arch: arch(), cpus: cpus().length, cpu: cpus()[0]?.model ?? '?', node: process.version, date: new Date().toISOString() };
}


/** Writes bench/results/NAME.json and NAME.md in the source tree ($CTSYNC_BENCH_RESULTS overrides the directory). */
export function writeResults(name: string, json: unknown, md: string): { json: string; md: string } {
  const dir = process.env.CTSYNC_BENCH_RESULTS ?? resultsDir();
  mkdirSync(dir, { recursive: true });
  const j = path.join(dir, `${name}.json`);
  const m = path.join(dir, `${name}.md`);
  writeFileSync(j, JSON.stringify(json, null, 2) + '\n');
  writeFileSync(m, md.endsWith('\n') ? md : md + '\n');
  return { json: j, md: m };
}

function resultsDir(): string {
  return path.join(repoRoot(), 'bench', 'results');
}
