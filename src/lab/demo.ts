// The ctsync failover lab: ctsync on both firewalls wired through keepalived (FIFO + track file), one measured
// failover or failback at a time, and the narrated `ctsync lab` run built from them.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dumpDocument, request } from '../control/client.js';
import type { DaemonStats } from '../daemon/stats.js';
import type { TransitionResult } from '../ha/machine.js';
import { NOT_READY } from '../ha/readiness.js';
import { failoverLab, FIREWALLS, type FailoverLab, type FirewallNode, type FwName } from './failover.js';
import { Lab, LabError, type LabProcess } from './netns.js';
import { tcpStream, udpStream, type TcpStream, type UdpStream } from './traffic.js';

/** ctsync's peer-link port on the sync link. */
const SYNC_PORT = 3780;
const LOG_LINES = 60;
const TCP_PORT = 7001;
const UDP_PORT = 7002;

export const other = (fw: FwName): FwName => (fw === 'fw1' ? 'fw2' : 'fw1');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `ctsync stats --json` with the HA part typed as far as this lab reads it. */
export type LabStats = Omit<DaemonStats, 'ha'> & {
  ha?: { role: string; ready: boolean; notReady: string[]; trackFile: string; lastTransition: TransitionResult | null };
};

/** One firewall's ctsync: its files and, while powered, its process. */
export interface CtsyncNode {
  name: FwName;
  conf: string;
  socket: string;
  /** keepalived's track_file, written by the daemon: 0 = in sync, non-zero = keep me out of the election. */
  trackFile: string;
  fifo: string;
  proc?: LabProcess;
  /** The daemon's last log lines (this boot and earlier ones), for failure messages. */
  log: string[];
  /** How many times the daemon was started (1 at build, +1 per power-on). */
  boots: number;
}

export interface CtsyncLabOptions {
  /** The built CLI, dist/src/cli/main.js: run as `node BIN daemon` and from keepalived's FIFO script. */
  bin: string;
  /** false = the control run: no ctsync and no hooks, the standby takes over with an empty table. Default true. */
  sync?: boolean;
  /** VRRP advert interval (s). Default 0.2 (failoverLab's default). */
  advertIntSec?: number;
  /** The daemons' log.level. Default info. */
  logLevel?: string;
  /** Firewalls that run as a warm standby (commit.warm: the peer's flows follow into their kernel). Default none. */
  warm?: FwName[];
  onKeepalivedLog?: (fw: FwName, line: string) => void;
  onDaemonLog?: (fw: FwName, line: string) => void;
}

/**
 * The failover lab (failoverLab) with ctsync running on both firewalls: started before keepalived at build and at
 * every power-on, reached by keepalived through `ctsync notify-fifo` (ordered transitions), and feeding readiness
 * back through the track file (weight 0: non-zero = FAULT), so a node that is not in sync cannot become master.
 */
export class CtsyncLab {
  readonly nodes: Partial<Record<FwName, CtsyncNode>> = {};
  readonly sync: boolean;
  /** At the next power-on, keep the firewall's sync link down for this long after its links come up (0 = no). */
  syncLinkDelayMs = 0;
  private readonly key = `${randomBytes(32).toString('hex')}\n`;
  private failover?: FailoverLab;

  private constructor(
    readonly lab: Lab,
    private readonly opts: CtsyncLabOptions,
  ) {
    this.sync = opts.sync ?? true;
  }

  get fl(): FailoverLab {
    if (!this.failover) throw new LabError('the lab is not built yet');
    return this.failover;
  }

  /** Builds the lab in `lab` and returns once fw1 is master (with ctsync: once both daemons are in sync). */
  static async build(lab: Lab, opts: CtsyncLabOptions): Promise<CtsyncLab> {
    const cl = new CtsyncLab(lab, opts);
    cl.failover = await failoverLab(lab, {
      ...(opts.advertIntSec !== undefined ? { advertIntSec: opts.advertIntSec } : {}),
      onLog: opts.onKeepalivedLog,
      ...(cl.sync ? { hooks: (fw: FirewallNode) => cl.hooks(fw), beforeKeepalived: (fw: FirewallNode, boot: 'initial' | 'power-on') => cl.startDaemon(fw, boot) } : {}),
      // both nodes start not ready (track file non-zero) until their daemons have synced: the first master may take a while
      waitForInitialMaster: false,
    });
    await cl.failover.waitForMaster('fw1', 30_000);
    return cl;
  }

  node(fw: FwName): CtsyncNode {
    const n = this.nodes[fw];
    if (!n) throw new LabError(`no ctsync on ${fw} (control run?)`);
    return n;
  }

  private paths(fw: FirewallNode): Pick<CtsyncNode, 'conf' | 'socket' | 'trackFile' | 'fifo'> {
    return { conf: join(fw.dir, 'ctsync.yaml'), socket: join(fw.dir, 'ctsync.sock'), trackFile: join(fw.dir, 'ready'), fifo: join(fw.dir, 'keepalived.fifo') };
  }

  private hooks(fw: FirewallNode) {
    const p = this.paths(fw);
    return {
      // keepalived appends the FIFO path as the last argument; the reader runs until keepalived closes the FIFO
      fifo: { path: p.fifo, script: `${process.execPath} ${this.opts.bin} notify-fifo --socket ${p.socket}` },
      // a fresh boot is not ready until the daemon says so: the lab writes this before every boot
      trackFile: { path: p.trackFile, init: NOT_READY },
    };
  }

  private config(fw: FirewallNode, p: ReturnType<CtsyncLab['paths']>): string {
    const peer = other(fw.name);
    return [
      `# ctsync on ${fw.name} in the failover lab (written at every boot)`,
      `nodeId: ${fw.name}`,
      'clusterId: lab',
      `listen: ${fw.sync.v4}:${SYNC_PORT}`,
      'peers:',
      `  - id: ${peer}`,
      `    addresses: ['${fw.sync.peerV4}:${SYNC_PORT}']`,
      `security: { keyFile: ${join(fw.dir, 'cluster.key')} }`,
      `control: { socket: ${p.socket} }`,
      "metrics: { listen: '' }",
      `log: { level: ${this.opts.logLevel ?? 'info'} }`,
      'link: { heartbeat: 200ms, deadAfter: 1s }',
      'sync: { digestInterval: 5s, refreshInterval: 5s }',
      `ha: { trackFile: ${p.trackFile} }`,
      ...(this.opts.warm?.includes(fw.name) ? ['commit: { warm: true }'] : []),
      '',
    ].join('\n');
  }

  /** beforeKeepalived: write the config and key, start the daemon, wait until its control socket answers. */
  private async startDaemon(fw: FirewallNode, boot: 'initial' | 'power-on'): Promise<void> {
    const p = this.paths(fw);
    if (boot === 'power-on' && this.syncLinkDelayMs > 0) {
      // A slow peer link at boot: the node must stay out of the election until its peer's table has arrived.
      const ms = this.syncLinkDelayMs;
      await this.lab.setLink(fw.ns, fw.sync.ifname, 'down');
      setTimeout(() => void (this.fl.isPowered(fw.name) ? this.lab.setLink(fw.ns, fw.sync.ifname, 'up').catch(() => {}) : undefined), ms).unref();
    }
    const n: CtsyncNode = this.nodes[fw.name] ?? { name: fw.name, ...p, log: [], boots: 0 };
    this.nodes[fw.name] = n;
    writeFileSync(join(fw.dir, 'cluster.key'), this.key, { mode: 0o600 });
    writeFileSync(p.conf, this.config(fw, p));
    n.boots++;
    const log = (line: string): void => {
      n.log.push(line);
      if (n.log.length > LOG_LINES) n.log.shift();
      this.opts.onDaemonLog?.(fw.name, line);
    };
    const proc = this.lab.spawn(fw.ns, [process.execPath, this.opts.bin, 'daemon', '-c', p.conf], { onLine: log, onErrLine: log });
    n.proc = proc;
    const until = Date.now() + 30_000;
    for (;;) {
      try {
        await request(p.socket, 'stats', {}, undefined, 2000);
        return;
      } catch {
        if (!proc.running) throw new LabError(`ctsync on ${fw.name} exited at start: ${n.log.slice(-8).join(' | ')}`);
        if (Date.now() > until) throw new LabError(`ctsync on ${fw.name} did not answer on ${p.socket} within 30 s: ${n.log.slice(-8).join(' | ')}`);
        await sleep(50);
      }
    }
  }

  /** `ctsync stats --json` of a firewall's daemon. */
  async stats(fw: FwName): Promise<LabStats> {
    return (await request(this.node(fw).socket, 'stats', {}, undefined, 5000)) as LabStats;
  }

  /** The flows a firewall's daemon holds for its peer (`ctsync dump --peer`), as `ct list --json` objects. */
  async peerFlows(fw: FwName): Promise<JsonFlow[]> {
    return (JSON.parse(await dumpDocument(this.node(fw).socket, { table: 'peer' }, 5000)) as { flows: JsonFlow[] }).flows;
  }

  /** The track file's current content, trimmed ('' when missing). */
  track(fw: FwName): string {
    const path = this.node(fw).trackFile;
    return existsSync(path) ? readFileSync(path, 'utf8').trim() : '';
  }

  /**
   * Waits until `fw`'s daemon reports inSync and holds every `wanted` flow of its peer (matched by protocol and
   * the client's source port). Returns the stats and how many peer flows it holds.
   */
  async waitInSync(fw: FwName, wanted: { l4: 'tcp' | 'udp'; sport: number }[], timeoutMs = 20_000): Promise<{ stats: LabStats; peerFlows: number }> {
    const until = Date.now() + timeoutMs;
    let last = 'no answer yet';
    for (;;) {
      try {
        const stats = await this.stats(fw);
        const flows = await this.peerFlows(fw);
        const missing = wanted.filter((w) => !flows.some((f) => f.l4 === w.l4 && f.orig.sport === w.sport));
        if (stats.inSync && missing.length === 0) return { stats, peerFlows: flows.length };
        last = `inSync ${stats.inSync}, ${flows.length} peer flows, missing ${missing.map((m) => `${m.l4}/${m.sport}`).join(' ') || 'none'}`;
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > until) throw new LabError(`${fw} not in sync within ${timeoutMs} ms (${last}); daemon log: ${this.node(fw).log.slice(-6).join(' | ')}`);
      await sleep(100);
    }
  }

  /** Waits for the daemon's record of a finished MASTER transition newer than `since` (Date.now() value). */
  async waitForMasterTransition(fw: FwName, since: number, timeoutMs = 15_000): Promise<TransitionResult | undefined> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      try {
        const t = (await this.stats(fw)).ha?.lastTransition;
        if (t && t.state === 'MASTER' && Date.parse(t.at) >= since) return t;
      } catch {
        // the daemon may be busy committing or (at power-on) not up yet
      }
      await sleep(50);
    }
    return undefined;
  }

  /** Packets a firewall's strict ruleset dropped, per reason (its counters). */
  async dropCounters(fw: FwName): Promise<{ invalid: number; notSyn: number }> {
    const r = await this.lab.exec(this.fl.fw[fw].ns, ['nft', 'list', 'chain', 'inet', 'ctslab', 'forward'], { allowFail: true });
    const count = (re: RegExp): number => Number(re.exec(r.stdout)?.[1] ?? 0);
    return { invalid: count(/ct state invalid counter packets (\d+)/), notSyn: count(/tcp flags != syn[^\n]* counter packets (\d+)/) };
  }

  /** Stops keepalived (releasing the VIPs) and removes the lab's files; lab.teardown() does the rest. Idempotent. */
  async close(): Promise<void> {
    await this.failover?.close();
  }
}

/** The fields of a `ct list --json` flow this lab reads. */
export interface JsonFlow {
  l4: string;
  orig: { src: string; dst: string; sport?: number; dport?: number };
}

/** The two streams every run watches: TCP echo client → server, UDP server → client. */
export interface Streams {
  tcp: TcpStream;
  udp: UdpStream;
}

/** Starts both streams through the current master and waits until each has delivered a few messages. */
export async function startStreams(cl: CtsyncLab): Promise<Streams> {
  const fl = cl.fl;
  const e = { clientNs: fl.client.ns, serverNs: fl.server.ns, host: fl.server.v4 };
  const tcp = await tcpStream(cl.lab, { ...e, port: TCP_PORT, intervalMs: 100 });
  const udp = await udpStream(cl.lab, { ...e, port: UDP_PORT, intervalMs: 50 });
  await tcp.waitForEchoes(5);
  await udp.waitForDatagrams(5);
  return { tcp, udp };
}

/** The stream flows as the standby must hold them: protocol and the client's source port. */
export function streamFlows(s: Streams): { l4: 'tcp' | 'udp'; sport: number }[] {
  if (!s.tcp.stats.local || !s.udp.stats.local) throw new LabError('the streams have not reported their local ports yet');
  return [
    { l4: 'tcp', sport: s.tcp.stats.local.port },
    { l4: 'udp', sport: s.udp.stats.local.port },
  ];
}

/** One measured change of master: what the streams saw and what ctsync reported. */
export interface PhaseResult {
  kind: 'failover' | 'failback';
  from: FwName;
  to: FwName;
  /** Power event → the new master alone holds both VIPs. */
  takeoverMs: number;
  tcp: { survived: boolean; gapMs: number; outOfOrder: number; echoedAfter: number; error?: string; closed: boolean };
  udp: { survived: boolean; gapMs: number; lost: number; receivedAfter: number };
  /** The new master's MASTER transition (with ctsync; undefined if none was recorded in time). */
  transition?: TransitionResult;
  /** The new master's strict ruleset drops during the phase. */
  dropped: { invalid: number; notSyn: number };
  /** Failback: every track-file value the powered-on node had, with ms since power-on. */
  trackTimeline?: { atMs: number; value: string }[];
  /** Failback: the powered-on node held the VIPs while its track file said "not in sync". */
  masterWhileNotReady?: boolean;
}

export interface PhaseOptions {
  /** How long a stream gets, after the takeover, to deliver `resumeCount` more messages. Default 15000 ms. */
  resumeTimeoutMs?: number;
  resumeCount?: number;
  /** Progress lines for a person (the demo); the test leaves it out. */
  say?: (line: string) => void;
  /** Failback: the powered-on node's sync link stays down this long after power-on (a slow peer link). */
  syncLinkDelayMs?: number;
}

/**
 * The active (fw1) loses power ('failover'), or comes back and takes over again ('failback'). Returns once both
 * streams delivered resumeCount more messages after the takeover, or resumeTimeoutMs passed.
 */
export async function runPhase(cl: CtsyncLab, s: Streams, kind: 'failover' | 'failback', o: PhaseOptions = {}): Promise<PhaseResult> {
  const fl = cl.fl;
  const say = o.say ?? ((): void => {});
  const from: FwName = kind === 'failover' ? 'fw1' : 'fw2';
  const to = other(from);
  const dropsBefore = await cl.dropCounters(to);
  const tcp0 = { echoed: s.tcp.stats.echoed, outOfOrder: s.tcp.stats.outOfOrder };
  const udp0 = { received: s.udp.stats.received, lost: s.udp.stats.lastSeq - s.udp.stats.received };
  s.tcp.stats.maxGapMs = 0;
  s.udp.stats.maxGapMs = 0;

  let powerAt: number;
  let trackTimeline: PhaseResult['trackTimeline'];
  let masterWhileNotReady: boolean | undefined;
  let masterAt: number;
  if (kind === 'failover') {
    say(`${from} loses power: its links go down, keepalived${cl.sync ? ' and ctsync' : ''} get${cl.sync ? '' : 's'} SIGKILL`);
    powerAt = await fl.powerLoss(from);
    masterAt = await fl.waitForMaster(to, 15_000);
  } else {
    // Watch fw1's track file and the VIPs from the moment it boots: it must not hold the VIPs before it is in sync.
    powerAt = Date.now();
    trackTimeline = [];
    masterWhileNotReady = false;
    let watching = true;
    const timeline = trackTimeline;
    // Only this boot's values: the file still holds what the node wrote before it lost power until boot resets it.
    const bootsBefore = cl.nodes[to]?.boots ?? 0;
    const watch = (async (): Promise<void> => {
      while (watching) {
        const booted = cl.sync && (cl.nodes[to]?.boots ?? 0) > bootsBefore;
        const master = fl.isPowered(to) ? await fl.whoIsMaster() : null;
        const value = booted ? cl.track(to) : '';
        if (booted && timeline.at(-1)?.value !== value) {
          timeline.push({ atMs: Date.now() - powerAt, value });
          say(`${to} track file: ${value || '(none)'}${value === '0' ? ' = in sync, may become master' : value ? ' = not in sync, keepalived keeps it in FAULT' : ''}`);
        }
        if (cl.sync && master === to && value !== '0') masterWhileNotReady = true;
        await sleep(20);
      }
    })();
    say(`${to} power restored: memory empty, ${cl.sync ? 'ctsync starts (and asks fw2 for its table), then keepalived' : 'keepalived starts'}`);
    cl.syncLinkDelayMs = o.syncLinkDelayMs ?? 0;
    if (cl.syncLinkDelayMs) say(`${to}'s sync link will stay down for ${cl.syncLinkDelayMs / 1000} s after power-on`);
    try {
      await fl.powerOn(to);
      masterAt = await fl.waitForMaster(to, 45_000);
    } finally {
      cl.syncLinkDelayMs = 0;
      watching = false;
      await watch;
    }
  }
  const takeoverMs = masterAt - powerAt;
  say(`${to} is master: it holds both VIPs ${(takeoverMs / 1000).toFixed(1)} s after the ${kind === 'failover' ? 'power loss' : 'power-on'}`);

  const transitionP = cl.sync ? cl.waitForMasterTransition(to, powerAt) : Promise.resolve(undefined);
  void transitionP.then((t) => t && say(`${to} ctsync: ${describeTransition(t)}`));
  const timeout = o.resumeTimeoutMs ?? 15_000;
  const n = o.resumeCount ?? 20;
  const [tcpR, udpR] = await Promise.allSettled([
    s.tcp.waitForEchoes(s.tcp.stats.echoed + n, timeout).then(() => say(`TCP stream flows again: longest gap ${s.tcp.stats.maxGapMs} ms`)),
    s.udp.waitForDatagrams(s.udp.stats.received + n, timeout).then(() => say(`UDP stream flows again: longest gap ${s.udp.stats.maxGapMs} ms`)),
  ]);
  const transition = await transitionP;
  const dropsAfter = await cl.dropCounters(to);
  const t = s.tcp.stats;
  const outOfOrder = t.outOfOrder - tcp0.outOfOrder;
  const result: PhaseResult = {
    kind,
    from,
    to,
    takeoverMs,
    tcp: {
      survived: tcpR.status === 'fulfilled' && t.error === undefined && !t.closed && outOfOrder === 0,
      gapMs: t.maxGapMs,
      outOfOrder,
      echoedAfter: t.echoed - tcp0.echoed,
      ...(t.error !== undefined ? { error: t.error } : {}),
      closed: t.closed,
    },
    udp: {
      survived: udpR.status === 'fulfilled',
      gapMs: s.udp.stats.maxGapMs,
      lost: s.udp.stats.lastSeq - s.udp.stats.received - udp0.lost,
      receivedAfter: s.udp.stats.received - udp0.received,
    },
    ...(transition ? { transition } : {}),
    dropped: { invalid: dropsAfter.invalid - dropsBefore.invalid, notSyn: dropsAfter.notSyn - dropsBefore.notSyn },
    ...(trackTimeline ? { trackTimeline, masterWhileNotReady } : {}),
  };
  if (!result.tcp.survived) {
    const why = t.error !== undefined ? `error ${t.error}${t.error === '104' ? ' (ECONNRESET)' : ''}` : t.closed ? 'closed' : outOfOrder ? `${outOfOrder} lines out of order` : `no echo for ${timeout / 1000} s`;
    say(`TCP stream DIED: ${why}; ${to} dropped ${result.dropped.invalid} packets as INVALID, ${result.dropped.notSyn} as new-without-SYN`);
  }
  if (!result.udp.survived) say(`UDP stream DIED: ${result.udp.receivedAfter} datagrams in ${timeout / 1000} s after the takeover (policy drop on ${to})`);
  return result;
}

/** "MASTER ok in 12 ms: committed 2 flows (created 2) in 3.1 ms". */
export function describeTransition(t: TransitionResult): string {
  let s = `${t.state} ${t.result} in ${t.durationMs} ms`;
  if (t.commit) {
    const c = t.commit;
    const counts = Object.entries(c.counts).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(', ') || 'nothing to write';
    const errnos = Object.entries(c.failedByErrno).map(([k, v]) => `${k} ${v}`).join(', ');
    s += `: committed ${c.entries} flows (${counts}${errnos ? `; failed by errno: ${errnos}` : ''}) in ${c.durationMs} ms`;
  }
  if (t.error) s += ` (${t.error})`;
  return s;
}

/** One summary line per phase, for the demo and the test's output. */
export function describePhase(p: PhaseResult): string {
  const tcp = p.tcp.survived ? `TCP gap ${p.tcp.gapMs} ms, in order, no RST` : `TCP DIED${p.tcp.error ? ` (error ${p.tcp.error})` : ''}`;
  const udp = p.udp.survived ? `UDP gap ${p.udp.gapMs} ms (${p.udp.lost} datagram${p.udp.lost === 1 ? '' : 's'} lost)` : 'UDP DIED';
  const commit = p.transition?.commit ? `; commit ${p.transition.commit.entries} flows in ${p.transition.commit.durationMs} ms` : '';
  return `${p.kind} ${p.from}→${p.to}: takeover ${p.takeoverMs} ms after the power ${p.kind === 'failover' ? 'loss' : 'on'}; ${tcp}; ${udp}${commit}`;
}

// ----------------------------------------------------------------------------------------------------------------
// `ctsync lab`: the narrated run.

export interface DemoOptions {
  bin: string;
  advertIntSec: number;
  /** Leave the lab running after the run until Ctrl-C. */
  keep: boolean;
  /** false = the control run without ctsync. */
  sync: boolean;
  /** Where the narration goes. Default stdout. */
  out?: (line: string) => void;
}

const DEMO_PREFIX = 'ctsl-';

/** What the demo needs from the machine, or why it cannot run. */
export function demoPrerequisites(): string | undefined {
  if (process.getuid?.() !== 0) return 'ctsync lab needs root: it creates network namespaces, nftables rulesets and conntrack entries';
  for (const bin of ['ip', 'nft', 'conntrack', 'python3', 'keepalived']) {
    try {
      execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    } catch {
      return `ctsync lab needs ${bin} on PATH (bash scripts/install.sh installs it)`;
    }
  }
  return undefined;
}

/**
 * Builds the lab (namespaces ctsl-*), runs a failover and a failback while both streams flow, narrates it, tears
 * everything down (also on Ctrl-C) and returns the exit code: 0 when both streams survived every phase, else 1.
 */
export async function runDemo(o: DemoOptions): Promise<number> {
  const write = o.out ?? ((l: string): void => void process.stdout.write(`${l}\n`));
  const t0 = Date.now();
  const say = (l: string): void => write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${l}`);
  const stale = Lab.sweep(DEMO_PREFIX);
  if (stale.length) say(`removed the leftovers of an earlier lab: ${stale.join(' ')}`);

  const lab = new Lab({ prefix: DEMO_PREFIX });
  let cl: CtsyncLab | undefined;
  let streams: Streams | undefined;
  let ticker: { stop(): void } | undefined;
  let finishing: Promise<void> | undefined;
  const teardown = (): Promise<void> =>
    (finishing ??= (async () => {
      ticker?.stop();
      await streams?.tcp.stop().catch(() => {});
      await streams?.udp.stop().catch(() => {});
      await cl?.close().catch(() => {});
      await lab.teardown();
    })());

  // Ctrl-C (or a kill) at any point: tear down, then exit. netns.ts and failover.ts also clean up synchronously.
  let interrupted: NodeJS.Signals | undefined;
  let result = 1;
  let keepWait: (() => void) | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = sig;
    if (keepWait) return keepWait();
    write('');
    say(`${sig}: tearing the lab down`);
    void teardown().finally(() => {
      say(`lab removed (namespaces ${lab.prefix}*-${lab.suffix})`);
      process.exit(130);
    });
  };
  const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of SIGNALS) process.on(s, onSignal);

  try {
    write(`ctsync lab: an HA firewall pair in network namespaces ${lab.prefix}*-${lab.suffix}, ${o.sync ? 'with' : 'WITHOUT'} ctsync${o.sync ? '' : ' (the control run)'}`);
    say('building: client — inside switch — fw1 | fw2 — outside switch — server, plus a sync link fw1 ⇄ fw2');
    cl = await CtsyncLab.build(lab, {
      bin: o.bin,
      sync: o.sync,
      advertIntSec: o.advertIntSec,
      onKeepalivedLog: (fw, line) => {
        // one instance stands for the sync group (both move together)
        const m = /\(CTS_IN\) Entering (MASTER|BACKUP|FAULT) STATE/.exec(line);
        if (m) say(`${fw} keepalived: VRRP ${m[1]}`);
      },
    });
    const fl = cl.fl;
    write(`    client ${fl.client.v4} → inside VIP ${fl.vips.inside} → fw1 ${fl.fw.fw1.lan.v4} | fw2 ${fl.fw.fw2.lan.v4} → outside VIP ${fl.vips.outside} → server ${fl.server.v4}`);
    write('    both firewalls: nftables forward policy drop, only established/related and a pure SYN from inside, nf_conntrack_tcp_loose=0');
    write(`    keepalived: VRRPv3 unicast, advert_int ${o.advertIntSec} s, preempt; one sync group CTS_G for both VIPs`);
    if (o.sync) {
      write(`    ctsync: peer link ${fl.fw.fw1.sync.v4} ⇄ ${fl.fw.fw2.sync.v4}:${SYNC_PORT} (TLS, pre-shared key); keepalived → \`ctsync notify-fifo\`; ctsync → track_file (0 = in sync)`);
      write(`    try meanwhile: ctsync stats --socket ${cl.node('fw2').socket}`);
    }
    say('fw1 is master (holds both VIPs)');

    streams = await startStreams(cl);
    const s = streams;
    say(`TCP echo stream ${fl.client.v4}:${s.tcp.stats.local?.port} → ${fl.server.v4}:${TCP_PORT}, a line every 100 ms`);
    say(`UDP stream ${fl.server.v4}:${UDP_PORT} → ${fl.client.v4}:${s.udp.stats.local?.port}, a datagram every 50 ms`);
    ticker = startTicker(cl, s, say);

    if (o.sync) {
      say('waiting until fw2 holds both stream flows and ctsync says it is in sync...');
      const { stats, peerFlows } = await cl.waitInSync('fw2', streamFlows(s));
      say(`fw2 in sync: it holds ${peerFlows} of fw1's flows (both streams among them); fw1's kernel has ${(await cl.stats('fw1')).kernel.entries} synced flows, fw2's track file ${cl.track('fw2')}${stats.ha ? `, role ${stats.ha.role}` : ''}`);
    } else {
      say('no ctsync: fw2 knows nothing of the streams');
    }
    await sleep(2000);

    const phases: PhaseResult[] = [];
    const failover = await runPhase(cl, s, 'failover', { say, ...(o.sync ? {} : { resumeTimeoutMs: 8000 }) });
    phases.push(failover);
    if (o.sync && failover.tcp.survived && failover.udp.survived) {
      await sleep(2000);
      phases.push(await runPhase(cl, s, 'failback', { say }));
    } else if (!o.sync) {
      say('no failback in the control run: the streams are already dead');
    }
    ticker.stop();

    write('');
    write('summary');
    for (const p of phases) write(`  ${describePhase(p)}`);
    for (const p of phases) if (p.transition) write(`  ${p.to} ctsync ${describeTransition(p.transition)}`);
    for (const p of phases) {
      if (p.masterWhileNotReady) write(`  WARNING: ${p.to} held the VIPs while its track file said it was not in sync`);
      else if (p.trackTimeline?.length) write(`  ${p.to} track file after power-on: ${p.trackTimeline.map((x) => `${x.value || '-'} at ${x.atMs} ms`).join(', ')}; VIPs taken only once in sync`);
    }
    const survived = phases.every((p) => p.tcp.survived && p.udp.survived && !p.masterWhileNotReady) && (!o.sync || phases.length === 2);
    result = survived ? 0 : 1;
    write(
      survived
        ? 'RESULT: both streams survived the failover and the failback: every TCP line echoed in order, no reset'
        : o.sync
          ? 'RESULT: a stream did NOT survive (see above)'
          : 'RESULT: without ctsync the standby has no state: the TCP stream died at failover (run without --no-sync to see it survive)',
    );

    if (o.keep && !interrupted) {
      write('');
      write(`the lab stays up (--keep); Ctrl-C tears it down. Namespaces: ${lab.names.join(' ')}`);
      if (o.sync) for (const fw of FIREWALLS) write(`  ctsync stats --socket ${cl.node(fw).socket}`);
      write(`  ip netns exec ${fl.fw.fw1.ns} conntrack -L`);
      await new Promise<void>((r) => (keepWait = r));
      say(`${interrupted ?? 'signal'}: tearing the lab down`);
    }
  } catch (err) {
    if (!interrupted) {
      say(`FAILED: ${(err as Error).message}`);
      for (const fw of FIREWALLS) {
        const n = cl?.nodes[fw];
        if (n?.log.length) write(`  ${fw} ctsync log tail:\n    ${n.log.slice(-6).join('\n    ')}`);
        if (cl) write(`  ${fw} keepalived log tail:\n    ${cl.fl.keepalivedLog(fw).slice(-6).join('\n    ')}`);
      }
    }
    result = 1;
  } finally {
    if (interrupted && !keepWait) {
      // the signal handler tears down and exits
      await new Promise(() => {});
    }
    await teardown();
    for (const s of SIGNALS) process.off(s, onSignal);
    say(`lab removed (namespaces ${lab.prefix}*-${lab.suffix} deleted, processes stopped)`);
  }
  return result;
}

/** A line a second so a person sees the streams tick, stall and resume, and who is master. */
function startTicker(cl: CtsyncLab, s: Streams, say: (l: string) => void): { stop(): void } {
  let last = { tcp: s.tcp.stats.lastLine, udp: s.udp.stats.lastSeq, at: Date.now() };
  let stall = { tcp: 0, udp: 0 };
  let busy = false;
  let stopped = false;
  const t = setInterval(() => {
    if (busy || stopped) return;
    busy = true;
    void (async () => {
      const now = Date.now();
      const master = await cl.fl.whoIsMaster().catch(() => null);
      const tcpLine = s.tcp.stats.lastLine;
      const udpSeq = s.udp.stats.lastSeq;
      stall = { tcp: tcpLine === last.tcp ? stall.tcp + (now - last.at) : 0, udp: udpSeq === last.udp ? stall.udp + (now - last.at) : 0 };
      const tcp = stall.tcp ? `TCP stalled ${(stall.tcp / 1000).toFixed(1)} s at line ${tcpLine}` : `TCP line ${tcpLine} echoed`;
      const udp = stall.udp ? `UDP stalled ${(stall.udp / 1000).toFixed(1)} s at seq ${udpSeq}` : `UDP seq ${udpSeq} received`;
      if (!stopped) say(`  · ${tcp.padEnd(32)} ${udp.padEnd(32)} master: ${master ?? 'none'}`);
      last = { tcp: tcpLine, udp: udpSeq, at: now };
      busy = false;
    })();
  }, 1000);
  return {
    stop() {
      stopped = true;
      clearInterval(t);
    },
  };
}
