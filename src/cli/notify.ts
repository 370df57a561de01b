// `ctsync notify` (keepalived's notify scripts) and `ctsync notify-fifo` (its ordered FIFO): each transition is
// handed to the daemon as one transaction; the CLI only parses and reports.
import { createReadStream, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { CommandModule } from 'yargs';
import { parseFifoLine, parseNotifyArgs, type Transition } from '../ha/notify.js';
import type { TransitionResult } from '../ha/machine.js';
import { call, DEFAULT_SOCKET } from './control.js';
import { CliError, Exit } from './exit.js';

/** When this process was forked (clock ticks since boot): orders racing notify scripts keepalived started. */
function forkedAt(): number | undefined {
  try {
    // field 22 of /proc/self/stat, counted after the parenthesised command name (which may contain spaces)
    const stat = readFileSync('/proc/self/stat', 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  } catch {
    return undefined;
  }
}

async function send(socket: string, t: Transition, source: string, fork?: number): Promise<TransitionResult> {
  return (await call(socket, 'ha', { transition: t, source, ...(fork !== undefined ? { forkedAt: fork } : {}) })) as TransitionResult;
}

function describe(r: TransitionResult): string {
  const c = r.commit ? `; commit: ${r.commit.entries} entries in ${r.commit.durationMs} ms (${Object.entries(r.commit.counts).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(', ') || 'nothing'})` : '';
  return `${r.state}: ${r.result}${r.error ? ` (${r.error})` : ''} in ${r.durationMs} ms${c}\n`;
}

export const notifyCommand: CommandModule = {
  command: 'notify <args..>',
  describe: "keepalived notify hook: 'notify GROUP|INSTANCE NAME STATE [PRIO]' (generic notify) or 'notify master|backup|fault|stop'",
  builder: (y) => y.positional('args', { type: 'string', array: true }).option('socket', { type: 'string', default: DEFAULT_SOCKET }),
  handler: async (argv) => {
    const fork = forkedAt();
    const p = parseNotifyArgs((argv.args as (string | number)[]).map(String));
    if (!p.ok) throw new CliError(`notify: ${p.error}. Nothing was changed.`, Exit.Usage, 'CTS_ERR_NOTIFY_ARGS');
    const r = await send(argv.socket as string, p.value, 'notify', fork);
    process.stdout.write(describe(r));
    if (r.result === 'failed') process.exitCode = Exit.Failure;
  },
};

export const notifyFifoCommand: CommandModule = {
  command: 'notify-fifo <fifo>',
  describe: "read keepalived's notify FIFO (vrrp_notify_fifo_script; keepalived appends the FIFO path) and apply transitions in order",
  builder: (y) => y.positional('fifo', { type: 'string', demandOption: true }).option('socket', { type: 'string', default: DEFAULT_SOCKET }),
  handler: async (argv) => {
    const socket = argv.socket as string;
    // read promptly (keepalived drops what the FIFO cannot hold) and apply one at a time, in order
    const queue: Transition[] = [];
    let wake: (() => void) | undefined;
    let closed = false;
    const lines = createInterface({ input: createReadStream(argv.fifo as string) });
    lines.on('line', (line) => {
      const p = parseFifoLine(line);
      if (p.ok === 'ignored') return;
      if (!p.ok) return void process.stderr.write(`ctsync notify-fifo: ${p.error}; skipped\n`);
      queue.push(p.value);
      wake?.();
    });
    lines.on('close', () => {
      closed = true;
      wake?.();
    });
    for (;;) {
      while (queue.length) {
        const t = queue.shift()!;
        // the daemon may be restarting: keep the transition and retry for a while rather than lose it
        for (let attempt = 0; ; attempt++) {
          try {
            process.stdout.write(describe(await send(socket, t, 'fifo')));
            break;
          } catch (err) {
            if (attempt >= 20) {
              process.stderr.write(`ctsync notify-fifo: ${t.state} for ${t.name ?? '?'} not delivered: ${(err as Error).message}\n`);
              break;
            }
            await new Promise((r) => setTimeout(r, 250));
          }
        }
      }
      if (closed) return;
      await new Promise<void>((r) => (wake = r));
      wake = undefined;
    }
  },
};
