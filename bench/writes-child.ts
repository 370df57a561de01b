// Child process of bench/writes.ts: upserts COUNT synthetic entries with Conntrack.write, one result per entry.
//
// Run inside the namespace: node dist/bench/writes-child.js COUNT SEED
// Prints "ready" once the flows are built, writes on stdin "go", then prints one JSON line and exits.
import { createInterface } from 'node:readline';
import { Conntrack, type WriteOp } from '../src/kernel/conntrack.js';
import { syntheticFlows } from './lib/flows.js';

const count = Number(process.argv[2]);
const seed = Number(process.argv[3] ?? 0);
const ops: WriteOp[] = syntheticFlows(count, seed).map((flow) => ({ op: 'upsert', flow }));
const ct = new Conntrack();

createInterface({ input: process.stdin }).once('line', () => {
  void (async () => {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const rep = await ct.write(ops);
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const out = { ms, results: rep.results.length, counts: rep.counts, failedByErrno: rep.failedByErrno, cpuMs: (cpu.user + cpu.system) / 1000, userMs: cpu.user / 1000, sysMs: cpu.system / 1000, overruns: ct.stats.overruns };
    process.stdout.write(JSON.stringify(out) + '\n');
    ct.close();
    process.exit(0);
  })();
});
process.stdout.write('ready\n');
