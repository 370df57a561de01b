// What is synced: protocol, connectionless, TCP state, zone, mark and CIDR selections.
import { describe, expect, test } from 'vitest';
import { compileFilter } from '../../../src/sync/filter.js';
import { buildConfig } from '../../../src/config/load.js';
import type { Flow } from '../../../src/kernel/types.js';

const sync = (s: Record<string, unknown>) => buildConfig({ nodeId: 'a', sync: s }).sync;
function flow(src: string, dst: string, proto = 6, extra: Partial<Flow> = {}): Flow {
  const family = src.includes(':') ? 10 : 2;
  return { family, orig: { src, dst, proto, sport: 1, dport: 2 }, reply: { src: dst, dst: src, proto, sport: 2, dport: 1 }, protoinfo: proto === 6 ? { tcp: { state: 3 } } : undefined, ...extra };
}

describe('sync filter', () => {
  test('the defaults sync ordinary flows and ignore loopback and the sync link itself', () => {
    const f = compileFilter(sync({}), ['10.9.0.1', 'fw2.example']);
    expect(f(flow('10.1.0.2', '10.2.0.2'))).toBe(true);
    expect(f(flow('fd00::1', 'fd00::2', 17))).toBe(true);
    expect(f(flow('127.0.0.1', '127.0.0.2'))).toBe(false);
    expect(f(flow('::1', '::1'))).toBe(false);
    expect(f(flow('10.9.0.1', '10.9.0.2'))).toBe(false);
    expect(f(flow('10.9.0.2', '10.9.0.3'))).toBe(true);
    expect(f(flow('10.1.0.2', '10.2.0.2', 112))).toBe(false); // VRRP is not a synced protocol
  });

  test('CIDR prefixes match by bits, per family', () => {
    const f = compileFilter(sync({ acceptCidrs: ['10.64.0.0/10', 'fd00:ab::/33'], ignoreCidrs: ['10.64.7.0/24'] }));
    expect(f(flow('10.127.255.1', '8.8.8.8'))).toBe(true);
    expect(f(flow('10.128.0.1', '8.8.8.8'))).toBe(false);
    expect(f(flow('10.64.7.9', '8.8.8.8'))).toBe(false);
    expect(f(flow('fd00:ab:7fff::1', '2001:db8::1'))).toBe(true);
    expect(f(flow('fd00:ab:8000::1', '2001:db8::1'))).toBe(false);
  });

  test('protocols, connectionless, TCP states, zones and marks', () => {
    expect(compileFilter(sync({ protocols: ['udp'] }))(flow('10.0.0.1', '10.0.0.2'))).toBe(false);
    expect(compileFilter(sync({ connectionless: false }))(flow('10.0.0.1', '10.0.0.2', 17))).toBe(false);
    expect(compileFilter(sync({ tcpStates: ['SYN_SENT'] }))(flow('10.0.0.1', '10.0.0.2'))).toBe(false);
    expect(compileFilter(sync({ zones: ['5'] }))(flow('10.0.0.1', '10.0.0.2', 6, { zone: 5 }))).toBe(true);
    expect(compileFilter(sync({ zones: ['5'] }))(flow('10.0.0.1', '10.0.0.2'))).toBe(false);
    const m = compileFilter(sync({ marks: ['0x10/0xf0'] }));
    expect(m(flow('10.0.0.1', '10.0.0.2', 6, { mark: 0x1f }))).toBe(true);
    expect(m(flow('10.0.0.1', '10.0.0.2', 6, { mark: 0x2f }))).toBe(false);
  });
});
