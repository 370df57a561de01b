// The sync engine over the real TCP/TLS link on 127.0.0.1: a resume larger than the link's per-peer queue cap
// (maxQueuedBytes) goes out paced by backpressure and converges, where sent at once it would pass the cap, drop the
// link, and start over at every reconnect.
import pino from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { SyncEngine } from '../../../src/sync/engine.js';
import { LocalTable } from '../../../src/state/local-table.js';
import { systemClock } from '../../../src/state/clock.js';
import { TcpTransport } from '../../../src/transport/tcp/index.js';
import { freePort, freshPskFile, tempDir, type TempDir } from '../../contract/tcp-fixtures.js';
import { waitFor } from '../../contract/transport-contract.js';
import { tcpFlow } from '../state/flows.js';

const log = pino({ level: process.env.LOG ?? 'silent' });
const FAST = { clusterId: 'lab', heartbeatMs: 100, deadAfterMs: 400, connectTimeoutMs: 1000, helloTimeoutMs: 1000, backoff: { initialMs: 20, maxMs: 200 }, dialStaggerMs: 50 };

let dir: TempDir | undefined;
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  dir?.cleanup();
  dir = undefined;
});

describe('sync engine over the TCP link', () => {
  test('a resume larger than the queue cap goes out paced and converges without a bulk', async () => {
    dir = tempDir();
    const pskFile = freshPskFile(dir.dir);
    const [pa, pb] = [await freePort(), await freePort()];
    // the resume below carries 20k entries, several times what 256 KiB holds
    const link = (me: string, port: number, peer: string, peerPort: number) =>
      new TcpTransport({ ...FAST, nodeId: me, listen: { host: '127.0.0.1', port }, peers: [{ nodeId: peer, addresses: [`127.0.0.1:${peerPort}`] }], tls: { pskFile }, maxQueuedBytes: 256 << 10 });
    const a = link('fw-a', pa, 'fw-b', pb);
    const b = link('fw-b', pb, 'fw-a', pa);
    const opts = (nodeId: string) => ({ nodeId, clusterId: 'lab', coalesceMs: 1, digestIntervalMs: 0, heartbeatMs: 100, maxFrameBytes: 4 << 20, entriesPerFrame: 1000 });
    const local = new LocalTable({ clock: systemClock });
    const A = new SyncEngine(opts('fw-a'), local, a, systemClock, log);
    const B = new SyncEngine(opts('fw-b'), new LocalTable({ clock: systemClock }), b, systemClock, log);
    cleanups.push(() => a.stop(), () => b.stop(), () => (A.stop(), B.stop()));
    A.start();
    B.start();
    await Promise.all([b.start(), a.start()]);
    const add = (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const r = local.applyEvent({ kind: 'new', flow: tcpFlow(i), origin: 'kernel', portId: 0 });
        A.changed(r.key, true, r.slot);
      }
    };
    const held = () => B.peerTables().get('fw-a')?.size ?? 0;
    add(0, 100);
    await waitFor('first sync', () => held() === 100 && A.status()[0]!.state === 'in_sync' && A.status()[0]!.unackedFrames === 0);
    const bulks = A.counters.bulks;
    await b.stop(); // the standby's link goes away; its engine (and session) stay
    await waitFor('down', () => A.status()[0]!.link !== 'up');
    add(100, 20_100);
    await b.start();
    await waitFor('resumed', () => held() === 20_100, 15_000);
    expect(A.counters.resumes).toBeGreaterThanOrEqual(1);
    expect(A.counters.bulks).toBe(bulks);
    expect(a.stats().dropped.queue_full ?? 0).toBe(0);
  });
});
