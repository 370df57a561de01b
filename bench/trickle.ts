// A steady trickle instead of a burst: what a firewall's daemons cost per synced entry when new connections come at
// a constant rate, and what they cost idle. conntrackd and ctsync each on a fresh lab (bench/ref), one after the other.
//
//   node dist/bench/trickle.js [--rates 1000,10000,50000] [--seconds 5] [--warmup 15] [--impl both|conntrackd|ctsync]
//                              [--prefix ctsp-] [--sync 'coalesce: 10'] (extra keys for ctsync's `sync` section)
//                              [--idle 18] (seconds of the idle window)
//
// At rate R the writer creates R/1000 entries per millisecond (one netlink datagram each ms, never a burst): first
// for --warmup seconds unmeasured (a fresh Node process compiles its hot paths meanwhile: without it a 5 s window at
// 1k/s costs ctsync ~1.7x what it costs warm), then for --seconds, after which the runner polls the standby until it
// holds them all. With the defaults the measured window ends before ctsync's first timeout-refresh dump
// (sync.refreshInterval, 30 s after start), whose cost follows the table's size, not the rate. Reported per 10k entries over that window:
// the active's CPU (all threads; ctsync's main thread and the others apart), the standby's, and ctsync's frames;
// and the tail: from the writer's last insert until the standby answers that it holds all (polled every 2 ms), which
// for ctsync is about how long its reader held the last changes (sync.coalesce).
// Idle: CPU per second of both daemons over --idle seconds without traffic, from 10 s after the link came up (a
// fresh Node process still compiles and collects for a few seconds after start: a 5 s window from 3 s, the earlier
// one, read 9-13 ms/s in some runs), so the default window ends before ctsync's first timeout-refresh dump (30 s).
// Never a test: figures only.
import { performance } from 'node:perf_hooks';
import { Lab } from '../src/lab/netns.js';
import { Conntrack, SeqRange, type Datagram } from '../src/kernel/conntrack.js';
import { conntrackdPair } from './ref/conntrackd.js';
import { ctsyncPair, type CtsyncPair } from './ref/ctsync.js';
import { burstFlows, cpuMainOther, cpuSeconds, createDatagrams, pollUntil, sleep, type SyncPairFactory } from './ref/harness.js';

const IMPLS: Record<string, SyncPairFactory> = { conntrackd: conntrackdPair, ctsync: ctsyncPair };

interface Args {
  rates: number[];
  seconds: number;
  warmup: number;
  impls: string[];
  prefix: string;
  sync: string;
  idle: number;
}

function args(): Args {
  const a: Args = { rates: [1000, 10_000, 50_000], seconds: 5, warmup: 15, impls: ['conntrackd', 'ctsync'], prefix: 'ctsp-', sync: '', idle: 18 };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1] ?? ''];
    if (k === '--rates') a.rates = v.split(',').map(Number);
    else if (k === '--seconds') a.seconds = Number(v);
    else if (k === '--warmup') a.warmup = Number(v);
    else if (k === '--impl') a.impls = v === 'both' ? ['conntrackd', 'ctsync'] : [v];
    else if (k === '--prefix') a.prefix = v;
    else if (k === '--sync') a.sync = v;
    else if (k === '--idle') a.idle = Number(v);
    else throw new Error(`unknown option ${k}; use --rates R1,R2 --seconds S --warmup S --impl both|conntrackd|ctsync --prefix P --sync 'KEY: VALUE' --idle S`);
  }
  if (a.rates.some((r) => !(r >= 1000 && r % 1000 === 0)) || !(a.seconds > 0) || !(a.warmup >= 0) || !(a.idle > 0) || a.impls.some((i) => !IMPLS[i])) {
    throw new Error('--rates takes multiples of 1000 (entries/s), --seconds and --idle a positive number, --warmup zero or more, --impl both, conntrackd or ctsync');
  }
  return a;
}

const per10k = (s: number, n: number) => Number(((s * 10_000) / n).toFixed(4));

/**
 * Creates `n` flows (from `offset`) in ns at `rate` per second: one datagram of rate/1000 creates per ms, encoded
 * before the clock starts. Resolves with when the kernel acked the last one and the rate achieved.
 */
async function paced(ns: string, rate: number, n: number, offset: number): Promise<{ last: number; achieved: number }> {
  const flows = burstFlows(n, offset);
  const seqs = new SeqRange();
  const step = rate / 1000;
  const groups: Datagram[][] = [];
  for (let i = 0; i < n; i += step) groups.push(createDatagrams(flows.slice(i, i + step), seqs));
  const ct = new Conntrack({ netns: ns });
  const t0 = performance.now();
  let last = t0;
  try {
    for (let g = 0; g < groups.length; g++) {
      const errnos = await ct.sendEncoded(groups[g]!);
      last = performance.now();
      if (errnos.some((e) => e !== 0)) throw new Error(`the writer failed at entry ${offset + g * step} (errno ${errnos.find((e) => e !== 0)})`);
      const wait = t0 + g + 1 - performance.now();
      if (wait > 0.5) await sleep(wait);
    }
  } finally {
    ct.close();
  }
  return { last, achieved: Math.round(n / ((performance.now() - t0) / 1000)) };
}

/** One pair: idle, then `warmup` seconds of the trickle unmeasured, then `seconds` of it measured: CPU figures. */
async function measure(impl: string, rate: number, a: Args): Promise<Record<string, number | string>> {
  const n = rate * a.seconds;
  const warm = rate * a.warmup;
  const lab = new Lab({ prefix: a.prefix });
  try {
    const pair = impl === 'ctsync' ? await ctsyncPair(lab, { capacity: warm + n, syncYaml: a.sync }) : await IMPLS[impl]!(lab, { capacity: warm + n });
    try {
      await sleep(10_000); // start-up, first dump, link up, then the compiles and collections that follow a start
      const i0 = [cpuSeconds(pair.activePid), cpuSeconds(pair.standbyPid)];
      await sleep(a.idle * 1000);
      const idle = [cpuSeconds(pair.activePid) - i0[0]!, cpuSeconds(pair.standbyPid) - i0[1]!].map((s) => Number((s / a.idle * 1000).toFixed(2)));
      const holdsAll = (count: number) => pollUntil(() => pair.peerTableSize(), (v) => v >= count, { intervalMs: 2, timeoutMs: 60_000 });
      // a daemon that has run for a while: its hot paths compiled (a fresh Node process compiles them during the
      // first seconds of traffic, on other threads, which would count as the trickle's cost)
      if (warm > 0) {
        await paced(pair.topo.act, rate, warm, n);
        await holdsAll(warm);
        await sleep(1000);
      }
      const ctsync = impl === 'ctsync' ? (pair as CtsyncPair) : undefined;
      const frames0 = ctsync ? (await ctsync.stats('active')).sync.framesOut : 0;
      const a0 = cpuSeconds(pair.activePid);
      const m0 = cpuMainOther(pair.activePid);
      const s0 = cpuSeconds(pair.standbyPid);
      const { last, achieved } = await paced(pair.topo.act, rate, n, 0);
      await holdsAll(warm + n);
      const tailMs = Number((performance.now() - last).toFixed(1));
      const m1 = cpuMainOther(pair.activePid);
      const row: Record<string, number | string> = {
        impl, rate, achieved, entries: n, tailMs,
        activePer10k: per10k(cpuSeconds(pair.activePid) - a0, n),
        standbyPer10k: per10k(cpuSeconds(pair.standbyPid) - s0, n),
        activeIdleMsPerS: idle[0]!, standbyIdleMsPerS: idle[1]!,
      };
      if (ctsync) {
        row.activeMainPer10k = per10k(m1.main - m0.main, n);
        row.activeOtherPer10k = per10k(m1.other - m0.other, n);
        row.entriesPerFrame = Number((n / ((await ctsync.stats('active')).sync.framesOut - frames0)).toFixed(1));
      }
      return row;
    } finally {
      await pair.stop();
    }
  } finally {
    await lab.teardown();
  }
}

const a = args();
const rows: Record<string, number | string>[] = [];
for (const rate of a.rates) {
  for (const impl of a.impls) {
    const row = await measure(impl, rate, a);
    rows.push(row);
    console.log(JSON.stringify(row));
  }
}
const cols = ['impl', 'rate', 'achieved', 'tailMs', 'activePer10k', 'activeMainPer10k', 'activeOtherPer10k', 'standbyPer10k', 'entriesPerFrame', 'activeIdleMsPerS', 'standbyIdleMsPerS'];
console.log(`\n| ${cols.join(' | ')} |\n|${cols.map(() => '---').join('|')}|`);
for (const r of rows) console.log(`| ${cols.map((c) => r[c] ?? '').join(' | ')} |`);
