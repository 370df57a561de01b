// `transport: both`: two daemons joined by the direct TLS link and by a real redis-server, each in its own namespace.
// Cutting one path at a time (nftables drops its port) never stops the standby's copy from following the master
// (fw2 is also a warm standby, whose kernel copy follows the path switch):
// the copy comes from the path that still hears from the master, and a takeover commits exactly the master's
// table. Then the other way round: the master moves back with the Redis path cut, over the direct link.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type LabProcess } from '../../src/lab/netns.js';
import { request } from '../../src/control/client.js';
import type { DaemonStats } from '../../src/daemon/stats.js';
import { listFlows } from '../helpers/conntrack-cli.js';
import { cannotRun, runCtsync, startDaemon } from '../helpers/env.js';
import { RedisServer, redisMissing } from '../../src/lab/redis-server.js';

const PREFIX = 'ctsb2-';
const reason = cannotRun(['ip', 'nft', 'conntrack'], true) ?? redisMissing();
if (reason) console.warn(`[transport-both] NOT RUN: ${reason}`);

const NET = '10.78.6';
const REDIS_IP = `${NET}.100`;
const LINK_PORT = 3781;

interface Node {
  id: string;
  ns: string;
  ip: string;
  conf: string;
  sock: string;
  proc?: LabProcess;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(reason !== undefined)('transport both: either path alone keeps the standby exact', () => {
  let lab: Lab;
  let dir: string;
  let redis: RedisServer | undefined;
  const nodes: Node[] = [];

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

  const stats = async (n: Node) => (await request(n.sock, 'stats')) as DaemonStats;
  const sameSet = (a: Set<string>, b: Set<string>) => a.size === b.size && [...a].every((x) => b.has(x));

  /** Waits for cond; on timeout the error shows where the waiting node's peers stood. */
  async function until(what: string, cond: () => Promise<boolean>, ms = 30_000, show?: Node): Promise<void> {
    const end = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}${show ? `: ${JSON.stringify((await stats(show)).peers)}` : ''}`);
      await sleep(200);
    }
  }

  /** Flow number $i of the test range, for conntrack -I / -D in a shell loop. */
  const FLOW = '-p tcp -s 10.66.$((i / 250)).$((i % 250 + 1)) -d 10.67.0.1 --sport $((20000 + i)) --dport 443';
  const loop = (n: Node, from: number, count: number, cmd: string) =>
    lab.exec(n.ns, ['sh', '-c', `for i in $(seq ${from} ${from + count - 1}); do ${cmd} >/dev/null 2>&1 || exit 1; done`]);
  const insert = (n: Node, from: number, count: number) => loop(n, from, count, `conntrack -I ${FLOW} --state ESTABLISHED -u SEEN_REPLY,ASSURED -t 3000`);
  const remove = (n: Node, from: number, count: number) => loop(n, from, count, `conntrack -D ${FLOW}`);

  /** Drop everything to and from one TCP port in a node's namespace (the other path keeps working). */
  async function cut(n: Node, port: number): Promise<void> {
    const drop = `tcp dport ${port} drop; tcp sport ${port} drop`;
    await lab.loadNft(n.ns, `table inet cut${port} {\n chain in { type filter hook input priority -10; ${drop}; }\n chain out { type filter hook output priority -10; ${drop}; }\n}\n`);
  }
  async function restore(n: Node, port: number): Promise<void> {
    await lab.exec(n.ns, ['nft', 'delete', 'table', 'inet', `cut${port}`]);
  }

  async function transition(n: Node, state: 'MASTER' | 'BACKUP'): Promise<{ result: string; error?: string }> {
    return (await request(n.sock, 'ha', { transition: { state }, source: 'test' })) as { result: string; error?: string };
  }

  beforeAll(async () => {
    Lab.sweep(PREFIX);
    dir = mkdtempSync(join(tmpdir(), 'ctsync-both-'));
    writeFileSync(join(dir, 'cluster.key'), `${'6b1c2d3e4f5061728394a5b6c7d8e9fa'.repeat(2)}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'redis.pass'), 'lab-redis-secret-6\n', { mode: 0o600 });
    lab = new Lab({ prefix: PREFIX });
    const rns = await lab.addNamespace('rds');
    await lab.addBridge(rns, 'br0');
    await lab.addAddress(rns, 'br0', `${REDIS_IP}/24`);
    for (const [i, id] of ['fw1', 'fw2'].entries()) {
      const ns = await lab.addNamespace(id);
      await lab.addVeth(ns, 'eth0', rns, `v${id}`);
      await lab.attachToBridge(rns, `v${id}`, 'br0');
      const ip = `${NET}.${i + 1}`;
      await lab.addAddress(ns, 'eth0', `${ip}/24`);
      nodes.push({ id, ns, ip, conf: join(dir, `${id}.yaml`), sock: join(dir, `${id}.sock`) });
    }
    redis = await RedisServer.start({ host: REDIS_IP, port: 6379, users: { ctsync: 'lab-redis-secret-6' }, wrap: ['ip', 'netns', 'exec', rns] });
    for (const n of nodes) {
      const other = nodes.find((o) => o !== n)!;
      writeFileSync(
        n.conf,
        [
          `nodeId: ${n.id}`,
          'clusterId: both',
          'transport: both',
          `listen: ${n.ip}:${LINK_PORT}`,
          'peers:',
          `  - id: ${other.id}`,
          `    addresses: ['${other.ip}:${LINK_PORT}']`,
          `redis: { addresses: ['${REDIS_IP}:6379'], username: ctsync, passwordFile: ${join(dir, 'redis.pass')} }`,
          `security: { keyFile: ${join(dir, 'cluster.key')} }`,
          `control: { socket: ${n.sock} }`,
          "metrics: { listen: '' }",
          'log: { level: info }',
          'sync: { digestInterval: 2s, refreshInterval: 5s }',
          'link: { heartbeat: 200ms, deadAfter: 1s }',
          `ha: { purgeAfter: 1s, trackFile: ${join(dir, `${n.id}.track`)} }`,
          // fw2 also runs as a warm standby: its kernel copy must follow the path switch too
          ...(n.id === 'fw2' ? ['commit: { warm: true }'] : []),
        ].join('\n'),
      );
    }
    for (const n of nodes) n.proc = await startDaemon(lab, n.ns, n.conf, n.sock);
  }, 60_000);

  afterAll(async () => {
    for (const n of nodes) await n.proc?.stop(3000).catch(() => {});
    await redis?.stop().catch(() => {});
    await lab?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the direct link cut: the copy follows over Redis and the takeover commits it exactly; then back with Redis cut', async () => {
    const [fw1, fw2] = nodes as [Node, Node];
    expect((await transition(fw1, 'MASTER')).result).toBe('ok');
    expect((await transition(fw2, 'BACKUP')).result).toBe('ok');
    await insert(fw1, 0, 150);
    await until('fw2 holds fw1\'s table over both paths', async () => {
      const s = (await stats(fw2)).peers.find((p) => p.nodeId === 'fw1');
      return sameSet(await peerFlows(fw2, 'fw1'), await kernelFlows(fw1)) && s?.paths?.tcp?.peerTableSize === 150 && s.paths.redis?.peerTableSize === 150;
    });
    const both = (await stats(fw2)).peers.find((p) => p.nodeId === 'fw1')!;
    expect(both.via).toBe('tcp'); // level paths: the direct link wins
    expect(both.paths!.tcp!.link).toBe('up');
    expect(both.paths!.redis!.link).toBe('up');

    // path 1 lost: the direct link; changes during the cut reach fw2 only through Redis
    await cut(fw2, LINK_PORT);
    await insert(fw1, 150, 100);
    await remove(fw1, 0, 30);
    const master = await kernelFlows(fw1);
    expect(master.size).toBe(220);
    await until('fw2 takes fw1\'s copy from Redis, and it is exact', async () => {
      const s = (await stats(fw2)).peers.find((p) => p.nodeId === 'fw1');
      return s?.via === 'redis' && s.paths?.tcp?.link === 'down' && sameSet(await peerFlows(fw2, 'fw1'), master);
    }, 30_000, fw2);
    // the direct path's own copy really is behind: without Redis this takeover would lose flows
    const viaTcp = (await stats(fw2)).peers.find((p) => p.nodeId === 'fw1')!.paths!.tcp!.peerTableSize;
    expect(viaTcp).toBe(150);
    const text = await runCtsync(['stats', '--socket', fw2.sock]);
    expect(text.stdout).toMatch(/via tcp {4}link down/);
    expect(text.stdout).toMatch(/from redis\)/);

    await until('fw2\'s warm kernel copy follows the switch to Redis', async () => (await stats(fw2)).ha.warm?.held === 220, 30_000, fw2);

    // fw1 dies as far as fw2 knows (the direct link is still cut); fw2 takes over and commits the Redis copy
    const m = await transition(fw2, 'MASTER');
    expect(m.result, m.error).toBe('ok');
    expect((await transition(fw1, 'BACKUP')).result).toBe('ok');
    const onFw2 = await kernelFlows(fw2);
    expect([...master].filter((f) => !onFw2.has(f)), 'flows lost at the takeover').toEqual([]);
    expect([...onFw2].filter((f) => !master.has(f)), 'flows the master had destroyed came back').toEqual([]);

    // path 2 lost instead: Redis (from fw1's side); the direct link is back, and carries the new master's changes
    await restore(fw2, LINK_PORT);
    await cut(fw1, 6379);
    await insert(fw2, 400, 40);
    await remove(fw2, 150, 20);
    const master2 = await kernelFlows(fw2);
    expect(master2.size).toBe(240);
    await until('fw1 takes fw2\'s copy from the direct link, and it is exact', async () => {
      const s = (await stats(fw1)).peers.find((p) => p.nodeId === 'fw2');
      return s?.via === 'tcp' && s.paths?.tcp?.link === 'up' && s.paths.redis?.link !== 'up' && sameSet(await peerFlows(fw1, 'fw2'), master2);
    }, 30_000, fw1);
    // fw1 found Redis silent (packets dropped, socket still open) within link.deadAfter: an outage, not a hang
    expect((await stats(fw1)).transport.redis).toMatchObject({ status: 'outage' });
    expect(((await stats(fw1)).transport.redis as { stalls: number }).stalls).toBeGreaterThanOrEqual(1);
    const back = await transition(fw1, 'MASTER');
    expect(back.result, back.error).toBe('ok');
    expect((await transition(fw2, 'BACKUP')).result).toBe('ok');
    const onFw1 = await kernelFlows(fw1);
    expect(sameSet(onFw1, master2), `fw1 holds ${onFw1.size} of ${master2.size}`).toBe(true);

    // Redis back: the paths become level again and the copy goes back to the direct link
    await restore(fw1, 6379);
    await until('fw2 hears fw1 on both paths again', async () => {
      const s = (await stats(fw2)).peers.find((p) => p.nodeId === 'fw1');
      return s?.paths?.tcp?.link === 'up' && s.paths.redis?.link === 'up' && s.via === 'tcp';
    }, 30_000, fw2);
    const s1 = await stats(fw1);
    expect(s1.transport.kind).toBe('tcp+redis');
    expect(s1.drops.bad_auth ?? 0).toBe(0);
  }, 180_000);
});
