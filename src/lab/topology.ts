// Lab topologies built from Lab primitives: client ↔ router ↔ server with optional NAT, strict filtering and FTP helper.
import { execFile } from 'node:child_process';
import type { Lab } from './netns.js';

/**
 * Private ranges used only inside lab namespaces. The host here uses 192.0.2.0/24 and fd00::/64, so the lab takes
 * 10.77.0.0/16 and fd77::/16 (ULA); assertNoHostOverlap() re-checks at build time on whatever machine runs it.
 */
export const LAB_V4_BASE = '10.77';
export const LAB_V6_BASE = 'fd77';

export interface Endpoint {
  ns: string;
  ifname: string;
  v4: string;
  v6: string;
}

export type NatMode = 'none' | 'masquerade' | 'snat' | 'dnat';

export interface RouterLabOptions {
  /** NAT on the router. Default 'none'. 'dnat' forwards `router.lan.v4|v6:dnatPort` to the server (same port). */
  nat?: NatMode;
  /** Port translated by 'dnat'. Default 8080. */
  dnatPort?: number;
  /** Assign the kernel's ftp helper to new TCP flows to these ports (nft `ct helper` object). Default none. */
  ftpPorts?: number[];
  /**
   * 'open' (default): forward policy accept. 'strict': forward policy drop; only established/related, and new
   * flows from the client side that start with a pure SYN (TCP), pass; nf_conntrack_tcp_loose=0.
   */
  firewall?: 'open' | 'strict';
  /** Extra nft text appended after the lab's own table (own tables only; the lab table is `inet ctslab`). */
  extraNft?: string;
  /** Third octet pair of the subnets, so several router labs could share one namespace set. Default 1 and 2. */
  subnets?: { lan: number; wan: number };
}

export interface RouterLab {
  client: Endpoint;
  server: Endpoint;
  router: { ns: string; lan: Endpoint; wan: Endpoint };
  /** Source address the server sees for client traffic (router wan address under SNAT/masquerade, else client). */
  natSource: { v4: string; v6: string };
  /** Where the client connects to reach the server: the server itself, or the router's DNAT address. */
  serverVia: { v4: string; v6: string; port?: number };
  /** The ruleset loaded on the router. */
  ruleset: string;
}

/** Returns the host's addresses in the root namespace (read only: the root namespace is never changed). */
function hostAddresses(): Promise<string[]> {
  return new Promise((resolve) => {
    execFile('ip', ['-o', 'addr', 'show'], (err, out) => {
      resolve(err ? [] : [...out.matchAll(/inet6? ([0-9a-f.:]+)\//g)].map((m) => m[1]!));
    });
  });
}

/** Throws when the host already uses an address in the lab ranges (traffic could then leave the lab). */
export async function assertNoHostOverlap(): Promise<void> {
  const clash = (await hostAddresses()).find((a) => a.startsWith(`${LAB_V4_BASE}.`) || a.startsWith(`${LAB_V6_BASE}:`));
  if (clash) throw new Error(`host address ${clash} overlaps the lab ranges ${LAB_V4_BASE}.0.0/16 and ${LAB_V6_BASE}::/16`);
}

function endpoint(ns: string, ifname: string, subnet: number, host: number): Endpoint {
  return { ns, ifname, v4: `${LAB_V4_BASE}.${subnet}.${host}`, v6: `${LAB_V6_BASE}:${subnet}::${host}` };
}

/** Brings up an endpoint's addresses (/24 and /64). */
export async function addEndpointAddresses(lab: Lab, ep: Endpoint): Promise<void> {
  await lab.addAddress(ep.ns, ep.ifname, `${ep.v4}/24`);
  await lab.addAddress(ep.ns, ep.ifname, `${ep.v6}/64`);
}

/** Sysctls every forwarding firewall namespace needs. tcpLoose=false makes mid-stream TCP INVALID (strict). */
export async function makeRouter(lab: Lab, ns: string, tcpLoose: boolean): Promise<void> {
  await lab.sysctl(ns, 'net.ipv4.ip_forward', 1);
  await lab.sysctl(ns, 'net.ipv6.conf.all.forwarding', 1);
  // The conntrack sysctls exist only once conntrack is loaded for this namespace; the ruleset does that, but
  // nf_conntrack is a module shared by all namespaces, so the file is normally there already.
  await lab.sysctl(ns, 'net.netfilter.nf_conntrack_tcp_loose', tcpLoose ? 1 : 0);
}

/** The router's nft ruleset for the given options. Exported so tests and the failover lab can reuse its parts. */
export function routerRuleset(o: {
  lanIf: string;
  wanIf: string;
  nat: NatMode;
  firewall: 'open' | 'strict';
  ftpPorts: number[];
  snatTo?: { v4: string; v6: string };
  dnat?: { v4: string; v6: string; toV4: string; toV6: string; port: number };
}): string {
  const lines: string[] = ['table inet ctslab {'];
  if (o.ftpPorts.length > 0) {
    lines.push('  ct helper ftp-std {', '    type "ftp" protocol tcp', '    l3proto inet', '  }');
    // After conntrack (-200) so the entry exists, before it is confirmed at postrouting.
    lines.push('  chain helpers {', '    type filter hook prerouting priority filter; policy accept;');
    lines.push(`    tcp dport { ${o.ftpPorts.join(', ')} } ct state new ct helper set "ftp-std"`, '  }');
  }
  lines.push('  chain forward {');
  if (o.firewall === 'strict') {
    lines.push('    type filter hook forward priority filter; policy drop;');
    lines.push('    ct state established,related accept', '    ct state invalid counter drop');
    lines.push('    meta l4proto tcp tcp flags & (fin|syn|rst|ack) != syn counter drop');
    lines.push(`    iifname "${o.lanIf}" oifname "${o.wanIf}" ct state new accept`);
    lines.push('    ct status dnat accept');
    lines.push('    meta l4proto { icmp, ipv6-icmp } accept');
  } else {
    // Any ct expression registers conntrack in this namespace; without one nothing would be tracked.
    lines.push('    type filter hook forward priority filter; policy accept;');
    lines.push('    ct state established,related counter accept', '    ct state invalid counter');
  }
  lines.push('  }');
  if (o.nat !== 'none') {
    lines.push('  chain postrouting {', '    type nat hook postrouting priority srcnat; policy accept;');
    if (o.nat === 'masquerade') lines.push(`    oifname "${o.wanIf}" masquerade`);
    if (o.nat === 'snat' && o.snatTo) {
      lines.push(`    oifname "${o.wanIf}" meta nfproto ipv4 snat ip to ${o.snatTo.v4}`);
      lines.push(`    oifname "${o.wanIf}" meta nfproto ipv6 snat ip6 to ${o.snatTo.v6}`);
    }
    lines.push('  }');
    lines.push('  chain prerouting {', '    type nat hook prerouting priority dstnat; policy accept;');
    if (o.nat === 'dnat' && o.dnat) {
      const d = o.dnat;
      lines.push(`    ip daddr ${d.v4} meta l4proto { tcp, udp } th dport ${d.port} dnat ip to ${d.toV4}`);
      lines.push(`    ip6 daddr ${d.v6} meta l4proto { tcp, udp } th dport ${d.port} dnat ip6 to ${d.toV6}`);
    }
    lines.push('  }');
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}

/**
 * Builds client ↔ router ↔ server: namespaces `cli`, `rtr`, `srv`; client eth0 in 10.77.1.0/24 + fd77:1::/64
 * (router lan0 = .1 / ::1), server eth0 in 10.77.2.0/24 + fd77:2::/64 (router wan0 = .1 / ::1). The router forwards
 * both families and tracks connections; client and server route everything through it.
 */
export async function routerLab(lab: Lab, opts: RouterLabOptions = {}): Promise<RouterLab> {
  await assertNoHostOverlap();
  const nat = opts.nat ?? 'none';
  const firewall = opts.firewall ?? 'open';
  const { lan, wan } = opts.subnets ?? { lan: 1, wan: 2 };
  const [cliNs, rtrNs, srvNs] = [await lab.addNamespace('cli'), await lab.addNamespace('rtr'), await lab.addNamespace('srv')];

  await lab.addVeth(cliNs, 'eth0', rtrNs, 'lan0');
  await lab.addVeth(srvNs, 'eth0', rtrNs, 'wan0');
  const client = endpoint(cliNs, 'eth0', lan, 2);
  const server = endpoint(srvNs, 'eth0', wan, 2);
  const rLan = endpoint(rtrNs, 'lan0', lan, 1);
  const rWan = endpoint(rtrNs, 'wan0', wan, 1);
  for (const ep of [client, server, rLan, rWan]) await addEndpointAddresses(lab, ep);
  await lab.addRoute(cliNs, 'default', rLan.v4);
  await lab.addRoute(cliNs, 'default', rLan.v6);
  await lab.addRoute(srvNs, 'default', rWan.v4);
  await lab.addRoute(srvNs, 'default', rWan.v6);
  await makeRouter(lab, rtrNs, firewall === 'open');

  // SNAT uses a dedicated address on wan0 so a test can tell it apart from masquerade (router's own address).
  const snatTo = { v4: `${LAB_V4_BASE}.${wan}.254`, v6: `${LAB_V6_BASE}:${wan}::254` };
  if (nat === 'snat') {
    await lab.addAddress(rtrNs, 'wan0', `${snatTo.v4}/24`);
    await lab.addAddress(rtrNs, 'wan0', `${snatTo.v6}/64`);
  }
  const dnatPort = opts.dnatPort ?? 8080;
  const ruleset = routerRuleset({
    lanIf: 'lan0',
    wanIf: 'wan0',
    nat,
    firewall,
    ftpPorts: opts.ftpPorts ?? [],
    snatTo,
    dnat: { v4: rLan.v4, v6: rLan.v6, toV4: server.v4, toV6: server.v6, port: dnatPort },
  });
  await lab.loadNft(rtrNs, ruleset + (opts.extraNft ?? ''));

  const natSource =
    nat === 'masquerade' ? { v4: rWan.v4, v6: rWan.v6 } : nat === 'snat' ? snatTo : { v4: client.v4, v6: client.v6 };
  const serverVia = nat === 'dnat' ? { v4: rLan.v4, v6: rLan.v6, port: dnatPort } : { v4: server.v4, v6: server.v6 };
  return { client, server, router: { ns: rtrNs, lan: rLan, wan: rWan }, natSource, serverVia, ruleset };
}
