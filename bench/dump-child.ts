// Child process of bench/dump.ts: one Conntrack.dump() of the namespace's table, timed, with its RSS before and peak.
//
// Run inside the namespace: node dist/bench/dump-child.js   → one JSON line {ms, entries, rssBefore, rssPeak, cpuMs}
import { Conntrack } from '../src/kernel/conntrack.js';
import { rssBytes } from './lib/proc.js';

const ct = new Conntrack();
await ct.dump({ mark: 0xdead, markMask: 0xffffffff }); // warm the code path on a filtered (empty) dump
const before = rssBytes('self');
const cpu0 = process.cpuUsage();
const t0 = performance.now();
const flows = await ct.dump();
const ms = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
const after = rssBytes('self');
process.stdout.write(
  JSON.stringify({ ms, entries: flows.length, rssBefore: before.rss, rssPeak: after.hwm, rssAfter: after.rss, cpuMs: (cpu.user + cpu.system) / 1000, overruns: ct.stats.overruns }) + '\n',
);
ct.close();
