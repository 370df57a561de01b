// When the sender's batches go out: a lone change or the tail of a burst soon after changes pause, a steady stream
// in batches no older than coalesceMs, a full frame at once. Fake timers and a fake clock drive the engine.
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import pino from 'pino';
import { SyncEngine } from '../../../src/sync/engine.js';
import { LocalTable } from '../../../src/state/local-table.js';
import { flowKey } from '../../../src/state/key.js';
import type { Transport } from '../../../src/transport/types.js';
import { tcpFlow } from '../state/flows.js';

/** Upsert frames sent (heartbeats and digests are off, so every frame is one). */
function capture(): Transport & { frames: number } {
  const t = {
    kind: 'capture', frames: 0,
    start: async () => {}, stop: async () => {},
    send() { t.frames++; return true; },
    onFrame: () => {}, onLink: () => {}, onDrain: () => {},
    stats: () => ({ kind: 'capture', peers: [], refused: {}, dropped: {} }),
  };
  return t as unknown as Transport & { frames: number };
}

let engine: SyncEngine | undefined;
beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
});
afterEach(() => {
  engine?.stop();
  vi.useRealTimers();
});

function sender(coalesceMs: number, entriesPerFrame = 1000) {
  const local = new LocalTable({ clock: { now: () => Date.now() } });
  const tr = capture();
  engine = new SyncEngine({ nodeId: 'a', clusterId: 'test', coalesceMs, digestIntervalMs: 0, heartbeatMs: 0, maxFrameBytes: 1 << 22, entriesPerFrame }, local, tr, { now: () => Date.now() }, pino({ level: 'silent' }));
  let i = 0;
  const change = () => {
    const f = tcpFlow(i++);
    local.applyEvent({ kind: 'new', flow: f, origin: 'kernel', portId: 0 });
    engine!.changed(flowKey(f), true);
  };
  return { tr, change };
}

describe('coalescing on the sender', () => {
  test('a lone change goes out once changes pause for ~1 ms, long before coalesceMs', () => {
    const { tr, change } = sender(10_000);
    change();
    vi.advanceTimersByTime(1);
    expect(tr.frames).toBe(1);
  });

  test('a steady stream is batched until the batch is coalesceMs old, then the tail goes out after the pause', () => {
    const { tr, change } = sender(5);
    // a change every 0.5 ms for 7 ms: no 1 ms pause, so the first batch closes at 5 ms
    for (let t = 0; t < 14; t++) {
      change();
      vi.advanceTimersByTime(0.5);
      if (t < 9) expect(tr.frames, `at ${(t + 1) / 2} ms`).toBe(0);
    }
    expect(tr.frames).toBe(1);
    vi.advanceTimersByTime(2); // the stream stopped: the open batch follows within the next check
    expect(tr.frames).toBe(2);
    vi.advanceTimersByTime(50);
    expect(tr.frames).toBe(2);
  });

  test('a batch that fills a frame goes out at the next check, without waiting for coalesceMs', () => {
    const { tr, change } = sender(10_000, 100);
    for (let t = 0; t < 10; t++) {
      for (let j = 0; j < 30; j++) change();
      vi.advanceTimersByTime(0.5);
    }
    // 300 changes by 5 ms, never a pause: the first check with ≥ 100 pending sent them in frames of 100
    expect(tr.frames).toBeGreaterThanOrEqual(2);
  });
});
