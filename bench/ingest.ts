// Benchmark: the highest NEW-event rate our EventStream reads with zero loss, and its CPU per event, vs C and conntrack -E.
//
// Run by hand, as root:  npx tsc -p . && node dist/bench/ingest.js [--reps 3] [--quick]
// Writes bench/results/ingest.{json,md}. Everything runs in throwaway `ctsb-*` namespaces that are deleted at the end.
//
// Two loads, each read by one listener at a time (its own process, so its CPU time is its own, from /proc/PID/stat):
//  - inserts: a child node process creates entries with Conntrack.write (batched ctnetlink) at paced rates;
//  - traffic: two udp-flood senders through a forwarding namespace, every datagram a new flow (the kernel's top rate).
// Loss = entries created − NEW events received (ENOBUFS overruns counted too). Listeners: ours with a 16 and a 64 MiB
// buffer, bench/c/ct-listen.c (raw socket, recv() per datagram, 16 MiB) and `conntrack -E -e NEW -b 16 MiB`.
import { Lab, type LabProcess } from '../src/lab/netns.js';
import { routerLab } from '../src/lab/topology.js';
import { udpFlood } from '../src/lab/traffic.js';
import { flush } from './lib/flows.js';
import { LineChild, buildC, cpuSeconds, nodeChild, sleep } from './lib/proc.js';
import { environment, fmt, summarize, table, writeResults, type Summary } from './lib/stats.js';

const MiB = 1 << 20;
const args = process.argv.slice(2);
const flag = (name: string, dflt: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const QUICK = args.includes('--quick');
const REPS = flag('--reps', QUICK ? 1 : 3);
/** Paced insert rates per second; 0 = as fast as the producer goes. */
const RATES = QUICK ? [50_000, 0] : [25_000, 50_000, 75_000, 100_000, 0];
const SECONDS_PER_TRIAL = 2;
const MAX_PER_TRIAL = 200_000; // the table holds nf_conntrack_max (262144 here) per namespace
const FLOOD_PER_SENDER = QUICK ? 50_000 : 100_000;

type ListenerKind = 'ctsync' | 'c' | 'conntrack';
interface ListenerSpec {
  name: string;
  kind: ListenerKind;
  rcvbuf: number;
}
const LISTENERS: ListenerSpec[] = [
  { name: 'ctsync EventStream 16 MiB', kind: 'ctsync', rcvbuf: 16 * MiB },
  { name: 'ctsync EventStream 64 MiB', kind: 'ctsync', rcvbuf: 64 * MiB },
  { name: 'C ct-listen 16 MiB', kind: 'c', rcvbuf: 16 * MiB },
  { name: 'conntrack -E 16 MiB', kind: 'conntrack', rcvbuf: 16 * MiB },
];

interface Trial {
  load: 'inserts' | 'traffic';
  listener: string;
  targetRate: number; // 0 = unpaced
  created: number;
  rate: number; // achieved creation rate, entries/s
  received: number;
  overruns: number;
  lost: number;
  cpuUsPerEvent: number;
}

/** A running listener: how to read its count and how to stop it. */
interface Listener {
  pid: number;
  /** NEW events so far, or undefined when the listener cannot tell before it exits (conntrack -E). */
  count(): Promise<number | undefined>;
  stop(): Promise<{ received: number; overruns: number }>;
}

async function startListener(lab: Lab, ns: string, spec: ListenerSpec, cExe: string): Promise<Listener> {
  if (spec.kind === 'conntrack') {
    // stdout to /dev/null: the reference pays for formatting its lines, not for a pipe we would have to read
    const cmd = `exec conntrack -E -e NEW -b ${spec.rcvbuf} >/dev/null`;
    const proc: LabProcess = lab.spawn(ns, ['sh', '-c', cmd]);
    await sleep(300); // no ready line: give it time to subscribe
    return {
      pid: proc.pid,
      count: async () => undefined,
      stop: async () => {
        process.kill(proc.pid, 'SIGINT'); // prints "N flow events have been shown." on the way out
        await Promise.race([proc.exited, sleep(5000)]);
        await proc.stop();
        const err = proc.stderrTail.join('\n');
        const shown = /(\d+) flow events have been shown/.exec(err);
        return { received: shown ? Number(shown[1]) : NaN, overruns: (err.match(/ENOBUFS/g) ?? []).length };
      },
    };
  }
  const argv = spec.kind === 'c' ? [cExe, String(spec.rcvbuf)] : nodeChild('ingest-listener', [spec.rcvbuf]);
  const child = new LineChild(lab, ns, argv);
  const ready = await child.next(15_000);
  if (ready !== 'ready') throw new Error(`${spec.name}: expected "ready", got "${ready}"`);
  const parse = (l: string) => {
    const [, n, o] = l.split(' ');
    return { received: Number(n), overruns: Number(o) };
  };
  return {
    pid: child.proc.pid,
    count: async () => parse(await child.ask('stat')).received,
    stop: async () => {
      const r = parse(await child.ask('quit'));
      await child.proc.stop();
      return r;
    },
  };
}

/** Waits until the listener has read `expected` events or stops making progress (count or CPU) for 500 ms. */
async function drain(l: Listener, expected: number): Promise<void> {
  let last = -1;
  let still = 0;
  for (let i = 0; i < 300 && still < 5; i++) {
    const n = (await l.count()) ?? cpuSeconds(l.pid);
    if (n >= expected && (await l.count()) !== undefined) return;
    still = n === last ? still + 1 : 0;
    last = n;
    await sleep(100);
  }
}

/** One listener on one load: `produce` creates the entries and returns how many and how fast. */
async function trial(
  lab: Lab,
  ns: string,
  spec: ListenerSpec,
  cExe: string,
  produce: () => Promise<{ created: number; rate: number }>,
): Promise<Omit<Trial, 'load' | 'targetRate'>> {
  const l = await startListener(lab, ns, spec, cExe);
  try {
    const cpu0 = cpuSeconds(l.pid);
    const { created, rate } = await produce();
    await drain(l, created);
    const cpu = cpuSeconds(l.pid) - cpu0;
    const { received, overruns } = await l.stop();
    return { listener: spec.name, created, rate, received, overruns, lost: created - received, cpuUsPerEvent: (cpu * 1e6) / received };
  } catch (e) {
    await l.stop().catch(() => {});
    throw e;
  }
}


/** Creates `count` entries from a child node process (Conntrack.write) at `rate`/s (0 = unpaced). */
async function insertLoad(lab: Lab, ns: string, count: number, rate: number, seed: number): Promise<{ created: number; rate: number }> {
  const producer = new LineChild(lab, ns, nodeChild('ingest-producer', [count, rate, seed]));
  try {
    if ((await producer.next(30_000)) !== 'ready') throw new Error('producer not ready');
    const r = JSON.parse(await producer.ask('go', 120_000)) as { created: number; failed: number; rate: number };
    if (r.failed) process.stderr.write(`producer: ${r.failed} creates failed\n`);
    return r;
  } finally {
    await producer.proc.stop();
  }
}

/** A trial whose producer or listener died is reported and run once more; a second failure ends the benchmark. */
async function retryOnce<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    process.stderr.write(`trial failed, retrying once: ${(e as Error).message}\n`);
    failures.push((e as Error).message);
    return fn();
  }
}
const failures: string[] = [];

async function runInserts(cExe: string, trials: Trial[]): Promise<void> {
  const lab = new Lab({ prefix: 'ctsb-' });
  try {
    const ns = await lab.addNamespace('ing');
    let seed = 1;
    for (let rep = 0; rep < REPS; rep++) {
      for (const spec of LISTENERS) {
        for (const target of RATES) {
          await flush(ns);
          const count = target ? Math.min(MAX_PER_TRIAL, target * SECONDS_PER_TRIAL) : MAX_PER_TRIAL;
          const s = seed++ & 255;
          const t = await retryOnce(async () => {
            await flush(ns);
            return trial(lab, ns, spec, cExe, () => insertLoad(lab, ns, count, target, s));
          });
          trials.push({ load: 'inserts', targetRate: target, ...t });
          log(trials[trials.length - 1]!);
        }
      }
    }
  } finally {
    await lab.teardown();
  }
}

async function runTraffic(cExe: string, trials: Trial[]): Promise<void> {
  const lab = new Lab({ prefix: 'ctsb-' });
  try {
    const topo = await routerLab(lab);
    const rtr = topo.router.ns;
    const flood = async (): Promise<{ created: number; rate: number }> => {
      const t0 = performance.now();
      const both = [0, 1].map((k) => udpFlood(lab, { clientNs: topo.client.ns, host: topo.server.v4, count: FLOOD_PER_SENDER, basePort: 1024 + k * 30000, ports: 30000 }));
      const r = await Promise.all(both);
      const ms = Math.max(...r.map((x) => x.elapsedMs)) || performance.now() - t0;
      const created = Number((await lab.exec(rtr, ['cat', '/proc/sys/net/netfilter/nf_conntrack_count'])).stdout.trim());
      return { created, rate: created / (ms / 1000) };
    };
    for (let rep = 0; rep < REPS; rep++) {
      await flush(rtr);
      const base = await flood(); // no listener: the kernel's top rate without event delivery
      trials.push({ load: 'traffic', listener: 'none', targetRate: 0, created: base.created, rate: base.rate, received: 0, overruns: 0, lost: 0, cpuUsPerEvent: NaN });
      log(trials[trials.length - 1]!);
      for (const spec of LISTENERS) {
        await flush(rtr);
        const t = await retryOnce(async () => {
          await flush(rtr);
          return trial(lab, rtr, spec, cExe, flood);
        });
        trials.push({ load: 'traffic', targetRate: 0, ...t });
        log(trials[trials.length - 1]!);
      }
    }
  } finally {
    await lab.teardown();
  }
}

function log(t: Trial): void {
  const target = t.targetRate ? `${t.targetRate / 1000}k/s` : 'max';
  process.stderr.write(
    `${t.load} ${target.padEnd(7)} ${t.listener.padEnd(26)} created ${t.created} at ${Math.round(t.rate)}/s, ` +
      `received ${t.received}, lost ${t.lost}, overruns ${t.overruns}, ${t.cpuUsPerEvent.toFixed(2)} µs/event\n`,
  );
}

interface Row {
  load: string;
  listener: string;
  maxLosslessRate: Summary; // highest achieved rate with zero loss, per rep
  topRate: Summary; // achieved rate of the unpaced trial
  topLost: Summary; // events lost in the unpaced trial
  cpuUsPerEvent: Summary; // at the unpaced trial
}

function summarise(trials: Trial[]): Row[] {
  const rows: Row[] = [];
  for (const load of ['inserts', 'traffic'] as const) {
    for (const listener of ['none', ...LISTENERS.map((l) => l.name)]) {
      const mine = trials.filter((t) => t.load === load && t.listener === listener);
      if (!mine.length) continue;
      const perRep = (sel: (ts: Trial[]) => number) => {
        const reps: number[] = [];
        const size = mine.length / REPS;
        for (let r = 0; r < REPS; r++) reps.push(sel(mine.slice(r * size, (r + 1) * size)));
        return summarize(reps);
      };
      const top = (ts: Trial[]) => ts.find((t) => t.targetRate === 0)!;
      rows.push({
        load,
        listener,
        maxLosslessRate: perRep((ts) => Math.max(0, ...ts.filter((t) => t.lost === 0 && t.overruns === 0).map((t) => t.rate))),
        topRate: perRep((ts) => top(ts).rate),
        topLost: perRep((ts) => top(ts).lost),
        cpuUsPerEvent: perRep((ts) => top(ts).cpuUsPerEvent),
      });
    }
  }
  return rows;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces, SO_RCVBUFFORCE)');
  Lab.sweep('ctsb-');
  const c = buildC('ct-listen');
  const trials: Trial[] = [];
  try {
    if (!args.includes('--no-inserts')) await runInserts(c.exe, trials);
    if (!args.includes('--no-traffic')) await runTraffic(c.exe, trials);
  } finally {
    c.remove();
  }
  const rows = summarise(trials);
  const cRow = (load: string) => rows.find((r) => r.load === load && r.listener.startsWith('C '));
  const md = [
    `# Lossless ingest (NEW events), ${REPS} run(s), median (±half the spread)`,
    '',
    table(
      ['load', 'listener', 'max lossless rate /s', 'top rate /s', 'lost at top rate', 'CPU µs/event at top rate', 'CPU vs C'],
      rows.map((r) => [
        r.load,
        r.listener,
        r.listener === 'none' ? '-' : fmt(r.maxLosslessRate, 1, 'k'),
        fmt(r.topRate, 1, 'k'),
        r.listener === 'none' ? '-' : fmt(r.topLost, 0),
        r.listener === 'none' ? '-' : fmt(r.cpuUsPerEvent, 2),
        r.listener === 'none' ? '-' : `${(r.cpuUsPerEvent.median / (cRow(r.load)?.cpuUsPerEvent.median ?? NaN)).toFixed(2)}x`,
      ]),
    ),
    '',
    `Inserts: paced targets ${RATES.map((r) => (r ? `${r / 1000}k` : 'max')).join(', ')} /s, ≤${MAX_PER_TRIAL} TCP entries per trial, ` +
      `created by a child node process with Conntrack.write. Traffic: 2 × ${FLOOD_PER_SENDER} UDP flows through a forwarding namespace ` +
      `('none' = no listener). "max lossless rate" is the highest achieved creation rate read with zero loss.`,
  ].join('\n');
  const files = writeResults('ingest', { env: environment(), reps: REPS, rates: RATES, rows, trials, failures }, md);
  process.stdout.write(md + `\n\nwrote ${files.json} and ${files.md}\n`);
}

main().catch((e) => {
  process.stderr.write(`ingest bench failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
