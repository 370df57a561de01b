// `transport: both`: two daemons joined by the direct TLS link and by a real redis-server, each in its own namespace.
// Cutting one path at a time (nftables drops its port) never stops the standby's copy from following the master
// (fw2 is also a warm standby, whose kernel copy follows the path switch):
// the copy comes from the path that still hears from the master, and a takeover commits exactly the master's
// table. Then the other way round: the master moves back with the Redis path cut, over the direct link.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cannotRun, runCtsync } from '../helpers/env.js';
import { RedisLab, config, sameSet, type LabNode } from '../helpers/redis-lab.js';
import { redisMissing } from '../../src/lab/redis-server.js';

const reason = cannotRun(['ip', 'nft', 'conntrack'], true) ?? redisMissing();
if (reason) console.warn(`[transport-both] NOT RUN: ${reason}`);

const LINK_PORT = 3781;

describe.skipIf(reason !== undefined)('transport both: either path alone keeps the standby exact', () => {
  let r: RedisLab;

  /** Drop everything to and from one TCP port in a node's namespace (the other path keeps working). */
  async function cut(n: LabNode, port: number): Promise<void> {
    const drop = `tcp dport ${port} drop; tcp sport ${port} drop`;
    await r.lab.loadNft(n.ns, `table inet cut${port} {\n chain in { type filter hook input priority -10; ${drop}; }\n chain out { type filter hook output priority -10; ${drop}; }\n}\n`);
  }
  async function restore(n: LabNode, port: number): Promise<void> {
    await r.lab.exec(n.ns, ['nft', 'delete', 'table', 'inet', `cut${port}`]);
  }
  const peerOf = async (n: LabNode, id: string) => (await r.stats(n)).peers.find((p) => p.nodeId === id);

  beforeAll(async () => {
    r = await RedisLab.start('ctsb2-', '10.78.6', ['fw1', 'fw2'], (c) =>
      // fw2 also runs as a warm standby: its kernel copy must follow the path switch too
      config(c, { cluster: 'both', transport: 'both', port: LINK_PORT }, ...(c.node.id === 'fw2' ? ['commit: { warm: true }'] : [])),
    );
  }, 60_000);

  afterAll(async () => {
    await r?.stop();
  });

  test('the direct link cut: the copy follows over Redis and the takeover commits it exactly; then back with Redis cut', async () => {
    const [fw1, fw2] = r.nodes as [LabNode, LabNode];
    expect((await r.transition(fw1, 'MASTER')).result).toBe('ok');
    expect((await r.transition(fw2, 'BACKUP')).result).toBe('ok');
    await r.insert(fw1, 0, 150);
    await r.until('fw2 holds fw1\'s table over both paths', async () => {
      const s = await peerOf(fw2, 'fw1');
      return sameSet(await r.peerFlows(fw2, 'fw1'), await r.kernelFlows(fw1)) && s?.paths?.tcp?.peerTableSize === 150 && s.paths.redis?.peerTableSize === 150;
    });
    const both = (await peerOf(fw2, 'fw1'))!;
    expect(both.via).toBe('tcp'); // level paths: the direct link wins
    expect(both.paths!.tcp!.link).toBe('up');
    expect(both.paths!.redis!.link).toBe('up');

    // path 1 lost: the direct link; changes during the cut reach fw2 only through Redis
    await cut(fw2, LINK_PORT);
    await r.insert(fw1, 150, 100);
    await r.remove(fw1, 0, 30);
    const master = await r.kernelFlows(fw1);
    expect(master.size).toBe(220);
    await r.until('fw2 takes fw1\'s copy from Redis, and it is exact', async () => {
      const s = await peerOf(fw2, 'fw1');
      return s?.via === 'redis' && s.paths?.tcp?.link === 'down' && sameSet(await r.peerFlows(fw2, 'fw1'), master);
    }, 30_000, fw2);
    // the direct path's own copy really is behind: without Redis this takeover would lose flows
    const viaTcp = (await peerOf(fw2, 'fw1'))!.paths!.tcp!.peerTableSize;
    expect(viaTcp).toBe(150);
    const text = await runCtsync(['stats', '--socket', fw2.sock]);
    expect(text.stdout).toMatch(/via tcp {4}link down/);
    expect(text.stdout).toMatch(/from redis\)/);

    await r.until('fw2\'s warm kernel copy follows the switch to Redis', async () => (await r.stats(fw2)).ha.warm?.held === 220, 30_000, fw2);

    // fw1 dies as far as fw2 knows (the direct link is still cut); fw2 takes over and commits the Redis copy
    const m = await r.transition(fw2, 'MASTER');
    expect(m.result, m.error).toBe('ok');
    expect((await r.transition(fw1, 'BACKUP')).result).toBe('ok');
    const onFw2 = await r.kernelFlows(fw2);
    expect([...master].filter((f) => !onFw2.has(f)), 'flows lost at the takeover').toEqual([]);
    expect([...onFw2].filter((f) => !master.has(f)), 'flows the master had destroyed came back').toEqual([]);

    // path 2 lost instead: Redis (from fw1's side); the direct link is back, and carries the new master's changes
    await restore(fw2, LINK_PORT);
    await cut(fw1, 6379);
    await r.insert(fw2, 400, 40);
    await r.remove(fw2, 150, 20);
    const master2 = await r.kernelFlows(fw2);
    expect(master2.size).toBe(240);
    await r.until('fw1 takes fw2\'s copy from the direct link, and it is exact', async () => {
      const s = await peerOf(fw1, 'fw2');
      return s?.via === 'tcp' && s.paths?.tcp?.link === 'up' && s.paths.redis?.link !== 'up' && sameSet(await r.peerFlows(fw1, 'fw2'), master2);
    }, 30_000, fw1);
    // fw1 found Redis silent (packets dropped, socket still open) within link.deadAfter: an outage, not a hang
    expect((await r.stats(fw1)).transport.redis).toMatchObject({ status: 'outage' });
    expect(((await r.stats(fw1)).transport.redis as { stalls: number }).stalls).toBeGreaterThanOrEqual(1);
    const back = await r.transition(fw1, 'MASTER');
    expect(back.result, back.error).toBe('ok');
    expect((await r.transition(fw2, 'BACKUP')).result).toBe('ok');
    const onFw1 = await r.kernelFlows(fw1);
    expect(sameSet(onFw1, master2), `fw1 holds ${onFw1.size} of ${master2.size}`).toBe(true);

    // Redis back: the paths become level again and the copy goes back to the direct link
    await restore(fw1, 6379);
    await r.until('fw2 hears fw1 on both paths again', async () => {
      const s = await peerOf(fw2, 'fw1');
      return s?.paths?.tcp?.link === 'up' && s.paths.redis?.link === 'up' && s.via === 'tcp';
    }, 30_000, fw2);
    const s1 = await r.stats(fw1);
    expect(s1.transport.kind).toBe('tcp+redis');
    expect(s1.drops.bad_auth ?? 0).toBe(0);
  }, 180_000);
});
