// A lab of ctsync daemons in namespaces around a real redis-server: one namespace holds a bridge and Redis, each
// node has its own namespace on that bridge. The test writes each node's config (`configure`); the helpers read
// what the kernels and the daemons hold. Teardown stops what it started (by PID) and deletes the namespaces.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type LabProcess } from '../../src/lab/netns.js';
import { dumpDocument, request } from '../../src/control/client.js';
import type { DaemonStats } from '../../src/daemon/stats.js';
import { RedisServer } from '../../src/lab/redis-server.js';
import { listFlows } from './conntrack-cli.js';
import { startDaemon } from './env.js';

export interface LabNode {
  id: string;
  ns: string;
  ip: string;
  conf: string;
  sock: string;
  proc?: LabProcess;
}

/** What every node's config needs to reach the others and Redis; `config(c, …)` writes the common part. */
export interface NodeContext {
  node: LabNode;
  others: LabNode[];
  redis: string;
  dir: string;
  redisUser: string;
  redisPassFile: string;
  keyFile: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Flow number $i of the test range 10.66.0.0/16, for conntrack -I / -D in a shell loop. */
const FLOW = '-p tcp -s 10.66.$((i / 250)).$((i % 250 + 1)) -d 10.67.0.1 --sport $((20000 + i)) --dport 443';

export class RedisLab {
  readonly nodes: LabNode[] = [];
  /** The namespace of the bridge and redis-server (its side of every node's link is br0). */
  redisNs = '';
  private redis?: RedisServer;

  private constructor(
    readonly lab: Lab,
    readonly dir: string,
  ) {}

  /** Namespaces `prefix`rds (bridge, Redis at net.100) and one per id (net.1, net.2, …), configs, daemons. */
  static async start(prefix: string, net: string, ids: string[], configure: (c: NodeContext) => string[]): Promise<RedisLab> {
    Lab.sweep(prefix);
    const dir = mkdtempSync(join(tmpdir(), `${prefix}lab-`));
    const r = new RedisLab(new Lab({ prefix }), dir);
    const keyFile = join(dir, 'cluster.key');
    const redisPassFile = join(dir, 'redis.pass');
    const password = `lab-redis-${prefix}secret`;
    writeFileSync(keyFile, `${'5a1b2c3d4e5f60718293a4b5c6d7e8f9'.repeat(2)}\n`, { mode: 0o600 });
    writeFileSync(redisPassFile, `${password}\n`, { mode: 0o600 });
    try {
      const rns = (r.redisNs = await r.lab.addNamespace('rds'));
      await r.lab.addBridge(rns, 'br0');
      await r.lab.addAddress(rns, 'br0', `${net}.100/24`);
      for (const [i, id] of ids.entries()) {
        const ns = await r.lab.addNamespace(id);
        await r.lab.addVeth(ns, 'eth0', rns, `v${id}`);
        await r.lab.attachToBridge(rns, `v${id}`, 'br0');
        const ip = `${net}.${i + 1}`;
        await r.lab.addAddress(ns, 'eth0', `${ip}/24`);
        r.nodes.push({ id, ns, ip, conf: join(dir, `${id}.yaml`), sock: join(dir, `${id}.sock`) });
      }
      r.redis = await RedisServer.start({ host: `${net}.100`, port: 6379, users: { ctsync: password }, wrap: ['ip', 'netns', 'exec', rns] });
      for (const node of r.nodes) {
        const lines = configure({ node, others: r.nodes.filter((o) => o !== node), redis: `${net}.100:6379`, dir, redisUser: 'ctsync', redisPassFile, keyFile });
        writeFileSync(node.conf, `${lines.join('\n')}\n`);
      }
      for (const node of r.nodes) node.proc = await startDaemon(r.lab, node.ns, node.conf, node.sock);
      return r;
    } catch (err) {
      await r.stop();
      throw err;
    }
  }

  async stop(): Promise<void> {
    for (const n of this.nodes) await n.proc?.stop(3000).catch(() => {});
    await this.redis?.stop().catch(() => {});
    await this.lab.teardown();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Flows as "src:sport" of the test range in a node's kernel. */
  async kernelFlows(n: LabNode): Promise<Set<string>> {
    const out = new Set<string>();
    for (const f of await listFlows(this.lab, n.ns)) if (f.orig.src.startsWith('10.66.')) out.add(`${f.orig.src}:${f.orig.sport}`);
    return out;
  }

  /** The same of what a node holds for `peer` (the copy a commit would write). */
  async peerFlows(n: LabNode, peer: string): Promise<Set<string>> {
    const doc = await dumpDocument(n.sock, { table: 'peer', peer }).catch(() => '{"flows":[]}');
    const out = new Set<string>();
    for (const f of (JSON.parse(doc) as { flows: { orig: { src: string; sport?: number } }[] }).flows) if (f.orig.src.startsWith('10.66.')) out.add(`${f.orig.src}:${f.orig.sport}`);
    return out;
  }

  stats(n: LabNode): Promise<DaemonStats> {
    return request(n.sock, 'stats') as Promise<DaemonStats>;
  }

  /** `count` ESTABLISHED TCP entries from number `from` written into a node's kernel (as traffic through it would). */
  insert(n: LabNode, from: number, count: number): Promise<unknown> {
    return this.loop(n, from, count, `conntrack -I ${FLOW} --state ESTABLISHED -u SEEN_REPLY,ASSURED -t 3000`);
  }

  remove(n: LabNode, from: number, count: number): Promise<unknown> {
    return this.loop(n, from, count, `conntrack -D ${FLOW}`);
  }

  private loop(n: LabNode, from: number, count: number, cmd: string): Promise<unknown> {
    return this.lab.exec(n.ns, ['sh', '-c', `for i in $(seq ${from} ${from + count - 1}); do ${cmd} >/dev/null 2>&1 || exit 1; done`]);
  }

  async transition(n: LabNode, state: 'MASTER' | 'BACKUP'): Promise<{ result: string; error?: string }> {
    return (await request(n.sock, 'ha', { transition: { state }, source: 'test' })) as { result: string; error?: string };
  }

  /** Waits for cond; on timeout the error shows where `show`'s peers stood. */
  async until(what: string, cond: () => Promise<boolean>, ms = 30_000, show?: LabNode): Promise<void> {
    const end = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}${show ? `: ${JSON.stringify((await this.stats(show)).peers)}` : ''}`);
      await sleep(200);
    }
  }
}

/** A node's config: the lab's common keys (fast heartbeats, 1 s purge, no metrics) plus the test's own lines. */
export function config(c: NodeContext, o: { cluster: string; transport: string; port: number }, ...extra: string[]): string[] {
  return [
    `nodeId: ${c.node.id}`,
    `clusterId: ${o.cluster}`,
    `transport: ${o.transport}`,
    `listen: ${c.node.ip}:${o.port}`,
    'peers:',
    ...c.others.flatMap((p) => [`  - id: ${p.id}`, `    addresses: ['${p.ip}:${o.port}']`]),
    `redis: { addresses: ['${c.redis}'], username: ${c.redisUser}, passwordFile: ${c.redisPassFile} }`,
    `security: { keyFile: ${c.keyFile} }`,
    `control: { socket: ${c.node.sock} }`,
    "metrics: { listen: '' }",
    'log: { level: info }',
    'sync: { digestInterval: 2s, refreshInterval: 5s }',
    'link: { heartbeat: 200ms, deadAfter: 1s }',
    `ha: { purgeAfter: 1s, trackFile: ${join(c.dir, `${c.node.id}.track`)} }`,
    ...extra,
  ];
}

export const sameSet = (a: Set<string>, b: Set<string>) => a.size === b.size && [...a].every((x) => b.has(x));
