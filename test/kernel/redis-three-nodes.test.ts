// Three ctsync daemons in three namespaces syncing through a real redis-server in a fourth namespace (one bridge):
// real conntrack entries on the active; the master moves twice (fw1 → fw2 → fw3) by control-socket HA transitions,
// and after each move the new master's kernel holds every flow (none lost), and the others' copies follow it.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type LabProcess } from '../../src/lab/netns.js';
import { request } from '../../src/control/client.js';
import type { DaemonStats } from '../../src/daemon/stats.js';
import { listFlows } from '../helpers/conntrack-cli.js';
import { cannotRun, startDaemon, runCtsync } from '../helpers/env.js';
import { RedisServer, redisMissing } from '../../src/lab/redis-server.js';

const PREFIX = 'ctsr5-';
const reason = cannotRun(['ip', 'conntrack'], true) ?? redisMissing();
if (reason) console.warn(`[redis-three-nodes] NOT RUN: ${reason}`);

const NET = '10.78.5';
const REDIS_IP = `${NET}.100`;
const NODES = ['fw1', 'fw2', 'fw3'] as const;

interface Node {
  id: string;
  ns: string;
  ip: string;
  conf: string;
  sock: string;
  proc?: LabProcess;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(reason !== undefined)('three daemons through redis, the master moves twice', () => {
  let lab: Lab;
  let dir: string;
  let redis: RedisServer | undefined;
  const nodes: Node[] = [];

  async function start(n: Node): Promise<void> {
    n.proc = await startDaemon(lab, n.ns, n.conf, n.sock);
  }

  /** Flows as "src:sport" of the test range 10.66.0.0/16 in a node's kernel. */
  async function kernelFlows(n: Node): Promise<Set<string>> {
    const out = new Set<string>();
    for (const f of await listFlows(lab, n.ns)) if (f.orig.src.startsWith('10.66.')) out.add(`${f.orig.src}:${f.orig.sport}`);
    return out;
  }

  async function peerFlows(n: Node, peer: string): Promise<Set<string>> {
    const doc = ((await request(n.sock, 'dump', { table: 'peer', peer }).catch(() => ({ document: '{"flows":[]}' }))) as { document: string }).document;
    const out = new Set<string>();
    for (const f of (JSON.parse(doc) as { flows: { orig: { src: string; sport?: number } }[] }).flows) if (f.orig.src.startsWith('10.66.')) out.add(`${f.orig.src}:${f.orig.sport}`);
    return out;
  }

  const sameSet = (a: Set<string>, b: Set<string>) => a.size === b.size && [...a].every((x) => b.has(x));

  async function until(what: string, cond: () => Promise<boolean>, ms = 30_000): Promise<void> {
    const end = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await sleep(200);
    }
  }

  /** `count` ESTABLISHED TCP entries written into `n`'s kernel with conntrack -I (as traffic through it would). */
  async function insert(n: Node, from: number, count: number): Promise<void> {
    const script = `for i in $(seq ${from} ${from + count - 1}); do conntrack -I -p tcp -s 10.66.$((i / 250)).$((i % 250 + 1)) -d 10.67.0.1 --sport $((20000 + i)) --dport 443 --state ESTABLISHED -u SEEN_REPLY,ASSURED -t 3000 >/dev/null 2>&1 || exit 1; done`;
    await lab.exec(n.ns, ['sh', '-c', script]);
  }

  async function transition(n: Node, state: 'MASTER' | 'BACKUP'): Promise<{ result: string; error?: string }> {
    return (await request(n.sock, 'ha', { transition: { state }, source: 'test' })) as { result: string; error?: string };
  }

  beforeAll(async () => {
    Lab.sweep(PREFIX);
    dir = mkdtempSync(join(tmpdir(), 'ctsync-redis3-'));
    writeFileSync(join(dir, 'cluster.key'), `${'5a1b2c3d4e5f60718293a4b5c6d7e8f9'.repeat(2)}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'redis.pass'), 'lab-redis-secret-5\n', { mode: 0o600 });
    lab = new Lab({ prefix: PREFIX });
    const rns = await lab.addNamespace('rds');
    await lab.addBridge(rns, 'br0');
    await lab.addAddress(rns, 'br0', `${REDIS_IP}/24`);
    for (const [i, id] of NODES.entries()) {
      const ns = await lab.addNamespace(id);
      await lab.addVeth(ns, 'eth0', rns, `v${id}`);
      await lab.attachToBridge(rns, `v${id}`, 'br0');
      const ip = `${NET}.${i + 1}`;
      await lab.addAddress(ns, 'eth0', `${ip}/24`);
      nodes.push({ id, ns, ip, conf: join(dir, `${id}.yaml`), sock: join(dir, `${id}.sock`) });
    }
    redis = await RedisServer.start({ host: REDIS_IP, port: 6379, users: { ctsync: 'lab-redis-secret-5' }, wrap: ['ip', 'netns', 'exec', rns] });
    for (const n of nodes) {
      const others = nodes.filter((o) => o !== n);
      writeFileSync(
        n.conf,
        [
          `nodeId: ${n.id}`,
          'clusterId: lab3',
          'transport: redis',
          `listen: ${n.ip}:3780`,
          'peers:',
          ...others.flatMap((o) => [`  - id: ${o.id}`, `    addresses: ['${o.ip}:3780']`]),
          `redis: { addresses: ['${REDIS_IP}:6379'], username: ctsync, passwordFile: ${join(dir, 'redis.pass')} }`,
          `security: { keyFile: ${join(dir, 'cluster.key')} }`,
          `control: { socket: ${n.sock} }`,
          "metrics: { listen: '' }",
          'log: { level: info }',
          'sync: { digestInterval: 2s, refreshInterval: 5s }',
          'link: { heartbeat: 200ms, deadAfter: 1s }',
          `ha: { purgeAfter: 1s, trackFile: ${join(dir, `${n.id}.track`)} }`,
        ].join('\n'),
      );
    }
    for (const n of nodes) await start(n);
  }, 60_000);

  afterAll(async () => {
    for (const n of nodes) {
      await n.proc?.stop(3000).catch(() => {});
    }
    await redis?.stop().catch(() => {});
    await lab?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('fw1 → fw2 → fw3: every flow survives both moves, and each backup holds the master\'s table', async () => {
    const [fw1, fw2, fw3] = nodes as [Node, Node, Node];
    expect((await transition(fw1, 'MASTER')).result).toBe('ok');
    for (const n of [fw2, fw3]) expect((await transition(n, 'BACKUP')).result).toBe('ok');
    await insert(fw1, 0, 150);
    const all = await kernelFlows(fw1);
    expect(all.size).toBe(150);
    await until('fw2 and fw3 hold fw1\'s table', async () => sameSet(await peerFlows(fw2, 'fw1'), all) && sameSet(await peerFlows(fw3, 'fw1'), all));

    // move 1: fw2 becomes master, commits what it got from fw1; fw1 steps back (and purges its kernel after 1 s)
    const m1 = await transition(fw2, 'MASTER');
    expect(m1.result, m1.error).toBe('ok');
    expect((await transition(fw1, 'BACKUP')).result).toBe('ok');
    const onFw2 = await kernelFlows(fw2);
    for (const f of all) expect(onFw2.has(f), `fw2 lost ${f}`).toBe(true);
    await insert(fw2, 150, 50); // new connections through the new master
    for (const f of await kernelFlows(fw2)) all.add(f);
    expect(all.size).toBe(200);
    await until('fw3 holds fw2\'s table and fw1 purged', async () => sameSet(await peerFlows(fw3, 'fw2'), all) && (await kernelFlows(fw1)).size === 0);
    await until('fw3\'s copy of fw1 is empty', async () => (await peerFlows(fw3, 'fw1')).size === 0);

    // move 2: fw3 becomes master and commits what it received from the previous master, fw2
    const m2 = await transition(fw3, 'MASTER');
    expect(m2.result, m2.error).toBe('ok');
    expect((await transition(fw2, 'BACKUP')).result).toBe('ok');
    const onFw3 = await kernelFlows(fw3);
    const lost = [...all].filter((f) => !onFw3.has(f));
    expect(lost, `${lost.length} flows lost at the second move`).toEqual([]);
    await until('fw1 and fw2 hold fw3\'s table', async () => sameSet(await peerFlows(fw1, 'fw3'), all) && sameSet(await peerFlows(fw2, 'fw3'), all));

    const s = (await request(fw1.sock, 'stats')) as DaemonStats;
    expect(s.peers.filter((p) => p.configured).every((p) => p.link === 'up')).toBe(true);
    expect(s.drops.bad_auth ?? 0).toBe(0);
    // ctsync stats shows the Redis transport's own state
    expect(s.transport.kind).toBe('redis');
    expect(s.transport.redis).toMatchObject({ status: 'ready', needsResync: false });
    const text = await runCtsync(['stats', '--socket', fw1.sock]);
    expect(text.stdout).toMatch(/^ {2}redis {4}ready; 0 frames buffered; outages \d+; resyncs \d+$/m);
  }, 120_000);
});
