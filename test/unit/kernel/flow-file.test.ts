import { describe, expect, test } from 'vitest';
import { listDocument, parseFlowFile } from '../../../src/kernel/flow-file.js';
import type { Flow } from '../../../src/kernel/types.js';

const tcp: Flow = {
  family: 2,
  orig: { src: '10.1.0.2', dst: '10.2.0.2', proto: 6, sport: 40000, dport: 22 },
  reply: { src: '10.2.0.2', dst: '10.1.0.2', proto: 6, sport: 22, dport: 40000 },
  status: 14,
  timeout: 431999,
  mark: 7,
  protoinfo: { tcp: { state: 3, wscaleOrig: 7, wscaleReply: 7, flagsOrig: 0x23, flagsReply: 0x23 } },
  countersOrig: { packets: 3n, bytes: 180n },
};
const v6: Flow = {
  family: 10,
  orig: { src: 'fd00:1::2', dst: 'fd00:2::2', proto: 58, icmpType: 128, icmpCode: 0, icmpId: 9 },
  reply: { src: 'fd00:2::2', dst: 'fd00:1::2', proto: 58, icmpType: 129, icmpCode: 0, icmpId: 9 },
  timeout: 29,
};

describe('flow files', () => {
  test('the list document reads back to the same flows (read-only counters aside)', () => {
    const { flows, problems } = parseFlowFile(listDocument([tcp, v6]));
    expect(problems).toEqual([]);
    const { countersOrig: _c, ...writable } = tcp;
    expect(flows).toEqual([writable, v6]);
  });

  test('the count is in the trailer (a daemon streams the document); a document of earlier builds, with it in the header, still reads', () => {
    const doc = listDocument([tcp, v6]);
    expect(JSON.parse(doc)).toMatchObject({ version: 1, count: 2 });
    expect(doc.split('\n').at(-2)).toBe('],"count":2}');
    expect(JSON.parse(listDocument([]))).toEqual({ version: 1, flows: [], count: 0 });
    const lines = doc.split('\n');
    const older = ['{"version":1,"count":2,"flows":[', ...lines.slice(1, -2), ']}', ''].join('\n');
    expect(JSON.parse(older).flows).toHaveLength(2);
    expect(parseFlowFile(older)).toEqual(parseFlowFile(doc));
    expect(parseFlowFile(doc).flows).toHaveLength(2);
  });

  test('the document names the human fields', () => {
    const line = listDocument([tcp]).split('\n')[1];
    expect(JSON.parse(line)).toMatchObject({ l3: 'ipv4', l4: 'tcp', state: 'ESTABLISHED', flags: ['SEEN_REPLY', 'ASSURED', 'CONFIRMED'], countersOrig: { packets: '3' } });
  });

  test('one JSON flow per line works too, and every bad line is named with its reason', () => {
    const text = [
      JSON.stringify({ family: 2, orig: tcp.orig, reply: tcp.reply, timeout: 60 }),
      '{"family": 2, "orig": {"src": "10.0.0.300", "dst": "10.0.0.1", "proto": 17}}',
      'not json at all',
      JSON.stringify({ family: 10, orig: tcp.orig }),
      JSON.stringify({ family: 2, orig: { ...tcp.orig, sport: 70000 }, mark: -1 }),
    ].join('\n');
    const { flows, problems } = parseFlowFile(text);
    expect(flows).toHaveLength(1);
    expect(problems).toHaveLength(4);
    expect(problems[0]).toMatch(/^line 2: orig.src must be an IPv4 address/);
    expect(problems[1]).toMatch(/^line 3: not JSON/);
    expect(problems[2]).toMatch(/^line 4: orig.src must be an IPv6 address; orig.dst must be an IPv6 address/);
    expect(problems[3]).toMatch(/^line 5: orig.sport must be an integer 0..65535; mark must be an integer/);
  });
});
