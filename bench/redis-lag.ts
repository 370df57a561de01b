// Benchmark: end-to-end sync lag through Redis Streams vs the direct TCP/TLS peer link, at fixed change rates, and
// Redis memory per synced flow.
//
// Run by hand:  npx tsc -p . && node dist/bench/redis-lag.js [--rates 10000,50000] [--seconds 5] [--flows 100000]
// Writes bench/results/redis-lag.{json,md}. Needs redis-server on PATH (started here on a free loopback port, own
// temp dir, stopped by PID). One process runs both nodes (sender engine, receiver engine) and the producer, so both
// transports pay the same CPU sharing; what differs is the path between them.
//
// Lag: the producer creates new flows at the target rate, paced every 1 ms, each stamped with its creation time
// (0.1 ms units) in the flow's mark; the receiver decodes every frame it gets and takes now − mark per entry. That
// includes the engine's coalescing (sync.coalesce, 5 ms default), so it is what a standby really trails by.
// Memory: INFO memory used_memory before and after syncing N flows through Redis (stream + snapshot), per flow;
// also MEMORY USAGE of the snapshot hash and of the stream separately.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Redis } from 'ioredis';
import { SyncEngine } from '../src/sync/engine.js';
import { LocalTable } from '../src/state/local-table.js';
import { systemClock } from '../src/state/clock.js';
import { RedisTransport, nodeKeys } from '../src/transport/redis/index.js';
import { TcpTransport } from '../src/transport/tcp/index.js';
import type { Transport } from '../src/transport/types.js';
import { createMacKey, decodeFrame } from '../src/wire/envelope.js';
import { Ips, TcpState, type Flow } from '../src/kernel/types.js';
import { RedisServer, freeLoopbackPort } from '../src/lab/redis-server.js';
import { environment, writeResults } from './lib/stats.js';
import { opt } from './lib/args.js';

const RATES = (opt('--rates') ?? '10000,50000').split(',').map(Number);
const SECONDS = Number(opt('--seconds') ?? 5);
const MEM_FLOWS = Number(opt('--flows') ?? 100_000);
const log = pino({ level: 'silent' });
const KEY = randomBytes(32);
const MAC = createMacKey(KEY);
const CLUSTER = 'bench';

function flow(i: number, mark: number): Flow {
  const src = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  return {
    family: 2,
    orig: { src, dst: '10.250.0.1', proto: 6, sport: 1024 + (i % 60000), dport: 443 },
    reply: { src: '10.250.0.1', dst: src, proto: 6, sport: 443, dport: 1024 + (i % 60000) },
    status: Ips.Confirmed | Ips.SeenReply | Ips.Assured,
    timeout: 3600,
    mark,
    protoinfo: { tcp: { state: TcpState.Established } },
  };
}

const stamp = () => Math.floor(performance.now() * 10) >>> 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Pair {
  a: Transport;
  b: Transport;
  close(): Promise<void>;
}

async function tcpPair(dir: string): Promise<Pair> {
  const psk = path.join(dir, 'psk.hex');
  writeFileSync(psk, `${KEY.toString('hex')}\n`, { mode: 0o600 });
  const [pa, pb] = [await freeLoopbackPort(), await freeLoopbackPort()];
  const common = { clusterId: CLUSTER, tls: { pskFile: psk } };
  const a = new TcpTransport({ ...common, nodeId: 'fw-a', listen: { host: '127.0.0.1', port: pa }, peers: [{ nodeId: 'fw-b', addresses: [`127.0.0.1:${pb}`] }] });
  const b = new TcpTransport({ ...common, nodeId: 'fw-b', listen: { host: '127.0.0.1', port: pb }, peers: [{ nodeId: 'fw-a', addresses: [`127.0.0.1:${pa}`] }] });
  return { a, b, close: async () => {} };
}

function redisPair(server: RedisServer, cluster: string): Pair {
  const common = { clusterId: cluster, redis: { addresses: [server.address] } };
  const a = new RedisTransport({ ...common, nodeId: 'fw-a', peers: ['fw-b'] }, { macKey: MAC });
  const b = new RedisTransport({ ...common, nodeId: 'fw-b', peers: ['fw-a'] }, { macKey: MAC });
  return { a, b, close: async () => {} };
}

interface LagResult {
  transport: string;
  rate: number;
  achievedRate: number;
  samples: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  missing: number;
}

async function measureLag(name: string, pair: Pair, rate: number, cluster: string, macKey?: typeof MAC): Promise<LagResult> {
  const la = new LocalTable({ clock: systemClock });
  const lb = new LocalTable({ clock: systemClock });
  const opts = (id: string) => ({ nodeId: id, clusterId: cluster, coalesceMs: 5, digestIntervalMs: 0, heartbeatMs: 500, maxFrameBytes: 4 << 20, ...(macKey ? { macKey } : {}) });
  const ea = new SyncEngine(opts('fw-a'), la, pair.a, systemClock, log);
  const eb = new SyncEngine(opts('fw-b'), lb, pair.b, systemClock, log);
  const lags: number[] = [];
  const expect = { clusterId: opts('fw-b').clusterId, macKey };
  const inner = pair.b.onFrame;
  pair.b.onFrame = (frame, from) => {
    inner(frame, from);
    const now = stamp();
    const r = decodeFrame(frame, { maxFrameBytes: 4 << 20 }, expect);
    if (!r.ok || r.env.body !== 'upsert' || r.env.upsert!.bulkId) return;
    for (const e of r.env.upsert!.entries ?? []) lags.push((((now - (e.mark ?? 0)) >>> 0) / 10));
  };
  ea.start();
  eb.start();
  await pair.b.start();
  await pair.a.start();
  const up = Date.now() + 10_000;
  while (!eb.status().some((p) => p.state === 'in_sync') || !ea.status().some((p) => p.state === 'in_sync')) {
    if (Date.now() > up) throw new Error(`${name}: link did not come up`);
    await sleep(20);
  }
  await sleep(300);
  const total = rate * SECONDS;
  const t0 = performance.now();
  let made = 0;
  while (made < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate));
    for (; made < due; made++) {
      const r = la.applyEvent({ kind: 'new', flow: flow(made, stamp()), origin: 'kernel', portId: 0 });
      ea.changed(r.key, true);
    }
    await sleep(1);
  }
  const elapsed = (performance.now() - t0) / 1000;
  const end = Date.now() + 20_000;
  while (lags.length < total && Date.now() < end) await sleep(20);
  ea.stop();
  eb.stop();
  await pair.a.stop();
  await pair.b.stop();
  await pair.close();
  const s = [...lags].sort((x, y) => x - y);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
  return { transport: name, rate, achievedRate: Math.round(total / elapsed), samples: s.length, p50Ms: q(0.5), p99Ms: q(0.99), maxMs: s.at(-1) ?? NaN, missing: total - s.length };
}

async function usedMemory(r: Redis): Promise<number> {
  const info = await r.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}

async function measureMemory(server: RedisServer): Promise<Record<string, number>> {
  const cluster = 'benchmem';
  const admin = new Redis({ host: server.host, port: server.port });
  await admin.flushall();
  const before = await usedMemory(admin);
  const pair = redisPair(server, cluster);
  const la = new LocalTable({ clock: systemClock });
  const ea = new SyncEngine({ nodeId: 'fw-a', clusterId: cluster, coalesceMs: 5, digestIntervalMs: 0, heartbeatMs: 0, maxFrameBytes: 4 << 20, macKey: MAC }, la, pair.a, systemClock, log);
  ea.start();
  await pair.a.start();
  for (let i = 0; i < MEM_FLOWS; i++) {
    const r = la.applyEvent({ kind: 'new', flow: flow(i, i % 3), origin: 'kernel', portId: 0 });
    ea.changed(r.key, true);
    if (i % 10_000 === 9_999) await sleep(5);
  }
  ea.flush();
  const keys = nodeKeys(cluster, 'fw-a');
  const end = Date.now() + 60_000;
  while ((await admin.hlen(keys.snap)) < MEM_FLOWS && Date.now() < end) await sleep(50);
  const after = await usedMemory(admin);
  const snap = Number(await admin.call('MEMORY', 'USAGE', keys.snap, 'SAMPLES', '0'));
  const stream = Number(await admin.call('MEMORY', 'USAGE', keys.stream, 'SAMPLES', '0'));
  const frames = await admin.xlen(keys.stream);
  ea.stop();
  await pair.a.stop();
  await admin.quit();
  return { flows: MEM_FLOWS, usedMemoryPerFlow: Math.round((after - before) / MEM_FLOWS), snapshotBytesPerFlow: Math.round(snap / MEM_FLOWS), streamBytesPerFlow: Math.round(stream / MEM_FLOWS), streamFrames: frames };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ctsync-redislag-'));
  const server = await RedisServer.start();
  const lag: LagResult[] = [];
  try {
    for (const rate of RATES) {
      lag.push(await measureLag('tcp (TLS-PSK)', await tcpPair(dir), rate, CLUSTER));
      lag.push(await measureLag('redis (MAC)', redisPair(server, `bench${rate}`), rate, `bench${rate}`, MAC));
      for (const r of lag.slice(-2)) console.log(JSON.stringify(r));
    }
    const memory = await measureMemory(server);
    console.log(JSON.stringify(memory));
    const md = [
      '| transport | target changes/s | achieved | p50 lag ms | p99 lag ms | max ms | not received |',
      '|---|---|---|---|---|---|---|',
      ...lag.map((r) => `| ${r.transport} | ${r.rate} | ${r.achievedRate} | ${r.p50Ms.toFixed(1)} | ${r.p99Ms.toFixed(1)} | ${r.maxMs.toFixed(1)} | ${r.missing} |`),
      '',
      `Redis memory for ${memory.flows} synced flows (stream of ${memory.streamFrames} frames + snapshot): ${memory.usedMemoryPerFlow} B/flow used_memory; snapshot hash ${memory.snapshotBytesPerFlow} B/flow, stream ${memory.streamBytesPerFlow} B/flow (MEMORY USAGE).`,
    ].join('\n');
    writeResults('redis-lag', { environment: environment(), seconds: SECONDS, lag, memory }, `# Sync lag: Redis Streams vs direct TCP link\n\n${md}\n`);
    console.log(md);
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

void main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
