// Synthetic conntrack entries for the kernel benchmarks: unique TCP ESTABLISHED flows, as Flow objects or `conntrack -R` lines.
import { Conntrack } from '../../src/kernel/conntrack.js';
import { Af, IpProto, type Flow } from '../../src/kernel/types.js';

const IPS_SEEN_REPLY = 0x2;
const IPS_ASSURED = 0x4;
const TCP_CONNTRACK_ESTABLISHED = 3;
/** Long enough that nothing expires while a benchmark runs. */
export const BENCH_TIMEOUT_S = 1800;
/** Distinct flows per seed: 256 × 256 client addresses × 256 source ports. */
export const MAX_FLOWS = 1 << 24;

function tuple(i: number, seed: number): { src: string; dst: string; sport: number; dport: number } {
  return {
    src: `10.${seed & 255}.${(i >> 8) & 255}.${i & 255}`,
    dst: `172.16.${(i >> 16) & 255}.1`,
    sport: 10000 + ((i >> 24) & 255),
    dport: 443,
  };
}

/** Flow i of a seed: the same seed always gives the same flows; different seeds never clash. */
export function syntheticFlow(i: number, seed: number): Flow {
  const t = tuple(i, seed);
  return {
    family: Af.Inet,
    orig: { src: t.src, dst: t.dst, proto: IpProto.Tcp, sport: t.sport, dport: t.dport },
    reply: { src: t.dst, dst: t.src, proto: IpProto.Tcp, sport: t.dport, dport: t.sport },
    status: IPS_SEEN_REPLY | IPS_ASSURED,
    timeout: BENCH_TIMEOUT_S,
    protoinfo: { tcp: { state: TCP_CONNTRACK_ESTABLISHED } },
  };
}

export function syntheticFlows(count: number, seed: number): Flow[] {
  if (count > MAX_FLOWS) throw new Error(`at most ${MAX_FLOWS} synthetic flows per seed`);
  return Array.from({ length: count }, (_, i) => syntheticFlow(i, seed));
}

/** The same flow as one `conntrack -R` line (conntrack-tools 1.4.7 takes one command line per line). */
export function conntrackLine(i: number, seed: number): string {
  const t = tuple(i, seed);
  return (
    `-I -p tcp -t ${BENCH_TIMEOUT_S} -u SEEN_REPLY,ASSURED --state ESTABLISHED -s ${t.src} -d ${t.dst} ` +
    `-r ${t.dst} -q ${t.src} --sport ${t.sport} --dport ${t.dport} --reply-port-src ${t.dport} --reply-port-dst ${t.sport}`
  );
}

/** Empties a namespace's table between runs. */
export async function flush(ns: string): Promise<void> {
  const ct = new Conntrack({ netns: ns });
  try {
    await ct.flush();
  } finally {
    ct.close();
  }
}
