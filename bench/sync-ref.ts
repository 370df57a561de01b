// Sync benchmark on the two-node lab: burst latency to the standby, active CPU, wire bytes, memory and commit rate.
//
// Run by hand, as root (never a timed test):
//   npm run build && node dist/bench/sync-ref.js [--impl conntrackd|ctsync|both] [--n 100000] [--repeats 3] [--big 1000000]
//                                                [--poll-ms 1] [--out bench/results] [--prefix ctsr-] [--cpu-prof DIR] [--no-second]
//                                                [--node-flags "--trace-gc ..."] [--daemon-logs DIR] [--daemon-yaml "link: { heartbeat: 200 }"]
//                                                [--daemon-sync "coalesce: 20"]
//                                                [--ctsync-wrap "chrt -r 10"]
//   (or without a build: npx vite-node bench/sync-ref.ts -- ARGS)
// Each repeat builds a fresh lab (namespaces ctsr-act-XXXX, ctsr-sby-XXXX joined by one veth), starts the pair,
// bursts n flows into act's kernel table with batched ctnetlink writes, and measures:
//   (a) last insert → the standby daemon reports all n in its peer table. The last insert is when the writer reads
//       the kernel's ack of its last datagram (datagrams are encoded before the clock starts; until 2026-11-21 the
//       clock stopped after the writer's own pass over n results, 3-7 ms late). The standby's control socket is
//       polled every --poll-ms (default 1; 0 = back to back, which loads a standby that is still catching up, and
//       the bench process with it); the mean poll interval is the resolution and is reported. The first poll goes
//       out at once (the writer's report is built afterwards), and for ctsync the active is asked once its answer is
//       in, not awaited, how many events its JS thread had handled and how many entries it had sent
//       (act.atLastInsert.* in the diagnostics): that tells which daemon was behind. For ctsync the same latency is
//       also read on the standby's own clock (when it applied its last data frame, from its stats), which leaves out
//       what the poll adds: the bench process's own scheduling and GC after the burst, the connect, the answer;
//   (b) active daemon CPU (schedstat, ns accounting) from before the burst, per 10k: (b1) until the standby holds all
//       n (the first poll that sees them), and (b2) until the sync link is quiet, i.e. carries no more than
//       heartbeat-level traffic: at most 2 KiB (both directions, L2) over the last 500 ms. Both daemons send
//       keepalives every 500 ms (ctsync: link + sync heartbeats and acks, ~1 KiB per 500 ms; conntrackd: alive
//       messages), so "no packet for 500 ms" never happens and the old wait always ran into its 30 s timeout, taking
//       in a periodic timeout-refresh dump and 30 s of heartbeats. The wait still gives up after 30 s; how long it
//       waited and whether it gave up are in the diagnostics (quietWaitMs, quietTimedOut);
//   (c) bytes on the sync veth (L2 frames) from act to sby, and both directions, per entry, over the same window as (b2);
//   (d) RSS growth of both daemons per entry;
//   (f) a second burst of n new tuples on the same daemons, once the link is quiet: (a) and (b) again. A fresh
//       daemon runs its first burst partly in V8's unoptimized tiers (and grows its tables from small); the second
//       shows what a daemon that has been running costs. conntrackd (C) gets the same second burst. Skipped with
//       --no-second, or when the host's nf_conntrack_max cannot hold 2n;
//   (e) commit of the standby's replica (n, or 2n after (f)) into its empty kernel table: entries/s;
//   (g) each daemon's CPU from its start until just before the burst (process start-up, initial dump, link set-up).
// --big N repeats (a)-(e) once at N entries (no second burst). HOST CHANGE: a namespace cannot hold more entries than
// the host's net.netfilter.nf_conntrack_max (262144 here; it cannot be raised per namespace), so for --big the host's
// nf_conntrack_max (to N + 1000) and hash buckets (to N, as an operator sizes them) are raised for the run only and
// put back at the end, also on failure or interrupt (bench/lib/sysctl.ts), and the markdown says what was done.
// `--repeats 0 --big N` runs only the big set.
// --cpu-prof DIR runs the ctsync daemons under `node --cpu-prof` (profiles in DIR/act, DIR/sby, written at stop).
// Writes OUT/<impl>-ref.json and OUT/<impl>-ref.md; the markdown also sets the figures beside DOMAIN.md's.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { execFileSync } from 'node:child_process';
import { Lab } from '../src/lab/netns.js';
import { conntrackdPair, type ConntrackdPair } from './ref/conntrackd.js';
import { ctsyncPair, type CtsyncPair, type CtsyncPairOptions } from './ref/ctsync.js';
import { raiseConntrackBuckets, raiseConntrackMax, type HostChange } from './lib/sysctl.js';
import {
  REF_PREFIX,
  burst,
  cpuSeconds,
  cpuSecondsStat,
  cpuUserSys,
  cpuMainOther,
  diffCounters,
  kernelCount,
  linkCounters,
  pollUntil,
  rssBytes,
  sleep,
  waitLinkQuiet,
  type LinkCounters,
  type PairOptions,
  type SyncPair,
  type SyncPairFactory,
} from './ref/harness.js';

/** Implementations the benchmark knows. The lead adds `ctsync: ctsyncPair` (same SyncPairFactory signature). */
const IMPLS: Record<string, SyncPairFactory> = {
  conntrackd: conntrackdPair,
  ctsync: ctsyncPair,
};

/** DOMAIN.md's figures for conntrackd 1.4.7 measured on this machine, for the comparison column. */
const DOMAIN_FIGURES = {
  latencyMs: '10-25',
  cpuSecondsPer10k: 0.064,
  wireBytesPerEntry: 88,
  rssBytesPerEntryActive: 528,
  rssBytesPerEntryStandby: 464,
  commitPerSec: 82_000,
};

interface Args {
  impl: string;
  n: number;
  repeats: number;
  big: number;
  pollMs: number;
  out: string;
  /** Namespace prefix of the labs (default ctsr-); parallel runs by different people take different prefixes. */
  prefix: string;
  /** ctsync only: run the daemons under node --cpu-prof with profiles under this directory. */
  cpuProf?: string;
  /** ctsync only: extra node/V8 flags for both daemons (--node-flags "--trace-gc ..."). */
  nodeFlags?: string[];
  /** ctsync only: append each daemon's stdout and stderr to DIR/act.log and DIR/sby.log. */
  daemonLogs?: string;
  /** ctsync only: extra config lines for both daemons (--daemon-yaml "link: { heartbeat: 200 }", repeatable; not sync). */
  extraYaml: string[];
  /** ctsync only: extra keys in both daemons' sync section (--daemon-sync "coalesce: 20"). */
  syncYaml: string;
  /** ctsync only: argv put before node, e.g. --ctsync-wrap "chrt -r 10" (what systemd/ctsync.service does). */
  wrap?: string[];
  /** A second burst on the same daemons (off with --no-second, and skipped where the host's table cannot hold 2n). */
  second: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { impl: 'conntrackd', n: 100_000, repeats: 3, big: 0, pollMs: 1, out: 'bench/results', prefix: REF_PREFIX, second: true, extraYaml: [], syncYaml: '' };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    const num = (): number => {
      const x = Number(v);
      if (!Number.isInteger(x) || x < 0) throw new Error(`${k} needs a non-negative integer, got ${v}`);
      i++;
      return x;
    };
    if (k === '--') continue;
    else if (k === '--impl') (a.impl = v ?? ''), i++;
    else if (k === '--n') a.n = num();
    else if (k === '--repeats') a.repeats = num();
    else if (k === '--big') a.big = num();
    else if (k === '--poll-ms') a.pollMs = num();
    else if (k === '--out') (a.out = v ?? a.out), i++;
    else if (k === '--prefix') (a.prefix = v ?? a.prefix), i++;
    else if (k === '--cpu-prof') (a.cpuProf = v), i++;
    else if (k === '--node-flags') (a.nodeFlags = (v ?? '').split(' ').filter(Boolean)), i++;
    else if (k === '--daemon-logs') (a.daemonLogs = v), i++;
    else if (k === '--daemon-yaml') (a.extraYaml.push(v ?? '')), i++;
    else if (k === '--daemon-sync') (a.syncYaml = v ?? ''), i++;
    else if (k === '--ctsync-wrap') (a.wrap = (v ?? '').split(' ').filter(Boolean)), i++;
    else if (k === '--no-second') a.second = false;
    else throw new Error(`unknown argument ${k} (see the header of bench/sync-ref.ts)`);
  }
  if (!IMPLS[a.impl] && a.impl !== 'both') throw new Error(`--impl must be one of ${[...Object.keys(IMPLS), 'both'].join(', ')}`);
  return a;
}

interface RunResult {
  n: number;
  /** 1-minute load average when the run started: other work on this 2-vCPU machine skews every figure. */
  loadAvg1: number;
  insert: { durationMs: number; perSec: number; created: number; failed: number };
  latency: {
    /** last insert acknowledged → a poll answer showing all n (what an observer sees). */
    ms: number;
    /**
     * ctsync only (NaN for conntrackd): last insert → the standby applied its last data frame, on the standby's own
     * clock (stats: monotonicMs - lastDataAgoMs), so without the poll's delays. Below zero if before the writer read
     * its last ack.
     */
    standbyClockMs: number;
    /** Lower bound: the poll answered before the successful one still showed fewer (0 if the first poll succeeded). */
    lowerBoundMs: number;
    /** Peer-table size in the first answer after the last insert. */
    atLastInsert: number;
    polls: number;
    resolutionMs: number;
    /** last insert → first poll sent (our own delay), and that poll's round trip (the daemon's answer time). */
    firstPollSentAfterMs: number;
    firstPollRttMs: number;
    /** Wall time of one `conntrackd -s`-style client process poll (CLI cross-check), when the pair offers one. */
    cliPollMs: number;
  };
  cpu: { activeSecondsAtSync: number; activeSeconds: number; activeTickSeconds: number; standbySeconds: number; activePer10k: number; activeAtSyncPer10k: number; standbyPer10k: number };
  /** A second burst of n new flows once the first is synced and the link quiet: the daemons are warm (JIT, tables). */
  second?: { latencyMs: number; standbyClockMs: number; atLastInsert: number; insertPerSec: number; activeAtSyncPer10k: number; activePer10k: number; standbyPer10k: number };
  wire: { actTx: LinkCounters; sbyTx: LinkCounters; bytesPerEntry: number; bytesPerEntryBothWays: number; udpPayloadPerEntry: number; entriesPerDatagram: number };
  rss: { activeBefore: number; activeAfter: number; standbyBefore: number; standbyAfter: number; activePerEntry: number; standbyPerEntry: number };
  /** (g) CPU seconds of each daemon from its start until just before the burst. */
  start?: { activeCpuSeconds: number; standbyCpuSeconds: number };
  commit: { durationMs: number; perSec: number; kernelBefore: number; kernelAfterReturn: number; complete: boolean; completeAfterMs: number; output: string };
  diagnostics: Record<string, number | string>;
}

const ETH_IP_UDP = 14 + 20 + 8;

/** What only the ctsync pair takes. */
type CtsyncExtras = Pick<CtsyncPairOptions, 'cpuProfDir' | 'nodeFlags' | 'logDir' | 'extraYaml' | 'syncYaml' | 'wrap'>;

async function measureOnce(factory: SyncPairFactory, n: number, pollMs: number, prefix = REF_PREFIX, extras: CtsyncExtras = {}, secondBurst = false): Promise<RunResult> {
  const loadAvg1 = loadavg()[0]!;
  const lab = new Lab({ prefix });
  let pair: SyncPair | undefined;
  try {
    pair = await factory(lab, { capacity: secondBurst ? 2 * n : n, ...extras } as PairOptions & CtsyncExtras);
    const { topo } = pair;
    await sleep(300); // let the daemons' startup work (initial dump, first alive messages) finish
    const baseLocal = await pair.localTableSize();
    const basePeer = await pair.peerTableSize();
    const rssA0 = rssBytes(pair.activePid);
    const rssS0 = rssBytes(pair.standbyPid);
    const cpuA0 = cpuSeconds(pair.activePid);
    const tickA0 = cpuSecondsStat(pair.activePid);
    const usA0 = cpuUserSys(pair.activePid);
    const thA0 = cpuMainOther(pair.activePid);
    const cpuS0 = cpuSeconds(pair.standbyPid);
    const linkA0 = await linkCounters(lab, topo.act, topo.actIf);
    const linkS0 = await linkCounters(lab, topo.sby, topo.sbyIf);

    // (a) the burst, then poll the standby until it holds everything
    const peer = pair;
    const quietLink = () => waitLinkQuiet(() => linkCounters(lab, topo.act, topo.actIf), { windowMs: 500, maxBytes: 2048, stepMs: 50, timeoutMs: 30_000 });
    // ctsync only: the active's own counters beside the standby's first answer, to tell which daemon was behind
    const ctsync = pair as Partial<CtsyncPair>;
    const ctsyncStats = ctsync.stats;
    const activeCounts = async () => {
      if (!ctsyncStats) return undefined;
      const s = await ctsyncStats('active');
      return { handled: s.kernel.events.new, sent: s.sync.entriesOut };
    };
    /** n new flows from `offset` on the active; then polls until the standby holds `held` + n (first: its count at the first answer). */
    const burstAndWait = async (offset: number, held: number) => {
      const act0 = await activeCounts();
      const b = await burst(topo.act, n, offset);
      if (b.created !== n) {
        const why = Object.entries(b.report().failedByErrno).map(([e, c]) => `${e} x${c}`).join(', ');
        throw new Error(`the burst from ${offset} created ${b.created} of ${n} entries on the active (${why}); check nf_conntrack_max`);
      }
      let first = -1;
      let actAtFirst: ReturnType<typeof activeCounts> | undefined;
      const poll = await pollUntil(
        async () => {
          const v = await peer.peerTableSize();
          if (first < 0) {
            first = v - held;
            // the active is asked once the standby's first answer is in, not awaited: asked before it (until the
            // ninth session), its request went out first and delayed the standby's poll by ~0.8 ms (perf trace)
            if (act0) actAtFirst = activeCounts();
          }
          return v;
        },
        (v) => v >= held + n,
        { intervalMs: pollMs, timeoutMs: 120_000 },
      );
      const a = await actAtFirst;
      const actFirst = a && act0 && { handled: a.handled - act0.handled, sent: a.sent - act0.sent };
      // ctsync: when the standby applied its last data frame, on its own clock, from the last insert
      const dataAt = ctsync.lastDataAtMonoMs?.();
      const standbyClockMs = dataAt === undefined ? NaN : dataAt - b.lastInsertMonoMs;
      return { b, poll, first, actFirst, standbyClockMs };
    };
    const { b, poll, first, actFirst, standbyClockMs } = await burstAndWait(0, basePeer);
    const cpuAtSync = cpuSeconds(pair.activePid);

    // (b)(c) wait until the link carries only heartbeat-level traffic (acks, last retransmissions done), then read
    // CPU and bytes
    const quiet = await quietLink();
    const linkA1 = quiet.counters;
    const linkS1 = await linkCounters(lab, topo.sby, topo.sbyIf);
    const cpuA1 = cpuSeconds(pair.activePid);
    const tickA1 = cpuSecondsStat(pair.activePid);
    const usA1 = cpuUserSys(pair.activePid);
    const thA1 = cpuMainOther(pair.activePid);
    const cpuS1 = cpuSeconds(pair.standbyPid);
    const actTx = diffCounters(linkA0, linkA1);
    const sbyTx = diffCounters(linkS0, linkS1);

    // (d) memory at n
    const rssA1 = rssBytes(pair.activePid);
    const rssS1 = rssBytes(pair.standbyPid);
    const localNow = await pair.localTableSize();
    const diagnostics = await pair.diagnostics();
    if (actFirst) [diagnostics['act.atLastInsert.handled'], diagnostics['act.atLastInsert.sent']] = [actFirst.handled, actFirst.sent];
    let cliPollMs = NaN;
    const cliProbe = (pair as Partial<ConntrackdPair>).statsExternalCli;
    if (cliProbe) {
      const t = performance.now();
      const v = await cliProbe();
      cliPollMs = performance.now() - t;
      if (v !== poll.lastValue) diagnostics['cliPollMismatch'] = `${v} vs ${poll.lastValue}`;
    }
    diagnostics['active.localTableGrowth'] = localNow - baseLocal;
    diagnostics['active.userSeconds'] = +(usA1.user - usA0.user).toFixed(2);
    diagnostics['active.sysSeconds'] = +(usA1.sys - usA0.sys).toFixed(2);
    diagnostics['active.mainThreadSeconds'] = +(thA1.main - thA0.main).toFixed(3);
    diagnostics['active.otherThreadsSeconds'] = +(thA1.other - thA0.other).toFixed(3);
    diagnostics['quietWaitMs'] = Math.round(quiet.waitedMs);
    diagnostics['quietTimedOut'] = String(quiet.timedOut);

    // (f) the same burst again, new tuples, on daemons that have run once: what a long-running daemon costs
    let second: RunResult['second'];
    if (secondBurst) {
      const a0 = cpuSeconds(pair.activePid);
      const s0 = cpuSeconds(pair.standbyPid);
      const th0 = cpuMainOther(pair.activePid);
      const { b: b2, poll: p2, first: first2, actFirst: actFirst2, standbyClockMs: standbyClockMs2 } = await burstAndWait(n, basePeer + n);
      if (actFirst2) [diagnostics['second.act.atLastInsert.handled'], diagnostics['second.act.atLastInsert.sent']] = [actFirst2.handled, actFirst2.sent];
      const a1 = cpuSeconds(pair.activePid);
      await quietLink();
      const a2 = cpuSeconds(pair.activePid);
      const s2 = cpuSeconds(pair.standbyPid);
      const th2 = cpuMainOther(pair.activePid);
      diagnostics['second.active.mainThreadSeconds'] = +(th2.main - th0.main).toFixed(3);
      diagnostics['second.active.otherThreadsSeconds'] = +(th2.other - th0.other).toFixed(3);
      second = {
        latencyMs: p2.doneAt - b2.lastInsertAt,
        standbyClockMs: standbyClockMs2,
        atLastInsert: first2,
        insertPerSec: n / ((b2.lastInsertAt - b2.firstInsertAt) / 1000),
        activeAtSyncPer10k: ((a1 - a0) / n) * 10_000,
        activePer10k: ((a2 - a0) / n) * 10_000,
        standbyPer10k: ((s2 - s0) / n) * 10_000,
      };
    }
    const held = secondBurst ? 2 * n : n;

    // (e) commit into the standby's (empty) kernel table
    const kBefore = await kernelCount(lab, topo.sby);
    const c = await pair.commit();
    const returnedAt = performance.now();
    const kAfter = await kernelCount(lab, topo.sby);
    let complete = kAfter - kBefore >= held;
    let completeAfterMs = 0;
    if (!complete) {
      // the command returned before the kernel held everything: measure how much later it does
      const p = await pollUntil(() => kernelCount(lab, topo.sby), (v) => v - kBefore >= held, { intervalMs: 5, timeoutMs: 120_000 }).catch(() => undefined);
      complete = p !== undefined;
      completeAfterMs = p ? p.doneAt - returnedAt : NaN;
    }

    const insertMs = b.lastInsertAt - b.firstInsertAt;
    return {
      n,
      loadAvg1,
      insert: { durationMs: insertMs, perSec: n / (insertMs / 1000), created: b.created, failed: n - b.created },
      latency: {
        ms: poll.doneAt - b.lastInsertAt,
        standbyClockMs,
        lowerBoundMs: poll.polls > 1 ? Math.max(0, poll.prevAnswerAt - b.lastInsertAt) : 0,
        atLastInsert: first,
        polls: poll.polls,
        resolutionMs: poll.meanIntervalMs,
        firstPollSentAfterMs: poll.firstSentAt - b.lastInsertAt,
        firstPollRttMs: poll.firstAnswerAt - poll.firstSentAt,
        cliPollMs,
      },
      cpu: {
        activeSecondsAtSync: cpuAtSync - cpuA0,
        activeSeconds: cpuA1 - cpuA0,
        activeTickSeconds: tickA1 - tickA0,
        standbySeconds: cpuS1 - cpuS0,
        activePer10k: ((cpuA1 - cpuA0) / n) * 10_000,
        activeAtSyncPer10k: ((cpuAtSync - cpuA0) / n) * 10_000,
        standbyPer10k: ((cpuS1 - cpuS0) / n) * 10_000,
      },
      wire: {
        actTx,
        sbyTx,
        bytesPerEntry: actTx.txBytes / n,
        bytesPerEntryBothWays: (actTx.txBytes + actTx.rxBytes) / n,
        udpPayloadPerEntry: (actTx.txBytes - actTx.txPackets * ETH_IP_UDP) / n,
        entriesPerDatagram: n / actTx.txPackets,
      },
      start: { activeCpuSeconds: cpuA0, standbyCpuSeconds: cpuS0 },
      rss: {
        activeBefore: rssA0,
        activeAfter: rssA1,
        standbyBefore: rssS0,
        standbyAfter: rssS1,
        activePerEntry: (rssA1 - rssA0) / n,
        standbyPerEntry: (rssS1 - rssS0) / n,
      },
      ...(second ? { second } : {}),
      commit: {
        durationMs: c.durationMs,
        perSec: held / (c.durationMs / 1000),
        kernelBefore: kBefore,
        kernelAfterReturn: kAfter,
        complete,
        completeAfterMs,
        output: c.output,
      },
      diagnostics,
    };
  } finally {
    await pair?.stop().catch(() => {});
    await lab.teardown();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Aggregation and reports

interface Spread {
  median: number;
  min: number;
  max: number;
  values: number[];
}

function spread(values: number[]): Spread {
  const s = [...values].sort((x, y) => x - y);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]!, values };
}

const METRICS: { key: string; label: string; get: (r: RunResult) => number; digits: number; domain?: string }[] = [
  { key: 'latencyMs', label: 'last insert → standby holds all (ms)', get: (r) => r.latency.ms, digits: 2, domain: DOMAIN_FIGURES.latencyMs },
  { key: 'standbyClockMs', label: '  same on the standby\'s own clock: its last data frame applied (ctsync only)', get: (r) => r.latency.standbyClockMs ?? NaN, digits: 2 },
  { key: 'latencyResolutionMs', label: '  poll resolution (ms)', get: (r) => r.latency.resolutionMs, digits: 3 },
  { key: 'firstPollSentAfterMs', label: '  first poll sent after last insert (ms)', get: (r) => r.latency.firstPollSentAfterMs, digits: 2 },
  { key: 'firstPollRttMs', label: '  first poll round trip (ms)', get: (r) => r.latency.firstPollRttMs, digits: 2 },
  { key: 'cliPollMs', label: '  one CLI poll (`conntrackd -s` process), ms', get: (r) => r.latency.cliPollMs, digits: 2 },
  { key: 'atLastInsert', label: '  standby already holding at last insert', get: (r) => r.latency.atLastInsert, digits: 0 },
  { key: 'cpuActiveAtSyncPer10k', label: 'active CPU s per 10k, until the standby holds all', get: (r) => r.cpu.activeAtSyncPer10k ?? (r.cpu.activeSecondsAtSync / r.n) * 10_000, digits: 4 },
  { key: 'cpuActivePer10k', label: 'active CPU s per 10k, until the link is quiet', get: (r) => r.cpu.activePer10k, digits: 4, domain: String(DOMAIN_FIGURES.cpuSecondsPer10k) },
  { key: 'cpuActiveTickPer10k', label: '  same from /proc/PID/stat ticks (10 ms)', get: (r) => (r.cpu.activeTickSeconds / r.n) * 10_000, digits: 4 },
  { key: 'cpuStandbyPer10k', label: 'standby CPU s per 10k', get: (r) => r.cpu.standbyPer10k, digits: 4 },
  { key: 'second.latencyMs', label: 'second burst (warm daemons): last insert → standby holds all (ms)', get: (r) => r.second?.latencyMs ?? NaN, digits: 2 },
  { key: 'second.standbyClockMs', label: '  same on the standby\'s own clock (ctsync only)', get: (r) => r.second?.standbyClockMs ?? NaN, digits: 2 },
  { key: 'second.atLastInsert', label: '  standby already holding at last insert', get: (r) => r.second?.atLastInsert ?? NaN, digits: 0 },
  { key: 'second.cpuActiveAtSyncPer10k', label: '  active CPU s per 10k, until the standby holds all', get: (r) => r.second?.activeAtSyncPer10k ?? NaN, digits: 4 },
  { key: 'second.cpuActivePer10k', label: '  active CPU s per 10k, until the link is quiet', get: (r) => r.second?.activePer10k ?? NaN, digits: 4 },
  { key: 'second.cpuStandbyPer10k', label: '  standby CPU s per 10k', get: (r) => r.second?.standbyPer10k ?? NaN, digits: 4 },
  { key: 'second.insertPerSec', label: '  burst insert rate on active (entries/s)', get: (r) => r.second?.insertPerSec ?? NaN, digits: 0 },
  { key: 'wireBytesPerEntry', label: 'wire bytes per entry (act→sby, L2)', get: (r) => r.wire.bytesPerEntry, digits: 1, domain: String(DOMAIN_FIGURES.wireBytesPerEntry) },
  { key: 'wireBytesPerEntryBothWays', label: 'wire bytes per entry (both ways)', get: (r) => r.wire.bytesPerEntryBothWays, digits: 1 },
  { key: 'udpPayloadPerEntry', label: 'UDP payload bytes per entry', get: (r) => r.wire.udpPayloadPerEntry, digits: 1 },
  { key: 'entriesPerDatagram', label: 'entries per datagram', get: (r) => r.wire.entriesPerDatagram, digits: 1 },
  { key: 'rssActivePerEntry', label: 'RSS bytes per entry, active', get: (r) => r.rss.activePerEntry, digits: 0, domain: `~${DOMAIN_FIGURES.rssBytesPerEntryActive}` },
  { key: 'rssStandbyPerEntry', label: 'RSS bytes per entry, standby', get: (r) => r.rss.standbyPerEntry, digits: 0, domain: `~${DOMAIN_FIGURES.rssBytesPerEntryStandby}` },
  { key: 'commitPerSec', label: 'commit entries/s (empty table)', get: (r) => r.commit.perSec, digits: 0, domain: `~${DOMAIN_FIGURES.commitPerSec}` },
  { key: 'commitMs', label: '  commit duration (ms)', get: (r) => r.commit.durationMs, digits: 0 },
  { key: 'startCpuActive', label: 'active CPU s from start until the burst (start-up, dump, link)', get: (r) => r.start?.activeCpuSeconds ?? NaN, digits: 3 },
  { key: 'startCpuStandby', label: 'standby CPU s from start until the burst', get: (r) => r.start?.standbyCpuSeconds ?? NaN, digits: 3 },
  { key: 'loadAvg1', label: 'machine load average at run start', get: (r) => r.loadAvg1, digits: 2 },
  { key: 'insertPerSec', label: 'burst insert rate on active (entries/s)', get: (r) => r.insert.perSec, digits: 0 },
];

function summarize(runs: RunResult[]): Record<string, Spread> {
  const out: Record<string, Spread> = {};
  for (const m of METRICS) out[m.key] = spread(runs.map(m.get));
  return out;
}

const fmt = (x: number, d: number): string => (Number.isFinite(x) ? x.toFixed(d) : String(x));

function markdown(impl: string, env: Record<string, unknown>, sets: { n: number; runs: RunResult[]; summary: Record<string, Spread> }[], skipped: string[]): string {
  const lines = [`# ${impl} sync reference (${String(env.date)})`, ''];
  lines.push(`Command: \`${String(env.command)}\`  `);
  lines.push(`Machine: ${String(env.nproc)} vCPU, kernel ${String(env.kernel)}, ${String(env.implVersion)}.${env.hostChanges ? ` Host: ${String(env.hostChanges)}.` : ''}`, '');
  for (const s of sets) {
    lines.push(`## ${s.n} entries, ${s.runs.length} run(s): median [min – max]`, '');
    lines.push('| metric | median | spread | DOMAIN.md |', '|---|---:|---:|---:|');
    for (const m of METRICS) {
      const v = s.summary[m.key]!;
      lines.push(`| ${m.label} | ${fmt(v.median, m.digits)} | ${fmt(v.min, m.digits)} – ${fmt(v.max, m.digits)} | ${m.domain ?? ''} |`);
    }
    if (s.runs.every((r) => r.latency.atLastInsert === r.n)) {
      lines.push('', 'The standby already held every entry in the first answer after the last insert: the latency is an upper bound set by that poll\'s round trip, not by the sync.');
    }
    const c = s.runs.map((r) => `${r.commit.kernelAfterReturn - r.commit.kernelBefore}/${r.n}`).join(', ');
    lines.push('', `Kernel entries on the standby when the commit command returned: ${c}.`);
    const d = s.runs[0]!.diagnostics;
    lines.push(`Diagnostics (run 1): ${Object.entries(d).map(([k, v]) => `${k}=${v}`).join(', ')}.`, '');
  }
  for (const s of skipped) lines.push(`Skipped: ${s}`, '');
  return lines.join('\n') + '\n';
}

function hostCtMax(): number {
  try {
    return Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_max', 'utf8').trim());
  } catch {
    return 0;
  }
}

function implVersion(impl: string): string {
  if (impl === 'ctsync') {
    try {
      const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
      const dirty = execFileSync('git', ['status', '--porcelain', 'src'], { encoding: 'utf8' }).trim() ? '+uncommitted src changes' : '';
      return `ctsync ${rev}${dirty} (dist/ as built), security psk`;
    } catch {
      return 'ctsync';
    }
  }
  if (impl !== 'conntrackd') return impl;
  try {
    return execFileSync('conntrackd', ['-v'], { encoding: 'utf8' }).trim().split('\n')[0] ?? 'conntrackd';
  } catch {
    return 'conntrackd (version unknown)';
  }
}

/** Side by side: conntrackd and ctsync medians of the same session, with ctsync / conntrackd. */
function compareMarkdown(env: Record<string, unknown>, byImpl: Record<string, { n: number; runs: RunResult[]; summary: Record<string, Spread> }[]>): string {
  const a = byImpl['conntrackd'] ?? [];
  const b = byImpl['ctsync'] ?? [];
  const lines = [`# conntrackd vs ctsync, same session (${String(env.date)})`, ''];
  lines.push(`Command: \`${String(env.command)}\`  `);
  lines.push(`Machine: ${String(env.nproc)} vCPU, kernel ${String(env.kernel)}. Repeats interleave the two implementations (conntrackd, ctsync, conntrackd, ...), each on a fresh lab.${env.hostChanges ? ` Host: ${String(env.hostChanges)}.` : ''}`, '');
  for (const sa of a) {
    const sb = b.find((x) => x.n === sa.n);
    if (!sb) continue;
    lines.push(`## ${sa.n} entries: median [min – max] of ${sa.runs.length} / ${sb.runs.length} run(s)`, '');
    lines.push('| metric | conntrackd | ctsync | ctsync / conntrackd |', '|---|---:|---:|---:|');
    for (const m of METRICS) {
      const x = sa.summary[m.key]!;
      const y = sb.summary[m.key]!;
      const ratio = x.median !== 0 && Number.isFinite(x.median) && Number.isFinite(y.median) ? `${(y.median / x.median).toFixed(2)}x` : '';
      lines.push(`| ${m.label} | ${fmt(x.median, m.digits)} [${fmt(x.min, m.digits)} – ${fmt(x.max, m.digits)}] | ${fmt(y.median, m.digits)} [${fmt(y.min, m.digits)} – ${fmt(y.max, m.digits)}] | ${ratio} |`);
    }
    lines.push('');
  }
  return lines.join('\n') + '\n';
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) {
    console.error('sync-ref needs root (network namespaces, ctnetlink writes): skipped');
    process.exit(2);
  }
  // An interrupt exits through process.exit so every 'exit' handler runs: the labs' teardown (daemons killed by
  // process group, namespaces deleted) and the pair's work directory removal.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      console.error(`\n${sig}: tearing down`);
      process.exit(130);
    });
  }
  const swept = Lab.sweep(args.prefix);
  if (swept.length) console.error(`removed leftover namespaces: ${swept.join(' ')}`);

  const impls = args.impl === 'both' ? ['conntrackd', 'ctsync'] : [args.impl];
  const byImpl: Record<string, { n: number; runs: RunResult[]; summary: Record<string, Spread> }[]> = {};
  const skippedBy: Record<string, string[]> = {};
  for (const impl of impls) (byImpl[impl] = []), (skippedBy[impl] = []);
  const plan: { n: number; repeats: number }[] = [{ n: args.n, repeats: args.repeats }];
  const host: HostChange[] = args.big > 0 ? [raiseConntrackMax(args.big + 1000), raiseConntrackBuckets(args.big)] : [];
  if (args.big > 0) {
    const max = hostCtMax();
    if (max >= args.big + 1000) plan.push({ n: args.big, repeats: 1 });
    else for (const impl of impls) skippedBy[impl]!.push(`${args.big} entries: the host's nf_conntrack_max is ${max}; a namespace cannot hold more (raise it on the host first).`);
  }
  for (const p of plan) {
    const runs: Record<string, RunResult[]> = Object.fromEntries(impls.map((x) => [x, []]));
    for (let i = 0; i < p.repeats; i++) {
      for (const impl of impls) {
        let r: RunResult;
        try {
          if (p.n > hostCtMax() - 1000) throw new Error(`the host's nf_conntrack_max is now ${hostCtMax()}`);
          const extras: CtsyncExtras = impl === 'ctsync' ? { cpuProfDir: args.cpuProf, nodeFlags: args.nodeFlags, logDir: args.daemonLogs, extraYaml: args.extraYaml, syncYaml: args.syncYaml, wrap: args.wrap } : {};
          r = await measureOnce(IMPLS[impl]!, p.n, args.pollMs, args.prefix, extras, args.second && p.n !== args.big && 2 * p.n + 1000 <= hostCtMax());
        } catch (err) {
          const msg = `${p.n} entries, run ${i + 1}: failed: ${(err as Error).message}`;
          console.error(`${impl}: ${msg}`);
          skippedBy[impl]!.push(msg);
          continue;
        }
        runs[impl]!.push(r);
        console.error(
          `${impl} n=${p.n} run ${i + 1}/${p.repeats}: latency ${r.latency.ms.toFixed(2)} ms (res ${r.latency.resolutionMs.toFixed(3)}, at-last-insert ${r.latency.atLastInsert}), ` +
            `cpu ${r.cpu.activeAtSyncPer10k.toFixed(4)} at sync / ${r.cpu.activePer10k.toFixed(4)} to quiet s/10k (quiet after ${r.diagnostics['quietWaitMs']} ms), wire ${r.wire.bytesPerEntry.toFixed(1)} B/entry, rss ${r.rss.activePerEntry.toFixed(0)}/${r.rss.standbyPerEntry.toFixed(0)} B/entry, ` +
            `commit ${r.commit.perSec.toFixed(0)}/s (${r.commit.durationMs.toFixed(0)} ms, kernel ${r.commit.kernelAfterReturn - r.commit.kernelBefore})`,
        );
      }
    }
    for (const impl of impls) if (runs[impl]!.length) byImpl[impl]!.push({ n: p.n, runs: runs[impl]!, summary: summarize(runs[impl]!) });
  }

  const hostChanges = host.map((h) => `raised ${h.before} → ${h.during} for the run, then ${h.restore()}`).join('; ');
  if (hostChanges) console.error(hostChanges);
  mkdirSync(args.out, { recursive: true });
  const command = `${/vite-node|\.ts$/.test(process.argv[1] ?? '') ? 'npx vite-node bench/sync-ref.ts --' : 'node dist/bench/sync-ref.js'} ${process.argv.slice(2).join(' ')}`.trim();
  const baseEnv = {
    date: new Date().toISOString(),
    command,
    kernel: execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(),
    nproc: execFileSync('nproc', { encoding: 'utf8' }).trim(),
    hostNfConntrackMax: hostCtMax(),
    ...(hostChanges ? { hostChanges } : {}),
    domainFigures: DOMAIN_FIGURES,
  };
  for (const impl of impls) {
    const env = { ...baseEnv, implVersion: implVersion(impl) };
    const base = join(args.out, `${impl}-ref`);
    writeFileSync(`${base}.json`, JSON.stringify({ impl, env, sets: byImpl[impl], skipped: skippedBy[impl] }, null, 2) + '\n');
    const md = markdown(impl, env, byImpl[impl]!, skippedBy[impl]!);
    writeFileSync(`${base}.md`, md);
    process.stdout.write(md);
  }
  if (impls.length > 1) {
    const md = compareMarkdown(baseEnv, byImpl);
    const base = join(args.out, 'sync-compare');
    const ratios: Record<string, Record<string, number>> = {};
    for (const s of byImpl['conntrackd'] ?? []) {
      const t = (byImpl['ctsync'] ?? []).find((x) => x.n === s.n);
      if (t) ratios[String(s.n)] = Object.fromEntries(METRICS.map((m) => [m.key, t.summary[m.key]!.median / s.summary[m.key]!.median]));
    }
    writeFileSync(`${base}.json`, JSON.stringify({ env: baseEnv, ratiosCtsyncOverConntrackd: ratios, conntrackd: byImpl['conntrackd'], ctsync: byImpl['ctsync'], skipped: skippedBy }, null, 2) + '\n');
    writeFileSync(`${base}.md`, md);
    process.stdout.write(md);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
