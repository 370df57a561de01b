// Every configuration key of the daemon, its type, its default and why: the one place options are defined.
// Load → validate (every bad key named) → cross-check → freeze happens in load.ts.

import { isIPv4, isIPv6 } from 'node:net';
import { REDIS_HIGH_WATER_BYTES } from '../transport/redis/options.js';
import { ID_RE, ID_RULE, parseHostPort } from '../transport/types.js';

export type KeyType = 'string' | 'int' | 'bool' | 'string[]' | 'duration' | 'size' | 'peers';

export interface KeySpec {
  type: KeyType;
  default?: unknown;
  doc: string;
  /** Extra check; returns the problem or undefined. */
  check?: (v: unknown) => string | undefined;
  /** Also settable as a command-line flag of `ctsync daemon`. */
  flag?: string;
}

const oneOf =
  (...allowed: string[]) =>
  (v: unknown) =>
    allowed.includes(v as string) ? undefined : `must be one of ${allowed.join(', ')}`;
const hostPort = (v: unknown) => (parseHostPort(String(v)) ? undefined : 'must be HOST:PORT ([v6addr]:PORT for IPv6), port 1-65535');
const id = (v: unknown) => (ID_RE.test(String(v)) ? undefined : `must be ${ID_RULE}`);
/** A whole number of ms, at least `min` ms. */
const wholeMs = (min: number) => (v: unknown) => (Number.isInteger(v) && (v as number) >= min ? undefined : `must be a whole number of ms, at least ${min}ms`);
/** 0 (off) or at least `min` ms. */
const offOrAtLeast = (min: number, unit: string) => (v: unknown) => (v === 0 || (v as number) >= min ? undefined : `must be 0 (off) or at least ${unit}`);
/** sun_path holds 108 bytes with the terminating NUL. */
const socketPath = (v: unknown) => (Buffer.byteLength(String(v)) <= 107 ? undefined : 'must be at most 107 bytes (a UNIX socket path)');
/** Where the Redis send buffer reports backpressure, as the config writes sizes. */
const HIGH_WATER = `${REDIS_HIGH_WATER_BYTES / (1 << 20)}MiB`;
const range = (lo: number, hi: number) => (v: unknown) => ((v as number) >= lo && (v as number) <= hi ? undefined : `must be between ${lo} and ${hi}`);
/** A list whose every item passes `item`; names each item that does not. */
const each = (item: (s: string) => string | undefined) => (v: unknown) => (v as string[]).map(item).filter(Boolean).join('; ') || undefined;
const cidr = (c: string) => {
  const [addr, len, ...rest] = c.split('/');
  const bits = isIPv4(addr) ? 32 : isIPv6(addr) ? 128 : 0;
  return !bits || rest.length || (len !== undefined && !(/^\d+$/.test(len) && Number(len) <= bits)) ? `'${c}' is not an address or CIDR` : undefined;
};
const zone = (z: string) => (/^\d+$/.test(z) && Number(z) <= 0xffff ? undefined : `'${z}' must be a zone number 0..65535`);
const mark = (m: string) =>
  !/^(0x[0-9a-f]+|\d+)(\/(0x[0-9a-f]+|\d+))?$/i.test(m) ? `'${m}' must be VALUE or VALUE/MASK` : m.split('/').some((x) => Number(x) > 0xffffffff) ? `'${m}' does not fit the 32-bit mark` : undefined;
/** An item of a list of addresses; `owner` says whose it is in a list of lists (" of fw2"). */
const hostPortItem = (a: string, owner = '') => (parseHostPort(a) ? undefined : `'${a}'${owner} must be HOST:PORT (port 1-65535)`);
const listedHostPort = (a: string) => hostPortItem(a);
const listedId = (i: string) => (ID_RE.test(i) ? undefined : `'${i}' must be ${ID_RULE}`);
const peerList = (v: unknown) => {
  const peers = v as { id: string; addresses: string[] }[];
  const ids = peers.map((p) => p.id);
  const problems = peers.flatMap((p) => [listedId(p.id) && `id ${listedId(p.id)}`, ...p.addresses.map((a) => hostPortItem(a, ` of ${p.id}`))]);
  if (new Set(ids).size !== ids.length) problems.push('the same id appears twice');
  return problems.filter(Boolean).join('; ') || undefined;
};

export const PROTOCOLS = ['tcp', 'udp', 'udplite', 'icmp', 'icmpv6', 'sctp', 'dccp', 'gre'];
export const TCP_STATE_NAMES = ['SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2'];

/** Dotted key → spec. The YAML nests by the dots (`sync.protocols` is `sync: { protocols: [...] }`). */
export const SCHEMA = {
  nodeId: { type: 'string', doc: 'This node\'s unique name in the cluster (hostname-like).', flag: 'node-id', check: id },
  clusterId: { type: 'string', default: 'ctsync', doc: 'Name shared by every node of one cluster; a peer with another is refused.', flag: 'cluster-id', check: id },
  listen: { type: 'string', default: '0.0.0.0:3780', doc: 'Address of the peer link listener.', flag: 'listen', check: hostPort },
  peers: { type: 'peers', default: [], doc: 'The other nodes: [{ id, addresses: [HOST:PORT, ...] }]; the first address is the dedicated sync link, the rest are fallbacks.', flag: 'peer', check: peerList },

  'security.mode': { type: 'string', default: 'psk', doc: 'psk (TLS with a pre-shared key), cert (mutual TLS), or insecure (plaintext; logs a warning at every start).', check: oneOf('psk', 'cert', 'insecure') },
  'security.keyFile': { type: 'string', default: '/etc/ctsync/cluster.key', doc: 'Pre-shared key (hex or base64, at least 32 bytes). Create one with `ctsync keygen`.', flag: 'key-file' },
  'security.ca': { type: 'string', doc: 'cert mode: CA bundle that signs every node\'s certificate.' },
  'security.cert': { type: 'string', doc: 'cert mode: this node\'s certificate.' },
  'security.key': { type: 'string', doc: 'cert mode: this node\'s private key (mode 0600: refused if every user can read it).' },

  'control.socket': { type: 'string', default: '/run/ctsync/ctsync.sock', doc: 'UNIX socket of `ctsync stats`, `dump`, `commit`...; created mode 0600 (root only).', flag: 'control-socket', check: socketPath },
  'metrics.listen': { type: 'string', default: '127.0.0.1:9779', doc: 'Prometheus metrics address (loopback by default); empty string disables.', check: (v) => (v === '' ? undefined : hostPort(v)) },
  'log.level': { type: 'string', default: 'info', doc: 'pino level: debug, info, warn, error.', check: oneOf('trace', 'debug', 'info', 'warn', 'error', 'fatal') },

  'kernel.netns': { type: 'string', doc: 'Network namespace whose conntrack table is synced (default: the daemon\'s own).', flag: 'netns' },
  'kernel.eventBuffer': { type: 'size', default: 64 << 20, doc: 'Event socket receive buffer (bytes; set with SO_RCVBUFFORCE). 64 MiB holds ~50k TCP events: 0.5 s at the kernel\'s top rate.', check: range(1, 0x7fffffff) },
  'kernel.resyncOnOverrun': { type: 'bool', default: true, doc: 'After lost events, dump the table and diff (the only cure; see DOMAIN.md).' },

  'sync.protocols': { type: 'string[]', default: ['tcp', 'udp', 'udplite', 'icmp', 'icmpv6', 'sctp', 'dccp', 'gre'], doc: 'L4 protocols to sync. Fewer protocols, less traffic; an unsynced protocol\'s flows die at failover.', check: (v) => ((v as string[]).length && (v as string[]).every((p) => PROTOCOLS.includes(p)) ? undefined : `must list one or more of ${PROTOCOLS.join(', ')}`) },
  'sync.acceptCidrs': { type: 'string[]', default: [], doc: 'If not empty, only flows whose original source or destination is in one of these CIDRs are synced.', check: each(cidr) },
  'sync.ignoreCidrs': { type: 'string[]', default: ['127.0.0.0/8', '::1/128'], doc: 'Flows from or to these CIDRs are never synced (the firewall\'s own management traffic, the sync link itself).', check: each(cidr) },
  'sync.tcpStates': { type: 'string[]', default: TCP_STATE_NAMES, doc: 'TCP states worth syncing. Syncing only ESTABLISHED halves traffic under SYN floods but loses handshakes in flight at failover.', check: (v) => ((v as string[]).every((s) => TCP_STATE_NAMES.includes(s)) ? undefined : `entries must be among ${TCP_STATE_NAMES.join(', ')}`) },
  'sync.zones': { type: 'string[]', default: [], doc: 'If not empty, only these conntrack zones (numbers) are synced.', check: each(zone) },
  'sync.marks': { type: 'string[]', default: [], doc: 'If not empty, only flows whose mark matches one of VALUE or VALUE/MASK (hex or decimal).', check: each(mark) },
  'sync.connectionless': { type: 'bool', default: true, doc: 'Sync UDP/ICMP/GRE flows. Off saves most of the traffic on DNS-heavy firewalls; their replies are dropped after failover until re-created.' },
  'sync.minAge': { type: 'duration', default: 0, doc: 'Sync a flow only once it is this old (ms; FortiGate\'s session-pickup-delay). Short-lived flows cost nothing, but a flow younger than this dies at failover.' },
  'sync.refreshInterval': { type: 'duration', default: 30000, doc: 'How often the active re-reads remaining timeouts (a dump) and sends compact refreshes; the kernel never reports timeout refreshes. 0: never; otherwise at least 1s.', check: offOrAtLeast(1000, '1s') },
  'sync.digestInterval': { type: 'duration', default: 60000, doc: 'How often peers compare table digests (anti-entropy) and repair what differs. 0: never; otherwise at least 1s.', check: offOrAtLeast(1000, '1s') },
  'sync.coalesce': { type: 'duration', default: 20, doc: 'Longest time (ms) a change waits to be batched into one frame; a batch goes out sooner when it fills a frame, or when kernel events pause for sync.quiet after a burst. After a lone change (which goes at once) the event reader lets the next ones queue in the kernel this long and reads them as one batch, so a trickle costs a frame and a wake-up per coalesce interval, not per change; a trickle\'s changes thus reach the standby up to this much later (the reader waits at most 100 ms; pfsync waits up to 1 s).' },
  'sync.quiet': { type: 'duration', default: 0.2, doc: 'A burst of kernel events has ended once none came for this long (ms; 0.2 = 200us); the pending batch goes out then. The event reader waits for it in the kernel, so shorter = the end of a burst reaches the standby sooner, longer = fewer, fuller frames while events trickle. At most 5 ms; 0: off (a batch goes out after 1 ms without changes).', check: (v) => ((v as number) <= 5 ? undefined : 'must be at most 5ms (the event reader blocks for it)') },

  transport: { type: 'string', default: 'tcp', doc: 'How frames travel: tcp (the direct TLS peer link), redis (Redis Streams: clusters of more than two nodes, state that outlives restarts; see redis.*), or both (each change goes both ways; per peer, a commit takes the copy from the path that heard from it last, the direct link when level; costs twice the send work and twice the standby memory).', flag: 'transport', check: oneOf('tcp', 'redis', 'both') },
  'redis.mode': { type: 'string', default: 'single', doc: 'single (one server), sentinel (ask redis.addresses, the sentinels, for redis.name\'s master) or cluster (redis.addresses are seed nodes; a node\'s keys share one hash tag, so one slot).', check: oneOf('single', 'sentinel', 'cluster') },
  'redis.addresses': { type: 'string[]', default: ['127.0.0.1:6379'], doc: 'HOST:PORT of the server, of the sentinels, or of cluster seed nodes.', check: each(listedHostPort) },
  'redis.name': { type: 'string', doc: 'sentinel mode: name of the monitored master.' },
  'redis.username': { type: 'string', doc: 'ACL user. Grant it only the cluster\'s keys: `~{ctsync:CLUSTER:* +@read +@write +@stream +@hash +@transaction +@connection -@dangerous +info +cluster|slots +cluster|info` (INFO: the client\'s ready check; CLUSTER SLOTS / INFO: cluster mode).' },
  'redis.passwordFile': { type: 'string', doc: 'File holding the ACL password (kept out of the config).' },
  'redis.db': { type: 'int', default: 0, doc: 'Database number (single and sentinel; a Cluster has only 0).', check: range(0, 0x7fffffff) },
  'redis.tls.ca': { type: 'string', doc: 'Use TLS to Redis (and sentinels), verifying the server with this CA bundle.' },
  'redis.tls.cert': { type: 'string', doc: 'TLS client certificate, when Redis requires one (tls-auth-clients).' },
  'redis.tls.key': { type: 'string', doc: 'Private key of redis.tls.cert.' },
  'redis.tls.servername': { type: 'string', doc: 'Name expected in the server certificate, when it differs from the address.' },
  'redis.peers': { type: 'string[]', default: [], doc: 'Node ids whose streams this node reads; empty = the ids of `peers`.', check: each(listedId) },
  'redis.maxLen': { type: 'int', default: 100000, doc: 'Approximate length cap of this node\'s stream (XADD MAXLEN ~). A reader further behind reloads the snapshot (a full resync), so shorter costs memory less and resyncs more.', check: range(10, 1e9) },
  'redis.maxBuffer': { type: 'size', default: 64 << 20, doc: `Bytes of frames kept through a Redis outage; past a quarter of it new changes wait in the engine, one entry per flow; beyond it frames are dropped and the whole table is republished when Redis is back. More than ${HIGH_WATER}, where the buffer reports backpressure.`, check: (v) => ((v as number) > REDIS_HIGH_WATER_BYTES ? undefined : `must be more than ${HIGH_WATER} (${REDIS_HIGH_WATER_BYTES}), where the send buffer reports backpressure`) },

  'link.heartbeat': { type: 'duration', default: 500, doc: 'Heartbeat interval on the peer link (ms; at least 10ms).', check: wholeMs(10) },
  'link.deadAfter': { type: 'duration', default: 2000, doc: 'The link is down after this long without a byte (ms; at least twice link.heartbeat, or one late heartbeat drops the link).', check: wholeMs(20) },
  'link.maxFrame': { type: 'size', default: 4 << 20, doc: 'Largest frame sent to or accepted from a peer (bytes; at least 1MiB: a frame holds up to 1000 entries, and one larger than this is dropped).', check: range(1 << 20, 0x7fffffff) },

  'commit.liberal': { type: 'bool', default: true, doc: 'Set BE_LIBERAL on committed TCP flows so mid-window packets after takeover are not INVALID. false = strict window tracking with window scale.' },
  'commit.warm': { type: 'bool', default: false, doc: 'Warm standby: while not MASTER, write what the peers send into this kernel as it arrives (a round a second), so a takeover writes only what changed since the last round. Costs continuous kernel writes and a kernel table holding the peers\' flows on this node (size nf_conntrack_max for both); the flows stay inert until traffic arrives. Off: the whole copy is written at takeover (1M entries in about 3 s here).' },
  'commit.labels': { type: 'bool', default: false, doc: 'Write ct labels on commit; only if the standby ruleset uses `ct label`.' },
  'ha.purgeAfter': { type: 'duration', default: 15000, doc: 'BACKUP/FAULT: purge stale committed kernel entries after this long (ms), unless a commit comes first.' },
  'ha.trackFile': { type: 'string', default: '/run/ctsync/track', doc: 'keepalived track_file: 0 when this node is in sync, non-zero when it must not become master.' },
  'ha.maxLinkDown': { type: 'duration', default: 30000, doc: 'After the peer link has been down this long (ms) the node reports itself not in sync.' },
} satisfies Record<string, KeySpec>;

export type ConfigKey = keyof typeof SCHEMA;
