// The files in systemd/: the example config parses and documents every key at its default, the keepalived example
// passes `keepalived -t` and is wired the way doctor wants, the unit verifies and is hardened, the sysctls apply.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { buildConfig } from '../../../src/config/load.js';
import { SCHEMA, type KeySpec } from '../../../src/config/schema.js';
import { checkKeepalived } from '../../../src/doctor/checks.js';

const dir = fileURLToPath(new URL('../../../systemd/', import.meta.url));
const read = (f: string) => readFileSync(join(dir, f), 'utf8');
const has = (bin: string) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;
const isRoot = process.getuid?.() === 0;

/** Keys the example sets to something other than the default, on purpose (marked CHANGE in the file). */
const CHANGED = new Set(['nodeId', 'peers']);

function get(o: unknown, dotted: string): unknown {
  return dotted.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], o);
}

describe('ctsync.example.yaml', () => {
  const text = read('ctsync.example.yaml');
  const cfg = buildConfig(parseYaml(text));

  it('parses with buildConfig', () => {
    expect(cfg.nodeId).toBe('fw1');
    expect(cfg.peers).toEqual([{ id: 'fw2', addresses: ['10.99.0.2:3780', '192.0.2.2:3780'] }]);
  });

  it('mentions every key of SCHEMA, each with a comment above it', () => {
    const lines = text.split('\n');
    for (const key of Object.keys(SCHEMA)) {
      const leaf = key.split('.').at(-1)!;
      const i = lines.findIndex((l) => new RegExp(`^\\s*#?\\s*${leaf}:`).test(l) && !/^\s*#\s{2,}/.test(l));
      expect(i, `${key} is not in the example`).toBeGreaterThan(0);
      // the doc comment: the line above, or the key itself is a commented-out example with a trailing comment
      expect(lines[i - 1].trim().startsWith('#') || /#.*#/.test(lines[i]), `${key} has no comment`).toBe(true);
    }
  });

  it('sets every key with a default to that default, except those marked CHANGE', () => {
    for (const [key, spec] of Object.entries(SCHEMA) as [string, KeySpec][]) {
      if (CHANGED.has(key)) continue;
      expect(get(cfg, key), key).toEqual(spec.default);
    }
    for (const key of CHANGED) expect(text).toMatch(new RegExp(`# CHANGE: [^\\n]*\\n(#[^\\n]*\\n)*${key}:`));
  });

  it('the control socket, track file and key paths are the ones the other files use', () => {
    expect(read('ctsync.service')).toContain(`--socket ${cfg.control.socket}`);
    expect(read('ctsync.service')).toContain(`echo 1 > ${cfg.ha.trackFile}`);
    expect(read('keepalived.example.conf')).toContain(`file ${cfg.ha.trackFile}`);
  });
});

describe('keepalived.example.conf', () => {
  const text = read('keepalived.example.conf');

  it('is wired the way ctsync doctor checks it', () => {
    const checks = checkKeepalived({ file: 'keepalived.example.conf', text, trackFile: '/run/ctsync/track' });
    expect(checks.map((c) => `${c.id}:${c.status}`)).toEqual(['keepalived-notify:ok', 'keepalived-track:ok']);
    expect(text).toContain('vrrp_notify_fifo /run/ctsync/keepalived.fifo');
    expect(text).toContain('vrrp_notify_fifo_script "/usr/local/bin/ctsync notify-fifo"');
    expect(text).toMatch(/unicast_peer/);
    expect(text).toMatch(/vrrp_sync_group/);
  });

  // keepalived -t refuses interfaces that do not exist, so it runs in a throwaway namespace with eth0/eth1
  const why = !has('keepalived') ? 'keepalived is not installed (apt-get install keepalived)' : !isRoot ? 'needs root to create a namespace holding eth0/eth1' : !has('ip') ? 'needs ip (iproute2)' : undefined;
  if (why) console.warn(`keepalived.example.conf: keepalived -t SKIPPED: ${why}`);
  it.skipIf(why !== undefined)('passes keepalived -t, and -t catches a broken copy', () => {
    const ns = `ctsq-ka${randomBytes(3).toString('hex')}`;
    const tmp = mkdtempSync(join(tmpdir(), 'ctsq-'));
    try {
      execFileSync('ip', ['netns', 'add', ns]);
      execFileSync('ip', ['-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'p0']);
      execFileSync('ip', ['-n', ns, 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'p1']);
      const test = (file: string) => spawnSync('ip', ['netns', 'exec', ns, 'keepalived', '-t', '-f', file, '-l', '-D'], { encoding: 'utf8', timeout: 20_000 });
      const good = test(join(dir, 'keepalived.example.conf'));
      expect(good.status, good.stderr + good.stdout).toBe(0);
      const broken = join(tmp, 'broken.conf');
      writeFileSync(broken, text.replace('  weight 0\n  init_file 1', '  weight 0\n  init_file 1\n  no_such_keyword 1'));
      expect(test(broken).status).not.toBe(0);
    } finally {
      spawnSync('ip', ['netns', 'del', ns]);
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('ctsync.service', () => {
  const unit = read('ctsync.service');
  const directives = (name: string) => [...unit.matchAll(new RegExp(`^${name}=(.*)$`, 'gm'))].map((m) => m[1]);

  it('keeps only CAP_NET_ADMIN and the hardening the install docs promise', () => {
    expect(directives('CapabilityBoundingSet')).toEqual(['CAP_NET_ADMIN']);
    for (const [k, v] of [
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
      ['ReadWritePaths', '/run/ctsync'],
      ['RuntimeDirectory', 'ctsync'],
      ['RuntimeDirectoryMode', '0700'],
      ['RestrictAddressFamilies', 'AF_UNIX AF_INET AF_INET6 AF_NETLINK'],
      ['SystemCallArchitectures', 'native'],
      ['Restart', 'on-failure'],
      ['RestartPreventExitStatus', '78'],
      ['Type', 'exec'],
      ['Before', 'keepalived.service'],
      ['After', 'network-online.target nftables.service'],
    ]) expect(directives(k), k).toEqual([v]);
    expect(directives('ExecStartPost')[0]).toContain('ctsync stats --socket');
  });

  it('78 is the exit code of a bad config', () => {
    expect(readFileSync(fileURLToPath(new URL('../../../src/cli/exit.ts', import.meta.url)), 'utf8')).toMatch(/Config = 78/);
  });

  it('the netns drop-in adds CAP_SYS_ADMIN and network namespaces only', () => {
    const dropin = read('ctsync-netns.conf');
    expect(dropin).toMatch(/^CapabilityBoundingSet=CAP_NET_ADMIN CAP_SYS_ADMIN$/m);
    expect(dropin).toMatch(/^RestrictNamespaces=net$/m);
  });

  // systemd-analyze verify checks every directive and that ExecStart is executable; ctsync need not be installed:
  // the copy points its commands at a stand-in
  const noVerify = has('systemd-analyze') ? undefined : 'systemd-analyze is not installed (apt-get install systemd)';
  if (noVerify) console.warn(`ctsync.service: systemd-analyze verify SKIPPED: ${noVerify}`);
  it.skipIf(noVerify !== undefined)('passes systemd-analyze verify, with and without the netns drop-in', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'ctsq-unit-'));
    try {
      const bin = join(tmp, 'ctsync');
      writeFileSync(bin, '#!/bin/sh\n');
      chmodSync(bin, 0o755);
      writeFileSync(join(tmp, 'ctsync.service'), unit.replaceAll('/usr/local/bin/ctsync', bin));
      const verify = () => spawnSync('systemd-analyze', ['verify', join(tmp, 'ctsync.service')], { encoding: 'utf8', cwd: tmp, timeout: 30_000 });
      const plain = verify();
      expect(plain.status, plain.stderr).toBe(0);
      expect(plain.stderr.trim()).toBe('');
      mkdirSync(join(tmp, 'ctsync.service.d'));
      writeFileSync(join(tmp, 'ctsync.service.d', 'netns.conf'), read('ctsync-netns.conf'));
      const withNetns = verify();
      expect(withNetns.status, withNetns.stderr).toBe(0);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('90-ctsync.conf', () => {
  const text = read('90-ctsync.conf');
  const active = text.split('\n').filter((l) => /^\s*[a-z]/.test(l)).map((l) => l.split('=').map((s) => s.trim()));

  it('sets what ctsync relies on; tcp_loose stays a documented, commented-out choice', () => {
    expect(Object.fromEntries(active)).toEqual({
      'net.core.rmem_max': String(SCHEMA['kernel.eventBuffer'].default),
      'net.netfilter.nf_conntrack_events': '1',
      'net.netfilter.nf_conntrack_timestamp': '1',
    });
    expect(text).toMatch(/^#net\.netfilter\.nf_conntrack_tcp_loose = 0$/m);
    expect(read('ctsync.modules-load.conf')).toMatch(/^nf_conntrack$/m);
  });

  const why = !isRoot ? 'needs root to create a namespace' : !has('sysctl') ? 'needs sysctl (procps)' : undefined;
  if (why) console.warn(`90-ctsync.conf: sysctl -p SKIPPED: ${why}`);
  it.skipIf(why !== undefined)('its net.netfilter keys apply with sysctl -p inside a namespace', () => {
    const ns = `ctsq-sy${randomBytes(3).toString('hex')}`;
    const tmp = mkdtempSync(join(tmpdir(), 'ctsq-'));
    try {
      execFileSync('ip', ['netns', 'add', ns]);
      // rmem_max is read-only inside a child namespace (it is the host's): apply the netfilter keys only
      const file = join(tmp, 'nf.conf');
      writeFileSync(file, active.filter(([k]) => k.startsWith('net.netfilter.')).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
      execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-p', file], { stdio: 'pipe' });
      const read1 = (k: string) => execFileSync('ip', ['netns', 'exec', ns, 'cat', `/proc/sys/${k.replace(/\./g, '/')}`], { encoding: 'utf8' }).trim();
      expect(read1('net.netfilter.nf_conntrack_events')).toBe('1');
      expect(read1('net.netfilter.nf_conntrack_timestamp')).toBe('1');
    } finally {
      spawnSync('ip', ['netns', 'del', ns]);
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
