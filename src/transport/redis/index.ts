// Public surface of the Redis Streams transport.
export { RedisTransport, type RedisStatus, type RedisTransportStats, type SnapshotPoint, type RedisTransportRuntime } from './transport.js';
export { resolveRedisOptions, type RedisConnectOptions, type RedisTransportOptions } from './options.js';
export { nodeKeys, type NodeKeys } from './keys.js';
export { SnapshotTracker } from './snapshot.js';
