// Commands that talk to a running daemon over its control socket: stats, dump, resync, bulk, refresh.
import type { Argv, CommandModule } from 'yargs';
import { dump, request, DaemonNotRunning } from '../control/client.js';
import type { DaemonStats } from '../daemon/stats.js';
import { CliError, Exit } from './exit.js';

export const DEFAULT_SOCKET = '/run/ctsync/ctsync.sock';

const socketOption = <T>(y: Argv<T>) =>
  y.option('socket', { type: 'string', default: DEFAULT_SOCKET, describe: "the daemon's control socket (control.socket)" });

export async function call(socket: string, cmd: string, args: Record<string, unknown> = {}): Promise<unknown> {
  const tty = process.stderr.isTTY;
  try {
    return await asCliError(cmd, () =>
      request(socket, cmd, args, (p) => {
        if (tty) process.stderr.write(`\r${p.what}: ${p.done}/${p.total}`);
      }),
    );
  } finally {
    if (tty) process.stderr.write('\r\x1b[K');
  }
}

/** A control request's failure as the CLI reports it: not running → exit 3, anything else → exit 1. */
async function asCliError<T>(cmd: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof DaemonNotRunning) throw new CliError(err.message, Exit.NotRunning, err.code);
    const e = err as Error & { code?: string };
    throw new CliError(`${cmd} failed: ${e.code ? `${e.code}: ` : ''}${e.message}`, Exit.Failure, e.code);
  }
}

const ago = (ms: number) => (ms < 0 ? 'never' : ms < 1000 ? `${ms} ms ago` : ms < 120_000 ? `${(ms / 1000).toFixed(1)} s ago` : `${Math.round(ms / 60000)} min ago`);

/** One screen that answers "is my standby in sync and how far behind is it". */
export function renderStats(s: DaemonStats): string {
  const lines = [`ctsync ${s.node} (cluster ${s.cluster}), up ${s.uptimeS} s: ${s.inSync ? 'IN SYNC' : 'NOT IN SYNC'}`];
  const k = s.kernel;
  lines.push(`  kernel   ${k.entries} flows synced; events new ${k.events.new} update ${k.events.update} destroy ${k.events.destroy}; overruns ${k.overruns}; resyncs ${k.resyncs}${k.lastResyncAgoS !== null ? ` (last ${k.lastResyncAgoS} s ago)` : ''}`);
  const held = s.sync.heldMs ? `${s.sync.pending} changes held ${s.sync.heldMs} ms for a congested link` : '';
  for (const p of s.peers) {
    const behind = [p.unackedFrames ? `behind by ${p.unackedFrames} frames (oldest ${p.oldestUnackedMs} ms)` : '', held].filter(Boolean).join(', ') || 'caught up';
    lines.push(`  peer ${p.nodeId.padEnd(8)} link ${p.link}, ${p.state.replace('_', ' ')} (${p.why}); our changes: ${behind}`);
    lines.push(`  ${' '.repeat(13)} its flows held here: ${p.peerTableSize} (${p.peerInSync ? 'complete' : 'incomplete'}${p.paths ? `, from ${p.via}` : ''}), last frame ${ago(p.lastFrameAgoMs)}${p.divergentBuckets ? `, ${p.divergentBuckets} buckets diverged at last digest` : ''}`);
    for (const [name, v] of Object.entries(p.paths ?? {})) lines.push(`  ${' '.repeat(13)} via ${name.padEnd(6)} link ${v.link}, ${v.state.replace('_', ' ')}; ${v.peerTableSize} flows (${v.haveCopy ? 'complete' : 'incomplete'}), last frame ${ago(Math.round(v.lastFrameAgoMs))}`);
  }
  if (!s.peers.length) lines.push('  peers    none configured');
  const h = s.ha;
  const last = h.lastTransition as { state: string; result: string; at: string; durationMs: number; commit?: { entries: number; durationMs: number } } | null;
  lines.push(`  ha       role ${h.role}; ${h.ready ? 'ready to take over' : `NOT ready (${h.notReady.join('; ')})`}${h.stale.length ? `; stale copy: ${h.stale.join('; ')}` : ''}${last ? `; last ${last.state} ${last.result} at ${last.at} in ${last.durationMs} ms${last.commit ? ` (committed ${last.commit.entries} in ${last.commit.durationMs} ms)` : ''}` : ''}`);
  const w = h.warm;
  if (w) lines.push(`  warm     ${w.held} peer flows in our kernel, ${w.pending} to write${w.trusted ? '' : ' (events were lost: the takeover writes the whole copy)'}; rounds ${w.rounds}, written ${w.written}, deleted ${w.deleted}, refused ${w.failed}`);
  const r = s.transport.redis as { status: string; refusal?: string; queuedFrames: number; needsResync: boolean; outages: number; resyncsRequested: number } | undefined;
  if (r) lines.push(`  redis    ${r.status}${r.refusal ? ` (refused: ${r.refusal})` : ''}; ${r.queuedFrames} frames buffered${r.needsResync ? ', buffer overflowed: full resync when Redis is back' : ''}; outages ${r.outages}; resyncs ${r.resyncsRequested}`);
  const drops = Object.entries(s.drops);
  lines.push(`  drops    ${drops.length ? drops.map(([r, n]) => `${r} ${n}`).join(', ') : 'none'}`);
  return `${lines.join('\n')}\n`;
}

export const controlCommands: CommandModule[] = [
  {
    command: 'stats',
    describe: 'show whether this node is in sync and how far behind its peers are',
    builder: (y) => socketOption(y).option('json', { type: 'boolean', default: false }).option('check', { type: 'boolean', default: false, describe: 'exit 4 unless in sync' }),
    handler: async (argv) => {
      const s = (await call(argv.socket as string, 'stats')) as DaemonStats;
      process.stdout.write(argv.json ? `${JSON.stringify(s, null, 2)}\n` : renderStats(s));
      if (argv.check && !s.inSync) process.exitCode = Exit.NotInSync;
    },
  },
  {
    command: 'dump',
    describe: "print the daemon's local table (this kernel's synced flows) or what peers sent (--peer)",
    builder: (y) =>
      socketOption(y)
        .option('local', { type: 'boolean', describe: 'the local table (default)' })
        .option('peer', { type: 'string', describe: 'the peer tables (all peers, or --peer ID)' })
        .option('json', { type: 'boolean', default: true, describe: 'the ct list --json document (the only format so far)' })
        .conflicts('local', 'peer'),
    handler: async (argv) => {
      const args: Record<string, unknown> = { table: argv.peer !== undefined ? 'peer' : 'local' };
      if (typeof argv.peer === 'string' && argv.peer !== '') args.peer = argv.peer;
      await asCliError('dump', () => dump(argv.socket as string, args, (text) => process.stdout.write(text))); // as it comes
    },
  },
  {
    command: 'commit',
    describe: 'write what the peers sent into this kernel now (keepalived does this on MASTER)',
    builder: (y) => socketOption(y).option('json', { type: 'boolean', default: false }),
    handler: async (argv) => {
      const r = (await call(argv.socket as string, 'commit')) as { entries: number; durationMs: number; ratePerSec: number; counts: Record<string, number>; failedByErrno: Record<string, number> };
      if (argv.json) process.stdout.write(`${JSON.stringify(r)}\n`);
      else process.stdout.write(`committed ${r.entries} entries in ${r.durationMs} ms (${r.ratePerSec}/s): ${Object.entries(r.counts).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(', ') || 'nothing to do'}${Object.keys(r.failedByErrno).length ? `; failures ${JSON.stringify(r.failedByErrno)}` : ''}\n`);
      if (r.counts.failed) process.exitCode = Exit.Failure;
    },
  },
  {
    command: 'flush [table]',
    describe: "flush peer: drop what peers sent and ask them for a full bulk; flush local: rebuild the local table from a kernel dump",
    builder: (y) => socketOption(y).positional('table', { choices: ['local', 'peer'] as const, default: 'peer' as const }),
    handler: async (argv) => {
      process.stdout.write(`${JSON.stringify(await call(argv.socket as string, 'flush', { table: argv.table }))}\n`);
    },
  },
  {
    command: 'resync',
    describe: 'ask the peers for a full bulk of their tables',
    builder: socketOption,
    handler: async (argv) => {
      await call(argv.socket as string, 'resync');
      process.stdout.write('resync requested from every peer\n');
    },
  },
  {
    command: 'bulk',
    describe: 'send our whole local table to the peers now',
    builder: socketOption,
    handler: async (argv) => {
      const r = (await call(argv.socket as string, 'bulk')) as { sent: number };
      process.stdout.write(`bulk sent: ${r.sent} entries\n`);
    },
  },
];
