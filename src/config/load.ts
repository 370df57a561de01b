// Config loading: YAML file + command-line overrides → validate every key → cross-check → a frozen Config.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { RedisConnectOptions } from '../transport/redis/options.js';
import type { CertNames } from '../transport/tcp/options.js';
import { SCHEMA, type KeySpec } from './schema.js';

export interface PeerConfig {
  id: string;
  addresses: string[];
}

export interface Config {
  nodeId: string;
  clusterId: string;
  listen: string;
  peers: PeerConfig[];
  security: { mode: 'psk' | 'cert' | 'insecure'; keyFile: string; ca?: string; cert?: string; key?: string };
  control: { socket: string };
  metrics: { listen: string };
  log: { level: string };
  kernel: { netns?: string; eventBuffer: number; resyncOnOverrun: boolean };
  sync: {
    protocols: string[];
    acceptCidrs: string[];
    ignoreCidrs: string[];
    tcpStates: string[];
    zones: string[];
    marks: string[];
    connectionless: boolean;
    minAge: number;
    refreshInterval: number;
    digestInterval: number;
    coalesce: number;
    quiet: number;
  };
  link: { heartbeat: number; deadAfter: number; maxFrame: number };
  transport: 'tcp' | 'redis' | 'both';
  redis: {
    mode: 'single' | 'sentinel' | 'cluster';
    addresses: string[];
    name?: string;
    username?: string;
    passwordFile?: string;
    db: number;
    tls?: { ca?: string; cert?: string; key?: string; servername?: string };
    peers: string[];
    maxLen: number;
    maxBuffer: number;
  };
  commit: { liberal: boolean; labels: boolean; warm: boolean };
  ha: { purgeAfter: number; trackFile: string; maxLinkDown: number };
}

/** Certificate mode's three files, and the config keys an error about one of them names (for loadCerts). */
export function certFiles(s: Config['security']): [CertNames, CertNames] {
  return [{ caFile: s.ca!, certFile: s.cert!, keyFile: s.key! }, { caFile: 'security.ca', certFile: 'security.cert', keyFile: 'security.key' }];
}

/** How the daemon reaches Redis (redis.*), in the transport's terms: for the transport and for `ctsync doctor`. */
export function redisConnect(r: Config['redis']): RedisConnectOptions {
  return {
    mode: r.mode,
    addresses: [...r.addresses],
    db: r.db,
    ...(r.name ? { name: r.name } : {}),
    ...(r.username ? { username: r.username } : {}),
    ...(r.passwordFile ? { passwordFile: r.passwordFile } : {}),
    ...(r.tls ? { tls: { caFile: r.tls.ca, certFile: r.tls.cert, keyFile: r.tls.key, servername: r.tls.servername } } : {}),
  };
}

export class ConfigError extends Error {
  readonly code = 'CTS_ERR_CONFIG_INVALID';
  constructor(readonly problems: string[]) {
    super(`invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n  ${problems.join('\n  ')}`);
  }
}

const UNITS_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** The longest timer Node.js arms (2^31-1 ms, 596 h); a longer one fires after 1 ms. */
const MAX_TIMER_MS = 0x7fffffff;
const UNITS_B: Record<string, number> = { '': 1, k: 1 << 10, kib: 1 << 10, m: 1 << 20, mib: 1 << 20, g: 1 << 30, gib: 1 << 30 };

function coerce(spec: KeySpec, v: unknown): { value?: unknown; problem?: string } {
  switch (spec.type) {
    case 'string':
      return typeof v === 'string' || typeof v === 'number' ? { value: String(v) } : { problem: 'must be a string' };
    case 'bool':
      if (typeof v === 'boolean') return { value: v };
      if (v === 'true' || v === 'false') return { value: v === 'true' };
      return { problem: 'must be true or false' };
    case 'int':
      return Number.isInteger(v) ? { value: v } : { problem: 'must be an integer' };
    case 'duration': {
      const m = /^(\d+(?:\.\d+)?)\s*(us|ms|s|m|h)$/.exec(String(v));
      const ms = typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : m ? Number(m[1]) * UNITS_MS[m[2]] : undefined;
      if (ms === undefined) return { problem: 'must be milliseconds or a duration like 200us, 500ms, 5s, 2m' };
      return ms <= MAX_TIMER_MS ? { value: ms } : { problem: 'must be at most 596h (2147483647 ms, the longest timer)' };
    }
    case 'size': {
      const m = /^(\d+)\s*([a-z]*)$/i.exec(String(v));
      const unit = m?.[2].toLowerCase();
      const bytes = typeof v === 'number' && Number.isInteger(v) ? v : m && unit !== undefined && unit in UNITS_B ? Number(m[1]) * UNITS_B[unit] : undefined;
      return bytes !== undefined && bytes > 0 ? { value: bytes } : { problem: 'must be bytes or a size like 64MiB, more than 0' };
    }
    case 'string[]':
      if (typeof v === 'string') return { value: v.split(',').map((s) => s.trim()).filter(Boolean) };
      return Array.isArray(v) && v.every((x) => typeof x === 'string' || typeof x === 'number') ? { value: v.map(String) } : { problem: 'must be a list of strings' };
    case 'peers':
      return coercePeers(v);
  }
}

function coercePeers(v: unknown): { value?: PeerConfig[]; problem?: string } {
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list)) return { problem: 'must be a list of { id, addresses }' };
  const peers: PeerConfig[] = [];
  for (const [i, p] of list.entries()) {
    // a command-line peer is ID=HOST:PORT[,HOST:PORT]
    if (typeof p === 'string') {
      const m = /^([^=]+)=(.+)$/.exec(p);
      if (!m) return { problem: `[${i}] must be ID=HOST:PORT[,HOST:PORT...]` };
      peers.push({ id: m[1], addresses: m[2].split(',') });
      continue;
    }
    const o = p as { id?: unknown; addresses?: unknown };
    if (!o || typeof o.id !== 'string') return { problem: `[${i}].id must be a string` };
    if (!Array.isArray(o.addresses) || !o.addresses.length || !o.addresses.every((a) => typeof a === 'string'))
      return { problem: `[${i}].addresses must be a non-empty list of HOST:PORT` };
    const extra = Object.keys(o).filter((k) => k !== 'id' && k !== 'addresses');
    if (extra.length) return { problem: `[${i}] has unknown key(s) ${extra.join(', ')}` };
    peers.push({ id: o.id, addresses: o.addresses as string[] });
  }
  return { value: peers };
}

/** Flatten nested YAML into dotted keys, stopping at arrays and at keys the schema knows as leaves. */
function flatten(o: Record<string, unknown>, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  for (const [k, v] of Object.entries(o)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v) && !(key in SCHEMA)) flatten(v as Record<string, unknown>, key, out);
    else out[key] = v;
  }
  return out;
}

/**
 * Check the keys against each other. Runs even when some keys are bad (they hold their defaults here), so one start
 * names every problem; a check that involves a bad key is skipped, since that key's own problem is already named.
 */
function crossCheck(c: Config, problems: string[], bad: ReadonlySet<string>): void {
  const ok = (...keys: string[]) => keys.every((k) => !bad.has(k));
  if (ok('peers', 'nodeId') && c.peers.some((p) => p.id === c.nodeId)) problems.push(`peers: lists this node's own nodeId '${c.nodeId}'`);
  if (ok('link.deadAfter', 'link.heartbeat') && c.link.deadAfter < 2 * c.link.heartbeat)
    problems.push(`link.deadAfter (${c.link.deadAfter} ms) must be at least twice link.heartbeat (${c.link.heartbeat} ms), or one late heartbeat drops the link`);
  if (ok('metrics.listen', 'listen') && c.metrics.listen !== '' && c.metrics.listen === c.listen) problems.push(`metrics.listen: '${c.metrics.listen}' is also the peer link's listen address`);
  if (ok('transport', 'peers') && c.transport === 'both' && !c.peers.length) problems.push('peers: transport both needs the direct link\'s peers (id and addresses); or use transport redis');
  if (ok('transport') && c.transport !== 'tcp') {
    const ids = c.redis.peers.length ? c.redis.peers : c.peers.map((p) => p.id);
    if (ok('redis.peers', 'peers') && !ids.length) problems.push(`redis.peers: transport ${c.transport} needs the other nodes' ids (redis.peers, or peers)`);
    if (ok('redis.peers', 'peers', 'nodeId') && ids.includes(c.nodeId)) problems.push(`redis.peers: lists this node's own nodeId '${c.nodeId}'`);
    if (ok('redis.mode', 'redis.name') && c.redis.mode === 'sentinel' && !c.redis.name) problems.push('redis.name: is required when redis.mode is sentinel');
    if (ok('redis.mode', 'redis.db') && c.redis.mode === 'cluster' && c.redis.db) problems.push('redis.db: must be 0 when redis.mode is cluster');
  }
  if (ok('security.mode') && c.security.mode === 'cert')
    for (const k of ['ca', 'cert', 'key'] as const) if (ok(`security.${k}`) && !c.security[k]) problems.push(`security.${k}: is required when security.mode is cert`);
}

/**
 * Build the config from a parsed YAML document plus overrides (from flags, already dotted keys).
 * Throws ConfigError naming every bad key, with the reason.
 */
export function buildConfig(doc: unknown, overrides: Record<string, unknown> = {}): Readonly<Config> {
  const problems: string[] = [];
  if (doc !== undefined && doc !== null && (typeof doc !== 'object' || Array.isArray(doc))) throw new ConfigError(['the file must hold a YAML mapping of keys']);
  const flat = { ...flatten((doc ?? {}) as Record<string, unknown>), ...overrides };
  const values: Record<string, unknown> = {};
  const bad = new Set<string>();
  for (const key of Object.keys(flat)) if (!(key in SCHEMA)) problems.push(`${key}: unknown key${suggest(key)}`);
  for (const [key, spec] of Object.entries(SCHEMA) as [string, KeySpec][]) {
    const raw = flat[key];
    if (raw === undefined || raw === null) {
      if (spec.default === undefined && key === 'nodeId') {
        problems.push(`${key}: is required (set nodeId in the file or --node-id)`);
        bad.add(key);
      }
      values[key] = spec.default;
      continue;
    }
    const { value, problem } = coerce(spec, raw);
    const checked = problem ?? spec.check?.(value);
    if (checked) {
      problems.push(`${key}: ${checked} (got ${JSON.stringify(raw)})`);
      bad.add(key);
    }
    values[key] = checked ? spec.default : value;
  }
  const config = {} as Record<string, unknown>;
  for (const [key, v] of Object.entries(values)) {
    if (v === undefined) continue;
    const parts = key.split('.');
    let o = config;
    for (const p of parts.slice(0, -1)) o = (o[p] ??= {}) as Record<string, unknown>;
    o[parts[parts.length - 1]] = v;
  }
  for (const section of ['security', 'control', 'metrics', 'log', 'kernel', 'sync', 'link', 'commit', 'ha', 'redis']) config[section] ??= {};
  crossCheck(config as unknown as Config, problems, bad);
  if (problems.length) throw new ConfigError(problems);
  return deepFreeze(config) as unknown as Readonly<Config>;
}

function suggest(key: string): string {
  const near = Object.keys(SCHEMA)
    .map((k) => [k, distance(k.toLowerCase(), key.toLowerCase())] as const)
    .sort((a, b) => a[1] - b[1])[0];
  return near && near[1] <= 3 ? ` (did you mean ${near[0]}?)` : '';
}

/** Levenshtein distance: enough to catch a typo in a key name. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

export function loadConfig(file: string | undefined, overrides: Record<string, unknown> = {}): Readonly<Config> {
  let doc: unknown = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError([`cannot read ${file}: ${(err as Error).message}`]);
    }
    try {
      doc = parseYaml(text);
    } catch (err) {
      throw new ConfigError([`${file} is not valid YAML: ${(err as Error).message}`]);
    }
  }
  return buildConfig(doc, overrides);
}
