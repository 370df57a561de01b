// Three ctsync daemons in three namespaces syncing through a real redis-server in a fourth namespace (one bridge):
// real conntrack entries on the active; the master moves twice (fw1 → fw2 → fw3) by control-socket HA transitions,
// and after each move the new master's kernel holds every flow (none lost), and the others' copies follow it; then
// the paths to Redis lose and reorder packets while the master churns, and the copies still follow it.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cannotRun, runCtsync } from '../helpers/env.js';
import { RedisLab, config, sameSet, type LabNode } from '../helpers/redis-lab.js';
import { redisMissing } from '../../src/lab/redis-server.js';
import { flakyLink, type FlakyLink } from '../../src/lab/traffic.js';

const reason = cannotRun(['ip', 'conntrack', 'iptables', 'python3'], true) ?? redisMissing();
if (reason) console.warn(`[redis-three-nodes] NOT RUN: ${reason}`);

describe.skipIf(reason !== undefined)('three daemons through redis, the master moves twice', () => {
  let r: RedisLab;

  beforeAll(async () => {
    r = await RedisLab.start('ctsr5-', '10.78.5', ['fw1', 'fw2', 'fw3'], (c) => config(c, { cluster: 'lab3', transport: 'redis', port: 3780 }));
  }, 60_000);

  afterAll(async () => {
    await r?.stop();
  });

  test('fw1 → fw2 → fw3: every flow survives both moves, and each backup holds the master\'s table', async () => {
    const [fw1, fw2, fw3] = r.nodes as [LabNode, LabNode, LabNode];
    expect((await r.transition(fw1, 'MASTER')).result).toBe('ok');
    for (const n of [fw2, fw3]) expect((await r.transition(n, 'BACKUP')).result).toBe('ok');
    await r.insert(fw1, 0, 150);
    const all = await r.kernelFlows(fw1);
    expect(all.size).toBe(150);
    await r.until('fw2 and fw3 hold fw1\'s table', async () => sameSet(await r.peerFlows(fw2, 'fw1'), all) && sameSet(await r.peerFlows(fw3, 'fw1'), all));

    // move 1: fw2 becomes master, commits what it got from fw1; fw1 steps back (and purges its kernel after 1 s)
    const m1 = await r.transition(fw2, 'MASTER');
    expect(m1.result, m1.error).toBe('ok');
    expect((await r.transition(fw1, 'BACKUP')).result).toBe('ok');
    const onFw2 = await r.kernelFlows(fw2);
    for (const f of all) expect(onFw2.has(f), `fw2 lost ${f}`).toBe(true);
    await r.insert(fw2, 150, 50); // new connections through the new master
    for (const f of await r.kernelFlows(fw2)) all.add(f);
    expect(all.size).toBe(200);
    await r.until('fw3 holds fw2\'s table and fw1 purged', async () => sameSet(await r.peerFlows(fw3, 'fw2'), all) && (await r.kernelFlows(fw1)).size === 0);
    await r.until('fw3\'s copy of fw1 is empty', async () => (await r.peerFlows(fw3, 'fw1')).size === 0);

    // move 2: fw3 becomes master and commits what it received from the previous master, fw2
    const m2 = await r.transition(fw3, 'MASTER');
    expect(m2.result, m2.error).toBe('ok');
    expect((await r.transition(fw2, 'BACKUP')).result).toBe('ok');
    const onFw3 = await r.kernelFlows(fw3);
    const lost = [...all].filter((f) => !onFw3.has(f));
    expect(lost, `${lost.length} flows lost at the second move`).toEqual([]);
    await r.until('fw1 and fw2 hold fw3\'s table', async () => sameSet(await r.peerFlows(fw1, 'fw3'), all) && sameSet(await r.peerFlows(fw2, 'fw3'), all));

    const s = await r.stats(fw1);
    expect(s.peers.filter((p) => p.configured).every((p) => p.link === 'up')).toBe(true);
    expect(s.drops.bad_auth ?? 0).toBe(0);
    // ctsync stats shows the Redis transport's own state
    expect(s.transport.kind).toBe('redis');
    expect(s.transport.redis).toMatchObject({ status: 'ready', needsResync: false });
    const text = await runCtsync(['stats', '--socket', fw1.sock]);
    expect(text.stdout).toMatch(/^ {2}redis {4}ready; 0 frames buffered; outages \d+; resyncs \d+$/m);
  }, 120_000);

  test('5% loss and reordering between every node and Redis, both ways: the backups still end with the master\'s table', async () => {
    const [fw1, fw2, fw3] = r.nodes as [LabNode, LabNode, LabNode]; // fw3 is the master since the test above
    // what the nodes send to Redis (their eth0) and what Redis sends to them (its bridge): 5% lost, 10% held 30 ms
    const o = { queue: 9, dropPercent: 5, holdPercent: 10, holdMs: 30 };
    const links: FlakyLink[] = [];
    try {
      for (const n of r.nodes) links.push(await flakyLink(r.lab, n.ns, { ...o, ifname: 'eth0' }));
      links.push(await flakyLink(r.lab, r.redisNs, { ...o, ifname: 'br0' }));
      // churn on the master until every link has lost and held packets (they are random: a fixed amount could pass
      // without one), at most 40 rounds
      for (let round = 0; round < 40 && !links.every((l) => l.stats.dropped > 0 && l.stats.held > 0); round++) {
        await r.insert(fw3, 1000 + round * 20, 20);
        await r.remove(fw3, 1000 + round * 20, 10);
      }
      expect(links.map((l) => l.stats).filter((s) => !(s.dropped > 0 && s.held > 0)), 'links without a lost and a held packet').toEqual([]);
      const master = await r.kernelFlows(fw3);
      await r.until('fw1 and fw2 hold fw3\'s table under the faults', async () => sameSet(await r.peerFlows(fw1, 'fw3'), master) && sameSet(await r.peerFlows(fw2, 'fw3'), master), 60_000, fw1);
    } finally {
      for (const l of links) await l.stop();
    }
    await r.remove(fw3, 0, 50);
    const master = await r.kernelFlows(fw3);
    await r.until('fw1 and fw2 hold fw3\'s table after the faults', async () => sameSet(await r.peerFlows(fw1, 'fw3'), master) && sameSet(await r.peerFlows(fw2, 'fw3'), master), 30_000, fw1);
  }, 180_000);
});
