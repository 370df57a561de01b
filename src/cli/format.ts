// Human-readable one-line forms of flows and events, in the order `conntrack -L` uses.
import { PROTO_NAMES, stateName } from '../kernel/json.js';
import { Af, Ips, type Flow, type Tuple } from '../kernel/types.js';

function tuple(t: Tuple): string {
  let s = `src=${t.src} dst=${t.dst}`;
  if (t.sport !== undefined) s += ` sport=${t.sport} dport=${t.dport}`;
  if (t.icmpType !== undefined) s += ` type=${t.icmpType} code=${t.icmpCode ?? 0} id=${t.icmpId ?? 0}`;
  if (t.zone !== undefined) s += ` zone=${t.zone}`;
  return s;
}

export function formatFlow(f: Flow): string {
  const l3 = f.family === Af.Inet6 ? 'ipv6' : 'ipv4';
  const l4 = PROTO_NAMES[f.orig.proto] ?? 'unknown';
  const status = f.status ?? 0;
  const parts = [`${l3.padEnd(8)} ${f.family} ${l4.padEnd(8)} ${f.orig.proto}`];
  if (f.timeout !== undefined) parts.push(String(f.timeout));
  const state = stateName(f);
  if (state) parts.push(state);
  parts.push(tuple(f.orig));
  if (!(status & Ips.SeenReply)) parts.push('[UNREPLIED]');
  parts.push(tuple(f.reply));
  if (status & Ips.Offload) parts.push('[OFFLOAD]');
  else if (status & Ips.Assured) parts.push('[ASSURED]');
  if (f.mark !== undefined) parts.push(`mark=${f.mark}`);
  if (f.helper) parts.push(`helper=${f.helper}`);
  if (f.zone !== undefined) parts.push(`zone=${f.zone}`);
  if (f.labels) parts.push(`labels=0x${f.labels.toString('hex')}`);
  if (f.use !== undefined) parts.push(`use=${f.use}`);
  return parts.join(' ');
}
