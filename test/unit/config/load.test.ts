import { describe, expect, test } from 'vitest';
import { buildConfig, ConfigError } from '../../../src/config/load.js';
import { ID_RULE } from '../../../src/transport/types.js';

function problems(doc: unknown, overrides: Record<string, unknown> = {}): string[] {
  try {
    buildConfig(doc, overrides);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('config', () => {
  test('a minimal file gets every documented default and is frozen', () => {
    const c = buildConfig({ nodeId: 'fw1', peers: [{ id: 'fw2', addresses: ['10.9.0.2:3780'] }] });
    expect(c.listen).toBe('0.0.0.0:3780');
    expect(c.security.mode).toBe('psk');
    expect(c.link.deadAfter).toBe(2000);
    expect(c.sync.protocols).toContain('tcp');
    expect(Object.isFrozen(c.sync)).toBe(true);
    expect(() => ((c as { nodeId: string }).nodeId = 'x')).toThrow();
  });

  test('every bad key is named with its reason, not just the first', () => {
    const p = problems({ nodeId: 'bad id!', listen: 'nowhere', sync: { protocols: ['tcp', 'quic'], minAge: 'soon' }, link: { heartbeet: 5 }, colour: 'blue' });
    expect(p.some((s) => s.startsWith('nodeId:'))).toBe(true);
    expect(p.some((s) => s.startsWith('listen:'))).toBe(true);
    expect(p.some((s) => s.startsWith('sync.protocols:'))).toBe(true);
    expect(p.some((s) => s.startsWith('sync.minAge:'))).toBe(true);
    expect(p.some((s) => s.startsWith('link.heartbeet: unknown key (did you mean link.heartbeat?)'))).toBe(true);
    expect(p.some((s) => s.startsWith('colour: unknown key'))).toBe(true);
    expect(p.length).toBe(6);
  });

  test('nodeId is required', () => {
    expect(problems({})).toEqual(['nodeId: is required (set nodeId in the file or --node-id)']);
  });

  test('durations and sizes accept units; flags override the file', () => {
    const c = buildConfig({ nodeId: 'a', link: { heartbeat: '250ms', deadAfter: '2s' }, kernel: { eventBuffer: '32MiB' } }, { nodeId: 'b', peers: ['fw2=10.9.0.2:3780,10.8.0.2:3780'] });
    expect(c.nodeId).toBe('b');
    expect(c.link.heartbeat).toBe(250);
    expect(c.link.deadAfter).toBe(2000);
    expect(c.kernel.eventBuffer).toBe(32 << 20);
    expect(c.peers).toEqual([{ id: 'fw2', addresses: ['10.9.0.2:3780', '10.8.0.2:3780'] }]);
  });

  test('sync.quiet takes microseconds and is capped', () => {
    expect(buildConfig({ nodeId: 'a', sync: { quiet: '200us' } }).sync.quiet).toBeCloseTo(0.2, 9);
    expect(buildConfig({ nodeId: 'a' }).sync.quiet).toBe(0.2);
    expect(buildConfig({ nodeId: 'a', sync: { quiet: 0 } }).sync.quiet).toBe(0);
    expect(problems({ nodeId: 'a', sync: { quiet: '6ms' } })).toEqual(['sync.quiet: must be at most 5ms (the event reader blocks for it) (got "6ms")']);
  });

  test('redis.maxBuffer must exceed the send buffer\'s backpressure point, 8MiB', () => {
    expect(problems({ nodeId: 'a', redis: { maxBuffer: '8MiB' } })).toEqual(['redis.maxBuffer: must be more than 8MiB (8388608), where the send buffer reports backpressure (got "8MiB")']);
    expect(problems({ nodeId: 'a', redis: { maxBuffer: '9MiB' } })).toEqual([]);
  });

  test('values a lower layer would refuse, or turn into something else, are refused here, by key', () => {
    const p = problems({
      nodeId: '-fw1',
      clusterId: 'my cluster',
      listen: '127.0.0.1:99999',
      peers: [{ id: 'fw 2', addresses: ['127.0.0.1:0'] }],
      control: { socket: `/run/${'x'.repeat(110)}.sock` },
      metrics: { listen: 'nowhere' },
      kernel: { eventBuffer: '0' },
      sync: { refreshInterval: '1000h', digestInterval: '10ms' },
      link: { heartbeat: 500.5, maxFrame: '64KiB' },
      redis: { db: -1 },
      ha: { purgeAfter: '597h' },
    });
    const keys = p.map((s) => s.slice(0, s.indexOf(':')));
    expect(keys.sort()).toEqual(['clusterId', 'control.socket', 'ha.purgeAfter', 'kernel.eventBuffer', 'link.heartbeat', 'link.maxFrame', 'listen', 'metrics.listen', 'nodeId', 'peers', 'redis.db', 'sync.digestInterval', 'sync.refreshInterval']);
    expect(p).toContain('sync.refreshInterval: must be at most 596h (2147483647 ms, the longest timer) (got "1000h")');
    expect(p).toContain('link.heartbeat: must be a whole number of ms, at least 10ms (got 500.5)');
    // a list names each bad item, under the list's key
    const q = problems({ nodeId: 'fw1', peers: [{ id: 'fw 2', addresses: ['127.0.0.1:0'] }, { id: 'fw3', addresses: ['10.0.0.3:3780'] }, { id: 'fw3', addresses: ['10.0.1.3:3780'] }], sync: { marks: ['0x100000001', '7'] }, transport: 'both', redis: { peers: ['fw{3}'] } });
    expect(q).toEqual([
      `peers: id 'fw 2' must be ${ID_RULE}; '127.0.0.1:0' of fw 2 must be HOST:PORT (port 1-65535); the same id appears twice (got [{"id":"fw 2","addresses":["127.0.0.1:0"]},{"id":"fw3","addresses":["10.0.0.3:3780"]},{"id":"fw3","addresses":["10.0.1.3:3780"]}])`,
      `sync.marks: '0x100000001' does not fit the 32-bit mark (got ["0x100000001","7"])`,
      `redis.peers: 'fw{3}' must be ${ID_RULE} (got ["fw{3}"])`,
    ]);
    expect(problems({ nodeId: 'fw1', sync: { protocols: [] } })).toEqual(['sync.protocols: must list one or more of tcp, udp, udplite, icmp, icmpv6, sctp, dccp, gre (got [])']);
    expect(problems({ nodeId: 'fw1', listen: '127.0.0.1:3780', metrics: { listen: '127.0.0.1:3780' } })).toEqual(["metrics.listen: '127.0.0.1:3780' is also the peer link's listen address"]);
    // the limits themselves pass
    expect(problems({ nodeId: 'a'.repeat(63), control: { socket: `/${'x'.repeat(106)}` }, metrics: { listen: '' }, sync: { refreshInterval: 0, digestInterval: '1s' }, link: { heartbeat: '10ms', deadAfter: '20ms', maxFrame: '1MiB' }, ha: { purgeAfter: '596h' } })).toEqual([]);
  });

  test('cross-field checks', () => {
    const p = problems({ nodeId: 'fw1', peers: [{ id: 'fw1', addresses: ['x:1'] }], link: { heartbeat: 3000, deadAfter: 1000 }, security: { mode: 'cert' }, sync: { acceptCidrs: ['10.0.0.0/33'], zones: ['70000'] } });
    expect(p).toContain("peers: lists this node's own nodeId 'fw1'");
    expect(p.some((s) => s.startsWith('link.deadAfter'))).toBe(true);
    expect(p).toContain('security.ca: is required when security.mode is cert');
    expect(p).toContain(`sync.acceptCidrs: '10.0.0.0/33' is not an address or CIDR (got ["10.0.0.0/33"])`);
    expect(p).toContain(`sync.zones: '70000' must be a zone number 0..65535 (got ["70000"])`);
  });

  test('one start names the bad keys and the keys that do not fit together; a check on a bad key is not repeated', () => {
    const p = problems({ nodeId: 'fw1', listen: '0.0.0.0:70000', peers: [{ id: 'fw1', addresses: ['10.0.0.1:3780'] }], link: { heartbeat: 3000, deadAfter: 1000 }, security: { mode: 'cert', cert: '/etc/ctsync/fw1.pem' } });
    expect(p).toEqual([
      'listen: must be HOST:PORT ([v6addr]:PORT for IPv6), port 1-65535 (got "0.0.0.0:70000")',
      "peers: lists this node's own nodeId 'fw1'",
      'link.deadAfter (1000 ms) must be at least twice link.heartbeat (3000 ms), or one late heartbeat drops the link',
      'security.ca: is required when security.mode is cert',
      'security.key: is required when security.mode is cert',
    ]);
    // the bad heartbeat is named once: the check of deadAfter against it is skipped, not made against the default
    expect(problems({ nodeId: 'fw1', link: { heartbeat: '5ms', deadAfter: '50ms' } })).toEqual(['link.heartbeat: must be a whole number of ms, at least 10ms (got "5ms")']);
    // a bad transport skips the checks that depend on it, not the others; a bad mode skips the cert keys
    expect(problems({ nodeId: 'fw1', transport: 'pigeon', security: { mode: 'cert' } })).toEqual([
      'transport: must be one of tcp, redis, both (got "pigeon")',
      'security.ca: is required when security.mode is cert',
      'security.cert: is required when security.mode is cert',
      'security.key: is required when security.mode is cert',
    ]);
    expect(problems({ nodeId: 'fw1', transport: 'redis', redis: { mode: 'sentinel' }, security: { mode: 'pki' } })).toEqual([
      'security.mode: must be one of psk, cert, insecure (got "pki")',
      "redis.peers: transport redis needs the other nodes' ids (redis.peers, or peers)",
      'redis.name: is required when redis.mode is sentinel',
    ]);
    // a missing nodeId is named once, and the peer list is still checked against itself
    expect(problems({ peers: [{ id: 'fw2', addresses: ['10.0.0.2:1'] }, { id: 'fw2', addresses: ['10.0.0.3:1'] }] }).map((s) => s.slice(0, s.indexOf(':')))).toEqual(['nodeId', 'peers']);
  });

  test('transport both needs the direct link\'s peers and the Redis keys of transport redis', () => {
    expect(buildConfig({ nodeId: 'fw1', transport: 'both', peers: [{ id: 'fw2', addresses: ['10.9.0.2:3780'] }] }).transport).toBe('both');
    const p = problems({ nodeId: 'fw1', transport: 'both', redis: { mode: 'sentinel', peers: ['fw1'] } });
    expect(p).toContain("peers: transport both needs the direct link's peers (id and addresses); or use transport redis");
    expect(p).toContain("redis.peers: lists this node's own nodeId 'fw1'");
    expect(p).toContain('redis.name: is required when redis.mode is sentinel');
    expect(problems({ nodeId: 'fw1', transport: 'pigeon' }).some((s) => s.startsWith('transport:'))).toBe(true);
  });

  test('a document that is not a mapping is refused', () => {
    expect(problems(['a', 'b'])).toEqual(['the file must hold a YAML mapping of keys']);
  });
});
