// Benchmark: how long `ctsync dump` holds the daemon's event loop, the document built whole (as before 2026-11-22)
// against streamed a slice at a time (src/daemon/dump.ts). No kernel: a LocalTable filled with synthetic flows.
//
// Run by hand:  npx tsc -p . && node dist/bench/control-dump.js [--sizes 40000,200000,1000000] [--reps 3]
// Prints one line per size and rep. While the loop is held the daemon reads no frame and sends no heartbeat: past
// link.deadAfter (2 s by default) its peers drop the sync link.
import { LocalTable } from '../src/state/local-table.js';
import { systemClock } from '../src/state/clock.js';
import { listDocument } from '../src/kernel/flow-file.js';
import { writeDocument } from '../src/daemon/dump.js';
import type { Flow } from '../src/kernel/types.js';
import { syntheticFlow } from './lib/flows.js';
import { opt } from './lib/args.js';

const SIZES = (opt('--sizes') ?? '40000,200000,1000000').split(',').map(Number);
const REPS = Number(opt('--reps') ?? 3);

/** The old handler: every flow into an array, one document, one reply line (the document escaped inside it). */
function whole(t: LocalTable): { ms: number; bytes: number } | { error: string } {
  const t0 = performance.now();
  try {
    const flows: Flow[] = [];
    t.forEach((k) => flows.push(t.get(k, systemClock.now())!));
    const line = JSON.stringify({ id: 1, ok: true, result: { table: 'local', document: listDocument(flows) } });
    return { ms: performance.now() - t0, bytes: line.length };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** The streamed handler, each piece encoded as the server sends it; the longest stretch between two yields. */
async function streamed(t: LocalTable): Promise<{ ms: number; holds: number[] }> {
  const t0 = performance.now();
  let since = t0;
  const holds: number[] = [];
  await writeDocument([t], systemClock.now, async (text) => {
    JSON.stringify({ id: 1, chunk: text });
    holds.push(performance.now() - since);
    await new Promise((r) => setImmediate(r));
    since = performance.now();
  });
  return { ms: performance.now() - t0, holds: holds.sort((a, b) => a - b) };
}

for (const n of SIZES) {
  const t = new LocalTable({ clock: systemClock });
  for (let i = 0; i < n; i++) t.applyEvent({ kind: 'new', flow: syntheticFlow(i, 7), origin: 'kernel', portId: 0 });
  for (let rep = 1; rep <= REPS; rep++) {
    const w = whole(t);
    const s = await streamed(t);
    const old = 'error' in w ? `fails: ${w.error}` : `holds the loop ${w.ms.toFixed(0)} ms (a ${(w.bytes / 1e6).toFixed(0)} MB reply line)`;
    const h = s.holds;
    console.log(`${n} flows, rep ${rep}: whole ${old}; streamed ${s.ms.toFixed(0)} ms in ${h.length} pieces, each holding it ${h[h.length >> 1]!.toFixed(1)} ms (median), ${h[h.length - 1]!.toFixed(1)} ms at most`);
  }
}
