// Liveness of the TCP peer link: heartbeats flow while idle, a peer silent for deadAfterMs is declared down, a peer
// that cannot keep up (maxQueuedBytes) is dropped, and a connection that never says hello is refused after
// helloTimeoutMs.

import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { LinkFrame, LinkFrameDecoder, encodeLinkFrame } from '../../../src/transport/tcp/framing.js';
import { LINK_PROTOCOL_VERSION, encodeHello } from '../../../src/transport/tcp/hello.js';
import { PSK_CIPHERS, TcpTransport, loadPsk } from '../../../src/transport/tcp/index.js';
import type { TcpTransportOptions } from '../../../src/transport/tcp/options.js';
import { systemClock, type Clock } from '../../../src/transport/types.js';
import { freePort, freshPskFile, perTest } from '../../contract/tcp-fixtures.js';
import { record, waitFor } from '../../contract/transport-contract.js';

const scratch = perTest();

async function setup(clock?: Clock, timing = { heartbeatMs: 50, deadAfterMs: 200 }, extra: Partial<TcpTransportOptions> = {}) {
  const pskFile = freshPskFile(scratch.dir());
  const b = new TcpTransport({
    nodeId: 'fw-b',
    clusterId: 'lab',
    listen: { host: '127.0.0.1', port: 0 },
    peers: [{ nodeId: 'fw-a', addresses: [`127.0.0.1:${await freePort()}`] }],
    tls: { pskFile },
    ...timing,
    helloTimeoutMs: 200,
    ...extra,
    ...(clock ? { clock } : {}),
  });
  scratch.defer(() => b.stop());
  const rb = record(b);
  await b.start();
  const psk = loadPsk(pskFile);
  const s = tls.connect({ host: '127.0.0.1', port: b.address()!.port, ciphers: PSK_CIPHERS, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', checkServerIdentity: () => undefined, pskCallback: () => ({ psk, identity: 'lab' }) });
  scratch.defer(() => s.destroy());
  s.on('error', () => {});
  const received: number[] = [];
  const data: number[] = []; // first byte of each data frame's payload
  const dec = new LinkFrameDecoder(1 << 20, (type, payload) => (received.push(type), type === LinkFrame.Data && data.push(payload[0]!)));
  s.on('data', (d: Buffer) => dec.push(d));
  await new Promise<void>((r) => s.once('secureConnect', () => r()));
  return { b, rb, s, received, data };
}

const hello = (): Buffer => Buffer.concat(encodeLinkFrame(LinkFrame.Hello, encodeHello({ v: LINK_PROTOCOL_VERSION, minV: 1, cluster: 'lab', node: 'fw-a', boot: 1, seq: 1 })));

describe('liveness', () => {
  it('sends heartbeats while idle and declares a silent peer dead after deadAfterMs', async () => {
    const { rb, s, received } = await setup();
    s.write(hello());
    await waitFor('up', () => rb.state('fw-a') === 'up');
    await waitFor('heartbeats from the transport', () => received.filter((t) => t === LinkFrame.Heartbeat).length >= 2);
    expect(received[0]).toBe(LinkFrame.Hello);
    // The raw client never answers: the link must go down on its own.
    await waitFor('dead', () => rb.state('fw-a') === 'down');
    expect(rb.links.at(-1)!.reason).toBe('dead');
  });

  it('keeps the link while the peer heartbeats', async () => {
    const { rb, s } = await setup();
    s.write(hello());
    await waitFor('up', () => rb.state('fw-a') === 'up');
    const hb = Buffer.concat(encodeLinkFrame(LinkFrame.Heartbeat));
    // 12 beats 50 ms apart span three deadAfterMs windows.
    for (let i = 0; i < 12; i++) {
      s.write(hb);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(rb.state('fw-a')).toBe('up');
  });

  it('wakes for heartbeats and deadlines only, not on a fixed tick', async () => {
    // An idle daemon's CPU is its wake-ups: an up link should arm its timer once per heartbeat it sends.
    const armed: number[] = [];
    const { rb, s, received } = await setup({ ...systemClock, setTimeout: (fn, ms) => (armed.push(ms), systemClock.setTimeout(fn, ms)) });
    s.write(hello());
    await waitFor('up', () => rb.state('fw-a') === 'up');
    const hb = Buffer.concat(encodeLinkFrame(LinkFrame.Heartbeat));
    const [armedAtUp, beatsAtUp] = [armed.length, received.length];
    for (let i = 0; i < 16; i++) {
      s.write(hb); // the peer stays alive: only our own heartbeats are due
      await new Promise((r) => setTimeout(r, 25));
    }
    const beats = received.length - beatsAtUp;
    expect(beats).toBeGreaterThan(0);
    // a 50 ms heartbeat used to ride on a 12 ms tick (four wake-ups per beat); now one per beat (two spare: beats still in flight)
    expect(armed.length - armedAtUp).toBeLessThanOrEqual(beats + 2);
    expect(rb.state('fw-a')).toBe('up');
  });

  it('sends no heartbeat of its own while the layer above writes a little less often than every heartbeatMs', async () => {
    // The sync engine beats every heartbeatMs; a link heartbeat due at the same moment only doubled the records.
    const { b, rb, s, received } = await setup(undefined, { heartbeatMs: 100, deadAfterMs: 400 });
    s.write(hello());
    await waitFor('up', () => rb.state('fw-a') === 'up');
    const hb = Buffer.concat(encodeLinkFrame(LinkFrame.Heartbeat));
    const start = received.length;
    let sent = 0;
    for (let i = 0; i < 10; i++) {
      s.write(hb);
      if (b.send(Buffer.from('beat'))) sent++;
      await new Promise((r) => setTimeout(r, 105)); // later than heartbeatMs, well before 1.25 × heartbeatMs
    }
    const got = received.slice(start);
    expect(sent).toBe(10);
    expect(got.filter((t) => t === LinkFrame.Data)).toHaveLength(10);
    // every 105 ms a heartbeat used to follow each write; two spare for a timer late by more than 20 ms
    expect(got.filter((t) => t === LinkFrame.Heartbeat).length).toBeLessThanOrEqual(2);
    expect(rb.state('fw-a')).toBe('up');
  });

  it('with callerHeartbeats, sends none of its own and wakes about once per deadAfterMs, yet still finds a silent peer dead', async () => {
    // The daemon's sync engine beats on the link itself; a timer armed 1.25 beats after each write woke the daemon
    // a quarter beat after every beat, to find nothing due.
    const armed: number[] = [];
    const clock = { ...systemClock, setTimeout: (fn: () => void, ms: number) => (armed.push(ms), systemClock.setTimeout(fn, ms)) };
    const { b, rb, s, received } = await setup(clock, { heartbeatMs: 50, deadAfterMs: 200 }, { callerHeartbeats: true });
    s.write(hello());
    await waitFor('up', () => rb.state('fw-a') === 'up');
    const hb = Buffer.concat(encodeLinkFrame(LinkFrame.Heartbeat));
    const [armedAtUp, start] = [armed.length, received.length];
    for (let i = 0; i < 16; i++) {
      s.write(hb);
      b.send(Buffer.from('beat')); // the caller's heartbeat
      await new Promise((r) => setTimeout(r, 50));
    }
    const got = received.slice(start);
    expect(got.filter((t) => t === LinkFrame.Data)).toHaveLength(16);
    expect(got.filter((t) => t === LinkFrame.Heartbeat)).toHaveLength(0);
    // 800 ms of a 200 ms deadAfterMs: 4 dead checks (re-armed as the peer's bytes keep moving it), one spare; a
    // timer per beat of ours would be 16
    expect(armed.length - armedAtUp).toBeLessThanOrEqual(5);
    expect(rb.state('fw-a')).toBe('up');
    await waitFor('dead', () => rb.state('fw-a') === 'down');
    expect(rb.links.at(-1)!.reason).toBe('dead');
  });

  it('drops the link of a peer whose queue would pass maxQueuedBytes, so it never gets a frame sent after a lost one', async () => {
    const { b, rb, s, data } = await setup(undefined, undefined, { maxQueuedBytes: 1 << 20 });
    s.write(hello());
    await waitFor('up', () => rb.state('fw-a') === 'up');
    s.pause(); // a peer that reads no more
    const frame = (i: number, size: number) => Buffer.alloc(size, i);
    b.send(frame(0, 400 << 10));
    b.send(frame(1, 400 << 10));
    expect(b.send(frame(2, 400 << 10))).toBe(false); // would pass the cap: lost
    expect(rb.state('fw-a')).toBe('down');
    expect(rb.links.at(-1)!.reason).toBe('queue_full');
    expect(b.send(frame(3, 1024))).toBe(false); // fits under the cap, but the link is down
    expect(b.stats().dropped).toMatchObject({ queue_full: 1, no_link: 1 });
    s.resume();
    await new Promise((r) => s.once('close', r));
    expect([[], [0], [0, 1]]).toContainEqual(data); // what got out before the drop, in order; never 3
  });

  it('refuses a connection that never sends its hello', async () => {
    const { b, rb } = await setup();
    await waitFor('hello_timeout', () => (b.stats().refused.hello_timeout ?? 0) === 1);
    expect(rb.links.some((l) => l.state === 'up')).toBe(false);
  });
});
