// The JSON form of a flow (what `ctsync ct list --json` prints and `ct load` reads) and its strict validation.
import { isIP } from 'node:net';
import { Af, IpProto, Ips, type Flow, type Tuple } from './types.js';

export const PROTO_NAMES: Record<number, string> = {
  [IpProto.Icmp]: 'icmp',
  [IpProto.Tcp]: 'tcp',
  [IpProto.Udp]: 'udp',
  [IpProto.Dccp]: 'dccp',
  [IpProto.Gre]: 'gre',
  [IpProto.Icmpv6]: 'icmpv6',
  [IpProto.Sctp]: 'sctp',
  [IpProto.UdpLite]: 'udplite',
};

export const TCP_STATES = ['NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2'];
export const SCTP_STATES = ['NONE', 'CLOSED', 'COOKIE_WAIT', 'COOKIE_ECHOED', 'ESTABLISHED', 'SHUTDOWN_SENT', 'SHUTDOWN_RECD', 'SHUTDOWN_ACK_SENT', 'HEARTBEAT_SENT', 'HEARTBEAT_ACKED'];
export const DCCP_STATES = ['NONE', 'REQUEST', 'RESPOND', 'PARTOPEN', 'OPEN', 'CLOSEREQ', 'CLOSING', 'TIMEWAIT', 'IGNORE', 'INVALID'];

const STATUS_NAMES: [number, string][] = [
  [Ips.Expected, 'EXPECTED'],
  [Ips.SeenReply, 'SEEN_REPLY'],
  [Ips.Assured, 'ASSURED'],
  [Ips.Confirmed, 'CONFIRMED'],
  [Ips.SrcNat, 'SRC_NAT'],
  [Ips.DstNat, 'DST_NAT'],
  [Ips.SeqAdjust, 'SEQ_ADJUST'],
  [Ips.SrcNatDone, 'SRC_NAT_DONE'],
  [Ips.DstNatDone, 'DST_NAT_DONE'],
  [Ips.Dying, 'DYING'],
  [Ips.FixedTimeout, 'FIXED_TIMEOUT'],
  [Ips.Template, 'TEMPLATE'],
  [Ips.Untracked, 'UNTRACKED'],
  [Ips.Helper, 'HELPER'],
  [Ips.Offload, 'OFFLOAD'],
  [Ips.HwOffload, 'HW_OFFLOAD'],
];

export function statusNames(status: number): string[] {
  return STATUS_NAMES.filter(([bit]) => status & bit).map(([, name]) => name);
}

/** The protocol state of a flow by name ('ESTABLISHED'), or undefined for stateless protocols. */
export function stateName(f: Flow): string | undefined {
  const p = f.protoinfo;
  if (p?.tcp) return TCP_STATES[p.tcp.state] ?? String(p.tcp.state);
  if (p?.sctp) return SCTP_STATES[p.sctp.state] ?? String(p.sctp.state);
  if (p?.dccp) return DCCP_STATES[p.dccp.state] ?? String(p.dccp.state);
  return undefined;
}

/**
 * A flow as a plain JSON object: the Flow model's own fields (bigints as decimal strings, byte strings as hex),
 * plus read-only names for people (`l3`, `l4`, `state`, `flags`) that `flowFromJson` ignores.
 */
export function flowToJson(f: Flow): Record<string, unknown> {
  const names: Record<string, unknown> = {
    l3: f.family === Af.Inet6 ? 'ipv6' : 'ipv4',
    l4: PROTO_NAMES[f.orig.proto] ?? String(f.orig.proto),
  };
  const state = stateName(f);
  if (state) names.state = state;
  if (f.status !== undefined) names.flags = statusNames(f.status);
  return { ...names, ...(JSON.parse(JSON.stringify(f, replacer)) as Record<string, unknown>) };
}

function replacer(this: unknown, _key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value && typeof value === 'object' && (value as { type?: string }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)) {
    return Buffer.from((value as { data: number[] }).data).toString('hex');
  }
  return value;
}

/** One reason a JSON flow was rejected: the field path and what is wrong with it. */
export interface JsonProblem {
  path: string;
  problem: string;
}

type Obj = Record<string, unknown>;

class Checker {
  readonly problems: JsonProblem[] = [];
  bad(path: string, problem: string): undefined {
    this.problems.push({ path, problem });
    return undefined;
  }
  obj(v: unknown, path: string): Obj | undefined {
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : this.bad(path, 'must be an object');
  }
  int(o: Obj, key: string, path: string, max: number, required = false): number | undefined {
    const v = o[key];
    if (v === undefined) return required ? this.bad(`${path}${key}`, 'is required') : undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) return this.bad(`${path}${key}`, `must be an integer 0..${max}`);
    return v;
  }
  big(o: Obj, key: string, path: string): bigint | undefined {
    const v = o[key];
    if (v === undefined) return undefined;
    if ((typeof v === 'string' && /^\d+$/.test(v)) || (typeof v === 'number' && Number.isInteger(v) && v >= 0)) return BigInt(v);
    return this.bad(`${path}${key}`, 'must be a non-negative integer (or a decimal string)');
  }
  hex(o: Obj, key: string, path: string): Buffer | undefined {
    const v = o[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || !/^([0-9a-f]{2})*$/i.test(v)) return this.bad(`${path}${key}`, 'must be a hex string');
    return Buffer.from(v, 'hex');
  }
  str(o: Obj, key: string, path: string): string | undefined {
    const v = o[key];
    if (v === undefined) return undefined;
    return typeof v === 'string' && v.length > 0 && v.length < 32 ? v : this.bad(`${path}${key}`, 'must be a short string');
  }
  tuple(v: unknown, path: string, family: number | undefined): Tuple | undefined {
    const o = this.obj(v, path);
    if (!o) return undefined;
    const p = `${path}.`;
    const want = family === Af.Inet6 ? 6 : 4;
    const ip = (key: string): string | undefined => {
      const s = o[key];
      if (typeof s !== 'string' || isIP(s) !== want) return this.bad(`${p}${key}`, `must be an IPv${want} address`);
      return s;
    };
    const src = ip('src');
    const dst = ip('dst');
    const proto = this.int(o, 'proto', p, 255, true);
    if (src === undefined || dst === undefined || proto === undefined) return undefined;
    const t: Tuple = { src, dst, proto };
    for (const k of ['sport', 'dport', 'icmpId'] as const) {
      const n = this.int(o, k, p, 0xffff);
      if (n !== undefined) t[k] = n;
    }
    for (const k of ['icmpType', 'icmpCode'] as const) {
      const n = this.int(o, k, p, 0xff);
      if (n !== undefined) t[k] = n;
    }
    const zone = this.int(o, 'zone', p, 0xffff);
    if (zone !== undefined) t.zone = zone;
    return t;
  }
}

/** Parse a flow from its JSON form. Returns the flow, or every problem found (each naming its field). */
export function flowFromJson(v: unknown): Flow | JsonProblem[] {
  const c = new Checker();
  const o = c.obj(v, 'flow');
  if (!o) return c.problems;
  const family = o.family === Af.Inet || o.family === Af.Inet6 ? (o.family as number) : c.bad('family', 'must be 2 (IPv4) or 10 (IPv6)');
  const orig = c.tuple(o.orig, 'orig', family);
  const reply = o.reply === undefined ? undefined : c.tuple(o.reply, 'reply', family);
  if (orig && reply && orig.proto !== reply.proto) c.bad('reply.proto', 'must equal orig.proto');
  const f: Partial<Flow> = { family, orig, reply };
  const u32 = 0xffffffff;
  for (const [k, max] of [['status', 0xffff], ['timeout', u32], ['mark', u32], ['zone', 0xffff], ['id', u32], ['use', u32], ['secmark', u32]] as const) {
    const n = c.int(o, k, '', max);
    if (n !== undefined) f[k] = n;
  }
  const labels = c.hex(o, 'labels', '');
  if (labels) f.labels = labels;
  const helper = c.str(o, 'helper', '');
  if (helper) f.helper = helper;
  if (o.master !== undefined) f.master = c.tuple(o.master, 'master', family);
  if (o.protoinfo !== undefined) {
    const pi = c.obj(o.protoinfo, 'protoinfo');
    if (pi?.tcp !== undefined) {
      const t = c.obj(pi.tcp, 'protoinfo.tcp');
      if (t) {
        const state = c.int(t, 'state', 'protoinfo.tcp.', 9, true);
        const tcp: NonNullable<Flow['protoinfo']>['tcp'] = { state: state ?? 0 };
        for (const k of ['wscaleOrig', 'wscaleReply', 'flagsOrig', 'flagsReply'] as const) {
          const n = c.int(t, k, 'protoinfo.tcp.', 0xff);
          if (n !== undefined) tcp[k] = n;
        }
        f.protoinfo = { tcp };
      }
    } else if (pi?.sctp !== undefined) {
      const s = c.obj(pi.sctp, 'protoinfo.sctp');
      if (s) {
        const sctp = { state: c.int(s, 'state', 'protoinfo.sctp.', 0xff, true) ?? 0, vtagOrig: c.int(s, 'vtagOrig', 'protoinfo.sctp.', u32), vtagReply: c.int(s, 'vtagReply', 'protoinfo.sctp.', u32) };
        f.protoinfo = { sctp: dropUndefined(sctp) };
      }
    } else if (pi?.dccp !== undefined) {
      const d = c.obj(pi.dccp, 'protoinfo.dccp');
      if (d) {
        const dccp = { state: c.int(d, 'state', 'protoinfo.dccp.', 0xff, true) ?? 0, role: c.int(d, 'role', 'protoinfo.dccp.', 0xff), handshakeSeq: c.big(d, 'handshakeSeq', 'protoinfo.dccp.') };
        f.protoinfo = { dccp: dropUndefined(dccp) };
      }
    }
  }
  for (const k of ['seqAdjOrig', 'seqAdjReply'] as const) {
    if (o[k] === undefined) continue;
    const s = c.obj(o[k], k);
    if (!s) continue;
    const adj = { correctionPos: c.int(s, 'correctionPos', `${k}.`, u32, true), offsetBefore: c.int(s, 'offsetBefore', `${k}.`, u32, true), offsetAfter: c.int(s, 'offsetAfter', `${k}.`, u32, true) };
    if (adj.correctionPos !== undefined && adj.offsetBefore !== undefined && adj.offsetAfter !== undefined) f[k] = adj as Flow[typeof k];
  }
  if (c.problems.length) return c.problems;
  return dropUndefined(f) as Flow;
}

function dropUndefined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}
