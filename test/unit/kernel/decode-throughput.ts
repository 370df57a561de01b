// Standalone decode throughput of the event path, outside vitest's harness (no assertions; prints events/s).
// Run from the repo root:
//   npx esbuild test/unit/kernel/decode-throughput.ts --bundle --platform=node --format=esm \
//     --outfile=/tmp/ctsc-decode-throughput.mjs && node /tmp/ctsc-decode-throughput.mjs

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeFlow, DecodeError } from '../../../src/kernel/flow-codec.js';
import { forEachMessage } from '../../../src/kernel/nfnetlink.js';

const dir = join(process.cwd(), 'test', 'fixtures', 'kernel');

function firstMessage(file: string, match: string): Buffer {
  const lines = readFileSync(join(dir, file), 'utf8').split('\n');
  const i = lines.findIndex((l) => l.startsWith('#') && l.includes(match));
  return Buffer.from(lines[i + 1]!, 'hex');
}

const cases: [string, Buffer][] = [
  ['TCP NEW event, IPv4 (labels, event timestamp)', firstMessage('tcp.hex', 'event new tcp 127.0.0.1')],
  ['TCP NEW event, IPv6', firstMessage('tcp.hex', 'event new tcp ::1')],
  ['UDP NEW event, IPv4', firstMessage('udp.hex', 'event new udp 127.0.0.1')],
  ['TCP dump entry (counters, start time)', firstMessage('dump.hex', 'tcp 127.0.0.1->127.0.0.1 40003->8080')],
];

let sink = 0;
for (const [name, one] of cases) {
  // 32 messages per datagram, as one recvmsg of a busy event socket returns them.
  const dg = Buffer.concat(Array.from({ length: 32 }, () => one));
  const onMsg = (m: { payloadOff: number; end: number; family: number }): void => {
    const f = decodeFlow(dg, m.payloadOff, m.end, m.family);
    if (!(f instanceof DecodeError)) sink += f.orig.proto;
  };
  const rounds = 20_000;
  for (let i = 0; i < rounds; i++) forEachMessage(dg, onMsg); // warm up
  let best = Infinity;
  for (let k = 0; k < 5; k++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < rounds; i++) forEachMessage(dg, onMsg);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / (rounds * 32));
  }
  console.log(`${name} (${one.length} B): ${(1e9 / best / 1e3).toFixed(0)}k events/s, ${best.toFixed(0)} ns/event (best of 5)`);
}
if (sink === 0) console.log('no event decoded');
