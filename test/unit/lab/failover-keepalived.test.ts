// Unit tests of the failover lab's keepalived.conf generator (pure text, no keepalived run).
import { describe, expect, it } from 'vitest';
import { checkKeepalivedSpec, KeepalivedConfigError, keepalivedConfig, type KeepalivedSpec } from '../../../src/lab/keepalived.js';

const spec = (over: Partial<KeepalivedSpec> = {}): KeepalivedSpec => ({
  routerId: 'ctsf_fw1',
  priority: 150,
  advertIntSec: 0.2,
  instances: [
    { name: 'CTS_IN', interface: 'lan0', virtualRouterId: 51, srcIp: '10.77.21.11', peers: ['10.77.21.12'], vips: ['10.77.21.1/24'] },
    { name: 'CTS_OUT', interface: 'wan0', virtualRouterId: 52, srcIp: '10.77.22.11', peers: ['10.77.22.12'], vips: ['10.77.22.1/24'] },
  ],
  ...over,
});

/** The lines of one top-level block, e.g. block(conf, 'vrrp_instance CTS_IN'). */
function block(conf: string, head: string): string {
  const start = conf.indexOf(`${head} {`);
  expect(start).toBeGreaterThanOrEqual(0);
  return conf.slice(start, conf.indexOf('\n}', start) + 2);
}

describe('keepalivedConfig', () => {
  it('speaks VRRPv3 over unicast only, with sub-second adverts and preempt on', () => {
    const conf = keepalivedConfig(spec());
    expect(conf).toMatch(/^\s*vrrp_version 3$/m);
    const inside = block(conf, 'vrrp_instance CTS_IN');
    expect(inside).toMatch(/advert_int 0\.2\n/);
    expect(inside).toMatch(/unicast_src_ip 10\.77\.21\.11\n\s+unicast_peer \{\n\s+10\.77\.21\.12\n\s+\}/);
    expect(inside).toMatch(/virtual_ipaddress \{\n\s+10\.77\.21\.1\/24 dev lan0\n/);
    expect(inside).toMatch(/priority 150/);
    expect(conf).not.toMatch(/nopreempt|vrrp_strict|mcast|authentication/);
  });

  it('puts every instance in one sync group so the inside and outside VIPs move together', () => {
    const group = block(keepalivedConfig(spec({ syncGroup: 'G1' })), 'vrrp_sync_group G1');
    expect(group).toMatch(/group \{\n\s+CTS_IN\n\s+CTS_OUT\n\s+\}/);
  });

  it('writes the per-state, generic and FIFO hooks as given, quoted', () => {
    const conf = keepalivedConfig(
      spec({
        hooks: {
          notifyMaster: '/usr/bin/ctsync notify master',
          notifyBackup: '/usr/bin/ctsync notify backup',
          notifyFault: '/usr/bin/ctsync notify fault',
          notifyStop: '/usr/bin/ctsync notify stop',
          notify: '/usr/bin/ctsync notify',
          fifo: { path: '/run/ctsync/k.fifo', script: '/usr/bin/ctsync notify-fifo' },
        },
      }),
    );
    const group = block(conf, 'vrrp_sync_group CTS_G');
    for (const s of ['master', 'backup', 'fault', 'stop']) expect(group).toContain(`notify_${s} "/usr/bin/ctsync notify ${s}"`);
    expect(group).toMatch(/^\s+notify "\/usr\/bin\/ctsync notify"$/m);
    const global = block(conf, 'global_defs');
    expect(global).toMatch(/^\s+vrrp_notify_fifo \/run\/ctsync\/k\.fifo$/m);
    expect(global).toMatch(/^\s+vrrp_notify_fifo_script "\/usr\/bin\/ctsync notify-fifo"$/m);
    expect(keepalivedConfig(spec({ hooks: { fifo: { path: '/f', scope: 'all' } } }))).toMatch(/^\s+notify_fifo \/f$/m);
  });

  it('tracks a file with weight 0 (non-zero = FAULT) in every instance', () => {
    const conf = keepalivedConfig(spec({ hooks: { trackFile: { path: '/run/ctsync/ready', init: 1 } } }));
    expect(block(conf, 'track_file ctsync_ready')).toMatch(/file \/run\/ctsync\/ready\n\s+weight 0\n\s+init_file 1\n/);
    for (const i of ['CTS_IN', 'CTS_OUT']) expect(block(conf, `vrrp_instance ${i}`)).toMatch(/track_file \{\n\s+ctsync_ready weight 0\n/);
  });

  it('is pure: the same spec gives the same text', () => {
    expect(keepalivedConfig(spec())).toBe(keepalivedConfig(spec()));
  });

  it('rejects a bad spec listing every bad key, and writes nothing', () => {
    const bad = spec({
      priority: 255,
      advertIntSec: 0.005,
      instances: [{ name: 'bad name', interface: 'lan0', virtualRouterId: 0, srcIp: '10.0.0.300', peers: [], vips: ['10.1.1.1'] }],
      hooks: { notify: 'evil "quote"', trackFile: { path: '/a b' } },
    });
    const problems = checkKeepalivedSpec(bad);
    for (const key of ['priority', 'advertIntSec', '.name', 'virtualRouterId', 'srcIp', 'peers', 'vips', 'hooks.notify', 'hooks.trackFile.path']) {
      expect(problems.some((p) => p.includes(key)), key).toBe(true);
    }
    expect(() => keepalivedConfig(bad)).toThrow(KeepalivedConfigError);
  });

  it('accepts advert intervals in steps of 0.01 s only', () => {
    expect(checkKeepalivedSpec(spec({ advertIntSec: 0.05 }))).toEqual([]);
    expect(checkKeepalivedSpec(spec({ advertIntSec: 1 }))).toEqual([]);
    expect(checkKeepalivedSpec(spec({ advertIntSec: 0.123 }))).toHaveLength(1);
  });
});
