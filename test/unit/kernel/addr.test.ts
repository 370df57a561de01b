// ipToText matches glibc inet_ntop byte for byte; textToIp parses what it prints and refuses everything else.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AddressError, ipToText, parseIpInto, textToIp } from '../../../src/kernel/addr.js';

// Expected strings produced by glibc inet_ntop (python3 socket.inet_ntop on this machine).
const GLIBC_NTOP6: [string, string][] = [
  ['00000000000000000000000000000001', '::1'],
  ['fe800000000000000000000000000001', 'fe80::1'],
  ['20010db8000000000000000000000000', '2001:db8::'],
  ['00000000000000000000ffff01020304', '::ffff:1.2.3.4'],
  ['00000000000000000000000000000000', '::'],
  ['00010000000000000000000000000000', '1::'],
  ['00000002000300040005000600070008', '0:2:3:4:5:6:7:8'], // a single zero group is not compressed
  ['00010000000200000003000000040000', '1:0:2:0:3:0:4:0'],
  ['00010000000000020000000000030004', '1::2:0:0:3:4'], // first of two equal runs
  ['00010000000000000002000000000000', '1::2:0:0:0'],
  ['20010db8000000010000000000000002', '2001:db8:0:1::2'],
  ['00000000000000000000000001020304', '::1.2.3.4'], // IPv4-compatible
  ['00000000000000000000000101020304', '::1:102:304'],
  ['00000000000000000000ffff00000000', '::ffff:0.0.0.0'],
  ['00000000000000000000fffe01020304', '::fffe:102:304'],
  ['00000000000000000001ffff01020304', '::1:ffff:102:304'],
  ['ffffffffffffffffffffffffffffffff', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
  ['00010002000300040005000600070000', '1:2:3:4:5:6:7:0'],
  ['00000001000200030004000500060007', '0:1:2:3:4:5:6:7'],
  ['abcdef01234567890000000000000001', 'abcd:ef01:2345:6789::1'], // lower case
  ['00000000000000000001000000000000', '::1:0:0:0'],
  ['00010002000300040005000600000000', '1:2:3:4:5:6::'],
  ['00000000000000000000000000010000', '::0.1.0.0'],
  ['0064ff9b0000000000000000c0000201', '64:ff9b::c000:201'],
];

describe('ipToText', () => {
  it.each(GLIBC_NTOP6)('formats %s as %s', (hex, text) => {
    expect(ipToText(Buffer.from(hex, 'hex'), 0, 16)).toBe(text);
  });

  it('formats IPv4 with arithmetic at an offset', () => {
    const b = Buffer.from([9, 9, 0, 10, 255, 1, 9]);
    expect(ipToText(b, 2, 4)).toBe('0.10.255.1');
    expect(ipToText(Buffer.from([255, 255, 255, 255]), 0, 4)).toBe('255.255.255.255');
  });
});

describe('textToIp', () => {
  it.each(GLIBC_NTOP6)('parses the glibc text of %s back to the same bytes', (hex, text) => {
    expect(textToIp(text).toString('hex')).toBe(hex);
  });

  it('parses non-canonical IPv6 spellings', () => {
    expect(textToIp('FE80:0000::0001').toString('hex')).toBe('fe800000000000000000000000000001');
    expect(textToIp('0:0:0:0:0:0:0:1').toString('hex')).toBe('00000000000000000000000000000001');
    expect(textToIp('1:2:3:4:5:6:1.2.3.4').toString('hex')).toBe('00010002000300040005000601020304');
  });

  it('parses IPv4 into 4 bytes', () => {
    expect([...textToIp('192.168.0.255')]).toEqual([192, 168, 0, 255]);
  });

  it.each([
    '', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1..2.3', 'a.b.c.d', ' 1.2.3.4', ':', ':::', '1:::2', '1::2::3',
    '12345::', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', ':1:2:3:4:5:6:7', '1:2:3:4:5:6:7:', 'g::1', '::ffff:1.2.3',
    '::1.2.3.4.5', '1:2:3:4:5:6:7:1.2.3.4', 'fe80::1%eth0',
  ])('refuses %j with CTS_ERR_BAD_ADDRESS', (s) => {
    let err: unknown;
    try {
      textToIp(s);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AddressError);
    expect((err as AddressError).code).toBe('CTS_ERR_BAD_ADDRESS');
  });

  it('round-trips any 16 bytes through text, and any 4', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (a) => {
        const b = Buffer.from(a);
        expect(textToIp(ipToText(b, 0, 16)).equals(b)).toBe(true);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 4, maxLength: 4 }), (a) => {
        const b = Buffer.from(a);
        expect(textToIp(ipToText(b, 0, 4)).equals(b)).toBe(true);
      }),
    );
  });

  it('parseIpInto never throws on arbitrary strings', () => {
    const out = Buffer.alloc(16);
    fc.assert(
      fc.property(fc.string({ maxLength: 50 }), (s) => {
        expect([0, 4, 16]).toContain(parseIpInto(s, out, 0));
      }),
      { numRuns: 2000 },
    );
  });
});
