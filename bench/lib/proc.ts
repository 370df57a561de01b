// Child processes of the kernel benchmarks: line-protocol children in a namespace, CPU time and RSS from /proc, gcc builds.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Lab, LabProcess } from '../../src/lab/netns.js';

/** The source tree's root, from bench/lib (vite-node) or dist/bench/lib (tsc) alike. */
export function repoRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const parts = here.split(path.sep);
  const i = parts.lastIndexOf('dist');
  return i >= 0 ? parts.slice(0, i).join(path.sep) : path.resolve(here, '../..');
}

/** node + the compiled (or, under vite-node, the source) script of a bench child. */
export function nodeChild(name: string, args: (string | number)[]): string[] {
  const compiled = path.join(repoRoot(), 'dist', 'bench', `${name}.js`);
  return [process.execPath, compiled, ...args.map(String)];
}

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** utime + stime of a process (all its threads) in seconds, from /proc/PID/stat; NaN when it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime is field 14, stime field 15
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** VmRSS and VmHWM (peak) of a process in bytes. */
export function rssBytes(pid: number | 'self'): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** A child speaking a line protocol: `next()` resolves with its next stdout line. */
export class LineChild {
  readonly proc: LabProcess;
  private readonly lines: string[] = [];
  private waiter: ((l: string) => void) | undefined;

  constructor(lab: Lab, ns: string, argv: string[]) {
    this.proc = lab.spawn(ns, argv, {
      onLine: (l) => {
        if (this.waiter) {
          const w = this.waiter;
          this.waiter = undefined;
          w(l);
        } else this.lines.push(l);
      },
    });
  }

  next(timeoutMs = 60_000): Promise<string> {
    const queued = this.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${this.proc.argv.join(' ')}: no output within ${timeoutMs} ms; stderr: ${this.proc.stderrTail.join(' | ')}`)), timeoutMs);
      void this.proc.exited.then((code) => {
        clearTimeout(t);
        reject(new Error(`${this.proc.argv.join(' ')} exited (${code}): ${this.proc.stderrTail.join(' | ')}`));
      });
      this.waiter = (l) => {
        clearTimeout(t);
        resolve(l);
      };
    });
  }

  /** Sends a line and returns the answer. */
  async ask(line: string, timeoutMs?: number): Promise<string> {
    this.proc.write(line + '\n');
    return this.next(timeoutMs);
  }
}

/** Compiles a C file of bench/c with gcc into a fresh temp dir; `remove()` deletes it. */
export function buildC(name: string, libs: string[] = []): { exe: string; remove: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'ctsb-'));
  const exe = path.join(dir, name);
  try {
    execFileSync('gcc', ['-O2', '-Wall', '-o', exe, path.join(repoRoot(), 'bench', 'c', `${name}.c`), ...libs], { stdio: 'inherit' });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return { exe, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 100 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`${what}: not ready within ${timeoutMs} ms`);
    await sleep(100);
  }
}
