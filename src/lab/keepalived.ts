// keepalived.conf text for the failover lab: VRRPv3 over unicast, one sync group, notify hooks and a track file.

/** Where keepalived tells the outside world about transitions. Every script is one command line, run as given. */
export interface KeepalivedHooks {
  /** Per-state scripts (on the sync group): keepalived runs exactly this command line. */
  notifyMaster?: string;
  notifyBackup?: string;
  notifyFault?: string;
  notifyStop?: string;
  /** Generic script: keepalived appends `GROUP|INSTANCE NAME STATE PRIORITY`. */
  notify?: string;
  /**
   * Ordered delivery: keepalived writes `INSTANCE "NAME" STATE PRIO` lines to this FIFO and starts `script`
   * with the FIFO path as its last argument. scope 'vrrp' (default) → vrrp_notify_fifo; 'all' → notify_fifo.
   */
  fifo?: { path: string; script?: string; scope?: 'vrrp' | 'all' };
  /**
   * A file whose number feeds VRRP priority. weight 0 (default): any non-zero value puts the instances in FAULT,
   * i.e. "do not make me master". init (default 0) is written by keepalived only when the file is missing.
   */
  trackFile?: { path: string; weight?: number; init?: number };
}

export interface VrrpInstanceSpec {
  /** Instance name, [A-Za-z0-9_]. */
  name: string;
  interface: string;
  virtualRouterId: number;
  /** Our own address on `interface`: the unicast source. */
  srcIp: string;
  /** The other nodes' addresses on the same link. Unicast only: no multicast ever leaves a lab namespace. */
  peers: string[];
  /** Virtual addresses in CIDR form; they go on `interface`. */
  vips: string[];
}

export interface KeepalivedSpec {
  /** Shows up in logs; [A-Za-z0-9_.-]. */
  routerId: string;
  /** 1-254; the highest wins and, with preempt (always on here), takes the VIPs back. */
  priority: number;
  /** Seconds between adverts. VRRPv3 allows sub-second values in steps of 0.01 s. */
  advertIntSec: number;
  instances: VrrpInstanceSpec[];
  /** Name of the sync group holding every instance, so the VIPs move together. Default CTS_G. */
  syncGroup?: string;
  hooks?: KeepalivedHooks;
  /** Script user (no keepalived_script user exists in the lab). Default root. */
  scriptUser?: string;
  /** Delay of the second gratuitous ARP burst after becoming master, seconds. Default 1. */
  garpMasterDelaySec?: number;
}

export class KeepalivedConfigError extends Error {
  readonly code = 'CTS_ERR_LAB_KEEPALIVED';
}

const NAME = /^[A-Za-z0-9_]{1,32}$/;
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function isIpv4(a: string): boolean {
  const m = IPV4.exec(a);
  return m !== null && m.slice(1).every((o) => Number(o) <= 255);
}

function isCidr4(c: string): boolean {
  const [addr, len, ...rest] = c.split('/');
  return rest.length === 0 && addr !== undefined && isIpv4(addr) && len !== undefined && /^\d{1,2}$/.test(len) && Number(len) <= 32;
}

/** keepalived reads a script as one double-quoted string: no quote, newline or comment character may break it. */
function isScript(s: string): boolean {
  return s.trim() !== '' && !/["\n\r#!{}]/.test(s);
}

/** Every problem with a spec, one line each (empty when valid). */
export function checkKeepalivedSpec(spec: KeepalivedSpec): string[] {
  const bad: string[] = [];
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(spec.routerId)) bad.push(`routerId "${spec.routerId}" must be [A-Za-z0-9_.-]`);
  if (!Number.isInteger(spec.priority) || spec.priority < 1 || spec.priority > 254) bad.push(`priority ${spec.priority} must be 1-254`);
  const centi = Math.round(spec.advertIntSec * 100);
  if (!(spec.advertIntSec > 0) || spec.advertIntSec > 40.95 || Math.abs(centi - spec.advertIntSec * 100) > 1e-6) {
    bad.push(`advertIntSec ${spec.advertIntSec} must be 0.01-40.95 in steps of 0.01 (VRRPv3)`);
  }
  if (spec.instances.length === 0) bad.push('instances must not be empty');
  if (spec.syncGroup !== undefined && !NAME.test(spec.syncGroup)) bad.push(`syncGroup "${spec.syncGroup}" must be [A-Za-z0-9_]`);
  const seen = new Set<string>();
  for (const [i, inst] of spec.instances.entries()) {
    const at = `instances[${i}]`;
    if (!NAME.test(inst.name)) bad.push(`${at}.name "${inst.name}" must be [A-Za-z0-9_]`);
    if (seen.has(inst.name)) bad.push(`${at}.name "${inst.name}" is used twice`);
    seen.add(inst.name);
    if (!IFNAME.test(inst.interface)) bad.push(`${at}.interface "${inst.interface}" is not an interface name`);
    if (!Number.isInteger(inst.virtualRouterId) || inst.virtualRouterId < 1 || inst.virtualRouterId > 255) {
      bad.push(`${at}.virtualRouterId ${inst.virtualRouterId} must be 1-255`);
    }
    if (!isIpv4(inst.srcIp)) bad.push(`${at}.srcIp "${inst.srcIp}" must be an IPv4 address`);
    if (inst.peers.length === 0) bad.push(`${at}.peers must name at least one unicast peer (multicast is not allowed)`);
    for (const p of inst.peers) if (!isIpv4(p)) bad.push(`${at}.peers: "${p}" must be an IPv4 address`);
    if (inst.vips.length === 0) bad.push(`${at}.vips must not be empty`);
    for (const v of inst.vips) if (!isCidr4(v)) bad.push(`${at}.vips: "${v}" must be IPv4 CIDR (a.b.c.d/len)`);
  }
  const h = spec.hooks ?? {};
  for (const key of ['notifyMaster', 'notifyBackup', 'notifyFault', 'notifyStop', 'notify'] as const) {
    const s = h[key];
    if (s !== undefined && !isScript(s)) bad.push(`hooks.${key} must be a non-empty command line without " # ! { } or newlines`);
  }
  if (h.fifo) {
    if (!isScript(h.fifo.path) || /\s/.test(h.fifo.path)) bad.push('hooks.fifo.path must be a path without spaces or quotes');
    if (h.fifo.script !== undefined && !isScript(h.fifo.script)) bad.push('hooks.fifo.script must be a command line without " # ! { } or newlines');
  }
  if (h.trackFile) {
    const t = h.trackFile;
    if (!isScript(t.path) || /\s/.test(t.path)) bad.push('hooks.trackFile.path must be a path without spaces or quotes');
    if (t.weight !== undefined && (!Number.isInteger(t.weight) || t.weight < -254 || t.weight > 254)) bad.push('hooks.trackFile.weight must be -254..254');
    if (t.init !== undefined && !Number.isInteger(t.init)) bad.push('hooks.trackFile.init must be an integer');
  }
  return bad;
}

/** The keepalived.conf text for one node. Pure: same spec, same text. Throws KeepalivedConfigError listing every bad key. */
export function keepalivedConfig(spec: KeepalivedSpec): string {
  const bad = checkKeepalivedSpec(spec);
  if (bad.length) throw new KeepalivedConfigError(`invalid keepalived spec:\n  ${bad.join('\n  ')}`);
  const h = spec.hooks ?? {};
  const group = spec.syncGroup ?? 'CTS_G';
  const q = (s: string): string => `"${s}"`;
  const out: string[] = [`! generated by ctsync's failover lab for ${spec.routerId}`, 'global_defs {'];
  out.push(`  router_id ${spec.routerId}`);
  // v3: sub-second adverts, no authentication block (v2 only).
  out.push('  vrrp_version 3');
  out.push(`  script_user ${spec.scriptUser ?? 'root'}`);
  out.push(`  vrrp_garp_master_delay ${spec.garpMasterDelaySec ?? 1}`);
  if (h.fifo) {
    const kw = (h.fifo.scope ?? 'vrrp') === 'vrrp' ? 'vrrp_notify_fifo' : 'notify_fifo';
    out.push(`  ${kw} ${h.fifo.path}`);
    if (h.fifo.script) out.push(`  ${kw}_script ${q(h.fifo.script)}`);
  }
  out.push('}');

  const trackName = 'ctsync_ready';
  if (h.trackFile) {
    out.push(`track_file ${trackName} {`, `  file ${h.trackFile.path}`, `  weight ${h.trackFile.weight ?? 0}`);
    out.push(`  init_file ${h.trackFile.init ?? 0}`, '}');
  }

  out.push(`vrrp_sync_group ${group} {`, '  group {');
  for (const inst of spec.instances) out.push(`    ${inst.name}`);
  out.push('  }');
  const scripts: [string, string | undefined][] = [
    ['notify_master', h.notifyMaster],
    ['notify_backup', h.notifyBackup],
    ['notify_fault', h.notifyFault],
    ['notify_stop', h.notifyStop],
    ['notify', h.notify],
  ];
  for (const [kw, s] of scripts) if (s !== undefined) out.push(`  ${kw} ${q(s)}`);
  out.push('}');

  for (const inst of spec.instances) {
    out.push(`vrrp_instance ${inst.name} {`);
    // Everyone starts as BACKUP; the election (priority, preempt on) decides. No nopreempt: failback must work.
    out.push('  state BACKUP', `  interface ${inst.interface}`, `  virtual_router_id ${inst.virtualRouterId}`);
    out.push(`  priority ${spec.priority}`, `  advert_int ${spec.advertIntSec}`);
    out.push(`  unicast_src_ip ${inst.srcIp}`, '  unicast_peer {');
    for (const p of inst.peers) out.push(`    ${p}`);
    out.push('  }', '  virtual_ipaddress {');
    for (const v of inst.vips) out.push(`    ${v} dev ${inst.interface}`);
    out.push('  }');
    if (h.trackFile) out.push('  track_file {', `    ${trackName} weight ${h.trackFile.weight ?? 0}`, '  }');
    out.push('}');
  }
  return out.join('\n') + '\n';
}
