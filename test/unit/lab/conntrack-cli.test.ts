// Unit tests for the `conntrack -L` text parser, on lines captured from this project's kernel (test/fixtures/conntrack-cli/).
import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Flow } from '../../../src/kernel/types.js';
import {
  CliParseError,
  comparableKey,
  expectationToComparable,
  flowToComparable,
  parseConntrackLine,
  parseConntrackOutput,
  parseExpectOutput,
  timeoutsAgree,
  toComparable,
} from '../../helpers/conntrack-cli.js';

const dir = new URL('../../fixtures/conntrack-cli/', import.meta.url);
const fixture = (name: string): string => readFileSync(new URL(name, dir), 'utf8');

/** Splits a capture file into its `# conntrack ...` sections. */
function sections(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let cur = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('# conntrack ')) out.set((cur = line.slice(12)), '');
    else if (cur) out.set(cur, out.get(cur)! + line + '\n');
  }
  return out;
}

describe('parseConntrackLine on captured lines', () => {
  it('parses an established, assured TCP flow', () => {
    const f = parseConntrackLine(
      'ipv4     2 tcp      6 431999 ESTABLISHED src=10.77.1.2 dst=10.77.2.2 sport=41826 dport=5000 src=10.77.2.2 dst=10.77.1.2 sport=5000 dport=41826 [ASSURED] mark=0 use=1',
    )!;
    expect(f).toMatchObject({
      family: 2,
      proto: 6,
      protoName: 'tcp',
      timeout: 431999,
      state: 'ESTABLISHED',
      orig: { src: '10.77.1.2', dst: '10.77.2.2', sport: 41826, dport: 5000 },
      reply: { src: '10.77.2.2', dst: '10.77.1.2', sport: 5000, dport: 41826 },
      flags: ['ASSURED'],
      mark: 0,
      use: 1,
    });
    expect(f.extra).toEqual({});
  });

  it('keeps [UNREPLIED] that sits between the tuples and the zone after mark', () => {
    const f = parseConntrackLine(
      'ipv4     2 udp      17 29 src=10.77.1.2 dst=10.77.2.2 sport=58222 dport=7000 [UNREPLIED] src=10.77.2.2 dst=10.77.2.254 sport=7000 dport=58222 mark=0 zone=3 use=1',
    )!;
    expect(f.flags).toEqual(['UNREPLIED']);
    expect(f.zone).toBe(3);
    expect(f.state).toBeUndefined();
    expect(f.reply.dst).toBe('10.77.2.254');
  });

  it('tells the ICMP id inside a tuple from the conntrack id at the end', () => {
    const f = parseConntrackLine(
      'ipv6     10 icmpv6   58 28 src=fd77:1::2 dst=fd77:2::2 type=128 code=0 id=2546 src=fd77:2::2 dst=fd77:1::2 type=129 code=0 id=2546 mark=0 use=1 id=141754525',
    )!;
    expect(f.family).toBe(10);
    expect(f.orig).toMatchObject({ icmpType: 128, icmpCode: 0, icmpId: 2546 });
    expect(f.reply).toMatchObject({ icmpType: 129, icmpCode: 0, icmpId: 2546 });
    expect(f.id).toBe(141754525);
  });

  it('reads per-direction counters, delta-time and helper', () => {
    const f = parseConntrackLine(
      'ipv4     2 tcp      6 299 ESTABLISHED src=10.77.1.2 dst=10.77.2.2 sport=58612 dport=2121 packets=5 bytes=290 src=10.77.2.2 dst=10.77.2.254 sport=2121 dport=58612 packets=5 bytes=342 [ASSURED] mark=0 delta-time=0 helper=ftp use=1',
    )!;
    expect(f.orig.packets).toBe(5n);
    expect(f.reply.bytes).toBe(342n);
    expect(f.deltaTime).toBe(0);
    expect(f.helper).toBe('ftp');
  });

  it('parses lines without the l3 columns, offloaded flows without timeout, directional zones, secctx, labels', () => {
    // Shapes conntrack-tools prints that this lab does not produce (no flowtable, SELinux or connlabel.conf here).
    const f = parseConntrackLine(
      'tcp      6 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 zone-orig=4 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 zone-reply=5 [OFFLOAD] mark=7 secctx=system_u:object_r:unlabeled_t:s0 labels=web,db use=2',
    )!;
    expect(f).toMatchObject({ family: 2, proto: 6, state: 'ESTABLISHED', mark: 7, labels: 'web,db', use: 2, flags: ['OFFLOAD'] });
    expect(f.timeout).toBeUndefined();
    expect(f.orig.zone).toBe(4);
    expect(f.reply.zone).toBe(5);
    expect(f.secctx).toBe('system_u:object_r:unlabeled_t:s0');
  });

  it('keeps GRE keys and unknown attributes', () => {
    const f = parseConntrackLine(
      'ipv4     2 gre      47 179 src=10.0.0.1 dst=10.0.0.2 srckey=0x0 dstkey=0x0 src=10.0.0.2 dst=10.0.0.1 srckey=0x0 dstkey=0x0 [ASSURED] mark=0 future=1 use=1',
    )!;
    expect(f.orig.srcKey).toBe('0x0');
    expect(f.extra).toEqual({ future: '1' });
  });

  it('returns undefined for noise and throws CliParseError on garbage', () => {
    expect(parseConntrackLine('')).toBeUndefined();
    expect(parseConntrackLine('conntrack v1.4.7 (conntrack-tools): 4 flow entries have been shown.')).toBeUndefined();
    expect(() => parseConntrackLine('ipv4 2 tcp 6 10 ESTABLISHED src=1.1.1.1')).toThrow(CliParseError);
    expect(() => parseConntrackLine('hello world')).toThrow(CliParseError);
  });

  it('never throws anything but CliParseError on random input', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        try {
          parseConntrackLine(s);
        } catch (err) {
          expect(err).toBeInstanceOf(CliParseError);
        }
      }),
    );
  });
});

describe('fixture captures', () => {
  const files = readdirSync(dir).filter((n) => n.endsWith('.txt'));

  it('has captures to test', () => {
    expect(files.length).toBeGreaterThanOrEqual(4);
  });

  for (const name of files) {
    it(`parses every line of ${name}`, () => {
      const s = sections(fixture(name));
      for (const [cmd, text] of s) {
        const lines = text.split('\n').filter((l) => l.trim() !== '');
        if (cmd.includes('expect')) {
          expect(parseExpectOutput(text)).toHaveLength(lines.length);
        } else {
          const flows = parseConntrackOutput(text);
          expect(flows).toHaveLength(lines.length);
          for (const f of flows) expect(f.extra).toEqual({});
          if (cmd.includes('ipv6')) for (const f of flows) expect(f.family).toBe(10);
        }
      }
    });
  }

  it('shows the SNAT address in the reply tuple and the zone/mark set by nft', () => {
    const flows = parseConntrackOutput(sections(fixture('snat-zone-mark.txt')).get('-L -o extended')!);
    const tcp = flows.find((f) => f.proto === 6 && f.orig.dport === 5000)!;
    expect(tcp.reply.dst).toBe('10.77.2.254');
    expect(flows.find((f) => f.orig.dport === 7000)?.zone).toBe(3);
    expect(flows.find((f) => f.orig.dport === 7001)?.mark).toBe(42);
  });

  it('parses the FTP expectation with its mask and master', () => {
    const [e] = parseExpectOutput(sections(fixture('plain.txt')).get('-L expect')!);
    expect(expectationToComparable(e!)).toEqual({
      family: 2,
      proto: 6,
      tuple: { src: '10.77.1.2', dst: '10.77.2.2', sport: 0, dport: 50001 },
      mask: { src: '255.255.255.255', dst: '255.255.255.255', sport: 0, dport: 65535 },
      master: { src: '10.77.1.2', dst: '10.77.2.2', sport: 54750, dport: 2121 },
      helper: 'ftp',
      class: 0,
      zone: 0,
    });
    expect(e!.timeout).toBe(299);
  });
});

describe('comparison', () => {
  const line =
    'ipv4     2 tcp      6 431999 ESTABLISHED src=10.77.1.2 dst=10.77.2.2 sport=41846 dport=5000 packets=3 bytes=100 src=10.77.2.2 dst=10.77.2.254 sport=5000 dport=41846 packets=2 bytes=80 [ASSURED] mark=0 use=1 id=99';

  it('drops timeout, use, id and counters, and equals the view of the same Flow', () => {
    const later = line.replace('431999', '431990').replace('use=1', 'use=2').replace('id=99', 'id=7').replace('packets=3', 'packets=9');
    const a = toComparable(parseConntrackLine(line)!);
    expect(toComparable(parseConntrackLine(later)!)).toEqual(a);
    const flow: Flow = {
      family: 2,
      orig: { src: '10.77.1.2', dst: '10.77.2.2', proto: 6, sport: 41846, dport: 5000 },
      reply: { src: '10.77.2.2', dst: '10.77.2.254', proto: 6, sport: 5000, dport: 41846 },
      status: 0x8 | 0x4 | 0x2 | 0x10 | 0x80, // confirmed, assured, seen reply, SNAT + done
      timeout: 5,
      mark: 0,
      protoinfo: { tcp: { state: 3 } },
    };
    expect(flowToComparable(flow)).toEqual(a);
    expect(comparableKey(flowToComparable(flow))).toBe(comparableKey(a));
  });

  it('maps [UNREPLIED] to seenReply=false', () => {
    const f = parseConntrackLine('udp 17 29 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 mark=0 use=1')!;
    expect(toComparable(f)).toMatchObject({ seenReply: false, assured: false });
  });

  it('timeoutsAgree allows for ticking down but not for growing', () => {
    expect(timeoutsAgree(120, 117, 3)).toBe(true);
    expect(timeoutsAgree(120, 100, 3)).toBe(false);
    expect(timeoutsAgree(120, 130, 3)).toBe(false);
  });

  it('round-trips generated flows through the printed form', () => {
    const v4 = fc.ipV4();
    const port = fc.integer({ min: 0, max: 65535 });
    fc.assert(
      fc.property(v4, v4, port, port, fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.boolean(), (s, d, sp, dp, mark, replied) => {
        const text = `ipv4     2 udp      17 30 src=${s} dst=${d} sport=${sp} dport=${dp}${replied ? '' : ' [UNREPLIED]'} src=${d} dst=${s} sport=${dp} dport=${sp} mark=${mark} use=1`;
        expect(toComparable(parseConntrackLine(text)!)).toEqual({
          family: 2,
          proto: 17,
          orig: { src: s, dst: d, sport: sp, dport: dp },
          reply: { src: d, dst: s, sport: dp, dport: sp },
          assured: false,
          seenReply: replied,
          mark,
          zone: 0,
        });
      }),
    );
  });
});
