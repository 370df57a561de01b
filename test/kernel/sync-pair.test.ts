// Two ctsync daemons in two namespaces with real kernel traffic: after every fault the standby's peer table equals
// the active's kernel table exactly (zero missing, zero extra), and peers without the key or cluster are refused.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type LabProcess } from '../../src/lab/netns.js';
import { routerLab, type RouterLab } from '../../src/lab/topology.js';
import * as traffic from '../../src/lab/traffic.js';
import { seededRandom } from '../../src/lab/seeded-random.js';
import { flowFromJson } from '../../src/kernel/json.js';
import { Conntrack } from '../../src/kernel/conntrack.js';
import { invertTuple } from '../../src/kernel/write-rules.js';
import { Af, IpProto, Ips, TcpState, type Flow } from '../../src/kernel/types.js';
import type { CommitReport } from '../../src/state/commit.js';
import { dumpDocument, request } from '../../src/control/client.js';
import type { DaemonStats } from '../../src/daemon/stats.js';
import { monotonicMs } from '../../src/state/clock.js';
import { comparableKey, flowToComparable, listFlows, toComparable, type ComparableFlow } from '../helpers/conntrack-cli.js';
import { cannotRun, runCtsync, startDaemon } from '../helpers/env.js';

const PREFIX = 'ctsp-';
const reason = cannotRun(['ip', 'iptables', 'nft', 'conntrack', 'python3'], true);
if (reason) console.warn(`[sync-pair] NOT RUN: ${reason}`);

const SYNC_A = '10.77.9.1';
const SYNC_B = '10.77.9.2';

interface Node {
  ns: string;
  conf: string;
  sock: string;
  proc?: LabProcess;
  /** The running daemon's log lines (pino JSON). */
  log?: string[];
}

describe.skipIf(reason !== undefined)('two daemons, real kernel traffic', () => {
  let lab: Lab;
  let r: RouterLab;
  let dir: string;
  let active: Node;
  let standby: Node;
  const streams: traffic.TcpStream[] = [];

  function writeConf(name: string, self: string, peer: { id: string; ip: string }, extra = '', key = 'cluster.key', cluster = 'lab', file = name): Node['conf'] {
    const conf = join(dir, `${file}.yaml`);
    writeFileSync(
      conf,
      [
        `nodeId: ${name}`,
        `clusterId: ${cluster}`,
        `listen: ${self}:3780`,
        'peers:',
        `  - id: ${peer.id}`,
        `    addresses: ['${peer.ip}:3780']`,
        `security: { keyFile: ${join(dir, key)} }`,
        `control: { socket: ${join(dir, `${file}.sock`)} }`,
        "metrics: { listen: '' }",
        'log: { level: debug }',
        'sync: { digestInterval: 1s, refreshInterval: 2s }',
        'link: { heartbeat: 200ms, deadAfter: 1s }',
        extra,
      ].join('\n'),
    );
    return conf;
  }

  async function start(n: Node): Promise<void> {
    const log: string[] = (n.log = []);
    n.proc = await startDaemon(lab, n.ns, n.conf, n.sock, (l) => log.push(l));
  }

  async function stop(n: Node, signal: 'TERM' | 'KILL' = 'TERM'): Promise<void> {
    if (signal === 'KILL') n.proc?.killNow();
    else await n.proc?.stop(3000);
    await n.proc?.exited;
    n.proc = undefined;
  }

  /** The standby's copy of the active's flows, and the active's kernel table (the sync link's own flows aside). */
  async function views(): Promise<{ peer: Map<string, [ComparableFlow, number]>; kernel: Map<string, [ComparableFlow, number]> }> {
    const doc = await dumpDocument(standby.sock, { table: 'peer', peer: 'fw1' });
    const peer = new Map<string, [ComparableFlow, number]>();
    for (const j of (JSON.parse(doc) as { flows: unknown[] }).flows) {
      const f = flowFromJson(j);
      if (Array.isArray(f)) throw new Error(`peer dump has an unreadable flow: ${JSON.stringify(f)}`);
      const c = flowToComparable(f);
      peer.set(comparableKey(c), [c, f.timeout ?? -1]);
    }
    const kernel = new Map<string, [ComparableFlow, number]>();
    for (const f of await listFlows(lab, active.ns)) {
      if ([f.orig.src, f.orig.dst].some((a) => a === SYNC_A || a === SYNC_B)) continue;
      const c = toComparable(f);
      kernel.set(comparableKey(c), [c, f.timeout ?? -1]);
    }
    return { peer, kernel };
  }

  /** Everything that differs: missing or extra entries, other fields, or a remaining timeout off by more than the
   * refresh tolerance (a tenth, at least 5 s, plus slack for the time between the two reads). */
  function differences(v: Awaited<ReturnType<typeof views>>): string[] {
    const out: string[] = [];
    for (const [k, [c, kt]] of v.kernel) {
      const p = v.peer.get(k);
      if (!p) out.push(`missing ${k}`);
      else if (JSON.stringify(p[0]) !== JSON.stringify(c)) out.push(`differs ${k}: ${JSON.stringify(p[0])} vs ${JSON.stringify(c)}`);
      else if (kt >= 0 && Math.abs(p[1] - kt) > Math.max(7, kt / 10 + 2)) out.push(`timeout of ${k}: standby ${p[1]}, kernel ${kt}`);
    }
    for (const k of v.peer.keys()) if (!v.kernel.has(k)) out.push(`extra ${k}`);
    return out;
  }

  /** Waits until the standby holds exactly the active's table, remaining timeouts included (and that table is not
   * empty, unless `mayBeEmpty`: a test run alone may end with no flows at all). */
  async function expectConverged(what: string, timeoutMs = 30_000, mayBeEmpty = false): Promise<void> {
    const end = Date.now() + timeoutMs;
    let diff: string[] = [];
    let v = await views();
    while ((diff = differences(v)).length && Date.now() < end) {
      await sleep(300);
      v = await views();
    }
    expect(diff.slice(0, 10), `${what}: ${diff.length} differences`).toEqual([]);
    if (!mayBeEmpty) expect(v.kernel.size, what).toBeGreaterThan(0);
  }

  /** New, established and closing TCP, UDP that expires, ICMP, IPv6. */
  async function churn(round: number): Promise<void> {
    const e4 = { clientNs: r.client.ns, serverNs: r.server.ns, host: r.server.v4, port: 6000 + round * 10 };
    const e6 = { ...e4, host: r.server.v6 };
    const s = await traffic.tcpStream(lab, { ...e4, port: e4.port + 1 });
    await s.waitForEchoes(2);
    streams.push(s);
    await traffic.tcpShort(lab, { ...e4, port: e4.port + 2 });
    await traffic.udpRequestReply(lab, { ...e4, port: e4.port + 3 });
    await traffic.udpRequestReply(lab, { ...e6, port: e4.port + 4 });
    await traffic.ping(lab, r.client.ns, r.server.v4);
    await traffic.ping(lab, r.client.ns, r.server.v6);
    await traffic.tcpShort(lab, { ...e6, port: e4.port + 5 });
  }

  /** One TcpExt counter of ns (/proc/net/netstat is per namespace). */
  async function tcpExt(ns: string, name: string): Promise<number> {
    const lines = (await lab.exec(ns, ['cat', '/proc/net/netstat'])).stdout.split('\n');
    const i = lines.findIndex((l) => l.startsWith('TcpExt:'));
    const names = lines[i]!.split(/\s+/);
    const value = lines[i + 1]!.split(/\s+/)[names.indexOf(name)];
    if (value === undefined) throw new Error(`no TcpExt ${name} in ${ns}'s /proc/net/netstat`);
    return Number(value);
  }

  const stats = (n: Node) => request(n.sock, 'stats') as Promise<DaemonStats>;
  const catchUps = (s: DaemonStats) => ({ resumes: s.sync.resumes, bulks: s.sync.bulks });

  /** Waits until both sides declared the cut link lost (deadAfter 1 s; then 'down', or 'connecting' while they dial
   * again), so that its restore is a reconnect, not TCP riding it out. */
  async function linkLost(): Promise<void> {
    const end = Date.now() + 10_000;
    let links: string[] = [];
    while ((links = await Promise.all([active, standby].map(async (n) => (await stats(n)).peers[0]!.link))).includes('up') && Date.now() < end) await sleep(100);
    expect(links.filter((l) => l === 'up'), 'the link as the active and the standby see it during the cut').toEqual([]);
  }

  beforeAll(async () => {
    Lab.sweep(PREFIX);
    dir = mkdtempSync(join(tmpdir(), 'ctsync-pair-'));
    writeFileSync(join(dir, 'cluster.key'), `${'a1b2c3d4e5f60718293a4b5c6d7e8f90'.repeat(2)}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'other.key'), `${'0f1e2d3c4b5a69788796a5b4c3d2e1f0'.repeat(2)}\n`, { mode: 0o600 });
    lab = new Lab({ prefix: PREFIX });
    r = await routerLab(lab);
    const sby = await lab.addNamespace('sby');
    await lab.addVeth(r.router.ns, 'sync0', sby, 'sync0');
    await lab.addAddress(r.router.ns, 'sync0', `${SYNC_A}/24`);
    await lab.addAddress(sby, 'sync0', `${SYNC_B}/24`);
    // UDP expires quickly, so expiry on the active (a DESTROY the standby must follow) happens during the test
    await lab.sysctl(r.router.ns, 'net.netfilter.nf_conntrack_udp_timeout', '4');
    await lab.sysctl(r.router.ns, 'net.netfilter.nf_conntrack_udp_timeout_stream', '8');
    active = { ns: r.router.ns, conf: writeConf('fw1', SYNC_A, { id: 'fw2', ip: SYNC_B }), sock: join(dir, 'fw1.sock') };
    standby = { ns: sby, conf: writeConf('fw2', SYNC_B, { id: 'fw1', ip: SYNC_A }), sock: join(dir, 'fw2.sock') };
    await start(active);
    await start(standby);
  });

  afterAll(async () => {
    for (const s of streams) await s.stop().catch(() => {});
    await lab?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true }); // configs, sockets and the cluster keys
  });

  test('under real churn the standby converges to the active exactly, including expiries', async () => {
    await churn(0);
    await expectConverged('after churn');
    await sleep(9000); // UDP entries expire on the active
    await expectConverged('after UDP expiry');
    const t0 = monotonicMs();
    const s = (await request(standby.sock, 'stats')) as DaemonStats;
    const t1 = monotonicMs();
    expect(s.inSync).toBe(true);
    expect(s.peers[0].link).toBe('up');
    // the daemon's clock is this host's CLOCK_MONOTONIC (what bench/sync-ref.ts relies on), and data was applied
    expect(s.monotonicMs).toBeGreaterThanOrEqual(t0);
    expect(s.monotonicMs).toBeLessThanOrEqual(t1);
    expect(s.peers[0].lastDataAgoMs).toBeGreaterThanOrEqual(0);
  });

  test('a standby restart ends in the same table (full bulk)', async () => {
    await stop(standby, 'KILL');
    await churn(1);
    await start(standby);
    await expectConverged('after standby restart');
  });

  test('an active daemon restart ends in the same table (new session, full bulk replaces the old copy)', async () => {
    await stop(active);
    await churn(2);
    await start(active);
    await expectConverged('after active restart');
  });

  test('a cut sync link, churn during the cut, and its restore end in the same table, by a resume', async () => {
    const before = catchUps(await stats(active));
    await lab.setLink(active.ns, 'sync0', 'down');
    await churn(3);
    await linkLost();
    await lab.setLink(active.ns, 'sync0', 'up');
    await expectConverged('after link restore');
    // a few changes during a cut of seconds: the active re-sends those, not its whole table
    expect(catchUps(await stats(active)), 'resumes and bulks the active sent').toEqual({ resumes: before.resumes + 1, bulks: before.bulks });
  });

  test('5% packet loss and reordering on the sync link, both ways, with churn ends in the same table', async () => {
    // each node's packets to the other cross a flaky wire: 5% lost, 10% held back 30 ms behind the ones after them.
    // TCP repairs both below us; what is checked is that nothing above it loses or resurrects an entry meanwhile.
    const nodes = [active, standby];
    const ofoBefore = await tcpExt(standby.ns, 'TCPOFOQueue');
    const links: traffic.FlakyLink[] = [];
    try {
      for (const n of nodes) links.push(await traffic.flakyLink(lab, n.ns, { ifname: 'sync0', queue: 7, dropPercent: 5, holdPercent: 10, holdMs: 30 }));
      await churn(4);
      // a sync link carries only tens of packets a second here: keep flows coming and going until each fault has
      // happened on both nodes and reached the active's data stream (the standby's TCP queued some of it out of
      // order). They are random, so a fixed amount of churn could pass without one.
      const e = { clientNs: r.client.ns, serverNs: r.server.ns, host: r.server.v4, port: 6046 };
      const end = Date.now() + 30_000;
      const faulted = async () => links.every((l) => l.stats.dropped > 0 && l.stats.held > 0) && (await tcpExt(standby.ns, 'TCPOFOQueue')) > ofoBefore;
      while (!(await faulted()) && Date.now() < end) {
        await traffic.tcpShort(lab, e);
        await traffic.udpRequestReply(lab, { ...e, port: e.port + 1 });
      }
      const ofo = (await tcpExt(standby.ns, 'TCPOFOQueue')) - ofoBefore;
      expect(await faulted(), `dropped and held back by each node: ${JSON.stringify(links.map((l) => l.stats))}; segments the standby queued out of order: ${ofo}`).toBe(true);
      await expectConverged('under 5% loss and reordering');
    } finally {
      for (const l of links) await l.stop();
    }
    await expectConverged('after the faults end');
  }, 100_000);

  test('SIGHUP stops neither daemon: each logs that it does not reload, and syncing goes on', async () => {
    for (const n of [active, standby]) process.kill(n.proc!.pid, 'SIGHUP');
    const hup = (n: Node) => n.log!.filter((l) => l.includes('"signal":"SIGHUP"')).map((l) => JSON.parse(l) as { level: number; msg: string })[0];
    const end = Date.now() + 5000;
    while ([active, standby].some((n) => !hup(n)) && Date.now() < end) await sleep(100);
    for (const n of [active, standby]) {
      expect(hup(n), `${n.ns}'s log`).toMatchObject({ level: 40, msg: expect.stringMatching(/does not reload its config; restart it/) });
      // still running (its control socket answers) and still linked to its peer
      expect(((await request(n.sock, 'stats')) as DaemonStats).peers[0]!.link).toBe('up');
    }
    await churn(5);
    await expectConverged('after SIGHUP');
  });

  // The faults above one at a time, in a fixed order, each between churn. Here they come in a seeded random order,
  // one or two at once, while traffic runs, at random moments: a restart during a bulk, a cut during a resume, loss
  // while a session starts. CTSYNC_CHAOS_SEED and CTSYNC_CHAOS_STEPS run another or a longer sequence by hand (a
  // soak); every message names the seed and the step. A seed gives the same faults in the same order; their timing
  // is the machine's.
  const chaosSeed = Number(process.env.CTSYNC_CHAOS_SEED ?? 23);
  const chaosSteps = Number(process.env.CTSYNC_CHAOS_STEPS ?? 4);
  if (!Number.isInteger(chaosSeed) || !(Number.isInteger(chaosSteps) && chaosSteps > 0)) {
    throw new Error('CTSYNC_CHAOS_SEED takes a whole number and CTSYNC_CHAOS_STEPS a whole number above 0 (or leave them unset)');
  }
  test(`seeded overlapping faults under traffic (seed ${chaosSeed}, ${chaosSteps} steps): after each step, the same table`, async () => {
    const rand = seededRandom(chaosSeed);
    const between = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo));
    const faults: Record<string, () => Promise<void>> = {
      'standby killed': async () => {
        await stop(standby, 'KILL');
        await sleep(between(0, 1500));
        await start(standby);
      },
      // half the time with an event buffer so small that a flood overruns it: the dump-and-diff repair then runs
      // beside the other fault
      'active restarted': async () => {
        await stop(active, rand() < 0.5 ? 'KILL' : 'TERM');
        active.conf = writeConf('fw1', SYNC_A, { id: 'fw2', ip: SYNC_B }, rand() < 0.5 ? 'kernel: { eventBuffer: 4096 }' : '');
        await sleep(between(0, 1500));
        await start(active);
      },
      // shorter or longer than link.deadAfter (1 s): TCP rides out the short ones, the long ones are a reconnect
      'link cut': async () => {
        await lab.setLink(active.ns, 'sync0', 'down');
        await sleep(between(300, 2500));
        await lab.setLink(active.ns, 'sync0', 'up');
      },
      'flaky link': async () => {
        const links: traffic.FlakyLink[] = [];
        try {
          for (const n of [active, standby]) links.push(await traffic.flakyLink(lab, n.ns, { ifname: 'sync0', queue: 8, dropPercent: 10, holdPercent: 20, holdMs: 50 }));
          await sleep(between(1500, 4000));
        } finally {
          for (const l of links) await l.stop();
        }
      },
    };
    const names = Object.keys(faults);
    for (let step = 0; step < chaosSteps; step++) {
      const chosen = [...new Set([names[between(0, names.length)]!, names[between(0, names.length)]!])];
      const e = { clientNs: r.client.ns, serverNs: r.server.ns, host: r.server.v4, port: 7000 + (step % 200) * 10 };
      const load = async () => {
        await sleep(between(0, 1000));
        await traffic.udpFlood(lab, { clientNs: r.client.ns, host: r.server.v4, count: rand() < 0.3 ? between(10_000, 20_000) : between(200, 3000), basePort: 25_000 + (step % 2) * 20_000, ports: 20_000 });
        await traffic.tcpShort(lab, e);
        await traffic.udpRequestReply(lab, { ...e, port: e.port + 1, host: r.server.v6 });
        await traffic.ping(lab, r.client.ns, r.server.v4);
      };
      await Promise.all([load(), ...chosen.map((f) => faults[f]!())]);
      const t0 = Date.now();
      await expectConverged(`seed ${chaosSeed}, step ${step}: ${chosen.join(' + ')}`, 40_000);
      // what the active did since it last started, and why it last caught the standby up: a soak's log shows which
      // repairs the faults set off
      const s = (await request(active.sock, 'stats')) as DaemonStats;
      console.log(`chaos seed ${chaosSeed} step ${step}: ${chosen.join(' + ')}; converged ${Date.now() - t0} ms later; ${s.kernel.entries} entries; active overruns ${s.kernel.overruns}, resyncs ${s.kernel.resyncs}, bulks ${s.sync.bulks}, resumes ${s.sync.resumes}, divergent buckets ${s.sync.divergentBuckets}; towards the standby: ${s.peers[0]!.why}`);
    }
  }, 30_000 + chaosSteps * 60_000);

  test('an event overrun on the active is repaired by a dump and the standby still converges', async () => {
    await stop(active);
    active.conf = writeConf('fw1', SYNC_A, { id: 'fw2', ip: SYNC_B }, 'kernel: { eventBuffer: 4096 }');
    await start(active);
    await traffic.udpFlood(lab, { clientNs: r.client.ns, host: r.server.v4, count: 20_000, basePort: 20000, ports: 20000 });
    const s = (await request(active.sock, 'stats')) as DaemonStats;
    expect(s.kernel.overruns).toBeGreaterThan(0);
    // the event socket's reads: every event came in a datagram of its own, read in some burst, handed over in pieces
    expect(s.kernel.reads.wakeups).toBeGreaterThan(0);
    expect(s.kernel.reads.handoffs).toBeGreaterThanOrEqual(s.kernel.reads.wakeups);
    expect(s.kernel.reads.datagrams).toBeGreaterThanOrEqual(s.kernel.events.new! + s.kernel.events.update! + s.kernel.events.destroy!);
    // sync.quiet is on by default: bursts of events ended, and each ending was noticed (at most once per wake-up)
    expect(s.kernel.reads.quiets).toBeGreaterThan(0);
    expect(s.kernel.reads.quiets).toBeLessThanOrEqual(s.kernel.reads.wakeups);
    await expectConverged('after an overrun', 40_000);
  });

  test('a peer without the key, or of another cluster, cannot insert anything', async () => {
    const evilNs = await lab.addNamespace('evl');
    await lab.addVeth(evilNs, 'e0', standby.ns, 'e0');
    await lab.addAddress(evilNs, 'e0', '10.77.8.1/24');
    await lab.addAddress(evilNs, 'e0', '10.77.8.3/24');
    await lab.addAddress(standby.ns, 'e0', '10.77.8.2/24');
    await lab.addRoute(evilNs, '10.77.9.0/24', '10.77.8.2');
    await lab.exec(evilNs, ['conntrack', '-I', '-p', 'tcp', '-s', '10.66.0.1', '-d', '10.66.0.2', '--sport', '1', '--dport', '2', '--state', 'ESTABLISHED', '-t', '1000']);
    // it even claims to be fw1, from the right cluster, but holds another key
    const evil: Node = { ns: evilNs, conf: writeConf('fw1', '10.77.8.1', { id: 'fw2', ip: SYNC_B }, '', 'other.key', 'lab', 'evil'), sock: join(dir, 'evil.sock') };
    await start(evil);
    // and one of another cluster with the right key
    const alien: Node = { ns: evilNs, conf: writeConf('fw1', '10.77.8.3', { id: 'fw2', ip: SYNC_B }, '', 'cluster.key', 'other', 'alien'), sock: join(dir, 'alien.sock') };
    await start(alien);
    await sleep(4000);
    const after = (await request(standby.sock, 'stats')) as DaemonStats;
    const v = await views();
    expect([...v.peer.keys()].some((k) => k.includes('10.66.0.1'))).toBe(false);
    await expectConverged('with intruders around'); // nothing extra: only the real fw1's flows
    const refused = Object.entries(after.drops).filter(([k]) => k.startsWith('refused_')).reduce((n, [, v]) => n + v, 0);
    expect(refused).toBeGreaterThan(0);
    await stop(evil);
    await stop(alien);
  });

  test('warm standby: the peer table follows into the standby kernel (not into its own table), and a takeover writes only the delta', async () => {
    const orig = (i: number) => ({ src: `172.32.${(i >>> 8) & 255}.${i & 255}`, dst: '172.33.0.1', proto: IpProto.Tcp, sport: 2000, dport: 22 });
    const flow = (i: number): Flow => ({ family: Af.Inet, orig: orig(i), reply: invertTuple(orig(i)), status: Ips.SeenReply | Ips.Assured, timeout: 900, protoinfo: { tcp: { state: TcpState.Established } } });
    const ours = (flows: Flow[]) => flows.filter((f) => f.orig.dst === '172.33.0.1');
    const dumpDoc = async (n: Node, table: 'local' | 'peer', peer?: string) =>
      (JSON.parse(await dumpDocument(n.sock, { table, ...(peer ? { peer } : {}) })) as { flows: unknown[] }).flows.map((j) => flowFromJson(j) as Flow);
    const act = new Conntrack({ netns: active.ns });
    const sby = new Conntrack({ netns: standby.ns });
    const sbyCount = async () => ours(await sby.dump()).length;
    const until = async (what: string, ok: () => Promise<boolean>, ms = 30_000) => {
      const end = Date.now() + ms;
      while (!(await ok())) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await sleep(200);
      }
    };
    await stop(standby);
    standby.conf = writeConf('fw2', SYNC_B, { id: 'fw1', ip: SYNC_A }, 'commit: { warm: true }');
    await start(standby);
    try {
      expect((await act.write(Array.from({ length: 3000 }, (_, i) => ({ op: 'create' as const, flow: flow(i) })))).counts.created).toBe(3000);
      await until('3000 warm entries in the standby kernel', async () => (await sbyCount()) === 3000);
      // they are the peer's: not in the standby's own table, so never sent back to the active as fw2's flows (our
      // own writes raise no events we read; a dump-and-diff is where they would get in)
      await request(standby.sock, 'flush', { table: 'local' });
      expect(ours(await dumpDoc(standby, 'local'))).toEqual([]);
      expect(ours(await dumpDoc(active, 'peer', 'fw2'))).toEqual([]);
      const s = (await request(standby.sock, 'stats')) as DaemonStats;
      expect(s.ha.warm).toMatchObject({ trusted: true });
      expect(s.ha.warm!.held).toBeGreaterThanOrEqual(3000);

      // the active closes a third of them: the standby kernel follows
      expect((await act.write(Array.from({ length: 1000 }, (_, i) => ({ op: 'delete' as const, flow: flow(i) })))).counts.deleted).toBe(1000);
      await until('the deletes in the standby kernel', async () => (await sbyCount()) === 2000);

      const report = (await request(standby.sock, 'commit', {}, undefined, 60_000)) as CommitReport;
      expect(report.warm).toBe(true);
      expect(report.counts.failed, JSON.stringify(report.failedByErrno)).toBe(0);
      expect(report.entries).toBeLessThan(2000); // a delta, not the table
      const after = ours(await sby.dump());
      expect(after.map((f) => f.orig.src).sort()).toEqual(Array.from({ length: 2000 }, (_, i) => orig(i + 1000).src).sort());
      expect(after.every((f) => f.protoinfo?.tcp?.state === TcpState.Established)).toBe(true);
      // committed, they are this node's flows now: its own table picks them up
      await until('the committed flows in the standby table', async () => ours(await dumpDoc(standby, 'local')).length === 2000);
    } finally {
      await act.write(Array.from({ length: 3000 }, (_, i) => ({ op: 'delete' as const, flow: flow(i) })));
      await stop(standby);
      // the warm standby wrote every fw1 flow (the traffic's too) and committed them: the standby kernel goes back
      // to holding only the sync link's own flow, as the later tests expect
      const written = (await sby.dump()).filter((f) => ![f.orig.src, f.orig.dst].some((a) => a === SYNC_A || a === SYNC_B));
      await sby.write(written.map((f) => ({ op: 'delete' as const, flow: f })));
      act.close();
      sby.close();
      standby.conf = writeConf('fw2', SYNC_B, { id: 'fw1', ip: SYNC_A });
      await start(standby);
    }
  });

  /** Flow i of a large synthetic table towards dst, written straight into a kernel. */
  const synthetic = (i: number, state: number, dst = '172.31.0.1'): Flow => {
    const orig = { src: `172.30.${(i >>> 8) & 255}.${i & 255}`, dst, proto: IpProto.Tcp, sport: 1024 + (i >>> 16), dport: 443 };
    return { family: Af.Inet, orig, reply: invertTuple(orig), status: Ips.SeenReply | Ips.Assured, timeout: 900, protoinfo: { tcp: { state } } };
  };

  test('a link cut in the middle of a full bulk resumes it: the rest of the bulk follows, not a second one', async () => {
    const N = 40_000;
    const flows = Array.from({ length: N }, (_, i) => synthetic(i, TcpState.Established, '172.31.0.2'));
    const act = new Conntrack({ netns: active.ns });
    // a slow sync link (4 Mbit/s out of the active; this kernel has tbf, not netem) makes the bulk of ~1.5 MB last
    // about 3 s, and the active's socket buffer, held to 64 KiB, keeps it reading its table until the link goes (a cut
    // bulk, resumed from its cursor). On a loaded machine the standby may still read slower than the link, so that
    // the active handed its socket the whole bulk (it then resumes from the log): either way the standby is in the
    // middle of the bulk, which is what this test is about
    const tbf = ['tbf', 'rate', '4mbit', 'burst', '32kbit', 'latency', '400ms'];
    const tc = (op: 'add' | 'del') => lab.exec(active.ns, ['tc', 'qdisc', op, 'dev', 'sync0', 'root', ...(op === 'add' ? tbf : [])]);
    const wmem = (await lab.exec(active.ns, ['sysctl', '-n', 'net.ipv4.tcp_wmem'])).stdout.trim();
    try {
      expect((await act.write(flows.map((flow) => ({ op: 'create' as const, flow })))).counts.created).toBe(N);
      await expectConverged('the synthetic flows', 60_000);
      await stop(standby, 'KILL');
      const before = catchUps(await stats(active));
      await tc('add');
      await lab.sysctl(active.ns, 'net.ipv4.tcp_wmem', '4096 16384 65536');
      await start(standby);
      const end = Date.now() + 30_000;
      while ((await stats(standby)).peers[0]!.peerTableSize < N / 4 && Date.now() < end) await sleep(20);
      await lab.setLink(active.ns, 'sync0', 'down');
      const sender = (await stats(active)).peers[0]!.state;
      await linkLost();
      const cut = (await stats(standby)).peers[0]!;
      expect({ haveCopy: cut.haveCopy, part: cut.peerTableSize < N }, `the standby once the link went (the active was ${sender})`).toEqual({ haveCopy: false, part: true });
      await lab.setLink(active.ns, 'sync0', 'up');
      await expectConverged('after a cut in the middle of a bulk', 60_000);
      const after = await stats(active);
      expect(catchUps(after), 'resumes and bulks the active sent').toEqual({ resumes: before.resumes + 1, bulks: before.bulks + 1 });
      expect(after.peers[0]!.why).toMatch(/^resumed \d+ entries after seq \d+, and finished bulk \d+$/);
      expect((await act.write(flows.map((flow) => ({ op: 'delete' as const, flow })))).counts.deleted).toBe(N);
      await expectConverged('after the synthetic flows went', 60_000, true);
    } finally {
      await tc('del').catch(() => {});
      await lab.sysctl(active.ns, 'net.ipv4.tcp_wmem', wmem).catch(() => {});
      if (!standby.proc) await start(standby);
      await act.write(flows.map((flow) => ({ op: 'delete' as const, flow }))).catch(() => {}); // if it failed before
      act.close();
    }
  }, 180_000);

  test('dumps of a large table, back to back on both daemons, hold up neither: the sync link stays up', async () => {
    // built whole, a dump of 100k flows held a daemon's event loop for over a second (deadAfter here): its peer
    // declared the link dead and both sides resumed
    const N = 100_000;
    const flows = Array.from({ length: N }, (_, i) => synthetic(i, TcpState.Established, '172.31.0.3'));
    const act = new Conntrack({ netns: active.ns });
    try {
      expect((await act.write(flows.map((flow) => ({ op: 'create' as const, flow })))).counts.created).toBe(N);
      await expectConverged('the synthetic flows', 60_000);
      const before = catchUps(await stats(active));
      const logged = [active, standby].map((n) => n.log!.length);
      const dumps = async (n: Node, args: string[]) => {
        const out: { code: number; count: number; flows: number }[] = [];
        for (let i = 0; i < 3; i++) {
          const r = await runCtsync(['dump', ...args, '--socket', n.sock]);
          const doc = JSON.parse(r.stdout || '{}') as { count?: number; flows?: unknown[] };
          out.push({ code: r.code, count: doc.count ?? -1, flows: doc.flows?.length ?? -1 });
        }
        return out;
      };
      const [peer, local] = await Promise.all([dumps(standby, ['--peer', 'fw1']), dumps(active, ['--local'])]);
      for (const r of [...peer, ...local]) {
        expect(r.code).toBe(0);
        expect(r.flows).toBe(r.count);
        expect(r.count).toBeGreaterThanOrEqual(N);
      }
      const dead = [active, standby].flatMap((n, i) => n.log!.slice(logged[i]).filter((l) => l.includes('"reason":"dead"')));
      expect(dead, 'link drops logged during the dumps').toEqual([]);
      expect(catchUps(await stats(active)), 'resumes and bulks during the dumps').toEqual(before);
      expect((await act.write(flows.map((flow) => ({ op: 'delete' as const, flow })))).counts.deleted).toBe(N);
      await expectConverged('after the synthetic flows went', 60_000, true);
    } finally {
      await act.write(flows.map((flow) => ({ op: 'delete' as const, flow }))).catch(() => {}); // if it failed before
      act.close();
    }
  }, 180_000);

  test('a large commit, sent from worker threads, writes the whole copy into the standby kernel and replaces strays', async () => {
    const N = 60_000; // above the size where the commit starts its write threads
    const key = (f: Flow) => `${f.orig.src} ${f.orig.sport}`;
    const act = new Conntrack({ netns: active.ns });
    const sby = new Conntrack({ netns: standby.ns });
    try {
      const w = await act.write(Array.from({ length: N }, (_, i) => ({ op: 'create' as const, flow: synthetic(i, TcpState.Established) })));
      expect(w.counts.created).toBe(N);
      // the peer table also holds the flows earlier tests left, so its size alone can reach N with a few of ours
      // still on the way: count ours in its dump (once the size says they may all be there)
      const end = Date.now() + 60_000;
      const ours = async () => {
        const doc = await dumpDocument(standby.sock, { table: 'peer', peer: 'fw1' });
        return (JSON.parse(doc) as { flows: { orig?: { dst?: string } }[] }).flows.filter((f) => f.orig?.dst === '172.31.0.1').length;
      };
      while (((await request(standby.sock, 'stats')) as DaemonStats).peers[0]!.peerTableSize < N && Date.now() < end) await sleep(200);
      let copied = await ours();
      while (copied < N && Date.now() < end) {
        await sleep(200);
        copied = await ours();
      }
      expect(copied, 'synthetic flows in the standby peer table before the commit').toBe(N);
      // traffic that reached the standby before the takeover: entries for the same tuples in another state
      const strays = Array.from({ length: 100 }, (_, i) => ({ op: 'create' as const, flow: { ...synthetic(i * 7, TcpState.SynSent), status: 0, timeout: 60 } }));
      expect((await sby.write(strays)).counts.created).toBe(100);

      const report = (await request(standby.sock, 'commit', {}, undefined, 120_000)) as CommitReport;
      expect(report.workers).toBe(2);
      expect(report.counts.failed, JSON.stringify(report.failedByErrno)).toBe(0);
      expect(report.counts.replaced).toBe(100);
      expect(report.counts.created + report.counts.replaced).toBe(report.entries);
      const inKernel = new Map((await sby.dump()).filter((f) => f.orig.dst === '172.31.0.1').map((f) => [key(f), f]));
      expect(inKernel.size, JSON.stringify(report)).toBe(N);
      const wrong = [...inKernel.values()].filter((f) => f.protoinfo?.tcp?.state !== TcpState.Established || !((f.status ?? 0) & Ips.Assured));
      expect(wrong.map(key).slice(0, 5)).toEqual([]);
    } finally {
      act.close();
      sby.close();
    }
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

