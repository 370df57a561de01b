// Fixtures of the Redis transport tests: fast timings, a transport pair for the contract suite, and sync nodes (a
// local table, a SyncEngine and a RedisTransport each) that compare what a reader holds with the writer's table.
import pino from 'pino';
import { RedisTransport, type RedisConnectOptions, type RedisTransportOptions, type RedisTransportStats } from '../../src/transport/redis/index.js';
import { SyncEngine, type SyncOptions } from '../../src/sync/engine.js';
import { LocalTable, rebornOf } from '../../src/state/local-table.js';
import { systemClock } from '../../src/state/clock.js';
import { toSyncedFlow } from '../../src/wire/entry.js';
import { createMacKey } from '../../src/wire/envelope.js';
import { Ips, TcpState, type Flow, type FlowEvent } from '../../src/kernel/types.js';

let cluster = 0;

export const FAST_REDIS = { heartbeatMs: 100, deadAfterMs: 400, blockMs: 200, redis: { backoff: { initialMs: 20, maxMs: 200 } } };
/** The ACL user every test server has (RedisServerOptions.users). */
export const ACL = { username: 'ctsync', password: 'test-secret-1' };
export const ACL_USERS = { [ACL.username]: ACL.password };

/** Two transports, each the other's only peer, in a fresh cluster id. */
export function redisPair(redis: RedisConnectOptions, extra: Partial<RedisTransportOptions> = {}) {
  const clusterId = `contract${++cluster}`;
  const common = { clusterId, ...FAST_REDIS, ...extra, redis: { ...FAST_REDIS.redis, ...ACL, ...redis, ...extra.redis } };
  const a = new RedisTransport({ ...common, nodeId: 'fw-a', peers: ['fw-b'] });
  const b = new RedisTransport({ ...common, nodeId: 'fw-b', peers: ['fw-a'] });
  return { a, b, aId: 'fw-a', bId: 'fw-b' };
}

const log = pino({ level: process.env.LOG ?? 'silent' });
export const MAC = createMacKey('redis-contract-cluster-key-0123456789');

export interface SyncNode {
  id: string;
  local: LocalTable;
  engine: SyncEngine;
  transport: RedisTransport;
  event(kind: FlowEvent['kind'], flow: Flow): void;
  stop(): Promise<void>;
  rs(): RedisTransportStats['redis'];
}

export function tcpFlow(i: number, state = TcpState.Established, timeout = 3600): Flow {
  const src = `10.1.${(i >> 8) & 255}.${i & 255}`;
  return {
    family: 2,
    orig: { src, dst: '10.2.0.1', proto: 6, sport: 10000 + (i % 50000), dport: 443 },
    reply: { src: '10.2.0.1', dst: src, proto: 6, sport: 443, dport: 10000 + (i % 50000) },
    status: Ips.Confirmed | Ips.SeenReply | Ips.Assured,
    timeout,
    mark: i % 3,
    protoinfo: { tcp: { state } },
  };
}

export async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** `receiver`'s table of `sender` equals the sender's local table exactly (keys and synced contents). */
export function same(sender: SyncNode, receiver: SyncNode): boolean {
  const peer = receiver.engine.peerTables().get(sender.id);
  if (!peer || peer.size !== sender.local.size) return false;
  const strip = (f: Flow) => JSON.stringify({ ...toSyncedFlow(f), timeout: undefined });
  let ok = true;
  sender.local.forEach((k) => {
    const p = peer.get(k);
    if (!p || strip(p) !== strip(sender.local.get(k)!)) ok = false;
  });
  return ok;
}

/** Sync nodes of one cluster id (fresh() starts the next one) on the Redis `redis()` describes; stopAll() in afterAll. */
export function syncNodes(redis: () => RedisConnectOptions) {
  const nodes: SyncNode[] = [];
  let clusterId = '';
  return {
    get clusterId() {
      return clusterId;
    },
    fresh(): void {
      clusterId = `sync${++cluster}`;
    },
    async node(id: string, peers: string[], extra: Partial<RedisTransportOptions> = {}, local = new LocalTable({ clock: systemClock }), sync: Partial<SyncOptions> = {}): Promise<SyncNode> {
      const transport = new RedisTransport(
        { nodeId: id, clusterId, peers, ...FAST_REDIS, logger: log.child({ node: id }), ...extra, redis: { ...FAST_REDIS.redis, ...ACL, ...redis() } },
        { macKey: MAC },
      );
      const engine = new SyncEngine({ nodeId: id, clusterId, coalesceMs: 1, digestIntervalMs: 0, heartbeatMs: 0, maxFrameBytes: 4 << 20, entriesPerFrame: 50, macKey: MAC, ...sync }, local, transport, systemClock, log.child({ node: id }));
      engine.start();
      await transport.start();
      const n: SyncNode = {
        id, local, engine, transport,
        event(kind, flow) {
          const r = local.applyEvent({ kind, flow, origin: 'kernel', portId: 0 });
          const reborn = rebornOf(r.change);
          if (reborn !== undefined) engine.changed(r.key, reborn, r.slot);
        },
        async stop() {
          engine.flush();
          engine.stop();
          await transport.stop();
          nodes.splice(nodes.indexOf(n), 1);
        },
        rs: () => transport.stats().redis,
      };
      nodes.push(n);
      return n;
    },
    async stopAll(): Promise<void> {
      for (const n of [...nodes]) await n.stop().catch(() => {});
    },
  };
}
