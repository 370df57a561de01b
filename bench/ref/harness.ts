// The side-by-side sync benchmark's shared ground: the two-node topology, the burst workload, process and link
// counters, and the SyncPair contract that conntrackd (bench/ref/conntrackd.ts) and ctsync both implement.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Conntrack, encodeBatches, encodeCreate, SeqRange, writeReport, type Datagram, type WriteReport, type WriteResult } from '../../src/kernel/conntrack.js';
import { DEFAULT_WRITE_POLICY } from '../../src/kernel/write-rules.js';
import { monotonicMs } from '../../src/state/clock.js';
import type { Flow } from '../../src/kernel/types.js';
import type { Lab } from '../../src/lab/netns.js';
import { assertNoHostOverlap, LAB_V4_BASE } from '../../src/lab/topology.js';

/** Namespace prefix of every lab this harness builds (Lab.sweep('ctsr-') cleans up after a crash). */
export const REF_PREFIX = 'ctsr-';

/** Two firewall nodes joined by a dedicated sync link (a veth), nothing else: the sync daemons' only path. */
export interface SyncTopology {
  lab: Lab;
  /** Full namespace names: `act` writes the burst, `sby` receives the replica. */
  act: string;
  sby: string;
  /** The veth end in each namespace. */
  actIf: string;
  sbyIf: string;
  /** Sync-link IPv4 addresses (no prefix length) and the prefix length. */
  actAddr: string;
  sbyAddr: string;
  prefixLen: number;
}

const SYNC_SUBNET = `${LAB_V4_BASE}.250`; // inside the lab range, which assertNoHostOverlap() guards

/** Builds act ↔ sby over one veth (`sync0` on both sides) with /30 addresses. */
export async function syncTopology(lab: Lab): Promise<SyncTopology> {
  await assertNoHostOverlap();
  const act = await lab.addNamespace('act');
  const sby = await lab.addNamespace('sby');
  const ifname = 'sync0';
  await lab.addVeth(act, ifname, sby, ifname);
  const topo: SyncTopology = { lab, act, sby, actIf: ifname, sbyIf: ifname, actAddr: `${SYNC_SUBNET}.1`, sbyAddr: `${SYNC_SUBNET}.2`, prefixLen: 30 };
  await lab.addAddress(act, ifname, `${topo.actAddr}/${topo.prefixLen}`);
  await lab.addAddress(sby, ifname, `${topo.sbyAddr}/${topo.prefixLen}`);
  return topo;
}

/**
 * What a sync implementation must offer the benchmark. Both daemons are started and ready (listening, linked)
 * when the factory resolves; every method may be called repeatedly.
 */
export interface SyncPair {
  /** Short name for the results ('conntrackd', 'ctsync'). */
  readonly impl: string;
  readonly topo: SyncTopology;
  /** PIDs of the daemon processes themselves (not wrappers): CPU and RSS are read from /proc/PID. */
  readonly activePid: number;
  readonly standbyPid: number;
  /** Entries the standby daemon holds for its peer (conntrackd: external cache; ctsync: peer table). Cheap: it is polled. */
  peerTableSize(): Promise<number>;
  /** Entries the active daemon holds for its own kernel table (conntrackd: internal cache; ctsync: local table). */
  localTableSize(): Promise<number>;
  /** Writes the standby's replica into the standby kernel table, as a failover would; resolves when the daemon says it is done. */
  commit(): Promise<CommitResult>;
  /** Implementation-specific counters worth keeping next to the figures (overruns, drops, lost messages). */
  diagnostics(): Promise<Record<string, number | string>>;
  /** Stops both daemons (by PID) and removes their files. The lab's namespaces stay for the caller to tear down. */
  stop(): Promise<void>;
}

export interface CommitResult {
  /** Wall time of the commit request, as the operator's command experiences it. */
  durationMs: number;
  /** Free-form output of the command, for the record. */
  output: string;
}

/**
 * Factory signature: `conntrackdPair` has it; `ctsyncPair(lab, opts)` is the lead's to write with the same.
 * It builds the topology with syncTopology(lab) unless opts.topo is given, starts both daemons and resolves
 * once they are linked.
 */
export type SyncPairFactory = (lab: Lab, opts: PairOptions) => Promise<SyncPair>;

export interface PairOptions {
  /** Entries the run will hold at most; daemons size their caches/limits from it. Default 1_000_000. */
  capacity?: number;
  /** Directory for configs, sockets, lock files and logs (created if missing). Default: a fresh mkdtemp under /tmp. */
  workDir?: string;
  /** An existing topology to start in. Default: syncTopology(lab). */
  topo?: SyncTopology;
}

// ---------------------------------------------------------------------------------------------------------------
// Workload

const DPORTS = [443, 80, 22, 53, 8080];

/**
 * n distinct established TCP flows, deterministic for (n, offset): client 172.20.x.y:sport → server
 * 172.21.0.z:dport, unNATed. Up to 16 x 65536 x 5 distinct tuples. These addresses never route anywhere:
 * the entries are written straight into the table.
 */
/**
 * A pair's files: opts' workDir, or a fresh one under /tmp named from prefix. remove() deletes it only if it was
 * ours to create; it also runs at process exit until called.
 */
export function pairWorkDir(workDir: string | undefined, prefix: string): { dir: string; remove: () => void } {
  const dir = workDir ?? mkdtempSync(join(tmpdir(), prefix));
  mkdirSync(dir, { recursive: true });
  const remove = (): void => {
    process.off('exit', remove);
    if (workDir === undefined) rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', remove);
  return { dir, remove };
}

export function burstFlows(n: number, offset = 0): Flow[] {
  const flows = new Array<Flow>(n);
  for (let k = 0; k < n; k++) {
    const i = k + offset;
    const src = `172.20.${(i >>> 8) & 255}.${i & 255}`;
    const dst = `172.21.0.${1 + ((i >>> 16) & 15)}`;
    const sport = 10000 + ((i >>> 20) & 1023) * 37 + (i % 7);
    const dport = DPORTS[(i >>> 16) % DPORTS.length]!;
    flows[k] = {
      family: 2,
      orig: { src, dst, proto: 6, sport, dport },
      reply: { src: dst, dst: src, proto: 6, sport: dport, dport: sport },
      status: 0x0e, // SEEN_REPLY | ASSURED | CONFIRMED
      timeout: 3600,
      protoinfo: { tcp: { state: 3, wscaleOrig: 7, wscaleReply: 7, flagsOrig: 0x0b, flagsReply: 0x0b } },
    };
  }
  return flows;
}

export interface BurstResult {
  /** performance.now() when the kernel's ack of the last datagram was read: the "last insert". */
  lastInsertAt: number;
  /** The same moment on CLOCK_MONOTONIC (process.hrtime, ms), the clock a daemon on this host can report in. */
  lastInsertMonoMs: number;
  firstInsertAt: number;
  /** Entries the kernel acked without an error (one pass over a number array: cheap enough to know before polling). */
  created: number;
  /** Counts by outcome and failures by errno; built on demand, after the latency poll (see burst()). */
  report(): WriteReport;
}

/**
 * Creates n flows in ns's conntrack table with batched ctnetlink writes (256 per sendmsg), as fast as the
 * kernel takes them. Flows and datagrams are built before the clock starts, and the clock stops as soon as the
 * last datagram's ack is read: Conntrack.write would first walk all n results for its report, which on this
 * machine put the "last insert" 3-7 ms after the kernel's (a packet capture showed both standbys' last sync data
 * arriving before it). The report is not built here either: making 100k result objects between the last insert and
 * the first poll of the standby sent that poll out 4-25 ms late (third to seventh sessions), for either daemon.
 */
export async function burst(ns: string, n: number, offset = 0): Promise<BurstResult> {
  const batches = createDatagrams(burstFlows(n, offset));
  const ct = new Conntrack({ netns: ns });
  try {
    const firstInsertAt = performance.now();
    const errnos = await ct.sendEncoded(batches);
    const lastInsertAt = performance.now();
    const lastInsertMonoMs = monotonicMs();
    let created = 0;
    for (const errno of errnos) if (errno === 0) created++;
    const report = () => writeReport(errnos.map((errno): WriteResult => (errno === 0 ? { outcome: 'created' } : { outcome: 'failed', errno })), lastInsertAt - firstInsertAt);
    return { firstInsertAt, lastInsertAt, lastInsertMonoMs, created, report };
  } finally {
    ct.close();
  }
}

/** Netlink datagrams creating `flows` (the default write policy), numbered from `seqs`: sendEncoded() sends them. */
export function createDatagrams(flows: Flow[], seqs = new SeqRange()): Datagram[] {
  return encodeBatches(flows, (w, f, seq, ack) => encodeCreate(w, f, DEFAULT_WRITE_POLICY, seq, ack), seqs);
}

/** Entries in ns's kernel table (per-namespace nf_conntrack_count: no dump needed). */
export async function kernelCount(lab: Lab, ns: string): Promise<number> {
  const r = await lab.exec(ns, ['cat', '/proc/sys/net/netfilter/nf_conntrack_count']);
  return Number(r.stdout.trim());
}

// ---------------------------------------------------------------------------------------------------------------
// Process and link counters

/** utime + stime of a process (all threads) in seconds, from /proc/PID/stat; resolution 1/CLK_TCK (10 ms). */
export function cpuSecondsStat(pid: number): number {
  const t = cpuUserSys(pid);
  return t.user + t.sys;
}

/** On-CPU seconds of the main thread and of all the others (GC helpers, JIT compiler, libuv pool), from schedstat. */
export function cpuMainOther(pid: number): { main: number; other: number } {
  const out = { main: 0, other: 0 };
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const secs = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e9;
      if (Number(tid) === pid) out.main += secs;
      else out.other += secs;
    }
  } catch {
    // a thread ended between the listing and the read: its share is simply missing
  }
  return out;
}

/** utime and stime (user and kernel mode, all threads) in seconds, from /proc/PID/stat. */
export function cpuUserSys(pid: number): { user: number; sys: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // comm may contain spaces and parentheses: fields start after the last ')'
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields 14 and 15 of proc(5); CLK_TCK is 100 on Linux x86_64 (getconf CLK_TCK)
  return { user: Number(fields[11]) / 100, sys: Number(fields[12]) / 100 };
}

/** On-CPU time of every thread, nanosecond accounting (/proc/PID/task/TID/schedstat, first field), in seconds. */
export function cpuSeconds(pid: number): number {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    return ns / 1e9;
  } catch {
    return cpuSecondsStat(pid); // schedstat missing (CONFIG_SCHEDSTATS off): tick-based figure
  }
}

/** Resident set size (VmRSS) in bytes. */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

export interface LinkCounters {
  txBytes: number;
  txPackets: number;
  rxBytes: number;
  rxPackets: number;
}

/** The interface's stats64 inside ns. Bytes are L2 frames as the veth counts them (Ethernet header, no FCS). */
export async function linkCounters(lab: Lab, ns: string, ifname: string): Promise<LinkCounters> {
  const r = await lab.ip(ns, ['-j', '-s', 'link', 'show', 'dev', ifname]);
  const s = (JSON.parse(r.stdout) as { stats64: { tx: { bytes: number; packets: number }; rx: { bytes: number; packets: number } } }[])[0]!.stats64;
  return { txBytes: s.tx.bytes, txPackets: s.tx.packets, rxBytes: s.rx.bytes, rxPackets: s.rx.packets };
}

export function diffCounters(a: LinkCounters, b: LinkCounters): LinkCounters {
  return { txBytes: b.txBytes - a.txBytes, txPackets: b.txPackets - a.txPackets, rxBytes: b.rxBytes - a.rxBytes, rxPackets: b.rxPackets - a.rxPackets };
}

// ---------------------------------------------------------------------------------------------------------------
// Waiting

export interface PollResult {
  /** performance.now() of the first poll whose answer satisfied the condition (answer received). */
  doneAt: number;
  /** performance.now() when that poll was sent: the condition became true somewhere in (prevAnswerAt, doneAt]. */
  sentAt: number;
  /** Answer time of the poll before it: the condition was still false then. */
  prevAnswerAt: number;
  polls: number;
  /** Mean time between consecutive polls' answers: the measurement's resolution. */
  meanIntervalMs: number;
  lastValue: number;
  /** When the first poll was sent and answered: splits a slow first answer into our delay and the daemon's. */
  firstSentAt: number;
  firstAnswerAt: number;
}

/**
 * Calls probe back to back (plus intervalMs of sleep) until pred(value) holds or timeoutMs passes. Back-to-back
 * polling costs CPU on the machine; the resolution it reaches is reported, not assumed.
 */
export async function pollUntil(
  probe: () => Promise<number>,
  pred: (v: number) => boolean,
  opts: { intervalMs?: number; timeoutMs?: number } = {},
): Promise<PollResult> {
  const intervalMs = opts.intervalMs ?? 0;
  const deadline = performance.now() + (opts.timeoutMs ?? 60_000);
  const start = performance.now();
  let prevAnswerAt = start;
  let polls = 0;
  let firstSentAt = NaN;
  let firstAnswerAt = NaN;
  for (;;) {
    const sentAt = performance.now();
    const v = await probe();
    const at = performance.now();
    if (polls++ === 0) [firstSentAt, firstAnswerAt] = [sentAt, at];
    if (pred(v)) return { doneAt: at, sentAt, prevAnswerAt, polls, meanIntervalMs: (at - start) / polls, lastValue: v, firstSentAt, firstAnswerAt };
    if (at > deadline) throw new Error(`condition not reached within ${opts.timeoutMs ?? 60_000} ms (last value ${v})`);
    prevAnswerAt = at;
    if (intervalMs > 0) await sleep(intervalMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Waits until the link carries no more than heartbeat-level traffic: at most `maxBytes` (both directions, L2) over
 * the last `windowMs`, sampled every `stepMs`; gives up after `timeoutMs` and returns the last sample with
 * `timedOut`. "No packet at all for 500 ms" (waitQuiet) never happens on a link with keepalives every 500 ms.
 */
export async function waitLinkQuiet(
  f: () => Promise<LinkCounters>,
  opts: { windowMs?: number; maxBytes?: number; stepMs?: number; timeoutMs?: number } = {},
): Promise<{ counters: LinkCounters; at: number; waitedMs: number; timedOut: boolean }> {
  const windowMs = opts.windowMs ?? 500;
  const maxBytes = opts.maxBytes ?? 2048;
  const stepMs = opts.stepMs ?? 50;
  const start = performance.now();
  const deadline = start + (opts.timeoutMs ?? 30_000);
  const samples: { at: number; bytes: number; c: LinkCounters }[] = [];
  for (;;) {
    const c = await f();
    const at = performance.now();
    samples.push({ at, bytes: c.txBytes + c.rxBytes, c });
    // the oldest sample still at least windowMs old decides: drop the ones before it
    while (samples.length > 1 && at - samples[1]!.at >= windowMs) samples.shift();
    const first = samples[0]!;
    if (at - first.at >= windowMs && c.txBytes + c.rxBytes - first.bytes <= maxBytes) return { counters: c, at, waitedMs: at - start, timedOut: false };
    if (at > deadline) return { counters: c, at, waitedMs: at - start, timedOut: true };
    await sleep(stepMs);
  }
}

/** Waits until f() returns the same value for quietMs (sampled every stepMs), e.g. link counters at rest. */
export async function waitQuiet<T>(f: () => Promise<T>, same: (a: T, b: T) => boolean, quietMs = 300, stepMs = 50, timeoutMs = 30_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last = await f();
  let since = performance.now();
  for (;;) {
    await sleep(stepMs);
    const cur = await f();
    if (!same(last, cur)) {
      last = cur;
      since = performance.now();
    } else if (performance.now() - since >= quietMs) return cur;
    if (performance.now() > deadline) return cur;
  }
}
