// The HA failover lab: client ↔ inside switch ↔ two strict firewalls under keepalived ↔ outside switch ↔ server, plus power cuts.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { keepalivedConfig, type KeepalivedHooks, type KeepalivedSpec } from './keepalived.js';
import { LabError, type Lab, type LabProcess } from './netns.js';
import { assertNoHostOverlap, LAB_V4_BASE, makeRouter, routerRuleset } from './topology.js';

export type FwName = 'fw1' | 'fw2';
export const FIREWALLS: readonly FwName[] = ['fw1', 'fw2'];

export interface LabIf {
  ifname: string;
  v4: string;
}

/** One firewall node: its namespace, links, and a private directory for its keepalived (and the caller's) files. */
export interface FirewallNode {
  name: FwName;
  ns: string;
  lan: LabIf;
  wan: LabIf;
  /** The dedicated sync link to the other firewall (a /30 veth): ctsync's peer link. */
  sync: LabIf & { peerV4: string; prefixLen: number };
  priority: number;
  /** Per-firewall temp directory (keepalived.conf, pid files); removed by close(). Put ctsync's files here too. */
  dir: string;
  confPath: string;
}

export interface FailoverLabOptions {
  /** VRRP advert interval in seconds (VRRPv3, steps of 0.01). Default 0.2, as in DOMAIN.md's lab figures. */
  advertIntSec?: number;
  /** VRRP priorities; fw1 must be the higher for "fw1 is the active node" to hold. Default 150 and 100. */
  priorities?: Record<FwName, number>;
  /** Third octets of the inside, outside and sync subnets in 10.77.0.0/16. Default 21, 22, 23. */
  subnets?: { inside: number; outside: number; sync: number };
  /**
   * keepalived hooks per firewall (notify scripts, FIFO, track file): plug `ctsync notify ...` in here. Called at
   * every boot of a firewall; keep it pure. The lab writes trackFile.init into the track file before each boot.
   */
  hooks?: (fw: FirewallNode) => KeepalivedHooks;
  /**
   * Runs after a firewall's links are up and before its keepalived starts: at build ('initial') and after every
   * powerOn ('power-on'). Start the ctsync daemon here, e.g. `lab.spawn(fw.ns, [...])`; powerLoss kills it.
   */
  beforeKeepalived?: (fw: FirewallNode, boot: 'initial' | 'power-on') => Promise<void>;
  /** Wait until fw1 holds both VIPs before returning. Default true. */
  waitForInitialMaster?: boolean;
  /** Every keepalived log line (also kept: keepalivedLog()). */
  onLog?: (fw: FwName, line: string) => void;
}

export interface Host {
  ns: string;
  ifname: string;
  v4: string;
}

const LAN = 'lan0';
const WAN = 'wan0';
const SYNC = 'sync0';
const LOG_LINES = 300;
const execFileP = promisify(execFile);

/** A built failover lab. Namespaces belong to the Lab (lab.teardown() deletes them); close() ends what this adds. */
export class FailoverLab {
  private readonly powered: Record<FwName, boolean> = { fw1: true, fw2: true };
  private readonly keepalived: Partial<Record<FwName, LabProcess>> = {};
  private readonly logs: Record<FwName, string[]> = { fw1: [], fw2: [] };
  private closed = false;

  constructor(
    readonly lab: Lab,
    readonly client: Host,
    readonly server: Host,
    /** The client's gateway (inside) and the server's route back (outside). */
    readonly vips: { inside: string; outside: string },
    readonly fw: Record<FwName, FirewallNode>,
    /** The nft ruleset both firewalls load. */
    readonly ruleset: string,
    /** Root temp directory (holds fw1/ and fw2/). */
    readonly dir: string,
    private readonly opts: FailoverLabOptions,
  ) {}

  /** False between powerLoss and powerOn. */
  isPowered(fw: FwName): boolean {
    return this.powered[fw];
  }

  /** The last keepalived log lines of a firewall (stdout and stderr), for failure messages. */
  keepalivedLog(fw: FwName): readonly string[] {
    return this.logs[fw];
  }

  /** Writes the firewall's config and starts keepalived in the foreground; killed by powerLoss, stopped by close. */
  async startKeepalived(name: FwName): Promise<LabProcess> {
    const fw = this.fw[name];
    const hooks = this.opts.hooks?.(fw) ?? {};
    writeFileSync(fw.confPath, keepalivedConfig(this.keepalivedSpec(fw, hooks)));
    for (const f of ['keepalived.pid', 'vrrp.pid', 'checkers.pid']) rmSync(join(fw.dir, f), { force: true });
    const log = (line: string): void => {
      const buf = this.logs[name];
      buf.push(line);
      if (buf.length > LOG_LINES) buf.shift();
      this.opts.onLog?.(name, line);
    };
    // -n foreground (we own the PID), -P VRRP only, -l/-D detailed log on the console, -G never the host's syslog.
    const argv = ['keepalived', '-n', '-P', '-l', '-D', '-G', '-f', fw.confPath];
    argv.push('-p', join(fw.dir, 'keepalived.pid'), '-r', join(fw.dir, 'vrrp.pid'), '-c', join(fw.dir, 'checkers.pid'));
    const proc = this.lab.spawn(fw.ns, argv, { onLine: log, onErrLine: log });
    this.keepalived[name] = proc;
    return proc;
  }

  /** The keepalived spec of one firewall: public so a demo or a test can print or check the config. */
  keepalivedSpec(fw: FirewallNode, hooks: KeepalivedHooks): KeepalivedSpec {
    const other = this.fw[fw.name === 'fw1' ? 'fw2' : 'fw1'];
    return {
      routerId: `${this.lab.prefix.replace(/-$/, '')}_${fw.name}`,
      priority: fw.priority,
      advertIntSec: this.opts.advertIntSec ?? 0.2,
      instances: [
        { name: 'CTS_IN', interface: LAN, virtualRouterId: 51, srcIp: fw.lan.v4, peers: [other.lan.v4], vips: [`${this.vips.inside}/24`] },
        { name: 'CTS_OUT', interface: WAN, virtualRouterId: 52, srcIp: fw.wan.v4, peers: [other.wan.v4], vips: [`${this.vips.outside}/24`] },
      ],
      hooks,
    };
  }

  /** A firewall's software start as at boot: track file reset (a tmpfs would be empty), hook, keepalived. Used by failoverLab and powerOn. */
  async boot(name: FwName, why: 'initial' | 'power-on'): Promise<void> {
    const fw = this.fw[name];
    const track = this.opts.hooks?.(fw).trackFile;
    if (track) writeFileSync(track.path, `${track.init ?? 0}\n`);
    await this.opts.beforeKeepalived?.(fw, why);
    await this.startKeepalived(name);
  }

  /**
   * A power cut: every link of the firewall goes down at once (one `ip -batch`), then every process in its
   * namespace (keepalived, ctsync, scripts) gets SIGKILL. Returns Date.now() of the moment the links went down.
   */
  async powerLoss(name: FwName): Promise<number> {
    const fw = this.fw[name];
    if (!this.powered[name]) throw new LabError(`${name} is already powered off`);
    const batch = [LAN, WAN, SYNC].map((i) => `link set ${i} down`).join('\n') + '\n';
    const at = Date.now();
    await this.lab.exec(fw.ns, ['ip', '-batch', '-'], { input: batch });
    this.powered[name] = false;
    this.keepalived[name]?.killNow();
    await this.killAllIn(fw.ns);
    await this.keepalived[name]?.exited;
    return at;
  }

  /**
   * Power back on: memory is gone (conntrack table flushed, stale VIPs removed), links up, then boot as at build:
   * track file reset, beforeKeepalived('power-on') (restart ctsync there), keepalived. With preempt on, fw1
   * takes the VIPs back within a few adverts unless its track file says it is not ready.
   */
  async powerOn(name: FwName): Promise<void> {
    const fw = this.fw[name];
    if (this.powered[name]) throw new LabError(`${name} is already powered on`);
    await this.lab.exec(fw.ns, ['conntrack', '-F'], { allowFail: true });
    await this.lab.ip(fw.ns, ['addr', 'del', `${this.vips.inside}/24`, 'dev', LAN], { allowFail: true });
    await this.lab.ip(fw.ns, ['addr', 'del', `${this.vips.outside}/24`, 'dev', WAN], { allowFail: true });
    const batch = [LAN, WAN, SYNC].map((i) => `link set ${i} up`).join('\n') + '\n';
    await this.lab.exec(fw.ns, ['ip', '-batch', '-'], { input: batch });
    this.powered[name] = true;
    await this.boot(name, 'power-on');
  }

  /** Which powered firewalls hold each VIP right now (a dead node keeps its addresses but cannot use them). */
  async holders(): Promise<{ inside: FwName[]; outside: FwName[] }> {
    const res = { inside: [] as FwName[], outside: [] as FwName[] };
    await Promise.all(
      FIREWALLS.filter((n) => this.powered[n]).map(async (n) => {
        const r = await this.lab.ip(this.fw[n].ns, ['-o', '-4', 'addr', 'show'], { allowFail: true });
        const has = (vip: string): boolean => r.stdout.includes(` ${vip}/`);
        if (has(this.vips.inside)) res.inside.push(n);
        if (has(this.vips.outside)) res.outside.push(n);
      }),
    );
    return res;
  }

  /** The one powered firewall holding both VIPs, or null (none yet, split, or both: a split brain). */
  async whoIsMaster(): Promise<FwName | null> {
    const h = await this.holders();
    if (h.inside.length !== 1 || h.outside.length !== 1 || h.inside[0] !== h.outside[0]) return null;
    return h.inside[0]!;
  }

  /** Polls every pollMs until `name` alone holds both VIPs; resolves with Date.now() at that moment. */
  async waitForMaster(name: FwName, timeoutMs = 15_000, pollMs = 20): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if ((await this.whoIsMaster()) === name) return Date.now();
      if (Date.now() > deadline) {
        const h = await this.holders();
        throw new LabError(
          `${name} did not become master within ${timeoutMs} ms (inside VIP on [${h.inside.join(', ')}], outside on [${h.outside.join(', ')}]); ` +
            `${name} keepalived log tail: ${this.logs[name].slice(-8).join(' | ')}`,
        );
      }
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /** Stops keepalived on both firewalls (SIGTERM; it releases its VIPs) and removes the temp directory. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(FIREWALLS.map((n) => this.keepalived[n]?.stop(1000)));
    removeDir(this.dir);
  }

  private async killAllIn(ns: string): Promise<void> {
    // Only our own namespace's processes: everything in it was started by this lab (or by what the lab started).
    const { stdout } = await execFileP('ip', ['netns', 'pids', ns]);
    for (const pid of stdout.split(/\s+/).filter(Boolean).map(Number)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

// Temp directories of live labs, removed on exit and on a fatal signal too (netns.ts deletes the namespaces).
const liveDirs = new Set<string>();
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
  if (liveDirs.size === 0) {
    process.off('exit', removeAllDirs);
    for (const s of SIGNALS) process.off(s, onSignal);
  }
}
function removeAllDirs(): void {
  for (const d of [...liveDirs]) removeDir(d);
}
function onSignal(sig: NodeJS.Signals): void {
  removeAllDirs();
  // Same contract as netns.ts: whoever handles the signal last re-raises it so the default action still happens.
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}
function trackDir(dir: string): void {
  if (liveDirs.size === 0) {
    process.on('exit', removeAllDirs);
    for (const s of SIGNALS) process.on(s, onSignal);
  }
  liveDirs.add(dir);
}

/**
 * Builds the lab in `lab` (whose prefix names everything, e.g. `ctsf-`): namespaces cli, swi (inside bridge),
 * fw1, fw2, swo (outside bridge), srv. Inside 10.77.21.0/24: VIP .1 (client's gateway), fw1 .11, fw2 .12,
 * client .2. Outside 10.77.22.0/24: VIP .1 (server's route back), fw1 .11, fw2 .12, server .2. Sync link
 * 10.77.23.0/30 between fw1 (.1) and fw2 (.2). Both firewalls forward with the strict ruleset
 * (routerRuleset 'strict', nf_conntrack_tcp_loose=0) and run keepalived (VRRPv3, unicast, one sync group).
 * IPv4 only. On failure everything built so far is left to lab.teardown(); the temp directory is removed here.
 */
export async function failoverLab(lab: Lab, opts: FailoverLabOptions = {}): Promise<FailoverLab> {
  await assertNoHostOverlap();
  const sn = opts.subnets ?? { inside: 21, outside: 22, sync: 23 };
  const prio = opts.priorities ?? { fw1: 150, fw2: 100 };
  const a = (subnet: number, host: number): string => `${LAB_V4_BASE}.${subnet}.${host}`;
  const dir = mkdtempSync(join(tmpdir(), `${lab.prefix}lab-`));
  trackDir(dir);
  try {
    const [cli, swi, fw1, fw2, swo, srv] = [
      await lab.addNamespace('cli'), await lab.addNamespace('swi'), await lab.addNamespace('fw1'),
      await lab.addNamespace('fw2'), await lab.addNamespace('swo'), await lab.addNamespace('srv'),
    ];
    await lab.addBridge(swi, 'br0');
    await lab.addBridge(swo, 'br0');
    const ports: [string, string, string, string, string][] = [
      [cli, 'eth0', swi, 'pcli', 'br0'],
      [fw1, LAN, swi, 'pfw1', 'br0'],
      [fw2, LAN, swi, 'pfw2', 'br0'],
      [fw1, WAN, swo, 'pfw1', 'br0'],
      [fw2, WAN, swo, 'pfw2', 'br0'],
      [srv, 'eth0', swo, 'psrv', 'br0'],
    ];
    for (const [ns, ifn, sw, port, br] of ports) {
      await lab.addVeth(ns, ifn, sw, port);
      await lab.attachToBridge(sw, port, br);
    }
    await lab.addVeth(fw1, SYNC, fw2, SYNC);

    const node = (name: FwName, ns: string, host: number, syncHost: number, peerSyncHost: number): FirewallNode => {
      const fdir = join(dir, name);
      mkdirSync(fdir);
      return {
        name, ns, priority: prio[name], dir: fdir, confPath: join(fdir, 'keepalived.conf'),
        lan: { ifname: LAN, v4: a(sn.inside, host) },
        wan: { ifname: WAN, v4: a(sn.outside, host) },
        sync: { ifname: SYNC, v4: a(sn.sync, syncHost), peerV4: a(sn.sync, peerSyncHost), prefixLen: 30 },
      };
    };
    const fw = { fw1: node('fw1', fw1, 11, 1, 2), fw2: node('fw2', fw2, 12, 2, 1) };
    const client: Host = { ns: cli, ifname: 'eth0', v4: a(sn.inside, 2) };
    const server: Host = { ns: srv, ifname: 'eth0', v4: a(sn.outside, 2) };
    const vips = { inside: a(sn.inside, 1), outside: a(sn.outside, 1) };

    await lab.addAddress(cli, 'eth0', `${client.v4}/24`);
    await lab.addAddress(srv, 'eth0', `${server.v4}/24`);
    await lab.addRoute(cli, 'default', vips.inside);
    await lab.addRoute(srv, 'default', vips.outside);
    const ruleset = routerRuleset({ lanIf: LAN, wanIf: WAN, nat: 'none', firewall: 'strict', ftpPorts: [] });
    for (const f of Object.values(fw)) {
      await lab.addAddress(f.ns, LAN, `${f.lan.v4}/24`);
      await lab.addAddress(f.ns, WAN, `${f.wan.v4}/24`);
      await lab.addAddress(f.ns, SYNC, `${f.sync.v4}/${f.sync.prefixLen}`);
      await makeRouter(lab, f.ns, false);
      await lab.loadNft(f.ns, ruleset);
    }

    const fl = new FailoverLab(lab, client, server, vips, fw, ruleset, dir, opts);
    for (const name of FIREWALLS) await fl.boot(name, 'initial');
    if (opts.waitForInitialMaster ?? true) await fl.waitForMaster('fw1');
    return fl;
  } catch (err) {
    removeDir(dir);
    throw err;
  }
}
