// `ctsync doctor`'s verdicts: pure functions from facts gathered about a node (probe.ts) to ok/warn/fail with a remedy.
import type { RedisProbe } from '../transport/redis/probe.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  /** Stable name a script can match on (`events`, `keepalived`...). */
  id: string;
  title: string;
  status: CheckStatus;
  /** What was found, one line. */
  detail: string;
  /** What to do about it, one line; present unless the status is ok. */
  remedy?: string;
}

/** The sysctls doctor reads, as /proc/sys paths under net/. */
export const SYSCTLS = [
  'net.netfilter.nf_conntrack_events',
  'net.netfilter.nf_conntrack_max',
  'net.netfilter.nf_conntrack_buckets',
  'net.netfilter.nf_conntrack_count',
  'net.netfilter.nf_conntrack_tcp_loose',
  'net.netfilter.nf_conntrack_timestamp',
  'net.core.rmem_max',
] as const;
export type SysctlName = (typeof SYSCTLS)[number];
/** Value as read from /proc/sys (trimmed), or null when the file is missing or unreadable. */
export type Sysctls = Partial<Record<SysctlName, string | null>>;

export const sysctlPath = (name: string): string => `/proc/sys/${name.replace(/\./g, '/')}`;

/** `sysctl -w K=V`, run in the namespace the daemon watches. */
export function sysctlFix(netns: string | undefined, key: string, value: string | number): string {
  const set = `sysctl -w ${key}=${value}`;
  return netns ? `ip netns exec ${netns} ${set} (set it wherever netns ${netns} is created; sysctl.d only reaches the host namespace)` : `${set}, and keep it in /etc/sysctl.d/90-ctsync.conf`;
}

const where = (netns: string | undefined) => (netns ? ` in netns ${netns}` : '');
const int = (v: string | null | undefined): number | undefined => (v !== null && v !== undefined && /^-?\d+$/.test(v) ? Number(v) : undefined);
const mib = (n: number) => (n >= 1 << 20 ? `${+(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${+(n / 1024).toFixed(1)} KiB` : `${n} B`);

export function checkNetns(netns: string | undefined, exists: boolean): CheckResult {
  const base = { id: 'netns', title: 'network namespace' };
  if (!netns) return { ...base, status: 'ok', detail: "the daemon's own namespace (kernel.netns not set)" };
  if (exists) return { ...base, status: 'ok', detail: `${netns} exists` };
  return { ...base, status: 'fail', detail: `${netns} does not exist (no /var/run/netns/${netns})`, remedy: `create it (ip netns add ${netns}) before ctsync starts, or fix kernel.netns / --netns` };
}

export function checkConntrackLoaded(s: Sysctls, netns?: string, readError?: string): CheckResult {
  const base = { id: 'conntrack', title: 'conntrack in the kernel' };
  if (readError) return { ...base, status: 'fail', detail: `cannot read sysctls${where(netns)}: ${readError}`, remedy: 'run ctsync doctor as root (entering a namespace needs CAP_SYS_ADMIN)' };
  if (int(s['net.netfilter.nf_conntrack_max']) !== undefined) return { ...base, status: 'ok', detail: `nf_conntrack is loaded${where(netns)}` };
  return {
    ...base,
    status: 'fail',
    detail: `no /proc/sys/net/netfilter/nf_conntrack_max${where(netns)}: nf_conntrack is not loaded`,
    remedy: 'modprobe nf_conntrack (and list it in /etc/modules-load.d/ so sysctl.d settings apply at boot)',
  };
}

export function checkEvents(s: Sysctls, netns?: string): CheckResult {
  const key = 'net.netfilter.nf_conntrack_events';
  const base = { id: 'events', title: 'conntrack event delivery' };
  const v = int(s[key]);
  if (v === undefined) return { ...base, status: 'fail', detail: `${key} cannot be read${where(netns)}`, remedy: 'modprobe nf_conntrack' };
  if (v === 0)
    return { ...base, status: 'fail', detail: `${key} = 0${where(netns)}: the kernel builds no events, nothing is synced`, remedy: sysctlFix(netns, key, 1) };
  return { ...base, status: 'ok', detail: `${key} = ${v}${v === 2 ? ' (events while a listener exists; ctsync is one)' : ''}` };
}

/** What getsockopt(SO_RCVBUF) reports after SO_RCVBUFFORCE(n): the kernel doubles the value (capped at INT_MAX/2). */
export const effectiveRcvbuf = (n: number): number => Math.min(n, 0x3fffffff) * 2;

export interface BufferProbe {
  /** kernel.eventBuffer. */
  wanted: number;
  /** getsockopt(SO_RCVBUF) on a socket opened as the daemon opens it; undefined when it could not be opened. */
  got?: number;
  error?: string;
  /** Doctor itself runs without root: SO_RCVBUFFORCE was not allowed to it, the daemon (CAP_NET_ADMIN) may do better. */
  unprivileged?: boolean;
}

export function checkEventBuffer(p: BufferProbe, netns?: string): CheckResult {
  const base = { id: 'event-buffer', title: 'event socket buffer' };
  if (p.got === undefined)
    return { ...base, status: 'fail', detail: `could not open a netfilter socket${where(netns)}: ${p.error ?? 'unknown error'}`, remedy: p.unprivileged ? 'run ctsync doctor as root' : 'see the error; node scripts/build-netlink.mjs rebuilds the netlink binding' };
  const need = effectiveRcvbuf(p.wanted);
  if (p.got >= need) return { ...base, status: 'ok', detail: `kernel.eventBuffer ${mib(p.wanted)} granted (SO_RCVBUF reads ${mib(p.got)}, the kernel's doubled figure)` };
  return {
    ...base,
    status: 'warn',
    detail: `asked for ${mib(p.wanted)}, got ${mib(p.got / 2)}: events will overrun and force dump-and-diff resyncs under load`,
    remedy: p.unprivileged
      ? 'doctor is not root; the daemon with CAP_NET_ADMIN (ctsync.service) uses SO_RCVBUFFORCE and is not capped — rerun doctor as root to see its figure'
      : `give the daemon CAP_NET_ADMIN (ctsync.service does) or raise net.core.rmem_max to ${p.wanted}`,
  };
}

export function checkRmemMax(s: Sysctls, wanted: number, netns?: string): CheckResult {
  const key = 'net.core.rmem_max';
  const base = { id: 'rmem-max', title: 'net.core.rmem_max' };
  const v = int(s[key]);
  if (v === undefined) return { ...base, status: 'warn', detail: `${key} cannot be read${where(netns)}`, remedy: 'check /proc/sys/net/core/rmem_max' };
  if (v >= wanted) return { ...base, status: 'ok', detail: `${key} = ${v} ≥ kernel.eventBuffer ${wanted}` };
  return {
    ...base,
    status: 'warn',
    detail: `${key} = ${v} < kernel.eventBuffer ${wanted}: only matters if the daemon lacks CAP_NET_ADMIN (SO_RCVBUFFORCE ignores it)`,
    // read-only inside a child namespace (measured on 6.18: mode 0444, mirrors the host's value): set it on the host
    remedy: sysctlFix(undefined, key, wanted),
  };
}

/** Informational: both settings are valid; the detail says what each means for failover. */
export function checkTcpLoose(s: Sysctls, netns?: string): CheckResult {
  const key = 'net.netfilter.nf_conntrack_tcp_loose';
  const v = int(s[key]);
  const base = { id: 'tcp-loose', title: 'mid-stream TCP pickup' };
  if (v === undefined) return { ...base, status: 'warn', detail: `${key} cannot be read${where(netns)}`, remedy: 'modprobe nf_conntrack' };
  return {
    ...base,
    status: 'ok',
    detail: v === 0 ? `${key} = 0 (strict): a flow ctsync did not sync dies at failover` : `${key} = ${v}: unsynced TCP is picked up mid-stream, NATed flows still break without sync`,
  };
}

export function checkTimestamp(s: Sysctls, netns?: string): CheckResult {
  const key = 'net.netfilter.nf_conntrack_timestamp';
  const v = int(s[key]);
  const base = { id: 'timestamp', title: 'flow timestamps' };
  if (v === undefined) return { ...base, status: 'warn', detail: `${key} cannot be read${where(netns)}`, remedy: 'modprobe nf_conntrack' };
  if (v) return { ...base, status: 'ok', detail: `${key} = ${v}: flows carry their start time (ctsync ct list shows it)` };
  return { ...base, status: 'warn', detail: `${key} = 0: flows carry no start time, so ct list and dumps cannot show flow age`, remedy: sysctlFix(netns, key, 1) };
}

export interface TableFacts {
  max?: number;
  count?: number;
  /** Flows the daemon holds: its local table plus every peer's table (a commit writes the latter). */
  daemonLocal?: number;
  daemonPeer?: number;
}

export function checkTableSize(t: TableFacts): CheckResult {
  const base = { id: 'conntrack-max', title: 'conntrack table size' };
  if (t.max === undefined) return { ...base, status: 'warn', detail: 'nf_conntrack_max cannot be read', remedy: 'modprobe nf_conntrack' };
  const fromDaemon = t.daemonLocal !== undefined ? t.daemonLocal + (t.daemonPeer ?? 0) : undefined;
  const expected = Math.max(t.count ?? 0, fromDaemon ?? 0);
  const how = fromDaemon !== undefined ? `${t.count ?? '?'} in the kernel, ${fromDaemon} held by the daemon (local + peers)` : `${t.count ?? '?'} in the kernel`;
  const fix = `raise net.netfilter.nf_conntrack_max (and nf_conntrack_buckets) to at least ${Math.ceil((expected * 2) / 1024) * 1024}`;
  if (expected > t.max) return { ...base, status: 'fail', detail: `${how} > nf_conntrack_max ${t.max}: a commit would fail, new flows are dropped`, remedy: fix };
  if (expected > t.max * 0.75) return { ...base, status: 'warn', detail: `${how}: over 75% of nf_conntrack_max ${t.max}; at takeover both nodes' flows must fit`, remedy: fix };
  return { ...base, status: 'ok', detail: `${how}; nf_conntrack_max ${t.max}` };
}

/**
 * The conntrack hash: with fewer buckets than entries every insert and lookup walks a chain, which is what makes a
 * big commit slow (a 1M write here: 5.6 s at 262144 buckets, 3.9 s at 1048576). One hash serves every namespace.
 */
export function checkHashSize(t: TableFacts & { buckets?: number }): CheckResult {
  const base = { id: 'conntrack-buckets', title: 'conntrack hash size' };
  if (t.buckets === undefined || t.max === undefined) return { ...base, status: 'warn', detail: 'nf_conntrack_buckets cannot be read', remedy: 'modprobe nf_conntrack' };
  const want = Math.max(t.max, (t.daemonLocal ?? 0) + (t.daemonPeer ?? 0));
  if (t.buckets >= want) return { ...base, status: 'ok', detail: `${t.buckets} buckets for up to ${want} entries` };
  return {
    ...base,
    status: 'warn',
    detail: `${t.buckets} buckets for up to ${want} entries (nf_conntrack_max): inserts walk chains, a large commit is slower`,
    remedy: `sysctl -w net.netfilter.nf_conntrack_buckets=${want} in the host namespace (one hash serves them all; read-only elsewhere), and keep it in /etc/sysctl.d/90-ctsync.conf`,
  };
}

export interface ConfigFacts {
  file?: string;
  /** The file was named explicitly (--config); an absent default file is only a warning. */
  explicit: boolean;
  exists: boolean;
  problems?: string[];
  summary?: string;
}

export function checkConfig(c: ConfigFacts): CheckResult {
  const base = { id: 'config', title: 'config file' };
  if (!c.exists && !c.explicit)
    return { ...base, status: 'warn', detail: `no ${c.file}; the other checks use the defaults`, remedy: `cp systemd/ctsync.example.yaml ${c.file} and set nodeId and peers` };
  if (c.problems?.length) return { ...base, status: 'fail', detail: `${c.file ?? '(none)'}: ${c.problems.join('; ')}`, remedy: 'fix the keys named (systemd/ctsync.example.yaml documents each); the daemon exits 78 on it' };
  return { ...base, status: 'ok', detail: `${c.file} is valid${c.summary ? ` (${c.summary})` : ''}` };
}

export interface KeyFacts {
  mode: 'psk' | 'cert' | 'insecure';
  file?: string;
  exists?: boolean;
  /** st_mode & 0o777 */
  perm?: number;
  /** Why the key (or certificate mode's files) is unusable (loadPsk's or loadCerts' message), if it is. */
  weak?: string;
  /** cert mode: files named but missing. */
  missing?: string[];
}

export function checkKey(k: KeyFacts): CheckResult {
  const base = { id: 'key', title: 'peer link authentication' };
  if (k.mode === 'insecure') return { ...base, status: 'warn', detail: 'security.mode insecure: anyone who reaches the listen port can write conntrack entries here', remedy: 'ctsync keygen /etc/ctsync/cluster.key on one node, copy it to the others, set security.mode psk' };
  if (k.mode === 'cert') {
    if (k.missing?.length) return { ...base, status: 'fail', detail: `missing: ${k.missing.join(', ')}`, remedy: 'install the CA, certificate and key named in security.ca/cert/key' };
    if (k.weak) return { ...base, status: 'fail', detail: k.weak, remedy: 'chmod 600 the private key; the certificate, its key and the CA must belong together' };
    return { ...base, status: 'ok', detail: 'mutual TLS files present' };
  }
  if (!k.exists) return { ...base, status: 'fail', detail: `security.keyFile ${k.file} does not exist`, remedy: `ctsync keygen ${k.file} on one node and copy the file to every node (mode 0600)` };
  if (k.weak) return { ...base, status: 'fail', detail: k.weak, remedy: `ctsync keygen --force ${k.file} and copy it to every node` };
  if (k.perm !== undefined && (k.perm & 0o077) !== 0)
    return { ...base, status: 'warn', detail: `${k.file} has mode ${k.perm.toString(8).padStart(4, '0')}: group or others can read the cluster key`, remedy: `chmod 600 ${k.file}` };
  return { ...base, status: 'ok', detail: `${k.file} present, mode ${(k.perm ?? 0o600).toString(8).padStart(4, '0')}, a strong key` };
}

export interface ControlDirFacts {
  dir: string;
  exists: boolean;
  writable: boolean;
  perm?: number;
}

export function checkControlDir(d: ControlDirFacts): CheckResult {
  const base = { id: 'control-dir', title: 'control socket directory' };
  if (!d.exists) return { ...base, status: 'warn', detail: `${d.dir} does not exist (systemd creates it at start: RuntimeDirectory=ctsync)`, remedy: `without systemd: install -d -m 0700 ${d.dir}` };
  if (!d.writable) return { ...base, status: 'fail', detail: `${d.dir} is not writable: no control socket, no track file`, remedy: `check ReadWritePaths= in ctsync.service or the permissions of ${d.dir}` };
  if (d.perm !== undefined && (d.perm & 0o022) !== 0)
    return { ...base, status: 'warn', detail: `${d.dir} has mode ${d.perm.toString(8).padStart(4, '0')}: others could replace the socket or the track file`, remedy: `chmod 700 ${d.dir}` };
  return { ...base, status: 'ok', detail: `${d.dir} is writable` };
}

/** keepalived.conf without comments (`!` or `#` to the end of a line). */
function stripComments(text: string): string {
  return text.replace(/[!#].*$/gm, '');
}
const unquote = (s: string) => s.replace(/^"(.*)"$/, '$1');

export interface KeepalivedWiring {
  /** `ctsync notify-fifo` as a (vrrp_)notify_fifo_script with its FIFO declared. */
  fifo: boolean;
  /** `ctsync notify` in notify / notify_master / ... scripts. */
  scripts: boolean;
  /** A fifo script without its (vrrp_)notify_fifo line. */
  fifoUndeclared: boolean;
  /** Name of the track_file block whose file is the track file, if any. */
  trackName?: string;
  /** That block's weight (undefined: keepalived's default 1). */
  trackWeight?: number;
  /** The track_file is referenced from a vrrp_instance or vrrp_sync_group. */
  tracked: boolean;
}

/** What a keepalived.conf wires to ctsync. Pure: reads the text only. */
export function parseKeepalived(text: string, trackFile: string): KeepalivedWiring {
  const t = stripComments(text);
  const fifoScript = /^\s*(vrrp_)?notify_fifo_script\s+("[^"]*ctsync[^"]*\bnotify-fifo\b[^"]*"|\S*ctsync\S*\s+notify-fifo\b)/m.test(t);
  const fifoDeclared = /^\s*(vrrp_)?notify_fifo\s+\S+/m.test(t);
  const scripts = /^\s*notify(_master|_backup|_fault|_stop)?\s+"?[^\n]*\bctsync\s+notify\b(?!-)/m.test(t);
  const w: KeepalivedWiring = { fifo: fifoScript && fifoDeclared, scripts, fifoUndeclared: fifoScript && !fifoDeclared, tracked: false };
  for (const m of t.matchAll(/^\s*(?:vrrp_)?track_file\s+(\S+)\s*\{([^}]*)\}/gm)) {
    const file = /\bfile\s+("[^"]*"|\S+)/.exec(m[2]);
    if (file && unquote(file[1]) === trackFile) {
      w.trackName = m[1];
      const weight = /\bweight\s+(-?\d+)/.exec(m[2]);
      if (weight) w.trackWeight = Number(weight[1]);
    }
  }
  if (w.trackName) {
    for (const m of t.matchAll(/^\s*track_file\s*\{([^}]*)\}/gm)) {
      if (m[1].split(/\s+/).includes(w.trackName)) w.tracked = true;
    }
  }
  return w;
}

export interface KeepalivedFacts {
  file: string;
  /** The file's text, or undefined when it cannot be read. */
  text?: string;
  error?: string;
  trackFile: string;
}

export function checkKeepalived(k: KeepalivedFacts): CheckResult[] {
  const hook = { id: 'keepalived-notify', title: 'keepalived → ctsync notify' };
  const track = { id: 'keepalived-track', title: 'keepalived track_file' };
  if (k.text === undefined) {
    const r = { status: 'warn' as const, detail: `cannot read ${k.file}: ${k.error ?? 'missing'}`, remedy: 'install keepalived and start from systemd/keepalived.example.conf, or pass --keepalived FILE' };
    return [{ ...hook, ...r }, { ...track, ...r }];
  }
  const w = parseKeepalived(k.text, k.trackFile);
  const out: CheckResult[] = [];
  if (w.fifo) out.push({ ...hook, status: 'ok', detail: `${k.file}: transitions reach ctsync in order through notify-fifo` });
  else if (w.fifoUndeclared) out.push({ ...hook, status: 'fail', detail: `${k.file}: a notify_fifo_script runs ctsync notify-fifo but no vrrp_notify_fifo names the FIFO`, remedy: 'add vrrp_notify_fifo /run/ctsync/keepalived.fifo to global_defs' });
  else if (w.scripts) out.push({ ...hook, status: 'ok', detail: `${k.file}: notify scripts call ctsync notify (the daemon orders them; notify-fifo is the recommended wiring)` });
  else out.push({ ...hook, status: 'fail', detail: `${k.file} never calls ctsync notify or notify-fifo: a takeover commits nothing`, remedy: 'add vrrp_notify_fifo /run/ctsync/keepalived.fifo and vrrp_notify_fifo_script "/usr/local/bin/ctsync notify-fifo" to global_defs (see systemd/keepalived.example.conf)' });
  const trackFix = `define track_file ctsync_ready { file ${k.trackFile}; weight 0 } and list ctsync_ready in a track_file { } block of each vrrp_instance`;
  if (!w.trackName) out.push({ ...track, status: 'fail', detail: `no track_file block reads ${k.trackFile} (ha.trackFile): a node that is not in sync can win an election`, remedy: trackFix });
  else if (!w.tracked) out.push({ ...track, status: 'fail', detail: `track_file ${w.trackName} reads ${k.trackFile} but no vrrp_instance or sync group tracks it`, remedy: trackFix });
  else if ((w.trackWeight ?? 1) !== 0) out.push({ ...track, status: 'warn', detail: `track_file ${w.trackName} has weight ${w.trackWeight ?? '1 (default)'}: the file's value shifts priority instead of forcing FAULT`, remedy: `set weight 0 in track_file ${w.trackName}` });
  else out.push({ ...track, status: 'ok', detail: `track_file ${w.trackName} (weight 0) reads ${k.trackFile}` });
  return out;
}

export interface RulesetFacts {
  labels: boolean;
  /** `nft list ruleset` output, or undefined with error. */
  text?: string;
  error?: string;
}

export const usesCtLabel = (ruleset: string): boolean => /\bct\s+label\b|\bconnlabel\b/.test(ruleset);

export function checkLabels(r: RulesetFacts, netns?: string): CheckResult {
  const base = { id: 'labels', title: 'ct labels in the ruleset' };
  if (!r.labels) return { ...base, status: 'ok', detail: 'commit.labels is false: labels are not written' };
  if (r.text === undefined) return { ...base, status: 'warn', detail: `commit.labels is true but the ruleset cannot be read${where(netns)}: ${r.error ?? ''}`.trim(), remedy: 'install nftables (nft list ruleset)' };
  if (usesCtLabel(r.text)) return { ...base, status: 'ok', detail: `the ruleset${where(netns)} uses ct label: committed labels are stored` };
  return {
    ...base,
    status: 'fail',
    detail: `commit.labels is true but the ruleset${where(netns)} never uses ct label: the kernel refuses labelled entries (ENOSPC)`,
    remedy: 'load a ruleset that matches or sets ct label before ctsync commits, or set commit.labels: false',
  };
}

export interface RedisFacts {
  transport: 'tcp' | 'redis' | 'both';
  /** Mode, addresses and db as configured, for the report. */
  where: string;
  /** Absent with transport tcp. */
  probe?: RedisProbe;
}

export function checkRedis(r: RedisFacts): CheckResult {
  const base = { id: 'redis', title: 'redis' };
  if (r.transport === 'tcp') return { ...base, status: 'ok', detail: 'transport tcp: Redis is not used' };
  // with transport both the direct link still syncs; with redis nothing does
  const status = r.transport === 'both' ? 'warn' : 'fail';
  const p = r.probe;
  if (!p?.reached)
    return { ...base, status, detail: `${r.where}: ${p?.error ?? 'not probed'}`, remedy: 'start Redis there, or fix redis.addresses, redis.username, redis.passwordFile, redis.tls or redis.db; the daemon starts anyway: it retries an unreachable Redis, or one that refuses redis.db or the user, and writes nothing there until it is accepted' };
  if (Number(p.version?.split('.')[0]) < 5) return { ...base, status, detail: `${r.where}: Redis ${p.version} has no streams`, remedy: 'Redis 5.0 or later (6.0 or later for redis.username)' };
  return { ...base, status: 'ok', detail: `${r.where}: Redis ${p.version ?? '(version unknown)'} answers` };
}

export interface DaemonFacts {
  socket: string;
  running: boolean;
  error?: string;
  inSync?: boolean;
  notReady?: string[];
}

export function checkDaemon(d: DaemonFacts): CheckResult {
  const base = { id: 'daemon', title: 'ctsync daemon' };
  if (!d.running) {
    if (d.error && !/not running/.test(d.error)) return { ...base, status: 'fail', detail: `${d.socket}: ${d.error}`, remedy: 'journalctl -u ctsync; systemctl restart ctsync' };
    return { ...base, status: 'warn', detail: `not running (no answer on ${d.socket})`, remedy: 'systemctl enable --now ctsync' };
  }
  if (d.inSync === false) return { ...base, status: 'warn', detail: `running, NOT in sync${d.notReady?.length ? `: ${d.notReady.join(', ')}` : ''}; keepalived keeps this node out of MASTER`, remedy: 'ctsync stats shows which peer lags; ctsync resync asks for a bulk' };
  return { ...base, status: 'ok', detail: `running and answering on ${d.socket}${d.inSync ? ', in sync' : ''}` };
}

export interface DoctorReport {
  netns?: string;
  checks: CheckResult[];
  summary: Record<CheckStatus, number>;
}

export function summarize(checks: CheckResult[], netns?: string): DoctorReport {
  const summary: Record<CheckStatus, number> = { ok: 0, warn: 0, fail: 0 };
  for (const c of checks) summary[c.status]++;
  return { ...(netns ? { netns } : {}), checks, summary };
}

/** 0 when no check failed, 1 otherwise. */
export const doctorExitCode = (r: DoctorReport): 0 | 1 => (r.summary.fail ? 1 : 0);

const LABEL: Record<CheckStatus, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' };

/** Readable at a glance: one line per check, the remedy under anything not ok, a count at the end. */
export function renderReport(r: DoctorReport): string {
  const width = Math.max(...r.checks.map((c) => c.title.length), 10);
  const lines = [`ctsync doctor${r.netns ? ` (netns ${r.netns})` : ''}`];
  for (const c of r.checks) {
    lines.push(`  ${LABEL[c.status]}  ${c.title.padEnd(width)}  ${c.detail}`);
    if (c.remedy && c.status !== 'ok') lines.push(`        ${' '.repeat(width)}  fix: ${c.remedy}`);
  }
  const { ok, warn, fail } = r.summary;
  lines.push(`${fail ? `${fail} failed` : 'nothing failed'}, ${warn} warning${warn === 1 ? '' : 's'}, ${ok} ok`);
  return `${lines.join('\n')}\n`;
}
