// A Redis client's socket that errs twice (a TLS handshake refused with an alert after a first failure) must not
// throw the second error out of the process: ioredis listens with once(), so the client adds a lasting listener.
import { createServer, type Server, type Socket } from 'node:net';
import type { EventEmitter } from 'node:events';
import { afterEach, describe, expect, test } from 'vitest';
import { createClient, resolveRedisOptions, type RedisClient } from '../../../src/transport/redis/options.js';

let server: Server | undefined;
let client: RedisClient | undefined;
const held: Socket[] = [];
afterEach(async () => {
  client?.disconnect();
  for (const s of held.splice(0)) s.destroy();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
});

describe('redis client sockets', () => {
  test('a second error on the same socket is not thrown', async () => {
    // a loopback server that accepts and says nothing: the client's socket stays open for the test to use
    server = createServer((s) => held.push(s));
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const { port } = server.address() as { port: number };
    const o = resolveRedisOptions({ nodeId: 'a', clusterId: 'c', peers: ['b'], redis: { addresses: [`127.0.0.1:${port}`] } });
    client = createClient(o.redis, 'ctsync:a');
    client.on('error', () => {}); // the first error is ioredis's to report
    void client.connect().catch(() => {});
    const c = client as unknown as { stream?: EventEmitter };
    for (let i = 0; i < 100 && !c.stream; i++) await new Promise((r) => setTimeout(r, 10));
    expect(c.stream).toBeDefined();
    c.stream!.emit('error', new Error('first'));
    expect(() => c.stream!.emit('error', new Error('second'))).not.toThrow();
  });
});
