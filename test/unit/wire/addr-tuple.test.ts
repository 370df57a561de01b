// Address text <-> bytes (glibc inet_ntop/inet_pton behaviour) and the packed tuple form.
import { isIPv4, isIPv6 } from 'node:net';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { formatAddress, parseAddress } from '../../../src/wire/addr.js';
import { invertTuple, isInverse, packTuple, unpackTuple } from '../../../src/wire/tuple.js';
import { AF_INET, AF_INET6, inverseOf, protoFor, tupleOf } from './arbitraries.js';

describe('addresses', () => {
  // Expected strings are what glibc inet_ntop prints (and so what `conntrack -L` shows).
  const vectors: Array<[string, string]> = [
    ['0.0.0.0', '00000000'],
    ['192.168.1.254', 'c0a801fe'],
    ['::', '00000000000000000000000000000000'],
    ['::1', '00000000000000000000000000000001'],
    ['1::', '00010000000000000000000000000000'],
    ['2001:db8::1', '20010db8000000000000000000000001'],
    ['2001:db8:0:1:1:1:1:1', '20010db8000000010001000100010001'], // a single zero group is not compressed
    ['2001:0:0:1::1', '20010000000000010000000000000001'], // ties: the first longest run wins
    ['fe80::1:0:0:0', 'fe800000000000000001000000000000'],
    ['::ffff:192.0.2.1', '00000000000000000000ffffc0000201'], // IPv4-mapped
    ['::192.0.2.1', '000000000000000000000000c0000201'], // IPv4-compatible
    ['::ffff:0.0.0.0', '00000000000000000000ffff00000000'],
    ['::1:0:0', '00000000000000000000000100000000'],
    ['0:0:0:ffff::', '000000000000ffff0000000000000000'],
    ['abcd:ef01:2345:6789:abcd:ef01:2345:6789', 'abcdef0123456789abcdef0123456789'],
  ];
  test.each(vectors)('%s', (text, hex) => {
    const bytes = Buffer.from(hex, 'hex');
    expect(formatAddress(bytes, 0, bytes.length as 4 | 16)).toBe(text);
    expect(parseAddress(text)?.toString('hex')).toBe(hex);
  });

  test('parses non-canonical IPv6 spellings', () => {
    expect(parseAddress('2001:DB8:0:0:0:0:0:1')?.toString('hex')).toBe('20010db8000000000000000000000001');
    expect(parseAddress('0:0:0:0:0:ffff:c000:201')?.toString('hex')).toBe('00000000000000000000ffffc0000201');
    expect(parseAddress('1:2:3:4:5:6:1.2.3.4')?.toString('hex')).toBe('00010002000300040005000601020304');
  });

  test.each(['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1..2.3', ':', ':::', '1:2', '1::2::3', '12345::', 'g::',
    '1:2:3:4:5:6:7:8:9', '::1.2.3', '1:2:3:4:5:6:7:1.2.3.4', '1:', ':1', 'fe80::1%eth0', ' 1.2.3.4'])('rejects %j', (text) => {
    expect(parseAddress(text)).toBeUndefined();
  });

  test('bytes -> text -> bytes is the identity, and the text is valid for node:net', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 })), (b) => {
        const text = formatAddress(b, 0, b.length as 4 | 16);
        expect(b.length === 4 ? isIPv4(text) : isIPv6(text)).toBe(true);
        expect(parseAddress(text)).toEqual(Buffer.from(b));
      }),
      { numRuns: 3000 },
    );
  });

  test('random text never throws, and what parses is an address node:net accepts', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[0-9a-fA-F:.]{0,45}$/), (text) => {
        const b = parseAddress(text);
        if (b) expect(isIPv4(text) || isIPv6(text)).toBe(true);
        else expect(b).toBeUndefined();
      }),
      { numRuns: 3000 },
    );
  });
});

describe('packed tuples', () => {
  test('kernel-shaped tuples pack to 9/13 (IPv4) or 33/37 (IPv6) bytes and unpack equal', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(AF_INET, AF_INET6).chain((fam) => protoFor(fam).chain((p) => tupleOf(fam, p, false).map((t) => ({ fam, t })))),
        ({ fam, t }) => {
          const b = packTuple(t);
          expect(b).toBeDefined();
          const hasL4 = t.sport !== undefined || t.icmpType !== undefined;
          expect(b!.length).toBe((fam === AF_INET ? 9 : 33) + (hasL4 ? 4 : 0));
          expect(unpackTuple(b!)).toStrictEqual(t);
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('tuples the packed form cannot hold are refused (they take the long form)', () => {
    const base = { src: '10.0.0.1', dst: '10.0.0.2' };
    expect(packTuple({ ...base, proto: 6, sport: 1 })).toBeUndefined(); // half the ports
    expect(packTuple({ ...base, proto: 6, sport: 1, dport: 2, icmpId: 3 })).toBeUndefined();
    expect(packTuple({ ...base, proto: 1, sport: 1, dport: 2 })).toBeUndefined();
    expect(packTuple({ ...base, proto: 6, sport: 70000, dport: 2 })).toBeUndefined();
    expect(packTuple({ ...base, proto: 300 })).toBeUndefined();
    expect(packTuple({ src: '10.0.0.1', dst: '::1', proto: 17 })).toBeUndefined();
    expect(packTuple({ src: 'x', dst: '10.0.0.1', proto: 17 })).toBeUndefined();
  });

  test('bad packed lengths decode to undefined', () => {
    for (let n = 0; n < 40; n++) {
      const r = unpackTuple(Buffer.alloc(n));
      expect(r === undefined).toBe(![9, 13, 33, 37].includes(n));
    }
  });

  test('the inverse matches the kernel rule and isInverse agrees with it', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(AF_INET, AF_INET6).chain((fam) => protoFor(fam).chain((p) => tupleOf(fam, p, false))),
        (t) => {
          const inv = invertTuple(t);
          expect(inv).toStrictEqual(inverseOf(t));
          if (inv) {
            expect(isInverse(t, inv)).toBe(true);
            const other = inv.src === '203.0.113.9' ? '203.0.113.10' : '203.0.113.9';
            expect(isInverse(t, { ...inv, src: other })).toBe(false);
            if (inv.sport !== undefined) expect(isInverse(t, { ...inv, sport: (inv.sport + 1) & 0xffff })).toBe(false);
            if (inv.icmpType !== undefined) expect(isInverse(t, { ...inv, icmpType: t.icmpType! ^ 0x100 })).toBe(false);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

