// What is synced: the config's protocol, address, state, zone and mark selections compiled into one predicate.
import { BlockList, isIPv6 } from 'node:net';
import { IpProto, type Flow } from '../kernel/types.js';
import { TCP_STATES } from '../kernel/json.js';
import type { Config } from '../config/load.js';

const PROTO_BY_NAME: Record<string, number> = {
  tcp: IpProto.Tcp,
  udp: IpProto.Udp,
  udplite: IpProto.UdpLite,
  icmp: IpProto.Icmp,
  icmpv6: IpProto.Icmpv6,
  sctp: IpProto.Sctp,
  dccp: IpProto.Dccp,
  gre: IpProto.Gre,
};
const CONNECTIONLESS = new Set<number>([IpProto.Udp, IpProto.UdpLite, IpProto.Icmp, IpProto.Icmpv6, IpProto.Gre]);

export type FlowFilter = (f: Flow) => boolean;

function blockList(cidrs: readonly string[]): BlockList | undefined {
  if (!cidrs.length) return undefined;
  const bl = new BlockList();
  for (const c of cidrs) {
    const [addr, len] = c.split('/');
    const type = isIPv6(addr) ? 'ipv6' : 'ipv4';
    if (len === undefined) bl.addAddress(addr, type);
    else bl.addSubnet(addr, Number(len), type);
  }
  return bl;
}

function hits(bl: BlockList, f: Flow): boolean {
  const type = f.family === 10 ? 'ipv6' : 'ipv4';
  return bl.check(f.orig.src, type) || bl.check(f.orig.dst, type);
}

/**
 * Compile `sync.*` into a predicate. `extraIgnore` adds addresses that are never synced whatever the config says:
 * the sync link's own endpoints (syncing the sync link's flows would feed back on itself).
 */
export function compileFilter(sync: Config['sync'], extraIgnore: string[] = []): FlowFilter {
  const protos = new Set(sync.protocols.map((p) => PROTO_BY_NAME[p]));
  const accept = blockList(sync.acceptCidrs);
  const ignore = blockList([...sync.ignoreCidrs, ...extraIgnore]);
  const tcpStates = new Set(sync.tcpStates.map((s) => TCP_STATES.indexOf(s)));
  const zones = sync.zones.length ? new Set(sync.zones.map(Number)) : undefined;
  const marks = sync.marks.map((m) => {
    const [v, mask] = m.split('/');
    return { value: Number(v) >>> 0, mask: mask === undefined ? 0xffffffff : Number(mask) >>> 0 };
  });
  return (f) => {
    const proto = f.orig.proto;
    if (!protos.has(proto)) return false;
    if (!sync.connectionless && CONNECTIONLESS.has(proto)) return false;
    if (proto === IpProto.Tcp && f.protoinfo?.tcp && !tcpStates.has(f.protoinfo.tcp.state)) return false;
    if (zones && !zones.has(f.zone ?? 0)) return false;
    if (marks.length && !marks.some((m) => ((f.mark ?? 0) & m.mask) === (m.value & m.mask))) return false;
    if (ignore && hits(ignore, f)) return false;
    if (accept && !hits(accept, f)) return false;
    return true;
  };
}
