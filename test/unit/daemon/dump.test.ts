// `ctsync dump` on the daemon's side: the document, written a slice at a time, while the table changes under it.
import { describe, expect, test } from 'vitest';
import { writeDocument } from '../../../src/daemon/dump.js';
import { LocalTable } from '../../../src/state/local-table.js';
import { systemClock } from '../../../src/state/clock.js';
import { parseFlowFile } from '../../../src/kernel/flow-file.js';
import { flowKey } from '../../../src/state/key.js';
import type { Flow } from '../../../src/kernel/types.js';

function udp(i: number): Flow {
  const src = `10.9.${(i >> 8) & 255}.${i & 255}`;
  return {
    family: 2,
    orig: { src, dst: '10.8.0.1', proto: 17, sport: 5000, dport: 53 },
    reply: { src: '10.8.0.1', dst: src, proto: 17, sport: 53, dport: 5000 },
    timeout: 30,
  };
}

function table(n: number): LocalTable {
  const t = new LocalTable({ clock: systemClock });
  for (let i = 0; i < n; i++) t.applyEvent({ kind: 'new', flow: udp(i), origin: 'kernel', portId: 0 });
  return t;
}

describe('dump document', () => {
  test('several tables, a slice of flows per piece, one document with the count in its trailer', async () => {
    const pieces: string[] = [];
    const count = await writeDocument([table(2500), table(0), table(3)], systemClock.now, async (t) => void pieces.push(t));
    expect(count).toBe(2503);
    expect(pieces).toHaveLength(5); // 1000 + 1000 + 500, 3, then the trailer
    const doc = pieces.join('');
    expect(JSON.parse(doc)).toMatchObject({ version: 1, count: 2503 });
    const { flows, problems } = parseFlowFile(doc);
    expect(problems).toEqual([]);
    expect(flows).toHaveLength(2503);
  });

  test('an empty table is an empty document', async () => {
    const pieces: string[] = [];
    expect(await writeDocument([table(0)], systemClock.now, async (t) => void pieces.push(t))).toBe(0);
    expect(JSON.parse(pieces.join(''))).toEqual({ version: 1, flows: [], count: 0 });
  });

  test('flows that come and go during the dump change nothing else: every other flow is listed once', async () => {
    const t = table(3000);
    let piece = 0;
    const pieces: string[] = [];
    await writeDocument([t], systemClock.now, async (text) => {
      pieces.push(text);
      if (++piece !== 1) return;
      // after the first slice: one listed flow and one not yet listed go, 200 new ones come (into freed slots too)
      for (const i of [10, 2500]) t.applyEvent({ kind: 'destroy', flow: udp(i), origin: 'kernel', portId: 0 });
      for (let i = 3000; i < 3200; i++) t.applyEvent({ kind: 'new', flow: udp(i), origin: 'kernel', portId: 0 });
    });
    const keys = parseFlowFile(pieces.join('')).flows.map(flowKey);
    expect(new Set(keys).size).toBe(keys.length);
    const listed = new Set(keys);
    const missing = Array.from({ length: 3000 }, (_, i) => i).filter((i) => i !== 10 && i !== 2500 && !listed.has(flowKey(udp(i))));
    expect(missing).toEqual([]);
    expect(listed.has(flowKey(udp(10)))).toBe(true); // listed before it went
    expect(listed.has(flowKey(udp(2500)))).toBe(false);
  });
});
