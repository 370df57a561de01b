// The shared contract every Transport passes: identity, order and integrity, backpressure, far-end restart,
// no silent delivery of frames sent while down, and a clean stop.

import { afterEach, describe, expect, it } from 'vitest';
import type { LinkState, PeerInfo, Transport } from '../../src/transport/types.js';

export interface TransportPair {
  /** Two transports configured as each other's only peer, not started. Both must be restartable (start after stop). */
  a: Transport;
  b: Transport;
  aId: string;
  bId: string;
  /** Starts both ends in whatever order suits the transport (default: b, then a). */
  startBoth?: () => Promise<void>;
  /** Releases whatever the pair needs beyond the transports (temp dirs …). Transports are stopped before. */
  cleanup?: () => Promise<void>;
}

export interface Recorder {
  frames: Buffer[];
  links: Array<{ peer: PeerInfo; state: LinkState; reason?: string }>;
  drains: number;
  state(nodeId: string): LinkState | undefined;
}

/** Attaches handlers that record everything a transport reports. */
export function record(t: Transport): Recorder {
  const r: Recorder = {
    frames: [],
    links: [],
    drains: 0,
    state(nodeId) {
      for (let i = r.links.length - 1; i >= 0; i--) if (r.links[i]!.peer.nodeId === nodeId) return r.links[i]!.state;
      return undefined;
    },
  };
  t.onFrame = (f) => r.frames.push(f);
  t.onLink = (peer, state, reason) => r.links.push({ peer, state, ...(reason ? { reason } : {}) });
  t.onDrain = () => {
    r.drains += 1;
  };
  return r;
}

/** Polls with real timers; fails with `what` when `cond` stays false. */
export async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A frame that carries its own index and a checksum-free but position-dependent body. */
function makeFrame(i: number, size: number): Buffer {
  const f = Buffer.alloc(Math.max(size, 4));
  f.writeUInt32BE(i, 0);
  for (let k = 4; k < f.length; k++) f[k] = (i * 31 + k * 7) & 0xff;
  return f;
}

function checkFrames(got: Buffer[], sizes: number[]): void {
  expect(got.length).toBe(sizes.length);
  for (let i = 0; i < sizes.length; i++) {
    const f = got[i]!;
    expect(f.readUInt32BE(0)).toBe(i);
    expect(f.equals(makeFrame(i, sizes[i]!))).toBe(true);
  }
}

function resourceCounts(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
  return out;
}

const NET_RESOURCES = ['TCPSocketWrap', 'TCPServerWrap', 'TLSWrap'];

export function runTransportContract(name: string, makePair: () => Promise<TransportPair>): void {
  describe(`transport contract: ${name}`, () => {
    let pair: TransportPair | undefined;
    let ra: Recorder;
    let rb: Recorder;

    async function open(): Promise<TransportPair> {
      pair = await makePair();
      ra = record(pair.a);
      rb = record(pair.b);
      if (pair.startBoth) await pair.startBoth();
      else {
        await pair.b.start();
        await pair.a.start();
      }
      await waitUp(pair);
      return pair;
    }

    async function waitUp(p: TransportPair): Promise<void> {
      await waitFor('both ends up', () => ra.state(p.bId) === 'up' && rb.state(p.aId) === 'up');
    }

    afterEach(async () => {
      if (!pair) return;
      const p = pair;
      pair = undefined;
      await p.a.stop();
      await p.b.stop();
      await p.cleanup?.();
    });

    it('reports the link up on both ends with the peer node id', async () => {
      const p = await open();
      expect(ra.links.at(-1)).toMatchObject({ peer: { nodeId: p.bId }, state: 'up' });
      expect(rb.links.at(-1)).toMatchObject({ peer: { nodeId: p.aId }, state: 'up' });
      expect(p.a.stats().peers.find((s) => s.nodeId === p.bId)?.state).toBe('up');
      expect(p.b.stats().peers.find((s) => s.nodeId === p.aId)?.state).toBe('up');
    });

    it('delivers many small frames in order and intact, both ways', async () => {
      const p = await open();
      const sizes = Array.from({ length: 3000 }, (_, i) => 4 + (i % 97));
      sizes.forEach((s, i) => p.a.send(makeFrame(i, s)));
      const back = [4, 5, 6, 1000];
      back.forEach((s, i) => p.b.send(makeFrame(i, s)));
      await waitFor('3000 frames a→b', () => rb.frames.length >= sizes.length);
      await waitFor('4 frames b→a', () => ra.frames.length >= back.length);
      checkFrames(rb.frames, sizes);
      checkFrames(ra.frames, back);
      expect(rb.frames[0]).not.toBe(undefined);
      expect(p.b.stats().peers[0]!.framesIn).toBe(sizes.length);
    });

    it('delivers large frames intact (1 byte, 64 KiB + 1, 4 MiB)', async () => {
      const p = await open();
      const sizes = [4, 65_537, 4 * 1024 * 1024, 5];
      sizes.forEach((s, i) => p.a.send(makeFrame(i, s)));
      await waitFor('large frames', () => rb.frames.length >= sizes.length);
      checkFrames(rb.frames, sizes);
    });

    it('reports backpressure, then drains and delivers everything it accepted', async () => {
      const p = await open();
      const droppedBefore = p.a.stats().dropped.no_link ?? 0;
      const sizes: number[] = [];
      let accepted = true;
      while (accepted && sizes.length < 256) {
        sizes.push(1024 * 1024);
        accepted = p.a.send(makeFrame(sizes.length - 1, 1024 * 1024));
      }
      expect(accepted).toBe(false);
      expect(p.a.stats().dropped.no_link ?? 0).toBe(droppedBefore);
      await waitFor('onDrain', () => ra.drains > 0);
      await waitFor('all accepted frames', () => rb.frames.length >= sizes.length);
      checkFrames(rb.frames, sizes);
    });

    it('still drains a backpressured end whose link goes down, so nothing waits on it forever', async () => {
      const p = await open();
      let accepted = true;
      for (let i = 0; accepted && i < 256; i++) accepted = p.a.send(makeFrame(i, 1024 * 1024));
      expect(accepted).toBe(false);
      await p.b.stop();
      await waitFor('onDrain after the link went down', () => ra.drains > 0);
    });

    it('goes down when the far end stops and up again when it restarts', async () => {
      const p = await open();
      await p.b.stop();
      expect(rb.state(p.aId)).toBe('closed');
      await waitFor('a sees b down', () => ra.state(p.bId) === 'down');
      await p.b.start();
      await waitUp(p);
      p.a.send(makeFrame(0, 10));
      p.b.send(makeFrame(0, 20));
      await waitFor('frames after restart', () => rb.frames.length === 1 && ra.frames.length === 1);
      checkFrames(rb.frames, [10]);
      checkFrames(ra.frames, [20]);
      expect(p.a.stats().peers[0]!.reconnects).toBeGreaterThanOrEqual(1);
    });

    it('does not pretend to send while down: send() is false, the frame is counted as dropped and never arrives', async () => {
      const p = await open();
      await p.b.stop();
      await waitFor('a sees b down', () => ra.state(p.bId) === 'down');
      const before = p.a.stats().dropped.no_link ?? 0;
      expect(p.a.send(Buffer.from('lost while down'))).toBe(false);
      expect(p.a.stats().dropped.no_link).toBe(before + 1);
      await p.b.start();
      await waitUp(p);
      p.a.send(makeFrame(0, 8));
      await waitFor('marker frame', () => rb.frames.length >= 1);
      // Give a wrongly buffered frame time to show up behind the marker.
      await new Promise((r) => setTimeout(r, 50));
      checkFrames(rb.frames, [8]);
    });

    it('stops cleanly: closed state, no sockets or events afterwards, send refused', async () => {
      const baseline = resourceCounts();
      const p = await open();
      p.a.send(makeFrame(0, 100));
      await p.a.stop();
      await p.b.stop();
      expect(ra.state(p.bId)).toBe('closed');
      expect(rb.state(p.aId)).toBe('closed');
      // Measured right after stop() resolves: a timer or socket still pending here is a leak.
      const after = resourceCounts();
      const events = ra.links.length + rb.links.length;
      expect(p.a.send(Buffer.from('x'))).toBe(false);
      expect(p.a.stats().dropped.stopped).toBe(1);
      await new Promise((r) => setTimeout(r, 50));
      expect(ra.links.length + rb.links.length).toBe(events);
      for (const k of NET_RESOURCES) expect(after[k] ?? 0, k).toBeLessThanOrEqual(baseline[k] ?? 0);
      // Timers: the transport must not leave any of its own behind (vitest's own are in the baseline). Immediates
      // are not checked: Node's socket teardown itself queues one.
      expect(after.Timeout ?? 0).toBeLessThanOrEqual(baseline.Timeout ?? 0);
    });
  });
}
