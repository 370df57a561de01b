// Micro-benchmarks of the event path (run: npx vitest bench --run test/unit/kernel/codec.bench.ts). Not a test:
// nothing here asserts a duration.

import { bench, describe } from 'vitest';
import { decodeFlow, DecodeError, encodeFlow } from '../../../src/kernel/flow-codec.js';
import { AttrWriter } from '../../../src/kernel/nla.js';
import { forEachMessage, type NlMsgView } from '../../../src/kernel/nfnetlink.js';
import type { Flow } from '../../../src/kernel/types.js';
import { loadCaptured } from '../../fixtures/kernel-fixtures.js';

const tcp = loadCaptured('tcp.hex');
const v4New = tcp[0]!.bytes; // CT_NEW event new, TCP over IPv4 (228 bytes, labels + event timestamp)
const v6New = tcp.find((m) => m.comment.includes('family=10'))!.bytes;
const dumpEntry = loadCaptured('dump.hex').find((m) => m.comment.includes('40003->8080'))!.bytes;
// 32 events back to back, like one recvmsg of a busy socket.
const datagram = Buffer.concat(Array.from({ length: 32 }, () => v4New));

let sink = 0;
const onMsg = (m: NlMsgView): void => {
  const f = decodeFlow(datagram, m.payloadOff, m.end, m.family);
  if (!(f instanceof DecodeError)) sink += f.orig.sport!;
};

function decodeOne(buf: Buffer): void {
  forEachMessage(buf, (m) => {
    const f = decodeFlow(buf, m.payloadOff, m.end, m.family);
    if (!(f instanceof DecodeError)) sink += f.orig.sport!;
  });
}

const flow = decodeFlow(v4New, 20, v4New.length, 2) as Flow;
const w = new AttrWriter(1 << 16);

describe('decode', () => {
  bench('TCP NEW event, IPv4 (forEachMessage + decodeFlow)', () => decodeOne(v4New));
  bench('TCP NEW event, IPv6', () => decodeOne(v6New));
  bench('TCP dump entry with counters and timestamp', () => decodeOne(dumpEntry));
  bench('datagram of 32 TCP NEW events (per datagram)', () => {
    forEachMessage(datagram, onMsg);
  });
});

describe('encode', () => {
  bench('TCP flow for a write, 256 per batch (per batch)', () => {
    w.reset();
    for (let i = 0; i < 256; i++) {
      w.beginMessage(0x100, 0x405, i, 2);
      encodeFlow(w, flow);
      w.endMessage();
    }
    sink += w.length;
  });
});

export { sink };
