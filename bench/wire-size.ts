// Measures the wire cost (bytes per synced entry, all overhead included) and codec speed of src/wire.
//
// Run by hand: npx vite-node bench/wire-size.ts   (or after `npm run build`: node dist/bench/wire-size.js)
// Prints JSON (one object) followed by a markdown table. A frame here is what goes on a TCP link: 4-byte length
// prefix + 3-byte header + Envelope + 16-byte MAC. Speeds depend on the machine; sizes do not.
import { performance } from 'node:perf_hooks';
import type { Flow } from '../src/kernel/types.js';
import { entryToFlow, flowKeyOf, flowToEntry, keyToWire, refreshToWire } from '../src/wire/entry.js';
import { createMacKey, decodeFrame, encodeFrame, type MacKey } from '../src/wire/envelope.js';
import { frameBytes } from '../src/wire/framing.js';
import { seededRandom } from '../src/lab/seeded-random.js';
import type { pb } from '../src/wire/proto.js';

const ENTRIES_PER_FRAME = 1000;
const FRAMES = 20;

const rand = seededRandom(42); // a fixed seed makes the size figures reproducible
const int = (n: number): number => Math.floor(rand() * n);
const ipv4 = (): string => `${int(256)}.${int(256)}.${int(256)}.${int(256)}`;
const ipv6 = (): string => `2001:db8:${int(0x10000).toString(16)}:${int(0x10000).toString(16)}::${(1 + int(0xfffe)).toString(16)}`;

type Mix = 'tcp4' | 'tcp4-natmod' | 'tcp4-snat' | 'tcp6' | 'udp4';

/** One synced flow of the given kind, as src/kernel would hand it over from a dump. */
function flow(kind: Mix): Flow {
  const v6 = kind === 'tcp6';
  const src = v6 ? ipv6() : ipv4();
  const dst = v6 ? ipv6() : ipv4();
  const sport = 1024 + int(64511);
  const dport = [22, 80, 443, 3306, 5432][int(5)]!;
  const proto = kind === 'udp4' ? 17 : 6;
  const orig = { src, dst, proto, sport, dport };
  let reply = { src: dst, dst: src, proto, sport: dport, dport: sport };
  let status = 0xe; // ASSURED | SEEN_REPLY | CONFIRMED
  if (kind === 'tcp4-natmod') status |= 0x180; // SRC_NAT_DONE | DST_NAT_DONE: set on every flow once nf_nat is loaded
  if (kind === 'tcp4-snat') {
    reply = { ...reply, dst: '203.0.113.1', dport: 1024 + int(64511) };
    status |= 0x10 | 0x180;
  }
  const f: Flow = { family: v6 ? 10 : 2, orig, reply, status, mark: 0, id: int(2 ** 32), use: 1 };
  if (proto === 6) {
    f.timeout = 432000 - int(1000);
    f.protoinfo = { tcp: { state: 3, wscaleOrig: 7, wscaleReply: 7, flagsOrig: 0x23, flagsReply: 0x23 } };
  } else {
    f.timeout = 120 - int(60);
  }
  return f;
}

interface Row {
  case: string;
  bytesPerEntry: number;
  frameBytes: number;
}

const macKey: MacKey = createMacKey('bench cluster key, 32 bytes long!');
const otherKey: MacKey = createMacKey('a different key, also long enough');
const header = { clusterId: 'fw-cluster-1', nodeId: 'fw-a', seq: 1_234_567, ack: 7_654_321 };

function measure(name: string, body: (i: number) => pb.IEnvelope, key: MacKey | undefined): Row {
  let total = 0;
  let last = 0;
  for (let i = 0; i < FRAMES; i++) {
    last = frameBytes(encodeFrame({ ...header, ...body(i) }, { macKey: key })).length;
    total += last;
  }
  return { case: name, bytesPerEntry: +(total / (FRAMES * ENTRIES_PER_FRAME)).toFixed(2), frameBytes: last };
}

const flowsOf = (kind: Mix): Flow[][] =>
  Array.from({ length: FRAMES }, () => Array.from({ length: ENTRIES_PER_FRAME }, () => flow(kind)));

const sets = {
  tcp4: flowsOf('tcp4'),
  natmod: flowsOf('tcp4-natmod'),
  snat: flowsOf('tcp4-snat'),
  tcp6: flowsOf('tcp6'),
  udp4: flowsOf('udp4'),
};

const upsert = (flows: Flow[][]) => (i: number): pb.IEnvelope => ({ upsert: { entries: flows[i]!.map(flowToEntry) } });

const sizes: Row[] = [
  measure('upsert IPv4 TCP established, no NAT (goal <= 45)', upsert(sets.tcp4), macKey),
  measure('  same, without MAC (TLS link)', upsert(sets.tcp4), undefined),
  measure('upsert IPv4 TCP, nf_nat loaded (NAT_DONE bits)', upsert(sets.natmod), macKey),
  measure('upsert IPv4 TCP SNAT (reply tuple sent)', upsert(sets.snat), macKey),
  measure('upsert IPv6 TCP established', upsert(sets.tcp6), macKey),
  measure('upsert IPv4 UDP', upsert(sets.udp4), macKey),
  measure('refresh IPv4 (key + remaining timeout)', (i) => ({ refresh: { items: sets.tcp4[i]!.map((f) => refreshToWire(flowKeyOf(f), f.timeout ?? 0)) } }), macKey),
  measure('delete IPv4 (key only)', (i) => ({ delete: { keys: sets.tcp4[i]!.map((f) => keyToWire(flowKeyOf(f))) } }), macKey),
];

/** Runs fn repeatedly for about `ms` and returns calls per second. */
function rate(fn: () => void, ms = 1500): number {
  for (let i = 0; i < 20; i++) fn(); // warm up the JIT
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    fn();
    n++;
    now = performance.now();
  }
  return (n * 1000) / (now - start);
}

const sample = sets.tcp4[0]!;
const frame = encodeFrame({ ...header, upsert: { entries: sample.map(flowToEntry) } }, { macKey });
const limits = { maxFrameBytes: 1 << 20 };
const expect = { clusterId: header.clusterId, macKey };
let sink = 0;

const speeds = {
  encodeEntriesPerSec: Math.round(
    ENTRIES_PER_FRAME * rate(() => {
      sink += encodeFrame({ ...header, upsert: { entries: sample.map(flowToEntry) } }, { macKey }).length;
    }),
  ),
  decodeEntriesPerSec: Math.round(
    ENTRIES_PER_FRAME * rate(() => {
      const r = decodeFrame(frame, limits, expect);
      if (!r.ok) throw new Error(r.detail);
      for (const e of r.env.upsert?.entries ?? []) if (entryToFlow(e).ok) sink++;
    }),
  ),
  decodeProtobufOnlyEntriesPerSec: Math.round(
    ENTRIES_PER_FRAME * rate(() => {
      const r = decodeFrame(frame, limits, expect);
      if (r.ok) sink += r.env.upsert?.entries?.length ?? 0;
    }),
  ),
  macCheckFramesPerSec: Math.round(
    rate(() => {
      const r = decodeFrame(frame, limits, { clusterId: header.clusterId, macKey: otherKey }); // bad_auth: MAC only
      if (!r.ok) sink++;
    }),
  ),
};

const result = { node: process.version, entriesPerFrame: ENTRIES_PER_FRAME, frames: FRAMES, sizes, speeds, sink: sink > 0 };
process.stdout.write(JSON.stringify(result, null, 2) + '\n\n');
process.stdout.write('| case | wire bytes/entry | frame bytes |\n|---|---:|---:|\n');
for (const r of sizes) process.stdout.write(`| ${r.case} | ${r.bytesPerEntry} | ${r.frameBytes} |\n`);
process.stdout.write('\n| codec (1000-entry frames, MAC on) | entries/s |\n|---|---:|\n');
process.stdout.write(`| encode (flowToEntry + encodeFrame) | ${speeds.encodeEntriesPerSec} |\n`);
process.stdout.write(`| decode (decodeFrame + entryToFlow) | ${speeds.decodeEntriesPerSec} |\n`);
process.stdout.write(`| decode, protobuf only | ${speeds.decodeProtobufOnlyEntriesPerSec} |\n`);
process.stdout.write(`| MAC check alone (28 KiB frame), frames/s | ${speeds.macCheckFramesPerSec} |\n`);
