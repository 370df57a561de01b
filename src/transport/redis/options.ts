// Options of the Redis Streams transport (a typed object with a documented default per key), their validation,
// and the ioredis client they describe: single Redis, Sentinel or Cluster, with TLS and ACL credentials.

import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { backoffDelay } from '../tcp/backoff.js';
import { ID_RE, ID_RULE, TransportError, parseHostPort } from '../types.js';

/** Where Redis is and how to reach it. */
export interface RedisConnectOptions {
  /** `single` (one server), `sentinel` (ask the sentinels for `name`'s master), `cluster`. Default `single`. */
  mode?: 'single' | 'sentinel' | 'cluster';
  /**
   * single: one `host:port` (default `127.0.0.1:6379`). sentinel: the sentinels' `host:port`s. cluster: seed nodes.
   */
  addresses?: string[];
  /** sentinel: the monitored master's name. Required in sentinel mode. */
  name?: string;
  /** ACL user (Redis 6+). Default none (the `default` user). */
  username?: string;
  /** ACL password, or the file holding it (preferred: keeps it out of the config). Default none. */
  password?: string;
  passwordFile?: string;
  /** sentinel: credentials of the sentinels themselves, when they differ. Default none. */
  sentinelUsername?: string;
  sentinelPassword?: string;
  /** Database number (single / sentinel only; a Cluster has only db 0). Default 0. */
  db?: number;
  /** TLS to Redis (and to the sentinels). Absent: plaintext. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string; servername?: string };
  /** Reconnect backoff (full jitter), ms. Default `{ initialMs: 100, maxMs: 5000 }`. */
  backoff?: { initialMs: number; maxMs: number };
  /** TCP connect timeout, ms. Default 3000. */
  connectTimeoutMs?: number;
}

/** Default backpressure point of the send buffer; redis.maxBuffer must exceed it (the config says so by name). */
export const REDIS_HIGH_WATER_BYTES = 8 << 20;

export interface RedisTransportOptions {
  /** This node's id: it writes `{ctsync:<cluster>:<nodeId>}:stream`. Required. */
  nodeId: string;
  /** Cluster id: the key namespace. Required. */
  clusterId: string;
  /** The other nodes whose streams this node reads. Required, at least one. */
  peers: string[];
  redis?: RedisConnectOptions;
  /** Approximate MAXLEN of this node's stream (XADD MAXLEN ~). Default 100000 frames (~3 GB at worst, ~2 MB typical). */
  maxLen?: number;
  /** How often this node refreshes its presence key and polls the peers' ones, ms. Default 500. */
  heartbeatMs?: number;
  /** A peer whose presence key is older than this is down, ms (the key's TTL). Default 2000; > 2 × heartbeatMs. */
  deadAfterMs?: number;
  /** Queued (not yet written) bytes above which `send()` reports backpressure. Default 8 MiB. */
  highWaterMarkBytes?: number;
  /**
   * Queued bytes kept through a Redis outage; past it frames are dropped and the node republishes its whole table
   * (a full resync) once Redis is back. Past a quarter of it (or highWaterMarkBytes, if more) the transport reports
   * itself congested and the sync layer holds new changes, coalesced, until it drains. Default 64 MiB.
   */
  maxBufferBytes?: number;
  /** Frames per XREAD / per MULTI. Default 1000. */
  batchFrames?: number;
  /** XREAD BLOCK timeout, ms: bounds how long a reader waits before re-checking its state. Default 1000. */
  blockMs?: number;
  logger?: Logger;
}

export type ResolvedRedisOptions = Required<Omit<RedisTransportOptions, 'logger' | 'redis'>> & {
  redis: Required<Pick<RedisConnectOptions, 'mode' | 'addresses' | 'db' | 'backoff' | 'connectTimeoutMs'>> & RedisConnectOptions;
  logger?: Logger;
};

/** Applies defaults and checks every key; throws one TransportError naming every bad one. */
export function resolveRedisOptions(o: RedisTransportOptions): ResolvedRedisOptions {
  const problems: string[] = [];
  if (!ID_RE.test(o.nodeId ?? '')) problems.push(`nodeId must be ${ID_RULE}`);
  if (!ID_RE.test(o.clusterId ?? '')) problems.push(`clusterId must be ${ID_RULE}`);
  if (!Array.isArray(o.peers) || !o.peers.length) problems.push('redis.peers (or peers) must list at least one other node id');
  else {
    for (const p of o.peers) if (!ID_RE.test(p)) problems.push(`peer '${p}' must be ${ID_RULE}`);
    if (o.peers.includes(o.nodeId)) problems.push(`peers lists this node's own id '${o.nodeId}'`);
  }
  const r = o.redis ?? {};
  const connect = withConnectDefaults(r);
  const { mode, addresses } = connect;
  if (!['single', 'sentinel', 'cluster'].includes(mode)) problems.push('redis.mode must be single, sentinel or cluster');
  for (const a of addresses) if (!parseHostPort(a)) problems.push(`redis.addresses: '${a}' must be HOST:PORT (port 1-65535)`);
  if (mode === 'sentinel' && !r.name) problems.push('redis.name is required in sentinel mode (the master name the sentinels monitor)');
  if (mode === 'cluster' && r.db) problems.push('redis.db must be 0 in cluster mode');
  if (r.password && r.passwordFile) problems.push('redis.password and redis.passwordFile: set only one');
  const heartbeatMs = o.heartbeatMs ?? 500;
  const deadAfterMs = o.deadAfterMs ?? 2000;
  if (deadAfterMs < 2 * heartbeatMs) problems.push(`deadAfterMs (${deadAfterMs}) must be at least 2 × heartbeatMs (${heartbeatMs})`);
  const highWaterMarkBytes = o.highWaterMarkBytes ?? REDIS_HIGH_WATER_BYTES;
  const maxBufferBytes = o.maxBufferBytes ?? 64 << 20;
  if (maxBufferBytes <= highWaterMarkBytes) problems.push('maxBufferBytes must exceed highWaterMarkBytes');
  const maxLen = o.maxLen ?? 100_000;
  if (!(maxLen >= 10)) problems.push('maxLen must be at least 10');
  if (problems.length) throw new TransportError('CTS_ERR_CONFIG_INVALID', `invalid redis transport options:\n  ${problems.join('\n  ')}`);
  return {
    nodeId: o.nodeId,
    clusterId: o.clusterId,
    peers: [...o.peers],
    maxLen,
    heartbeatMs,
    deadAfterMs,
    highWaterMarkBytes,
    maxBufferBytes,
    batchFrames: o.batchFrames ?? 1000,
    blockMs: o.blockMs ?? 1000,
    redis: connect,
    ...(o.logger ? { logger: o.logger } : {}),
  };
}

/** The connection options with their defaults filled in (not checked: resolveRedisOptions does that). */
export function withConnectDefaults(r: RedisConnectOptions): ResolvedRedisOptions['redis'] {
  return {
    ...r,
    mode: r.mode ?? 'single',
    addresses: r.addresses?.length ? r.addresses : ['127.0.0.1:6379'],
    db: r.db ?? 0,
    backoff: r.backoff ?? { initialMs: 100, maxMs: 5000 },
    connectTimeoutMs: r.connectTimeoutMs ?? 3000,
  };
}

/** An address resolveRedisOptions (or the config) already checked, as ioredis takes it. */
const split = (hostPort: string): { host: string; port: number } => parseHostPort(hostPort)!;

function readFile(path: string, key: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new TransportError('CTS_ERR_KEY_READ', `cannot read ${key} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

export type RedisClient = Redis | Cluster;

/** Per-node options of a Cluster: the cluster object owns retries and queueing. */
function clusterNodeOptions(o: RedisOptions): ClusterOptions['redisOptions'] {
  const { retryStrategy: _r, enableOfflineQueue: _q, lazyConnect: _l, ...rest } = o;
  return rest;
}

/**
 * A new client for these options (not yet connected: `lazyConnect`). Commands fail at once while disconnected
 * (no offline queue), and those in flight when the connection drops fail too instead of being replayed on the next
 * connection, maybe to another server: the transport keeps its own bounded queue, knows what was acknowledged,
 * and checks what the server it reaches holds before writing again.
 */
export function createClient(o: ResolvedRedisOptions['redis'], name: string, followFailover = false): RedisClient {
  const password = o.passwordFile ? readFile(o.passwordFile, 'redis.passwordFile').trim() : o.password;
  let tls: ConnectionOptions | undefined;
  if (o.tls) {
    tls = {};
    if (o.tls.caFile) tls.ca = readFile(o.tls.caFile, 'redis.tls.caFile');
    if (o.tls.certFile) tls.cert = readFile(o.tls.certFile, 'redis.tls.certFile');
    if (o.tls.keyFile) tls.key = readFile(o.tls.keyFile, 'redis.tls.keyFile');
    if (o.tls.servername) tls.servername = o.tls.servername;
  }
  let attempt = 0;
  const common: RedisOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    // a master demoted by a failover answers READONLY: reconnect (in sentinel mode, to the master the sentinels name)
    reconnectOnError: (err: Error) => (/^READONLY/.test(err.message) ? 1 : false),
    connectionName: name,
    connectTimeout: o.connectTimeoutMs,
    ...(o.username ? { username: o.username } : {}),
    ...(password ? { password } : {}),
    ...(tls ? { tls } : {}),
    retryStrategy: (times: number) => {
      attempt = times;
      return Math.max(10, backoffDelay(attempt, { ...o.backoff, factor: 2 }));
    },
  };
  if (o.mode === 'cluster') {
    const opts: ClusterOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      clusterRetryStrategy: (times: number) => Math.max(10, backoffDelay(times, { ...o.backoff, factor: 2 })),
      redisOptions: clusterNodeOptions(common),
      ...(tls ? { dnsLookup: (address, cb) => cb(null, address) } : {}),
    };
    const cluster = new Cluster(o.addresses.map(split), opts);
    cluster.on('+node', (node: Redis) => guardConnections(node));
    return cluster;
  }
  if (o.mode === 'sentinel') {
    return guardConnections(new Redis({
      ...common,
      sentinels: o.addresses.map(split),
      name: o.name!,
      db: o.db,
      ...(o.sentinelUsername ? { sentinelUsername: o.sentinelUsername } : {}),
      ...(o.sentinelPassword ? { sentinelPassword: o.sentinelPassword } : {}),
      ...(tls ? { sentinelTLS: tls, enableTLSForSentinelMode: true } : {}),
      // Follow +switch-master at once (one connection per sentinel): until the sentinels demote the old master, seconds
      // later, it still takes writes, which are lost. The writer's connection does; the transport moves its readers.
      ...(followFailover ? { failoverDetector: true } : {}),
    }));
  }
  return guardConnections(new Redis({ ...common, ...split(o.addresses[0]!), db: o.db }));
}

/**
 * Two guards on each connection a client opens.
 *
 * - ioredis listens for its socket's errors with once(): a second error on the same socket (a TLS handshake refused
 *   with an alert after the first failure, say) finds no listener and is thrown, which would end the daemon. Each
 *   socket gets a lasting listener as well; the first error still reaches ioredis, which reports it and reconnects.
 * - ioredis sends the SELECT of redis.db first on each connection, and when the server refuses it (no such db, an
 *   ACL user without SELECT) it only emits the error and goes on in db 0. Here the ready check that follows the
 *   SELECT fails instead, so ioredis drops the connection and retries with the backoff: the client never becomes
 *   ready, and no command runs, in a db the operator did not choose. The SELECT's answer arrives before the ready
 *   check's (one connection answers in order); the refusal still reaches the client's 'error' listeners.
 */
function guardConnections(client: Redis): Redis {
  const internals = client as unknown as {
    connector: { connect: (...a: unknown[]) => Promise<NodeJS.EventEmitter>; check: (info: unknown) => boolean };
    select: (db: number) => Promise<unknown>;
  };
  const { connector } = internals;
  const connect = connector.connect.bind(connector);
  const check = connector.check.bind(connector);
  const select = internals.select.bind(client);
  let refused = false;
  connector.connect = (...a) =>
    connect(...a).then((socket) => {
      refused = false;
      socket.on('error', () => {});
      return socket;
    });
  internals.select = (db) =>
    select(db).catch((err: unknown) => {
      refused = true;
      throw err;
    });
  connector.check = (info) => !refused && check(info);
  return client;
}
