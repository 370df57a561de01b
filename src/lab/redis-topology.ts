// Redis topologies for tests and labs, made of RedisServer processes on free loopback ports: a master with replicas
// watched by sentinels (and its failover), and a Redis Cluster of N masters. Every process is stopped by its PID,
// also when starting the set fails halfway.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { RedisServer, type RedisServerOptions } from './redis-server.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Client TLS options for a TLS-only server of ours: its own certificate (signed by the CA it trusts) as the client's. */
export function labTls(s: RedisServer): { ca: Buffer; cert: Buffer; key: Buffer; checkServerIdentity: () => undefined } | undefined {
  const t = s.tlsFiles;
  return t ? { ca: readFileSync(t.caFile), cert: readFileSync(t.certFile), key: readFileSync(t.keyFile), checkServerIdentity: () => undefined } : undefined;
}

/** One command over a short-lived connection as the default user (servers of a set keep it: `defaultUser`). */
export async function redisCommand(s: RedisServer, ...args: (string | number)[]): Promise<unknown> {
  const tls = labTls(s);
  const c = new Redis({ host: s.host, port: s.port, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null, ...(tls ? { tls } : {}) });
  c.on('error', () => {});
  try {
    await c.connect();
    return await c.call(String(args[0]), ...args.slice(1));
  } finally {
    c.disconnect();
  }
}

async function waitUntil(what: string, cond: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond().catch(() => false)) return;
    if (Date.now() > end) throw new Error(`redis topology: timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function startAll(make: (started: RedisServer[]) => Promise<void>): Promise<RedisServer[]> {
  const started: RedisServer[] = [];
  try {
    await make(started);
    return started;
  } catch (err) {
    for (const s of started) await s.stop();
    throw err;
  }
}

export interface SentinelSetOptions {
  /** The master name the sentinels monitor. Default `ctsync-test`. */
  name?: string;
  /** Default 1. */
  replicas?: number;
  /** Default 3; the quorum is a majority of them. */
  sentinels?: number;
  /** A sentinel calls the master down after this long without an answer, ms. Default 1000. */
  downAfterMs?: number;
  /** ACL users on the data servers (as RedisServerOptions.users); the default user stays for replication. */
  users?: Record<string, string>;
  /** TLS only, everywhere: data servers, replication, sentinels (and what sentinels say to each other). */
  tls?: RedisServerOptions['tls'];
}

/** A master, its replicas and the sentinels that watch them. */
export class RedisSentinelSet {
  private constructor(
    readonly name: string,
    /** Data servers; which one is master changes with failovers (masterServer()). */
    readonly servers: RedisServer[],
    readonly sentinels: RedisServer[],
  ) {}

  static async start(o: SentinelSetOptions = {}): Promise<RedisSentinelSet> {
    const name = o.name ?? 'ctsync-test';
    const nReplicas = o.replicas ?? 1;
    const nSentinels = o.sentinels ?? 3;
    const tlsConf = o.tls ? ['tls-replication yes'] : [];
    const data: RedisServerOptions = { ...(o.users ? { users: o.users, defaultUser: true } : {}), ...(o.tls ? { tls: o.tls, conf: tlsConf } : {}) };
    let servers: RedisServer[] = [];
    const sentinels: RedisServer[] = [];
    await startAll(async (started) => {
      const master = await RedisServer.start(data);
      started.push(master);
      for (let i = 0; i < nReplicas; i++) started.push(await RedisServer.start({ ...data, conf: [...tlsConf, `replicaof ${master.host} ${master.port}`] }));
      servers = [...started];
      await waitUntil('replicas online', async () => (String(await redisCommand(master, 'INFO', 'replication')).match(/state=online/g) ?? []).length === nReplicas, 10_000);
      const quorum = Math.floor(nSentinels / 2) + 1;
      for (let i = 0; i < nSentinels; i++) {
        const s = await RedisServer.start({
          sentinel: true,
          ...(o.tls ? { tls: o.tls } : {}),
          conf: [
            ...tlsConf,
            `sentinel monitor ${name} ${master.host} ${master.port} ${quorum}`,
            `sentinel down-after-milliseconds ${name} ${o.downAfterMs ?? 1000}`,
            `sentinel failover-timeout ${name} 10000`,
          ],
        });
        started.push(s);
        sentinels.push(s);
      }
      // a failover needs every sentinel to know the replicas and the other sentinels (hello messages, every 2 s)
      for (const s of sentinels) {
        await waitUntil(`sentinel ${s.address} sees the set`, async () => {
          const m = fields(await redisCommand(s, 'SENTINEL', 'MASTER', name));
          return Number(m['num-slaves']) === nReplicas && Number(m['num-other-sentinels']) === nSentinels - 1;
        }, 20_000);
      }
    });
    return new RedisSentinelSet(name, servers, sentinels);
  }

  get sentinelAddresses(): string[] {
    return this.sentinels.map((s) => s.address);
  }

  /** The master as the (first live) sentinel reports it. */
  async masterAddress(): Promise<string> {
    for (const s of this.sentinels) {
      const a = (await redisCommand(s, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', this.name).catch(() => undefined)) as string[] | undefined;
      if (a) return `${a[0]}:${a[1]}`;
    }
    throw new Error('no sentinel answered');
  }

  async masterServer(): Promise<RedisServer> {
    const addr = await this.masterAddress();
    const s = this.servers.find((x) => x.address === addr);
    if (!s) throw new Error(`the sentinels name ${addr} as master, which is not in this set`);
    return s;
  }

  /**
   * Moves the master: `kill` SIGKILLs it by PID (the sentinels must notice it down), `sentinel` asks for
   * SENTINEL FAILOVER. Resolves with the new master once every sentinel names it and it answers as master.
   */
  async failover(how: 'kill' | 'sentinel', timeoutMs = 30_000): Promise<RedisServer> {
    const old = await this.masterServer();
    if (how === 'kill') await old.kill();
    // refused (NOGOODSLAVE, INPROG) until the replicas follow the current master after an earlier failover
    else await waitUntil('SENTINEL FAILOVER accepted', async () => (await redisCommand(this.sentinels[0]!, 'SENTINEL', 'FAILOVER', this.name)) === 'OK', timeoutMs);
    let next: RedisServer | undefined;
    await waitUntil('a replica promoted by the sentinels', async () => {
      const addrs = await Promise.all(this.sentinels.map((s) => redisCommand(s, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', this.name) as Promise<string[]>));
      const seen = new Set(addrs.map((a) => `${a[0]}:${a[1]}`));
      if (seen.size !== 1 || seen.has(old.address)) return false;
      next = this.servers.find((x) => seen.has(x.address));
      return !!next && ((await redisCommand(next, 'ROLE')) as string[])[0] === 'master';
    }, timeoutMs);
    return next!;
  }

  async stop(): Promise<void> {
    for (const s of [...this.sentinels, ...this.servers]) await s.stop();
  }
}

export interface ClusterSetOptions {
  /** Default 3, the least redis-cli --cluster create accepts. */
  masters?: number;
  /** Replicas per master (default 0). With replicas a master that stops answering for 1 s is failed over. */
  replicas?: number;
  /** ACL users (as RedisServerOptions.users); the default user stays for redis-cli and the cluster bus. */
  users?: Record<string, string>;
}

/** A Redis Cluster on loopback, slots spread (and replicas assigned) by `redis-cli --cluster create`. */
export class RedisClusterSet {
  private constructor(readonly nodes: RedisServer[]) {}

  static async start(o: ClusterSetOptions = {}): Promise<RedisClusterSet> {
    const replicas = o.replicas ?? 0;
    const n = (o.masters ?? 3) * (1 + replicas);
    const nodes = await startAll(async (started) => {
      const conf = ['cluster-enabled yes', 'cluster-config-file nodes.conf', `cluster-node-timeout ${replicas ? 1000 : 5000}`];
      for (let i = 0; i < n; i++) started.push(await RedisServer.start({ ...(o.users ? { users: o.users, defaultUser: true } : {}), conf }));
      await promisify(execFile)('redis-cli', ['--cluster', 'create', ...started.map((s) => s.address), '--cluster-replicas', String(replicas), '--cluster-yes'], { timeout: 30_000 });
      for (const s of started) {
        await waitUntil(`cluster node ${s.address} ok`, async () => {
          const info = String(await redisCommand(s, 'CLUSTER', 'INFO'));
          return /cluster_state:ok/.test(info) && new RegExp(`cluster_known_nodes:${n}\\b`).test(info);
        }, 20_000);
      }
      // a replica that has not synced with its master yet would not be promoted when the master dies
      await waitUntil('every replica synced', async () => {
        const infos = await Promise.all(started.map((s) => redisCommand(s, 'INFO', 'replication').then(String)));
        return infos.filter((i) => /role:slave/.test(i) && /master_link_status:up/.test(i)).length === n - (o.masters ?? 3);
      }, 30_000);
    });
    return new RedisClusterSet(nodes);
  }

  get addresses(): string[] {
    return this.nodes.map((s) => s.address);
  }

  /** A node still running, to ask about the cluster. */
  private get live(): RedisServer {
    const s = this.nodes.find((x) => x.pid !== undefined);
    if (!s) throw new Error('no cluster node is running');
    return s;
  }

  async slotOf(key: string): Promise<number> {
    return Number(await redisCommand(this.live, 'CLUSTER', 'KEYSLOT', key));
  }

  /** The node that serves `slot`. */
  async nodeOf(slot: number): Promise<RedisServer> {
    const ranges = (await redisCommand(this.live, 'CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    const r = ranges.find(([lo, hi]) => slot >= lo && slot <= hi);
    const s = r && this.nodes.find((x) => x.port === Number(r[2][1]));
    if (!s) throw new Error(`no node serves slot ${slot}`);
    return s;
  }

  /** SIGKILLs (by PID) the master serving `slot`; resolves with the replica the cluster promoted in its place. */
  async failover(slot: number, timeoutMs = 30_000): Promise<RedisServer> {
    const old = await this.nodeOf(slot);
    await old.kill();
    let next: RedisServer | undefined;
    await waitUntil(`a replica promoted for slot ${slot}`, async () => {
      next = await this.nodeOf(slot);
      return next !== old && /cluster_state:ok/.test(String(await redisCommand(next, 'CLUSTER', 'INFO')));
    }, timeoutMs);
    return next!;
  }

  async stop(): Promise<void> {
    for (const s of this.nodes) await s.stop();
  }
}

/** A flat [field, value, …] reply as an object. */
function fields(reply: unknown): Record<string, string> {
  const a = reply as string[];
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < a.length; i += 2) out[a[i]!] = a[i + 1]!;
  return out;
}
