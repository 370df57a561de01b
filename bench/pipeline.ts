// Benchmark: the active's JavaScript cost per kernel event, without the kernel's share or the peer link.
//
// Run by hand, as root:  npx tsc -p . && node dist/bench/pipeline.js [--n 100000] [--procs 6] [--iters 5]
//                                                                     [--node-flags "--cpu-prof --cpu-prof-dir=DIR"]
// Writes bench/results/pipeline.{json,md} ($CTSYNC_BENCH_RESULTS overrides the directory).
//
// Real NEW events are captured once: a burst of n entries (the sync bench's flows) is written into a throwaway
// `ctsp-*` namespace while an event socket copies every datagram it reads. The table is then flushed and each of
// `procs` fresh node processes replays the captured datagrams `iters` times, each time into a new mirror and sync
// engine built as the daemon builds them (default filter), sending to a sink transport. The engine flushes after
// every FLUSH_EVERY datagrams: ~500 events a frame, as the daemon sends them while it works through a 100k burst.
// Per replay the child measures its main thread's on-CPU time (schedstat) and the other threads' (JIT compiler,
// GC helpers).
//
// What it answers: how much of an event's cost is ours (decode, key, table, coalescing, encoding), cold (the first
// replay of a fresh process: what a freshly started daemon pays on its first burst) and warm (the later replays).
// The replayed datagrams have the hidden class of the Buffers the binding delivers (likeReceived), as the daemon's do.
// What it leaves out: recvmmsg (the kernel copies and frees each event: ~30% of the daemon's time), TLS and the
// socket write, the event loop. Compare builds with it; for figures against conntrackd use sync-ref.ts.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { buildConfig } from '../src/config/load.js';
import { EventStream } from '../src/kernel/events.js';
import { forEachMessage } from '../src/kernel/nfnetlink.js';
import { scanRecords } from '../src/kernel/netlink-socket.js';
import { Lab } from '../src/lab/netns.js';
import { systemClock } from '../src/state/clock.js';
import { rebornOf } from '../src/state/local-table.js';
import { KernelMirror } from '../src/state/mirror.js';
import { SyncEngine } from '../src/sync/engine.js';
import { compileFilter } from '../src/sync/filter.js';
import type { Transport } from '../src/transport/types.js';
import { burst, cpuMainOther, sleep } from './ref/harness.js';
import { flush } from './lib/flows.js';
import { environment, summarize, table, writeResults, type Summary } from './lib/stats.js';

/** Datagrams between flushes: the kernel packs ~64 NEW events into one, so ~500 events per frame. */
const FLUSH_EVERY = 8;

interface Replay {
  mainMs: number;
  otherMs: number;
  events: number;
  entriesOut: number;
  bytesOut: number;
}

const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
};

/**
 * A copy of `bytes` shaped like the Buffers onData gets. The binding makes those in C++ (a Uint8Array given Buffer's
 * prototype afterwards), which gives them another hidden class than Buffers made in JavaScript: code V8 compiled for
 * one kind is thrown away at the first of the other, so a replay of JS-made copies would not run the daemon's code.
 */
function likeReceived(bytes: Uint8Array): Buffer {
  const b = Object.setPrototypeOf(new Uint8Array(bytes.length), Buffer.prototype) as Buffer;
  b.set(bytes);
  return b;
}

/** Datagrams as captured, each behind a 4-byte little-endian length. */
function pack(bufs: Buffer[]): Buffer {
  const out = Buffer.allocUnsafe(bufs.reduce((s, b) => s + 4 + b.length, 0));
  let o = 0;
  for (const b of bufs) {
    out.writeUInt32LE(b.length, o);
    b.copy(out, o + 4);
    o += 4 + b.length;
  }
  return out;
}

function unpack(all: Buffer): Buffer[] {
  const bufs: Buffer[] = [];
  for (let o = 0; o < all.length; ) {
    const n = all.readUInt32LE(o);
    bufs.push(likeReceived(all.subarray(o + 4, o + 4 + n)));
    o += 4 + n;
  }
  return bufs;
}

async function capture(ns: string, n: number): Promise<Buffer[]> {
  const bufs: Buffer[] = [];
  let events = 0;
  const es = new EventStream({ netns: ns, rcvbuf: 256 << 20 });
  es.sock.onData = (buf) => {
    bufs.push(Buffer.from(buf)); // the binding reuses its receive buffer
    forEachMessage(buf, () => events++);
  };
  try {
    await burst(ns, n);
    for (let i = 0; i < 500 && events < n; i++) await sleep(10);
    if (es.stats.overruns || events !== n) throw new Error(`captured ${events} of ${n} events (${es.stats.overruns} overruns)`);
    return bufs;
  } finally {
    es.close();
  }
}

/** One process: `iters` replays of the datagrams in `file`, each into a new mirror and engine; prints JSON lines. */
async function child(file: string, ns: string, iters: number): Promise<void> {
  const bufs = unpack(readFileSync(file));
  const cfg = buildConfig({ nodeId: 'bench', peers: [] });
  const log = pino({ level: 'silent' });
  for (let it = 0; it < iters; it++) {
    let bytesOut = 0;
    const sink: Transport = {
      kind: 'sink',
      start: async () => {},
      stop: async () => {},
      send: (frame) => ((bytesOut += frame.length), true),
      onFrame: () => {},
      onLink: () => {},
      onDrain: () => {},
      stats: () => ({ kind: 'sink', peers: [], refused: {}, dropped: {} }),
    };
    const mirror = new KernelMirror({ netns: ns, filter: compileFilter(cfg.sync, []), clock: systemClock, log, firstVersion: 1 });
    const engine = new SyncEngine(
      { nodeId: cfg.nodeId, clusterId: cfg.clusterId, coalesceMs: cfg.sync.coalesce, digestIntervalMs: 0, heartbeatMs: 0, maxFrameBytes: cfg.link.maxFrame },
      mirror.local,
      sink,
      systemClock,
      log,
    );
    mirror.onChange = (key, change, _ev, slot) => {
      const reborn = rebornOf(change);
      if (reborn !== undefined) engine.changed(key, reborn, slot);
    };
    const sock = mirror.events.sock;
    // as the binding delivers a read: its message records first (ctScan), then onData
    const feed = (buf: Buffer): void => {
      const [records, skipped] = scanRecords(buf, sock.records!);
      sock.onData(buf, records, skipped);
    };
    await sleep(50); // let the previous replay's compiler and GC work drain
    const t0 = cpuMainOther(process.pid);
    for (let i = 0; i < bufs.length; i++) {
      feed(bufs[i]!);
      if (i % FLUSH_EVERY === FLUSH_EVERY - 1) engine.flush();
    }
    engine.flush();
    const t1 = cpuMainOther(process.pid);
    const r: Replay = {
      mainMs: (t1.main - t0.main) * 1000,
      otherMs: (t1.other - t0.other) * 1000,
      events: mirror.local.counters.events,
      entriesOut: engine.counters.entriesOut,
      bytesOut,
    };
    engine.stop();
    mirror.close();
    process.stdout.write(JSON.stringify(r) + '\n');
  }
}

async function main(): Promise<void> {
  if (args[0] === '--child') return child(args[1]!, args[2]!, Number(args[3]));
  const n = Number(opt('--n', '100000'));
  const procs = Number(opt('--procs', '6'));
  const iters = Number(opt('--iters', '5'));
  const nodeFlags = opt('--node-flags', '').split(' ').filter(Boolean);
  const lab = new Lab({ prefix: 'ctsp-' });
  const dir = mkdtempSync(path.join(tmpdir(), 'ctsync-pipeline-'));
  try {
    const ns = await lab.addNamespace('cap');
    const file = path.join(dir, 'events.bin');
    const bufs = await capture(ns, n);
    writeFileSync(file, pack(bufs));
    await flush(ns);
    const cold: Replay[] = [];
    const warm: Replay[] = [];
    for (let p = 0; p < procs; p++) {
      const r = spawnSync(process.execPath, [...nodeFlags, process.argv[1]!, '--child', file, ns, String(iters)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 30 });
      if (r.status !== 0) throw new Error(`replay process failed (exit ${r.status})`);
      // anything else the child printed (V8 traces asked for with --node-flags) goes to stderr
      const out = r.stdout.split('\n');
      process.stderr.write(out.filter((l) => l && !l.startsWith('{"mainMs"')).map((l) => l + '\n').join(''));
      const lines = out.filter((l) => l.startsWith('{"mainMs"')).map((l) => JSON.parse(l) as Replay);
      for (const l of lines) if (l.events !== n || l.entriesOut !== n) throw new Error(`a replay handled ${l.events} events and sent ${l.entriesOut} entries, not ${n}`);
      cold.push(lines[0]!);
      warm.push(...lines.slice(1));
    }
    const range = (s: Summary, d = 2): string => `${s.median.toFixed(d)} [${s.min.toFixed(d)} – ${s.max.toFixed(d)}]`;
    const per10k = (rs: Replay[], f: (r: Replay) => number): string => range(summarize(rs.map((r) => (f(r) / n) * 10_000))); // ms per 10k events
    const rows: [string, string, string][] = [
      ['cold (first replay in a process): main thread ms per 10k events', (per10k(cold, (r) => r.mainMs)), String(cold.length)],
      ['  other threads (compiler, GC) ms per 10k', (per10k(cold, (r) => r.otherMs)), String(cold.length)],
      ['warm (later replays): main thread ms per 10k events', (per10k(warm, (r) => r.mainMs)), String(warm.length)],
      ['  other threads ms per 10k', (per10k(warm, (r) => r.otherMs)), String(warm.length)],
      ['frame bytes per entry', range(summarize(warm.map((r) => r.bytesOut / r.entriesOut)), 1), String(warm.length)],
    ];
    const md = [
      `# JS cost per kernel event, replayed (${new Date().toISOString()})`,
      '',
      `Command: \`node dist/bench/pipeline.js --n ${n} --procs ${procs} --iters ${iters}\`  `,
      `${bufs.length} datagrams of real NEW events (${(bufs.reduce((s, b) => s + b.length, 0) / n).toFixed(0)} B per event), replayed through mirror → engine → sink; median [min – max].`,
      '',
      table(['metric', 'median [min – max]', 'replays'], rows),
      '',
    ].join('\n');
    process.stdout.write(md);
    writeResults('pipeline', { env: environment(), n, procs, iters, cold, warm }, md);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await lab.teardown();
  }
}

await main();
