// `ctsync ct list|watch|load`: the kernel table from the shell, like conntrack -L/-E/-R but fast.
import { readFileSync } from 'node:fs';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { Conntrack, type DumpFilter, type WriteOpKind } from '../kernel/conntrack.js';
import { flowToJson, PROTO_NAMES } from '../kernel/json.js';
import { Af, type Flow } from '../kernel/types.js';
import { DEFAULT_WRITE_POLICY, invertTuple } from '../kernel/write-rules.js';
import { formatFlow } from './format.js';
import { listDocument, parseFlowFile } from '../kernel/flow-file.js';
import { CliError, Exit } from './exit.js';
import { KernelMirror } from '../state/mirror.js';
import { decodeKey } from '../state/key.js';
import { systemClock } from '../state/clock.js';
import { silentLogger } from '../daemon/log.js';

interface CommonArgs {
  netns?: string;
  json: boolean;
}
interface ListArgs extends CommonArgs {
  family?: string;
  proto?: string;
  zone?: number;
  mark?: number;
  expect: boolean;
}
interface WatchArgs extends CommonArgs {
  rcvbuf?: number;
}
interface LoadArgs {
  netns?: string;
  file: string;
  op: WriteOpKind;
  strict: boolean;
  labels: boolean;
  json: boolean;
}

const out = (s: string) => process.stdout.write(s);

function common<T>(y: Argv<T>) {
  return y
    .option('netns', { type: 'string', describe: 'network namespace (name under /var/run/netns or a path)' })
    .option('json', { type: 'boolean', default: false, describe: 'machine-readable JSON (documented in the README)' });
}

function familyOf(name: string | undefined): number | undefined {
  if (name === undefined) return undefined;
  if (name === 'ipv4') return Af.Inet;
  if (name === 'ipv6') return Af.Inet6;
  throw new CliError(`--family must be ipv4 or ipv6, not '${name}'`, Exit.Usage);
}

function protoOf(name: string | undefined): number | undefined {
  if (name === undefined) return undefined;
  const found = Object.entries(PROTO_NAMES).find(([, n]) => n === name);
  if (!found) throw new CliError(`--proto must be one of ${Object.values(PROTO_NAMES).join(', ')}, not '${name}'`, Exit.Usage);
  return Number(found[0]);
}

async function list(argv: ArgumentsCamelCase<ListArgs>): Promise<void> {
  const ct = new Conntrack({ netns: argv.netns });
  try {
    if (argv.expect) {
      const exps = await ct.dumpExpectations(familyOf(argv.family));
      out(argv.json ? `${JSON.stringify({ version: 1, count: exps.length, expectations: exps.map((e) => JSON.parse(JSON.stringify(e, (_k, v) => (typeof v === 'bigint' ? String(v) : v)))) })}\n` : exps.map((e) => `${JSON.stringify(e)}\n`).join(''));
      return;
    }
    const filter: DumpFilter = { family: familyOf(argv.family), zone: argv.zone, mark: argv.mark };
    const proto = protoOf(argv.proto);
    let flows = await ct.dump(filter);
    if (proto !== undefined) flows = flows.filter((f) => f.orig.proto === proto);
    if (argv.json) out(listDocument(flows));
    else {
      out(flows.map((f) => `${formatFlow(f)}\n`).join(''));
      process.stderr.write(`ctsync: ${flows.length} flow entries have been shown.\n`);
    }
  } finally {
    ct.close();
  }
}

async function watch(argv: ArgumentsCamelCase<WatchArgs>): Promise<void> {
  const show = (kind: string, origin: string, flow: Flow) =>
    out(argv.json ? `${JSON.stringify({ event: kind, origin, flow: flowToJson(flow) })}\n` : `[${kind.toUpperCase()}] ${formatFlow(flow)}\n`);
  // the mirror repairs an overrun by dump-and-diff and reports the differences as the events that were lost
  const mirror = new KernelMirror({ netns: argv.netns, rcvbuf: argv.rcvbuf, clock: systemClock, log: silentLogger });
  let started = false; // the initial dump fills the view; only later differences are news
  mirror.onChange = (key, change, ev) => {
    if (ev) return show(ev.kind, ev.origin, ev.flow);
    if (started) show(change === 'removed' ? 'destroy' : change === 'added' ? 'new' : 'update', 'resync', mirror.local.get(key) ?? flowOfKey(key));
  };
  mirror.onResync = (diff, reason) => {
    if (reason !== 'overrun') return;
    const n = diff.added.length + diff.changed.length + diff.removed.length;
    out(argv.json ? `${JSON.stringify({ event: 'resync', changes: n })}\n` : `[RESYNC] events were lost; ${n} differences repaired from a dump\n`);
  };
  await mirror.start();
  started = true;
  await new Promise<void>((resolve) => {
    const stop = () => {
      mirror.close();
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

/** A removed entry's key, shown as a flow (its other fields are gone with it). */
function flowOfKey(key: string): Flow {
  const p = decodeKey(key);
  return { family: p.family, orig: p.orig, reply: invertTuple(p.orig), ...(p.ctZone !== undefined ? { zone: p.ctZone } : {}) };
}

async function load(argv: ArgumentsCamelCase<LoadArgs>): Promise<void> {
  let text: string;
  try {
    text = readFileSync(argv.file === '-' || argv.file === '' ? 0 : argv.file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${argv.file}: ${(err as Error).message}`);
  }
  const { flows, problems } = parseFlowFile(text);
  if (problems.length) {
    // all or nothing: one bad entry rejects the file before anything is written
    throw new CliError(`${argv.file}: ${problems.length} bad entr${problems.length === 1 ? 'y' : 'ies'}, nothing written:\n  ${problems.slice(0, 20).join('\n  ')}${problems.length > 20 ? `\n  ... and ${problems.length - 20} more` : ''}`);
  }
  const ct = new Conntrack({ netns: argv.netns });
  try {
    const report = await ct.write(
      flows.map((flow) => ({ op: argv.op, flow })),
      { ...DEFAULT_WRITE_POLICY, liberal: !argv.strict, labels: argv.labels },
    );
    const { results: _r, ...summary } = report;
    if (argv.json) out(`${JSON.stringify({ entries: flows.length, ...summary })}\n`);
    else {
      const c = report.counts;
      out(`${flows.length} entries in ${report.durationMs.toFixed(0)} ms: ${c.created} created, ${c.updated} updated, ${c.replaced} replaced, ${c.deleted} deleted, ${c.absent} absent, ${c.failed} failed${c.failed ? ` (${Object.entries(report.failedByErrno).map(([e, n]) => `${e} ${n}`).join(', ')})` : ''}\n`);
    }
    if (report.counts.failed) process.exitCode = Exit.Failure;
  } finally {
    ct.close();
  }
}

export const ctCommand: CommandModule = {
  command: 'ct <command>',
  describe: 'read and write the kernel conntrack table directly',
  builder: (y) =>
    y
      .command<ListArgs>(
        'list',
        'list conntrack entries (like conntrack -L)',
        (y) =>
          common(y)
            .option('family', { type: 'string', choices: ['ipv4', 'ipv6'] })
            .option('proto', { type: 'string', describe: 'tcp, udp, icmp, ...' })
            .option('zone', { type: 'number' })
            .option('mark', { type: 'number' })
            .option('expect', { type: 'boolean', default: false, describe: 'list expectations instead' }) as unknown as Argv<ListArgs>,
        list,
      )
      .command<WatchArgs>(
        'watch',
        'print conntrack events as they happen (like conntrack -E); lost events are repaired from a dump',
        (y) => common(y).option('rcvbuf', { type: 'number', describe: 'event socket buffer in bytes (default 16 MiB)' }) as unknown as Argv<WatchArgs>,
        watch,
      )
      .command<LoadArgs>(
        'load <file>',
        'write the flows of a file (ct list --json output, or one JSON flow per line; - for stdin) into the table',
        (y) =>
          y
            .positional('file', { type: 'string', demandOption: true })
            .option('netns', { type: 'string' })
            .option('op', { choices: ['upsert', 'create', 'replace', 'update', 'delete'] as const, default: 'upsert' as const })
            .option('strict', { type: 'boolean', default: false, describe: 'strict TCP window tracking (no BE_LIBERAL)' })
            .option('labels', { type: 'boolean', default: false, describe: 'write ct labels (the ruleset must use ct label)' })
            .option('json', { type: 'boolean', default: false }) as unknown as Argv<LoadArgs>,
        load,
      )
      .demandCommand(1, 'Name a ct command: list, watch or load.'),
  handler: () => {},
};
