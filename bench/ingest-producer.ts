// Child process of bench/ingest.ts: creates N new conntrack entries with Conntrack.write at a paced rate.
//
// Run inside the namespace: node dist/bench/ingest-producer.js COUNT RATE_PER_S SEED   (RATE 0 = as fast as possible)
// Prints "ready" once the flows are built, starts on stdin "go", then prints one JSON line
// {created, failed, elapsedMs, rate} and exits.
import { createInterface } from 'node:readline';
import { Conntrack, type WriteOp } from '../src/kernel/conntrack.js';
import { syntheticFlows } from './lib/flows.js';

const count = Number(process.argv[2]);
const rate = Number(process.argv[3] ?? 0);
const seed = Number(process.argv[4] ?? 0);
const TICK_MS = 5;
const CHUNK_UNPACED = 4096;

const ops: WriteOp[] = syntheticFlows(count, seed).map((flow) => ({ op: 'create', flow }));
const ct = new Conntrack();

async function produce(): Promise<void> {
  const t0 = performance.now();
  let created = 0;
  let failed = 0;
  let next = 0;
  while (next < ops.length) {
    let upto: number;
    if (rate > 0) {
      const due = Math.floor(((performance.now() - t0) / 1000) * rate);
      if (due <= next) {
        await new Promise((r) => setTimeout(r, TICK_MS));
        continue;
      }
      upto = Math.min(ops.length, due);
    } else upto = Math.min(ops.length, next + CHUNK_UNPACED);
    const rep = await ct.write(ops.slice(next, upto));
    created += rep.counts.created;
    failed += rep.counts.failed;
    next = upto;
  }
  const elapsedMs = performance.now() - t0;
  process.stdout.write(JSON.stringify({ created, failed, elapsedMs, rate: created / (elapsedMs / 1000) }) + '\n');
  ct.close();
  process.exit(0);
}

// a write whose promise never settles would let the event loop drain: say so instead of exiting silently
process.on('beforeExit', () => {
  process.stderr.write(`producer: event loop drained with a write pending (requests ${ct.stats.requests}, overruns ${ct.stats.overruns})\n`);
  process.exitCode = 3;
});
createInterface({ input: process.stdin }).once('line', () => void produce());
process.stdout.write('ready\n');
