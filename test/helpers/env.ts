// What kernel and e2e tests need from the machine, and how they run the built `ctsync` CLI.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { request } from '../../src/control/client.js';
import type { Lab, LabProcess } from '../../src/lab/netns.js';

export const CTSYNC_BIN = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));

/** Why a kernel (or, with needsRoot false, any) test file cannot run here (printed by the caller, never a silent skip), or undefined. */
export function cannotRun(bins: string[] = ['ip', 'nft', 'conntrack', 'python3'], needsBuild = false, needsRoot = true): string | undefined {
  if (needsRoot && process.getuid?.() !== 0) return 'needs root (network namespaces, nftables, conntrack writes)';
  for (const bin of bins) {
    try {
      execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    } catch {
      return `needs ${bin} on PATH (bash scripts/install.sh installs it)`;
    }
  }
  if (needsBuild && !existsSync(CTSYNC_BIN)) return `needs the built CLI at ${CTSYNC_BIN} (run npm run build; npm test does)`;
  return undefined;
}

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run `ctsync ARGS` to completion (optionally with stdin). */
export function runCtsync(args: string[], input?: string, timeoutMs = 60_000): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CTSYNC_BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`ctsync ${args.join(' ')} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.end(input ?? '');
  });
}

/** `ctsync daemon -c conf` in ns, once its control socket at sock answers (10 s, else the error shows its stderr);
 * onLogLine gets each line of its log (pino JSON on stderr). */
export async function startDaemon(lab: Lab, ns: string, conf: string, sock: string, onLogLine?: (line: string) => void): Promise<LabProcess> {
  const proc = lab.spawn(ns, [process.execPath, CTSYNC_BIN, 'daemon', '-c', conf], { onErrLine: onLogLine });
  for (const until = Date.now() + 10_000; ; await new Promise((r) => setTimeout(r, 100))) {
    try {
      await request(sock, 'stats');
      return proc;
    } catch {
      if (Date.now() > until) throw new Error(`daemon in ${ns} did not start: ${proc.stderrTail.join('\n')}`);
    }
  }
}
