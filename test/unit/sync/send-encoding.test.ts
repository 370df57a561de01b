// The send path's pre-encoded Upsert frames (EntryBatch + encodeUpsertFrame, entries written from table columns)
// against the plain protobufjs path they replace: the same bytes for any flow the table can hold.
import fc from 'fast-check';
import { describe, expect, test, vi } from 'vitest';
import pino from 'pino';
import { SyncEngine } from '../../../src/sync/engine.js';
import { LocalTable } from '../../../src/state/local-table.js';
import { flowKey } from '../../../src/state/key.js';
import type { Clock } from '../../../src/state/clock.js';
import { EntryBatch, flowToEntry } from '../../../src/wire/entry.js';
import { createMacKey, encodeFrame, encodeUpsertFrame } from '../../../src/wire/envelope.js';
import type { Transport } from '../../../src/transport/types.js';
import type { Flow } from '../../../src/kernel/types.js';
import { flowArb } from '../wire/arbitraries.js';
import { tcpFlow } from '../state/flows.js';

const clusterId = 'test';
const nodeId = 'a';

/** A transport that keeps what is sent, with one peer up and past its hello. */
function capture(): Transport & { frames: Buffer[] } {
  const t = {
    kind: 'capture', frames: [] as Buffer[],
    start: async () => {}, stop: async () => {},
    send(b: Buffer) { t.frames.push(Buffer.from(b)); return true; },
    onFrame: () => {}, onLink: () => {}, onDrain: () => {},
    stats: () => ({ kind: 'capture', peers: [], refused: {}, dropped: {} }),
  };
  return t as unknown as Transport & { frames: Buffer[] };
}

/** What the engine sent before frames were pre-encoded: flowToEntry of each decoded flow, one encodeFrame. */
function reference(local: LocalTable, keys: string[], now: number, seq: number, reborn: number[], macKey?: ReturnType<typeof createMacKey>): Buffer {
  const entries = keys.map((k) => flowToEntry(local.get(k, now)!));
  return encodeFrame({ clusterId, nodeId, upsert: { entries, reborn, authoritative: false, bulkId: 0 }, seq }, { macKey });
}

describe('pre-encoded upsert frames', () => {
  test('encodeUpsertFrame writes what encodeFrame writes, with and without a MAC, for any size', () => {
    const local = new LocalTable({ clock: { now: () => 1000 } });
    const keys: string[] = [];
    for (let i = 0; i < 300; i++) {
      const f = tcpFlow(i, i % 3 ? {} : { mark: i, zone: i });
      local.applyEvent({ kind: 'new', flow: f, origin: 'kernel', portId: 0 });
      keys.push(flowKey(f));
    }
    const macKey = createMacKey('0123456789abcdef0123456789abcdef');
    for (const n of [1, 2, 5, 120, 300]) {
      const batch = new EntryBatch();
      for (const k of keys.slice(0, n)) batch.addFlow(local.get(k, 5000)!);
      for (const mk of [undefined, macKey]) {
        const got = encodeUpsertFrame({ clusterId, nodeId, seq: 7 }, { reborn: [0, n - 1], authoritative: false, bulkId: 0 }, batch.view(), { macKey: mk });
        expect(got.equals(reference(local, keys.slice(0, n), 5000, 7, [0, n - 1], mk))).toBe(true);
      }
    }
  });

  test('the engine sends the same bytes as flowToEntry + encodeFrame for any flows (plain and not)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(flowArb(), { minLength: 1, maxLength: 30 }), fc.integer({ min: 0, max: 5000 }), async (flows, later) => {
        let now = 1_000_000;
        const clock: Clock = { now: () => now };
        const local = new LocalTable({ clock });
        const tr = capture();
        const engine = new SyncEngine({ nodeId, clusterId, coalesceMs: 1000, digestIntervalMs: 0, heartbeatMs: 0, maxFrameBytes: 1 << 22 }, local, tr, clock, pino({ level: 'silent' }));
        const keys: string[] = [];
        const seen = new Set<string>();
        for (const f of flows) {
          let key: string;
          try {
            key = flowKey(f);
            flowToEntry(f); // skip flows the reference path cannot encode either
          } catch {
            continue;
          }
          if (seen.has(key)) continue;
          seen.add(key);
          local.applyEvent({ kind: 'new', flow: f, origin: 'kernel', portId: 0 });
          if (!local.has(key)) continue;
          keys.push(key);
          engine.changed(key, keys.length % 2 === 0);
        }
        if (!keys.length) return;
        now += later; // remaining timeouts are taken at send time
        engine.flush();
        engine.stop();
        expect(tr.frames.length).toBe(1);
        const reborn = keys.map((_, i) => i).filter((i) => (i + 1) % 2 === 0);
        expect(tr.frames[0]!.equals(reference(local, keys, now, 1, reborn))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  test('plain IPv4/IPv6 TCP and UDP flows take the column path, with the same bytes', () => {
    const plain = vi.spyOn(EntryBatch.prototype, 'addPlain');
    const slow = vi.spyOn(EntryBatch.prototype, 'addFlow');
    try {
      const now = 5000;
      const local = new LocalTable({ clock: { now: () => 0 } });
      const tr = capture();
      const engine = new SyncEngine({ nodeId, clusterId, coalesceMs: 1000, digestIntervalMs: 0, heartbeatMs: 0, maxFrameBytes: 1 << 22 }, local, tr, { now: () => now }, pino({ level: 'silent' }));
      const flows: Flow[] = [];
      for (let i = 0; i < 40; i++) flows.push(tcpFlow(i, i % 4 === 0 ? { zone: 3, mark: 0x80000001, status: 0xffffffff } : {}));
      flows.push({ family: 10, orig: { src: '2001:db8::1', dst: '::ffff:192.0.2.1', proto: 17, sport: 53, dport: 5353, zone: 9 },
        reply: { src: '::ffff:192.0.2.1', dst: '2001:db8::1', proto: 17, sport: 5353, dport: 53, zone: 300 }, timeout: 30 });
      flows.push({ family: 2, orig: { src: '192.0.2.1', dst: '192.0.2.2', proto: 47 }, reply: { src: '192.0.2.2', dst: '192.0.2.1', proto: 47 } });
      // entries created through ctnetlink carry an all-zero synproxy; SYNPROXY'd ones carry real values
      flows.push(tcpFlow(100, { synproxy: { isn: 0, its: 0, tsoff: 0 } }));
      flows.push(tcpFlow(101, { synproxy: { isn: 0xffffffff, its: 0x80, tsoff: 1 } }));
      const keys = flows.map((f) => {
        local.applyEvent({ kind: 'new', flow: f, origin: 'kernel', portId: 0 });
        engine.changed(flowKey(f));
        return flowKey(f);
      });
      engine.flush();
      engine.stop();
      expect(plain.mock.results.filter((r) => r.value === true).length).toBe(flows.length);
      expect(slow).not.toHaveBeenCalled();
      expect(tr.frames[0]!.equals(reference(local, keys, now, 1, []))).toBe(true);
    } finally {
      plain.mockRestore();
      slow.mockRestore();
    }
  });
});
