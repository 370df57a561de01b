// The pure verdicts of `ctsync doctor`: each check's ok/warn/fail and its remedy, the keepalived parser, the report.
import { describe, expect, it } from 'vitest';
import {
  checkConfig,
  checkConntrackLoaded,
  checkControlDir,
  checkDaemon,
  checkEventBuffer,
  checkEvents,
  checkKeepalived,
  checkKey,
  checkLabels,
  checkNetns,
  checkRedis,
  checkRmemMax,
  checkTableSize,
  checkHashSize,
  checkTcpLoose,
  checkTimestamp,
  doctorExitCode,
  effectiveRcvbuf,
  parseKeepalived,
  renderReport,
  summarize,
  usesCtLabel,
} from '../../../src/doctor/checks.js';

const MiB = 1 << 20;

describe('sysctl checks', () => {
  it('fails on nf_conntrack_events=0 with a fix in the right namespace', () => {
    const host = checkEvents({ 'net.netfilter.nf_conntrack_events': '0' });
    expect(host.status).toBe('fail');
    expect(host.remedy).toBe('sysctl -w net.netfilter.nf_conntrack_events=1, and keep it in /etc/sysctl.d/90-ctsync.conf');
    const ns = checkEvents({ 'net.netfilter.nf_conntrack_events': '0' }, 'fw');
    expect(ns.detail).toContain('in netns fw');
    expect(ns.remedy).toMatch(/^ip netns exec fw sysctl -w net\.netfilter\.nf_conntrack_events=1 /);
  });

  it('accepts 1 and 2 (2 builds events while a listener exists)', () => {
    expect(checkEvents({ 'net.netfilter.nf_conntrack_events': '1' }).status).toBe('ok');
    const two = checkEvents({ 'net.netfilter.nf_conntrack_events': '2' });
    expect(two.status).toBe('ok');
    expect(two.detail).toContain('listener');
  });

  it('fails when conntrack is not loaded, or the namespace cannot be entered', () => {
    expect(checkConntrackLoaded({ 'net.netfilter.nf_conntrack_max': null }).status).toBe('fail');
    expect(checkConntrackLoaded({ 'net.netfilter.nf_conntrack_max': null }).remedy).toContain('modprobe nf_conntrack');
    expect(checkEvents({}).status).toBe('fail');
    const denied = checkConntrackLoaded({}, 'fw', 'setting the network namespace "fw" failed: Operation not permitted');
    expect(denied.status).toBe('fail');
    expect(denied.remedy).toContain('as root');
    expect(checkConntrackLoaded({ 'net.netfilter.nf_conntrack_max': '262144' }).status).toBe('ok');
  });

  it('rmem_max below the event buffer is a warning whose fix is on the host, even for a namespace', () => {
    const r = checkRmemMax({ 'net.core.rmem_max': '212992' }, 64 * MiB, 'fw');
    expect(r.status).toBe('warn');
    expect(r.remedy).toMatch(/^sysctl -w net\.core\.rmem_max=67108864/);
    expect(checkRmemMax({ 'net.core.rmem_max': String(64 * MiB) }, 64 * MiB).status).toBe('ok');
  });

  it('tcp_loose is informational either way; timestamps off is a warning', () => {
    expect(checkTcpLoose({ 'net.netfilter.nf_conntrack_tcp_loose': '0' }).status).toBe('ok');
    expect(checkTcpLoose({ 'net.netfilter.nf_conntrack_tcp_loose': '0' }).detail).toContain('strict');
    expect(checkTcpLoose({ 'net.netfilter.nf_conntrack_tcp_loose': '1' }).status).toBe('ok');
    expect(checkTimestamp({ 'net.netfilter.nf_conntrack_timestamp': '0' }).status).toBe('warn');
    expect(checkTimestamp({ 'net.netfilter.nf_conntrack_timestamp': '1' }).status).toBe('ok');
  });
});

describe('event buffer', () => {
  it('the kernel doubles what SO_RCVBUFFORCE asked for', () => {
    expect(effectiveRcvbuf(64 * MiB)).toBe(128 * MiB);
    expect(effectiveRcvbuf(0x7fffffff)).toBe(0x3fffffff * 2);
  });

  it('ok when granted, warn when capped, fail when no socket', () => {
    expect(checkEventBuffer({ wanted: 64 * MiB, got: 128 * MiB }).status).toBe('ok');
    const capped = checkEventBuffer({ wanted: 64 * MiB, got: 8 * MiB });
    expect(capped.status).toBe('warn');
    expect(capped.detail).toContain('got 4 MiB');
    expect(capped.remedy).toContain('CAP_NET_ADMIN');
    expect(checkEventBuffer({ wanted: 64 * MiB, got: 8 * MiB, unprivileged: true }).remedy).toContain('not root');
    const none = checkEventBuffer({ wanted: 64 * MiB, error: 'EPERM' }, 'fw');
    expect(none.status).toBe('fail');
    expect(none.detail).toContain('in netns fw: EPERM');
  });
});

describe('table size', () => {
  it('counts what the daemon would commit, not only what the kernel holds', () => {
    expect(checkTableSize({ max: 1000, count: 100 }).status).toBe('ok');
    expect(checkTableSize({ max: 1000, count: 100, daemonLocal: 500, daemonPeer: 300 }).status).toBe('warn');
    const over = checkTableSize({ max: 1000, count: 1200 });
    expect(over.status).toBe('fail');
    expect(over.remedy).toContain('nf_conntrack_max');
    expect(checkTableSize({}).status).toBe('warn');
  });

  it('warns when the hash has fewer buckets than the table may hold, and says how to raise it', () => {
    expect(checkHashSize({ max: 262144, buckets: 262144 }).status).toBe('ok');
    const small = checkHashSize({ max: 1048576, buckets: 262144 });
    expect(small.status).toBe('warn');
    expect(small.remedy).toContain('sysctl -w net.netfilter.nf_conntrack_buckets=1048576 in the host namespace');
    // what the daemon holds counts too
    expect(checkHashSize({ max: 1000, buckets: 1000, daemonLocal: 900, daemonPeer: 900 }).status).toBe('warn');
    expect(checkHashSize({ max: 1000 }).status).toBe('warn');
  });
});

describe('config, key, control directory, namespace', () => {
  it('a missing default config warns, a missing named one fails, problems fail', () => {
    expect(checkConfig({ file: '/etc/ctsync/ctsync.yaml', explicit: false, exists: false }).status).toBe('warn');
    expect(checkConfig({ file: '/x.yaml', explicit: true, exists: false, problems: ['does not exist'] }).status).toBe('fail');
    const bad = checkConfig({ file: '/x.yaml', explicit: true, exists: true, problems: ['link.heartbeet: unknown key (did you mean link.heartbeat?)'] });
    expect(bad.status).toBe('fail');
    expect(bad.detail).toContain('link.heartbeet');
    expect(checkConfig({ file: '/x.yaml', explicit: true, exists: true, summary: 'node fw1' }).status).toBe('ok');
  });

  it('key: missing or weak fails, loose mode warns, insecure warns', () => {
    expect(checkKey({ mode: 'psk', file: '/k', exists: false }).status).toBe('fail');
    expect(checkKey({ mode: 'psk', file: '/k', exists: true, perm: 0o600, weak: 'decodes to 4 bytes' }).status).toBe('fail');
    const loose = checkKey({ mode: 'psk', file: '/k', exists: true, perm: 0o640 });
    expect(loose.status).toBe('warn');
    expect(loose.remedy).toBe('chmod 600 /k');
    expect(checkKey({ mode: 'psk', file: '/k', exists: true, perm: 0o600 }).status).toBe('ok');
    expect(checkKey({ mode: 'insecure' }).status).toBe('warn');
    expect(checkKey({ mode: 'cert', missing: ['/ca.pem'] }).status).toBe('fail');
    const weak = checkKey({ mode: 'cert', missing: [], weak: 'security.key /etc/ctsync/node.key is readable by every user; run chmod 600 on it' });
    expect([weak.status, weak.detail]).toEqual(['fail', 'security.key /etc/ctsync/node.key is readable by every user; run chmod 600 on it']);
    expect(checkKey({ mode: 'cert', missing: [] }).status).toBe('ok');
  });

  it('redis: not used with transport tcp; unreachable or too old fails with transport redis and warns with both', () => {
    expect(checkRedis({ transport: 'tcp', where: 'single 127.0.0.1:6379' })).toMatchObject({ status: 'ok', detail: 'transport tcp: Redis is not used' });
    const refused = checkRedis({ transport: 'redis', where: 'single 10.0.0.5:6379, db 20', probe: { reached: false, error: 'ERR DB index is out of range' } });
    expect([refused.status, refused.detail]).toEqual(['fail', 'single 10.0.0.5:6379, db 20: ERR DB index is out of range']);
    expect(refused.remedy).toContain('redis.db');
    expect(checkRedis({ transport: 'both', where: 'single 10.0.0.5:6379', probe: { reached: false, error: 'connect ECONNREFUSED' } }).status).toBe('warn');
    expect(checkRedis({ transport: 'redis', where: 'single 10.0.0.5:6379', probe: { reached: true, version: '4.0.9' } }).status).toBe('fail');
    const up = checkRedis({ transport: 'redis', where: 'single 10.0.0.5:6379', probe: { reached: true, version: '7.0.15' } });
    expect([up.status, up.detail]).toEqual(['ok', 'single 10.0.0.5:6379: Redis 7.0.15 answers']);
  });

  it('control directory', () => {
    expect(checkControlDir({ dir: '/run/ctsync', exists: false, writable: false }).status).toBe('warn');
    expect(checkControlDir({ dir: '/run/ctsync', exists: true, writable: false }).status).toBe('fail');
    expect(checkControlDir({ dir: '/run/ctsync', exists: true, writable: true, perm: 0o777 }).status).toBe('warn');
    expect(checkControlDir({ dir: '/run/ctsync', exists: true, writable: true, perm: 0o700 }).status).toBe('ok');
  });

  it('namespace', () => {
    expect(checkNetns(undefined, false).status).toBe('ok');
    expect(checkNetns('fw', true).status).toBe('ok');
    expect(checkNetns('fw', false).status).toBe('fail');
  });
});

const KA_FIFO = `
global_defs {
  vrrp_notify_fifo /run/ctsync/keepalived.fifo
  vrrp_notify_fifo_script "/usr/local/bin/ctsync notify-fifo"
}
track_file ctsync_ready {
  file /run/ctsync/track
  weight 0
}
vrrp_instance VI_1 {
  track_file {
    ctsync_ready weight 0
  }
}
`;

describe('keepalived wiring', () => {
  it('recognises the FIFO wiring and a tracked weight-0 track_file', () => {
    expect(parseKeepalived(KA_FIFO, '/run/ctsync/track')).toEqual({ fifo: true, scripts: false, fifoUndeclared: false, trackName: 'ctsync_ready', trackWeight: 0, tracked: true });
    expect(checkKeepalived({ file: 'k.conf', text: KA_FIFO, trackFile: '/run/ctsync/track' }).map((c) => c.status)).toEqual(['ok', 'ok']);
  });

  it('recognises per-state and generic notify scripts', () => {
    const text = 'vrrp_sync_group G {\n  notify_master "/usr/local/bin/ctsync notify master"\n  notify "/usr/local/bin/ctsync notify"\n}\n';
    expect(parseKeepalived(text, '/t').scripts).toBe(true);
    expect(parseKeepalived(text, '/t').fifo).toBe(false);
  });

  it('ignores commented-out wiring', () => {
    const text = KA_FIFO.replace(/^(\s*)(vrrp_notify_fifo|track_file|ctsync_ready)/gm, '$1! $2').replace(/^(\s*)(file|weight)/gm, '$1# $2');
    const [hook, track] = checkKeepalived({ file: 'k.conf', text, trackFile: '/run/ctsync/track' });
    expect(hook.status).toBe('fail');
    expect(hook.remedy).toContain('vrrp_notify_fifo_script');
    expect(track.status).toBe('fail');
  });

  it('a fifo script without its FIFO, a track file for another path, an untracked or weighted track_file', () => {
    const noFifo = KA_FIFO.replace('  vrrp_notify_fifo /run/ctsync/keepalived.fifo\n', '');
    expect(checkKeepalived({ file: 'k', text: noFifo, trackFile: '/run/ctsync/track' })[0].detail).toContain('no vrrp_notify_fifo');
    expect(checkKeepalived({ file: 'k', text: KA_FIFO, trackFile: '/run/other/track' })[1].status).toBe('fail');
    const untracked = KA_FIFO.replace('    ctsync_ready weight 0\n', '');
    expect(checkKeepalived({ file: 'k', text: untracked, trackFile: '/run/ctsync/track' })[1].detail).toContain('no vrrp_instance');
    const weighted = KA_FIFO.replace('  weight 0\n}', '  weight 10\n}');
    expect(checkKeepalived({ file: 'k', text: weighted, trackFile: '/run/ctsync/track' })[1].status).toBe('warn');
    const quoted = KA_FIFO.replace('file /run/ctsync/track', 'file "/run/ctsync/track"');
    expect(parseKeepalived(quoted, '/run/ctsync/track').trackName).toBe('ctsync_ready');
  });

  it('an unreadable keepalived.conf is a warning on both lines', () => {
    expect(checkKeepalived({ file: '/nope', error: 'ENOENT', trackFile: '/t' }).map((c) => c.status)).toEqual(['warn', 'warn']);
  });
});

describe('labels and daemon', () => {
  it('labels only matter when commit.labels is on', () => {
    expect(usesCtLabel('table inet f { chain c { ct label set 1 } }')).toBe(true);
    expect(usesCtLabel('-A FORWARD -m connlabel --label 1')).toBe(true);
    expect(usesCtLabel('table inet f { chain c { ct state established accept } }')).toBe(false);
    expect(checkLabels({ labels: false }).status).toBe('ok');
    const missing = checkLabels({ labels: true, text: 'table inet f { }' }, 'fw');
    expect(missing.status).toBe('fail');
    expect(missing.detail).toContain('ENOSPC');
    expect(checkLabels({ labels: true, text: 'ct label set 3' }).status).toBe('ok');
    expect(checkLabels({ labels: true, error: 'nft: not found' }).status).toBe('warn');
  });

  it('daemon: not running warns, not in sync warns, an odd error fails', () => {
    expect(checkDaemon({ socket: '/s', running: false, error: 'not running' }).status).toBe('warn');
    expect(checkDaemon({ socket: '/s', running: true, inSync: false, notReady: ['initial bulk'] }).detail).toContain('initial bulk');
    expect(checkDaemon({ socket: '/s', running: false, error: 'EACCES' }).status).toBe('fail');
    expect(checkDaemon({ socket: '/s', running: true, inSync: true }).status).toBe('ok');
  });
});

describe('report', () => {
  it('exit 1 only when a check fails; the text shows each remedy under its check', () => {
    const ok = summarize([checkNetns(undefined, false), checkTimestamp({ 'net.netfilter.nf_conntrack_timestamp': '0' })]);
    expect(doctorExitCode(ok)).toBe(0);
    const bad = summarize([checkEvents({ 'net.netfilter.nf_conntrack_events': '0' }, 'fw'), checkNetns('fw', true)], 'fw');
    expect(bad.summary).toEqual({ ok: 1, warn: 0, fail: 1 });
    expect(doctorExitCode(bad)).toBe(1);
    const text = renderReport(bad);
    expect(text).toMatch(/FAIL {2}conntrack event delivery +net\.netfilter\.nf_conntrack_events = 0 in netns fw/);
    expect(text).toMatch(/\n +fix: ip netns exec fw sysctl -w net\.netfilter\.nf_conntrack_events=1/);
    expect(text.trimEnd().split('\n').at(-1)).toBe('1 failed, 0 warnings, 1 ok');
  });
});
