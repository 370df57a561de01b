// Memory per entry of the local and peer tables filled with realistic IPv4 TCP flows (issue 3 goal: ≤ 250 B at 1M).
//
// Run: npm run build && node --expose-gc dist/bench/table-memory.js [N ...] [--nat PCT]
// Measures (heapUsed + external + arrayBuffers) after a forced GC, minus the same before the fill, divided by N
// (bytesPerEntry, the figure issue 3 asks for). Node's `external` already includes `arrayBuffers`, so that sum counts
// the typed-array columns twice; heapUsed + external alone (heapPlusExternalPerEntry) is what the process really holds.
// Flows are generated one at a time and not kept, so only what the table holds is counted.

import type { Flow } from '../src/kernel/types.js';
import { FakeClock } from '../src/state/clock.js';
import { LocalTable } from '../src/state/local-table.js';
import { PeerTable } from '../src/state/peer-table.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  console.error('run with node --expose-gc');
  process.exit(2);
}

function mem(): { asked: number; real: number } {
  gc!();
  gc!();
  const m = process.memoryUsage();
  return { asked: m.heapUsed + m.external + m.arrayBuffers, real: m.heapUsed + m.external };
}

// Deterministic pseudo-random source, so runs are comparable.
let seed = 0x12345678;
function rnd(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return seed >>> 0;
}

const DPORTS = [443, 443, 443, 80, 22, 53, 3306, 5432, 8080, 993];

/** Client in 10.0.0.0/8 to a server in 172.16.0.0/12 or the internet; nat% of them SNAT'd (reply tuple stored). */
function makeFlow(i: number, natPct: number): Flow {
  const src = `10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`;
  const r = rnd();
  const dst = `172.${16 + (r & 15)}.${(r >>> 4) & 255}.${(r >>> 12) & 255}`;
  const sport = 1024 + ((r >>> 3) % 64000);
  const dport = DPORTS[r % DPORTS.length]!;
  const nat = (r >>> 20) % 100 < natPct;
  return {
    family: 2,
    orig: { src, dst, proto: 6, sport, dport },
    reply: nat
      ? { src: dst, dst: '203.0.113.1', proto: 6, sport: dport, dport: 1024 + (i % 60000) }
      : { src: dst, dst: src, proto: 6, sport: dport, dport: sport },
    status: nat ? 0x18e : 0xe,
    timeout: 432000 - (r % 1000),
    mark: r % 7 === 0 ? 0x10 : undefined,
    id: 0x10000000 + i,
    use: 1,
    protoinfo: { tcp: { state: 3, wscaleOrig: 7, wscaleReply: 9, flagsOrig: 0x23, flagsReply: 0x23 } },
    countersOrig: { packets: 10n, bytes: 1000n },
    countersReply: { packets: 12n, bytes: 9000n },
  };
}

interface Result {
  table: string;
  n: number;
  natPct: number;
  bytesPerEntry: number;
  heapPlusExternalPerEntry: number;
  insertsPerSec: number; // including building each Flow object

}

function run(kind: 'local' | 'peer', n: number, natPct: number): Result {
  seed = 0x12345678;
  const clock = new FakeClock(0);
  const before = mem();
  let local: LocalTable | undefined;
  let peer: PeerTable | undefined;
  const t0 = process.hrtime.bigint();
  if (kind === 'local') {
    local = new LocalTable({ clock });
    for (let i = 0; i < n; i++) local.applyEvent({ kind: 'new', flow: makeFlow(i, natPct), origin: 'kernel', portId: 0 });
  } else {
    peer = new PeerTable({ clock });
    for (let i = 0; i < n; i++) peer.upsert(makeFlow(i, natPct), i + 1, i + 1);
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const after = mem();
  const size = local?.size ?? peer!.size;
  if (size !== n) throw new Error(`expected ${n} entries, table holds ${size}`);
  return {
    table: kind,
    n,
    natPct,
    bytesPerEntry: Math.round((after.asked - before.asked) / n),
    heapPlusExternalPerEntry: Math.round((after.real - before.real) / n),
    insertsPerSec: Math.round(n / secs),
  };
}

const args = process.argv.slice(2);
let natPct = 0;
const sizes: number[] = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--nat') natPct = Number(args[++i]);
  else sizes.push(Number(args[i]));
}
if (sizes.length === 0) sizes.push(100_000, 1_000_000);

for (const n of sizes) {
  for (const kind of ['local', 'peer'] as const) {
    console.log(JSON.stringify(run(kind, n, natPct)));
  }
}
