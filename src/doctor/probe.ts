// `ctsync doctor`'s fact gathering: reads sysctls (inside the namespace), files, the ruleset and the daemon, then runs the checks.
import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { buildConfig, certFiles, ConfigError, redisConnect, type Config } from '../config/load.js';
import { request } from '../control/client.js';
import { NetfilterSocket } from '../kernel/netlink-socket.js';
import { probeRedis } from '../transport/redis/probe.js';
import { loadCerts, loadPsk } from '../transport/tcp/options.js';
import {
  checkConfig,
  checkConntrackLoaded,
  checkControlDir,
  checkDaemon,
  checkEventBuffer,
  checkEvents,
  checkKey,
  checkKeepalived,
  checkLabels,
  checkNetns,
  checkRedis,
  checkRmemMax,
  checkTableSize,
  checkHashSize,
  checkTcpLoose,
  checkTimestamp,
  summarize,
  SYSCTLS,
  sysctlPath,
  type BufferProbe,
  type CheckResult,
  type ConfigFacts,
  type DaemonFacts,
  type DoctorReport,
  type KeyFacts,
  type RedisFacts,
  type Sysctls,
} from './checks.js';

export const DEFAULT_CONFIG = '/etc/ctsync/ctsync.yaml';
export const DEFAULT_KEEPALIVED = '/etc/keepalived/keepalived.conf';

export interface DoctorOptions {
  /** Config file; default /etc/ctsync/ctsync.yaml, whose absence is only a warning. */
  config?: string;
  /** Overrides kernel.netns. */
  netns?: string;
  keepalived?: string;
  /** Overrides control.socket. */
  socket?: string;
}

function run(cmd: string, args: string[], timeoutMs = 10_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      resolve({ code, stdout, stderr: stderr || (err && code === -1 ? err.message : '') });
    });
  });
}

/** One `cat` per sysctl, all in one shell: a missing key reads as null; `error` only when the namespace could not be entered. */
export async function readSysctls(netns: string | undefined): Promise<{ sysctls: Sysctls; error?: string }> {
  const out: Sysctls = {};
  if (!netns) {
    for (const k of SYSCTLS) {
      try {
        out[k] = readFileSync(sysctlPath(k), 'utf8').trim();
      } catch {
        out[k] = null;
      }
    }
    return { sysctls: out };
  }
  // /proc/sys/net shows the namespace of the process that opens it, hence a process inside the namespace
  const script = 'for f in "$@"; do printf "%s\\t" "$f"; cat "$f" 2>/dev/null || echo; done';
  const r = await run('ip', ['netns', 'exec', netns, 'sh', '-c', script, 'sh', ...SYSCTLS.map(sysctlPath)]);
  for (const k of SYSCTLS) out[k] = null;
  for (const line of r.stdout.split('\n')) {
    const [path, value] = line.split('\t');
    const k = SYSCTLS.find((s) => sysctlPath(s) === path);
    if (k && value !== undefined && value.trim() !== '') out[k] = value.trim();
  }
  return r.code === 0 ? { sysctls: out } : { sysctls: out, error: r.stderr.trim().split('\n')[0] || `ip netns exec exited ${r.code}` };
}

function loadConfigFacts(opts: DoctorOptions): { facts: ConfigFacts; cfg: Readonly<Config> } {
  const file = opts.config ?? DEFAULT_CONFIG;
  const facts: ConfigFacts = { file, explicit: opts.config !== undefined, exists: existsSync(file) };
  // the other checks still need values: the schema defaults with a placeholder nodeId
  const fallback = buildConfig({ nodeId: 'doctor' });
  if (!facts.exists) {
    if (facts.explicit) facts.problems = ['does not exist'];
    return { facts, cfg: fallback };
  }
  try {
    const doc = parseYaml(readFileSync(file, 'utf8')) as unknown;
    const cfg = buildConfig(doc);
    facts.summary = `node ${cfg.nodeId}, ${cfg.peers.length} peer${cfg.peers.length === 1 ? '' : 's'}, security ${cfg.security.mode}`;
    return { facts, cfg };
  } catch (err) {
    facts.problems = err instanceof ConfigError ? err.problems : [(err as Error).message.split('\n')[0]];
    return { facts, cfg: fallback };
  }
}

function keyFacts(cfg: Readonly<Config>): KeyFacts {
  const s = cfg.security;
  if (s.mode === 'insecure') return { mode: 'insecure' };
  if (s.mode === 'cert') {
    const k: KeyFacts = { mode: 'cert', missing: [s.ca, s.cert, s.key].filter((f): f is string => !!f && !existsSync(f)) };
    if (k.missing!.length) return k;
    try {
      loadCerts(...certFiles(s));
    } catch (err) {
      k.weak = (err as Error).message;
    }
    return k;
  }
  const k: KeyFacts = { mode: 'psk', file: s.keyFile, exists: existsSync(s.keyFile) };
  if (!k.exists) return k;
  k.perm = statSync(s.keyFile).mode & 0o777;
  try {
    loadPsk(s.keyFile, 'security.keyFile');
  } catch (err) {
    k.weak = (err as Error).message;
  }
  return k;
}

function probeBuffer(wanted: number, netns: string | undefined): BufferProbe {
  const p: BufferProbe = { wanted, unprivileged: process.getuid?.() !== 0 };
  let sock: NetfilterSocket | undefined;
  try {
    sock = new NetfilterSocket({ netns, rcvbuf: wanted });
    p.got = sock.rcvbuf;
  } catch (err) {
    p.error = (err as Error).message;
  } finally {
    sock?.close();
  }
  return p;
}

async function redisFacts(cfg: Readonly<Config>): Promise<RedisFacts> {
  const r = cfg.redis;
  const where = `${r.mode} ${r.addresses.join(', ')}${r.db ? `, db ${r.db}` : ''}`;
  if (cfg.transport === 'tcp') return { transport: 'tcp', where };
  return { transport: cfg.transport, where, probe: await probeRedis(redisConnect(r)) };
}

async function daemonFacts(socket: string): Promise<{ facts: DaemonFacts; local?: number; peer?: number }> {
  try {
    const s = (await request(socket, 'stats', {}, undefined, 3000)) as {
      inSync?: boolean;
      kernel?: { entries?: number };
      peers?: { peerTableSize?: number }[];
      ha?: { ready?: boolean; notReady?: string[] };
    };
    const peer = (s.peers ?? []).reduce((n, p) => n + (p.peerTableSize ?? 0), 0);
    return {
      facts: { socket, running: true, inSync: s.ha?.ready ?? s.inSync, notReady: s.ha?.notReady },
      local: s.kernel?.entries,
      peer,
    };
  } catch (err) {
    const e = err as Error & { code?: string };
    return { facts: { socket, running: false, error: e.code === 'CTS_ERR_NOT_RUNNING' ? 'not running' : e.message } };
  }
}

/** Gather every fact, run every check. Never throws for a broken node: that is what the report is for. */
export async function runDoctor(opts: DoctorOptions = {}): Promise<DoctorReport> {
  const { facts: cfgFacts, cfg } = loadConfigFacts(opts);
  const netns = opts.netns ?? cfg.kernel.netns;
  const socket = opts.socket ?? cfg.control.socket;
  const checks: CheckResult[] = [checkConfig(cfgFacts)];

  const nsOk = !netns || existsSync(netns.includes('/') ? netns : `/var/run/netns/${netns}`);
  checks.push(checkNetns(netns, nsOk));
  const { sysctls, error: sysctlError } = nsOk ? await readSysctls(netns) : { sysctls: {} as Sysctls, error: undefined };
  checks.push(checkConntrackLoaded(sysctls, netns, sysctlError), checkEvents(sysctls, netns));
  checks.push(nsOk ? checkEventBuffer(probeBuffer(cfg.kernel.eventBuffer, netns), netns) : checkEventBuffer({ wanted: cfg.kernel.eventBuffer, error: 'no such namespace' }, netns));
  checks.push(checkRmemMax(sysctls, cfg.kernel.eventBuffer, netns), checkTcpLoose(sysctls, netns), checkTimestamp(sysctls, netns));

  const daemon = await daemonFacts(socket);
  const int = (v: string | null | undefined) => (v && /^\d+$/.test(v) ? Number(v) : undefined);
  const table = {
    max: int(sysctls['net.netfilter.nf_conntrack_max']),
    count: int(sysctls['net.netfilter.nf_conntrack_count']),
    daemonLocal: daemon.local,
    daemonPeer: daemon.peer,
  };
  checks.push(checkTableSize(table), checkHashSize({ ...table, buckets: int(sysctls['net.netfilter.nf_conntrack_buckets']) }));
  checks.push(checkKey(keyFacts(cfg)), checkRedis(await redisFacts(cfg)));

  const dir = dirname(socket);
  const dirFacts = { dir, exists: existsSync(dir), writable: false, perm: undefined as number | undefined };
  if (dirFacts.exists) {
    dirFacts.perm = statSync(dir).mode & 0o777;
    try {
      accessSync(dir, constants.W_OK);
      dirFacts.writable = true;
    } catch {
      // stays false
    }
  }
  checks.push(checkControlDir(dirFacts));

  const kaFile = opts.keepalived ?? DEFAULT_KEEPALIVED;
  let kaText: string | undefined;
  let kaError: string | undefined;
  try {
    kaText = readFileSync(kaFile, 'utf8');
  } catch (err) {
    kaError = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  }
  checks.push(...checkKeepalived({ file: kaFile, text: kaText, error: kaError, trackFile: cfg.ha.trackFile }));

  let ruleset: { text?: string; error?: string } = {};
  if (cfg.commit.labels) {
    const r = netns && nsOk ? await run('ip', ['netns', 'exec', netns, 'nft', 'list', 'ruleset']) : await run('nft', ['list', 'ruleset']);
    ruleset = r.code === 0 ? { text: r.stdout } : { error: r.stderr.trim() || `nft exited ${r.code}` };
  }
  checks.push(checkLabels({ labels: cfg.commit.labels, ...ruleset }, netns));
  checks.push(checkDaemon(daemon.facts));
  return summarize(checks, netns);
}
