// Unit tests for the router lab's nft ruleset text and the lab's naming rules (no root, no namespaces created).
import { describe, expect, it } from 'vitest';
import { Lab, LabError, MAX_NAME_LEN } from '../../../src/lab/netns.js';
import { routerRuleset } from '../../../src/lab/topology.js';

const base = { lanIf: 'lan0', wanIf: 'wan0', ftpPorts: [] as number[] };

describe('routerRuleset', () => {
  it('always uses a ct expression so conntrack runs in the namespace', () => {
    const r = routerRuleset({ ...base, nat: 'none', firewall: 'open' });
    expect(r).toMatch(/ct state established,related/);
    expect(r).not.toMatch(/nat hook/);
  });

  it('strict: forward policy drop, new TCP only as a pure SYN from the lan side', () => {
    const r = routerRuleset({ ...base, nat: 'none', firewall: 'strict' });
    expect(r).toMatch(/hook forward priority filter; policy drop;/);
    expect(r).toMatch(/tcp flags & \(fin\|syn\|rst\|ack\) != syn counter drop/);
    expect(r).toMatch(/iifname "lan0" oifname "wan0" ct state new accept/);
  });

  it('assigns the ftp helper to the given ports', () => {
    const r = routerRuleset({ ...base, ftpPorts: [21, 2121], nat: 'none', firewall: 'open' });
    expect(r).toMatch(/ct helper ftp-std \{\s+type "ftp" protocol tcp/);
    expect(r).toMatch(/tcp dport \{ 21, 2121 \} ct state new ct helper set "ftp-std"/);
  });

  it('emits the NAT variant asked for', () => {
    expect(routerRuleset({ ...base, nat: 'masquerade', firewall: 'open' })).toMatch(/oifname "wan0" masquerade/);
    const snat = routerRuleset({ ...base, nat: 'snat', firewall: 'open', snatTo: { v4: '10.77.2.254', v6: 'fd77:2::254' } });
    expect(snat).toMatch(/snat ip to 10\.77\.2\.254/);
    expect(snat).toMatch(/snat ip6 to fd77:2::254/);
    const dnat = routerRuleset({
      ...base,
      nat: 'dnat',
      firewall: 'open',
      dnat: { v4: '10.77.1.1', v6: 'fd77:1::1', toV4: '10.77.2.2', toV6: 'fd77:2::2', port: 8080 },
    });
    expect(dnat).toMatch(/ip daddr 10\.77\.1\.1 meta l4proto \{ tcp, udp \} th dport 8080 dnat ip to 10\.77\.2\.2/);
  });
});

describe('Lab naming', () => {
  it('builds prefix + name + suffix within the interface-name limit', () => {
    const lab = new Lab({ prefix: 'ctsh-' });
    expect(lab.suffix).toMatch(/^[0-9a-f]{4}$/);
    const n = lab.nsName('rtr');
    expect(n).toBe(`ctsh-rtr-${lab.suffix}`);
    expect(lab.nsName('abcde').length).toBe(MAX_NAME_LEN);
    expect(() => lab.nsName('abcdef')).toThrow(LabError);
    expect(() => lab.nsName('Bad')).toThrow(LabError);
  });

  it('rejects prefixes that are empty, too long or unsafe', () => {
    for (const prefix of ['', 'x', 'averylongprefix-', '../x', 'a b']) {
      expect(() => new Lab({ prefix })).toThrow(LabError);
    }
    expect(() => Lab.sweep('')).toThrow(/refusing/);
  });

  it('refuses to act on a namespace it did not create', async () => {
    const lab = new Lab({ prefix: 'ctsh-' });
    await expect(lab.exec('ctsh-other-0000', ['true'])).rejects.toThrow(/does not belong/);
    expect(() => lab.spawn('ctsh-other-0000', ['true'])).toThrow(/does not belong/);
    await expect(lab.sysctl('ctsh-other-0000', 'kernel.panic', 1)).rejects.toThrow(/net\.\*/);
  });
});
