// A conntrackd pair (FTFW over UDP on a veth) in two lab namespaces: the reference for committing an external cache.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Lab, type LabProcess } from '../../src/lab/netns.js';
import { sleep } from './proc.js';

export interface ConntrackdPair {
  /** The pair's own lab (namespaces ctsb-cda-*, ctsb-cds-*), deleted by stop(). */
  lab: Lab;
  active: string; // namespace whose kernel table is the source
  standby: string; // namespace whose conntrackd holds the external cache and commits
  /** Runs `conntrackd -C CONF ARGS` against the standby's daemon. */
  standbyCtl(args: string[], timeoutMs?: number): Promise<string>;
  /** Entries in the standby's external cache. */
  externalCount(): Promise<number>;
  stop(): Promise<void>;
}

const SUBNET = '10.77.200'; // inside the lab range (see src/lab/topology.ts), away from routerLab's subnets

function config(dir: string, self: string, peer: string, iface: string): string {
  return `Sync {
  Mode FTFW {
    DisableExternalCache off
  }
  UDP {
    IPv4_address ${self}
    IPv4_Destination_Address ${peer}
    Port 3780
    Interface ${iface}
    SndSocketBuffer 24985600
    RcvSocketBuffer 24985600
    Checksum on
  }
}
General {
  HashSize 1048576
  HashLimit 4194304
  LogFile ${dir}/log
  Syslog off
  LockFile ${dir}/lock
  UNIX {
    Path ${dir}/ctl
  }
  NetlinkBufferSize 2097152
  NetlinkBufferSizeMaxGrowth 134217728
  NetlinkEventsReliable off
  Filter From Userspace {
    Address Ignore {
      IPv4_address 127.0.0.1
      IPv4_address ${self}
      IPv4_address ${peer}
    }
  }
}
`;
}

/**
 * Starts conntrackd in two fresh namespaces joined by a veth (FTFW over UDP unicast). Fill the active's kernel table
 * before calling resync(): each daemon dumps its kernel table at start; `-n` on the standby asks the active to send all.
 */
export async function startConntrackdPair(): Promise<ConntrackdPair> {
  const lab = new Lab({ prefix: 'ctsb-' });
  const active = await lab.addNamespace('cda');
  const standby = await lab.addNamespace('cds');
  await lab.addVeth(active, 'sync0', standby, 'sync0');
  await lab.addAddress(active, 'sync0', `${SUBNET}.1/24`);
  await lab.addAddress(standby, 'sync0', `${SUBNET}.2/24`);
  const dirs = [mkdtempSync(path.join(tmpdir(), 'ctsb-cda-')), mkdtempSync(path.join(tmpdir(), 'ctsb-cds-'))];
  const [aDir, sDir] = dirs as [string, string];
  writeFileSync(path.join(aDir, 'conf'), config(aDir, `${SUBNET}.1`, `${SUBNET}.2`, 'sync0'));
  writeFileSync(path.join(sDir, 'conf'), config(sDir, `${SUBNET}.2`, `${SUBNET}.1`, 'sync0'));
  const procs: LabProcess[] = [];
  const ctl = (ns: string, dir: string) => async (args: string[], timeoutMs = 600_000) =>
    (await lab.exec(ns, ['conntrackd', '-C', path.join(dir, 'conf'), ...args], { timeoutMs })).stdout;
  const standbyCtl = ctl(standby, sDir);
  try {
    for (const [ns, dir] of [[active, aDir], [standby, sDir]] as const) {
      procs.push(lab.spawn(ns, ['conntrackd', '-C', path.join(dir, 'conf')])); // foreground: stoppable by its pid
      await waitFor(async () => (await ctl(ns, dir)(['-s', 'runtime']).catch(() => '')).includes('daemon uptime'), 10_000, `conntrackd in ${ns}`);
    }
  } catch (e) {
    await lab.teardown();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    throw e;
  }
  return {
    lab,
    active,
    standby,
    standbyCtl,
    externalCount: async () => Number(/cache:external\s+active objects:\s+(\d+)/.exec(await standbyCtl(['-s', 'cache']))?.[1] ?? NaN),
    stop: async () => {
      for (const p of procs) await p.stop(2000);
      await lab.teardown();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    },
  };
}

export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`${what}: not ready within ${timeoutMs} ms`);
    await sleep(100);
  }
}
