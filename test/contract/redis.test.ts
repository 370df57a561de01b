// Runs the transport contract on the Redis Streams transport against a real redis-server (started here on a free
// loopback port, with an ACL user), then the Redis-specific behaviour: snapshot + tail for a joining node, a reader
// behind a trimmed stream, Redis restarted mid-stream, timeout refreshes in the snapshot, an outage beyond the buffer,
// an outage that changes are held through, forged frames, three nodes, a stop while Redis is unreachable.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { RedisServer, freeLoopbackPort, redisMissing } from '../../src/lab/redis-server.js';
import { nodeKeys } from '../../src/transport/redis/index.js';
import { probeRedis } from '../../src/transport/redis/probe.js';
import { createMacKey, encodeFrame } from '../../src/wire/envelope.js';
import { TcpState, type Flow } from '../../src/kernel/types.js';
import { flowKey } from '../../src/state/key.js';
import { runTransportContract } from './transport-contract.js';
import { ACL, ACL_USERS, redisPair, same, syncNodes, tcpFlow, until } from './redis-fixtures.js';
import { captureLogger } from '../unit/transport/log-capture.js';

const missing = redisMissing();
if (missing) console.warn(`[redis contract] not run: ${missing}`);

let server: RedisServer | undefined;

describe.skipIf(!!missing)('redis transport', () => {
  beforeAll(async () => {
    server = await RedisServer.start({ users: ACL_USERS });
  });
  afterAll(async () => {
    await server?.stop();
  });

  runTransportContract('redis (single server, ACL user)', async () => redisPair({ addresses: [server!.address] }));

  it('a database the server refuses is never written to (nor db 0): the transport waits, says why once, and starts when Redis accepts it', async () => {
    // its own server: an admin user takes SELECT away from the transport's ACL user, then gives it back
    const srv = await RedisServer.start({ users: ACL_USERS, conf: ['user admin on >admin-pw ~* &* +@all'] });
    const admin = new Redis({ host: srv.host, port: srv.port, username: 'admin', password: 'admin-pw', lazyConnect: true });
    const cap = captureLogger('info');
    const { a } = redisPair({ addresses: [srv.address], db: 5 }, { logger: cap.logger });
    const keysIn = async (db: number) => (await admin.select(db), await admin.keys('*'));
    try {
      await admin.connect();
      await admin.acl('SETUSER', ACL.username, '-select');
      await a.start();
      await until('the refusal in stats', () => a.stats().redis.refusal !== undefined);
      await new Promise((r) => setTimeout(r, 600)); // several retries (backoff 20-200 ms)
      expect(a.stats().redis).toMatchObject({ status: 'connecting', refusal: expect.stringMatching(/^SELECT 5: NOPERM/) });
      const errors = cap.lines.filter((l) => l.level === 50);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ msg: 'redis refused a command setting up a connection: check redis.db and the ACL user; retrying' });
      expect(await keysIn(0)).toEqual([]);
      expect(await keysIn(5)).toEqual([]);
      // a db the server does not have: the same
      const { a: a99 } = redisPair({ addresses: [srv.address], db: 99 });
      await admin.acl('SETUSER', ACL.username, '+select');
      await a99.start();
      try {
        await until('the refusal of db 99', () => a99.stats().redis.refusal !== undefined);
        expect(a99.stats().redis).toMatchObject({ status: 'connecting', refusal: 'SELECT 99: ERR DB index is out of range' });
      } finally {
        await a99.stop();
      }
      // a wrong password: refused the same way, and the log keeps the command's name but never its arguments
      const cap2 = captureLogger('info');
      const { a: bad } = redisPair({ addresses: [srv.address], password: 'not-the-password' }, { logger: cap2.logger });
      await bad.start();
      try {
        await until('the refused AUTH', () => bad.stats().redis.refusal !== undefined);
        expect(bad.stats().redis.refusal).toMatch(/^WRONGPASS/);
        const line = cap2.lines.find((l) => l.level === 50);
        expect(line).toMatchObject({ err: { command: { name: 'auth' } } });
        expect(JSON.stringify(cap2.lines)).not.toContain('not-the-password');
      } finally {
        await bad.stop();
      }
      // SELECT allowed again (above): the next retry succeeds, and everything goes to db 5
      await until('ready', () => a.stats().redis.status === 'ready');
      expect(a.stats().redis.refusal).toBeUndefined();
      await until('our keys in db 5', () => a.stats().redis.batches > 0);
      expect((await keysIn(5)).length).toBeGreaterThan(0);
      expect(await keysIn(0)).toEqual([]);
    } finally {
      await a.stop();
      admin.disconnect();
      await srv.stop();
    }
  });

  it('ctsync doctor\'s probe: reached as configured, or why not (a database the server lacks, a wrong password, nothing listening)', async () => {
    const ok = await probeRedis({ addresses: [server!.address], ...ACL, db: 3 });
    expect(ok.reached, ok.error).toBe(true);
    expect(ok.version).toMatch(/^\d+\.\d+/);
    expect(await probeRedis({ addresses: [server!.address], ...ACL, db: 99 })).toEqual({ reached: false, error: 'ERR DB index is out of range' });
    const wrong = await probeRedis({ addresses: [server!.address], ...ACL, password: 'not-it' });
    expect(wrong.reached).toBe(false);
    expect(wrong.error).toMatch(/WRONGPASS/);
    const port = await freeLoopbackPort();
    const none = await probeRedis({ addresses: [`127.0.0.1:${port}`], connectTimeoutMs: 500 });
    expect(none.reached).toBe(false);
    expect(none.error).toMatch(/ECONNREFUSED/);
  });

  it('stops at once while redis is unreachable (its client is between retries)', async () => {
    const { a } = redisPair({ addresses: [`127.0.0.1:${await freeLoopbackPort()}`] });
    await a.start();
    await new Promise((r) => setTimeout(r, 300)); // a few refused connection attempts
    expect(a.stats().redis.status).toBe('connecting');
    const t0 = Date.now();
    await a.stop();
    expect(Date.now() - t0).toBeLessThan(500);
    expect(a.stats().redis.status).toBe('stopped');
  });
});

// ---- the sync engine over Redis ------------------------------------------------------------------------------

describe.skipIf(!!missing)('sync engine over redis', () => {
  let srv: RedisServer;
  const sn = syncNodes(() => ({ addresses: [srv.address] }));
  const node = sn.node;
  const fresh = () => sn.fresh();
  /** fw-a and fw-b on a fresh cluster (fw-a's transport with `extra`), fw-b holding fw-a's first n flows. */
  const syncedPair = async (n: number, extra: Parameters<typeof node>[2] = {}) => {
    fresh();
    const a = await node('fw-a', ['fw-b'], extra);
    const b = await node('fw-b', ['fw-a']);
    for (let i = 0; i < n; i++) a.event('new', tcpFlow(i));
    await until('b in sync', () => same(a, b));
    return { a, b };
  };

  beforeAll(async () => {
    srv = await RedisServer.start({ users: ACL_USERS });
  });
  afterAll(async () => {
    await sn.stopAll();
    await srv?.stop();
  });

  it('a node that joins later loads the writer\'s snapshot and the tail: the writer sends no bulk for it', async () => {
    fresh();
    const a = await node('fw-a', ['fw-b']);
    for (let i = 0; i < 2000; i++) a.event('new', tcpFlow(i));
    await until('a\'s first publication complete', () => a.rs().queuedFrames === 0 && a.engine.counters.bulks === 1 && a.rs().snapshotFields === 2000);
    const b = await node('fw-b', ['fw-a']);
    await until('b holds a\'s table', () => same(a, b));
    expect(b.engine.counters.snapshots).toBe(1);
    for (let i = 0; i < 300; i++) a.event('destroy', tcpFlow(i));
    for (let i = 2000; i < 2300; i++) a.event('new', tcpFlow(i));
    await until('b follows the tail', () => same(a, b));
    expect(a.engine.counters.bulks).toBe(1);
    // b restarts: a fresh process with empty tables, back from the snapshot alone
    await b.stop();
    for (let i = 300; i < 400; i++) a.event('destroy', tcpFlow(i));
    const b2 = await node('fw-b', ['fw-a']);
    await until('restarted b holds a\'s table', () => same(a, b2));
    expect(a.engine.counters.bulks).toBe(1);
    expect(b2.engine.status().find((p) => p.nodeId === 'fw-a')?.haveCopy).toBe(true);
    await a.stop();
    await b2.stop();
  });

  it('a reader that falls behind a trimmed stream notices the gap and reloads the snapshot', async () => {
    const { a, b } = await syncedPair(500, { maxLen: 10 });
    const loads = b.rs().snapshotLoads['fw-a'] ?? 0;
    b.transport.suspendReading('fw-a', true);
    // thousands of frames while b reads nothing: the stream keeps only the last ~100
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 500; i++) a.event('update', tcpFlow(i, round % 2 ? TcpState.FinWait : TcpState.Established));
      for (let i = 500 + round * 50; i < 550 + round * 50; i++) a.event('new', tcpFlow(i));
      for (let i = round * 10; i < round * 10 + 10; i++) a.event('destroy', tcpFlow(i));
      a.engine.flush();
      await until('a wrote its frames', () => a.rs().queuedFrames === 0);
    }
    const redis = new Redis({ host: srv.host, port: srv.port, ...ACL });
    const len = await redis.xlen(nodeKeys(sn.clusterId, 'fw-a').stream);
    await redis.quit();
    expect(len).toBeLessThan(a.engine.counters.framesOut);
    b.transport.suspendReading('fw-a', false);
    await until('b in sync again', () => same(a, b));
    expect(b.rs().gaps['fw-a']).toBeGreaterThanOrEqual(1);
    expect(b.rs().snapshotLoads['fw-a']).toBeGreaterThan(loads);
    expect(a.engine.counters.bulks).toBe(1);
    await a.stop();
    await b.stop();
  });

  it('redis restarted mid-stream (data lost): the writer republishes, the reader resyncs, nothing is lost', async () => {
    const { a, b } = await syncedPair(1000);
    const bulks = a.engine.counters.bulks;
    // changes keep coming while redis goes away and comes back empty
    for (let i = 0; i < 200; i++) a.event('destroy', tcpFlow(i));
    await srv.restart();
    for (let i = 1000; i < 1500; i++) a.event('new', tcpFlow(i));
    // the writer notices that Redis lost its data and republishes; only then is "in sync" the end state
    await until('the writer republished', () => a.engine.counters.bulks > bulks, 30_000);
    expect(a.rs().outages).toBeGreaterThanOrEqual(1);
    await until('b in sync after the restart', () => same(a, b), 30_000);
    await until('link up again', () => b.transport.stats().peers[0]!.state === 'up');
    await a.stop();
    await b.stop();
  });

  it('timeout refreshes reach the snapshot: a node that loads it later gets the refreshed remaining timeouts', async () => {
    fresh();
    const a = await node('fw-a', ['fw-b']);
    for (let i = 0; i < 100; i++) a.event('new', tcpFlow(i, TcpState.Established, 30));
    await until('a published its table', () => a.rs().queuedFrames === 0 && a.rs().snapshotFields === 100);
    // the kernel extended flows 0-49 (traffic) and 99, which is gone before its refresh goes out
    a.event('destroy', tcpFlow(99));
    a.engine.flush();
    a.engine.sendRefreshes([...Array(50).keys(), 99].map((i) => ({ key: flowKey(tcpFlow(i)), timeout: 600 })));
    // then flow 0 changes again with a timeout of its own: the later upsert wins over the refresh
    a.event('update', tcpFlow(0, TcpState.FinWait, 120));
    a.engine.flush();
    await until('a wrote everything', () => a.rs().queuedFrames === 0);
    expect(a.rs().snapshotRefreshes).toBe(50);
    const b = await node('fw-b', ['fw-a']);
    await until('b loaded a\'s snapshot', () => b.engine.counters.snapshots === 1 && same(a, b));
    const t = b.engine.peerTables().get('fw-a')!;
    const left = (i: number) => t.remainingTimeout(flowKey(tcpFlow(i)));
    expect(left(0)).toBeGreaterThan(110);
    expect(left(0)).toBeLessThanOrEqual(120);
    for (let i = 1; i < 50; i++) expect(left(i), `flow ${i}`).toBeGreaterThan(590);
    for (let i = 50; i < 99; i++) expect(left(i), `flow ${i}`).toBeLessThanOrEqual(30);
    expect(left(99)).toBeUndefined();
    await a.stop();
    await b.stop();
  });

  it('an outage longer than the send buffer: frames are dropped and counted, then a full resync repairs the reader', async () => {
    const { a, b } = await syncedPair(300, { maxBufferBytes: 32 << 10, highWaterMarkBytes: 8 << 10 });
    await srv.kill();
    try {
      await until('a sees the outage', () => a.rs().status === 'outage');
      // event ingest goes on; the engine holds changes once the buffer is a quarter full (the next test)
      for (let i = 300; i < 5000; i++) a.event('new', tcpFlow(i));
      for (let i = 0; i < 100; i++) a.event('destroy', tcpFlow(i));
      a.engine.flush();
      expect(a.transport.stats().dropped.buffer_full ?? 0).toBe(0);
      expect(a.engine.pending().changes).toBeGreaterThan(0);
      // so the engine never overflows the buffer at real sizes (above 8 MiB, where a frame holds 1000 entries at most): a
      // frame larger than what is left, sent past the engine, stands for anything that still would
      expect(a.transport.send(Buffer.alloc(32 << 10))).toBe(false);
      expect(a.transport.stats().dropped.buffer_full).toBe(1);
      expect(a.rs().needsResync).toBe(true);
      expect(a.rs().queuedBytes).toBeLessThanOrEqual(32 << 10);
    } finally {
      await srv.restart();
    }
    await until('b in sync after the resync', () => same(a, b), 30_000);
    expect(a.rs().needsResync).toBe(false);
    await a.stop();
    await b.stop();
  });

  it('an outage: changes wait in the engine, one entry per flow, instead of filling the buffer; no resync after it', async () => {
    // congested past a quarter of the buffer, 64 KiB: four rounds of the 500 flows below, of forty
    const { a, b } = await syncedPair(600, { maxBufferBytes: 256 << 10, highWaterMarkBytes: 16 << 10 });
    const [resyncs, bulks] = [a.rs().resyncsRequested, a.engine.counters.bulks];
    // a path that stops answering (not a restart: Redis keeps its data), our own server stopped by PID
    process.kill(srv.pid!, 'SIGSTOP');
    try {
      await until('a sees the outage', () => a.rs().status === 'outage');
      for (let round = 1; round <= 40; round++) {
        for (let i = 0; i < 500; i++) a.event('update', { ...tcpFlow(i), mark: round });
        a.engine.flush();
      }
      expect(a.transport.stats().dropped.buffer_full ?? 0).toBe(0);
      expect(a.rs().needsResync).toBe(false);
      expect(a.engine.counters.holds).toBeGreaterThanOrEqual(1);
      expect(a.engine.pending().changes).toBe(500);
      // a timeout refresh meanwhile joins the held changes rather than the buffer
      const queued = a.rs().queuedFrames;
      a.engine.sendRefreshes(Array.from({ length: 100 }, (_, j) => ({ key: flowKey(tcpFlow(500 + j)), timeout: 1800 })));
      expect(a.rs().queuedFrames).toBe(queued);
      expect(a.engine.pending().changes).toBe(600);
    } finally {
      process.kill(srv.pid!, 'SIGCONT');
    }
    await until('b holds every flow\'s last mark', () => same(a, b) && b.engine.peerTables().get('fw-a')!.get(flowKey(tcpFlow(7)))?.mark === 40, 30_000);
    expect(a.engine.pending().changes).toBe(0);
    expect(a.rs().resyncsRequested).toBe(resyncs);
    expect(a.engine.counters.bulks).toBe(bulks);
    await a.stop();
    await b.stop();
  });

  it('frames XADDed by someone without the cluster key are dropped and counted; the writer\'s next frame still counts', async () => {
    const { a, b } = await syncedPair(10);
    const keys = nodeKeys(sn.clusterId, 'fw-a');
    const redis = new Redis({ host: srv.host, port: srv.port, ...ACL });
    const [[, fields]] = (await redis.xrevrange(keys.stream, '+', '-', 'COUNT', 1)) as [string, string[]][];
    const inc = fields[fields.indexOf('i') + 1]!;
    const n = Number(fields[fields.indexOf('n') + 1]);
    const forged = (key?: ReturnType<typeof createMacKey>) =>
      encodeFrame({ clusterId: sn.clusterId, nodeId: 'fw-a', seq: 1e9, upsert: { entries: [{ orig: Buffer.alloc(15, 7), status: 8, timeout: 100 }] } }, { macKey: key });
    await redis.xadd(keys.stream, '*', 'i', inc, 'n', String(n + 1), 'f', forged());
    await redis.xadd(keys.stream, '*', 'i', inc, 'n', String(n + 1), 'f', forged(createMacKey('some-other-cluster-key-0123456789')));
    await redis.quit();
    await until('forgeries refused', () => (b.transport.stats().peers[0]!.refused.bad_auth ?? 0) === 2);
    a.event('new', tcpFlow(999));
    await until('b in sync', () => same(a, b));
    expect(b.engine.peerTables().get('fw-a')!.size).toBe(11);
    await a.stop();
    await b.stop();
  });

  it('three nodes: each keeps one table per sender; a new master\'s table reaches the third node', async () => {
    fresh();
    const a = await node('fw-a', ['fw-b', 'fw-c']);
    const b = await node('fw-b', ['fw-a', 'fw-c']);
    const c = await node('fw-c', ['fw-a', 'fw-b']);
    for (let i = 0; i < 1000; i++) a.event('new', tcpFlow(i));
    await until('b and c hold a\'s table', () => same(a, b) && same(a, c));
    // b becomes master: it commits what it got from a (here: into its local table) and publishes it
    const fromA: Flow[] = [];
    const pa = b.engine.peerTables().get('fw-a')!;
    pa.forEach((k) => fromA.push(pa.get(k)!));
    for (const f of fromA) b.event('new', f);
    void b.engine.bulk();
    for (let i = 0; i < 1000; i++) a.event('destroy', tcpFlow(i)); // a purges after leaving MASTER
    await until('c holds b\'s table, and a\'s is empty', () => same(b, c) && same(a, c) && c.engine.peerTables().get('fw-b')!.size === 1000);
    expect(c.engine.peerTables().get('fw-a')!.size).toBe(0);
    await a.stop();
    await b.stop();
    await c.stop();
  });
});
