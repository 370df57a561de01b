// The failover lab's keepalived wiring: notify scripts, the ordered FIFO and the readiness track file all reach the caller.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { failoverLab, type FailoverLab, type FirewallNode } from '../../src/lab/failover.js';
import { Lab } from '../../src/lab/netns.js';
import { cannotRun } from '../helpers/env.js';

const PREFIX = 'ctsf-';
const reason = cannotRun(['ip', 'nft', 'conntrack', 'python3', 'keepalived']);
if (reason) console.warn(`[failover-hooks] NOT RUN: ${reason}`);

const read = (path: string): string => (existsSync(path) ? readFileSync(path, 'utf8') : '');

/** Polls until check() holds; the failure message shows what was last seen. */
async function eventually(check: () => boolean, what: () => string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Small shell scripts in the firewall's directory that log how keepalived called them. */
function writeScripts(fw: FirewallNode): void {
  const script = (name: string, body: string): void => {
    writeFileSync(join(fw.dir, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(fw.dir, name), 0o755);
  };
  script('state.sh', `echo "$1" >> ${fw.dir}/state.log`);
  script('notify.sh', `echo "$@" >> ${fw.dir}/notify.log`);
  // The FIFO path comes as the last argument; keepalived keeps it open, so one cat reads every line in order.
  script('fifo.sh', `for last; do :; done; exec cat "$last" >> ${fw.dir}/fifo.log`);
}

describe.skipIf(reason !== undefined)('failover lab keepalived hooks (e2e)', () => {
  const lab = new Lab({ prefix: PREFIX });
  let fl: FailoverLab | undefined;

  afterAll(async () => {
    const names = [...lab.names];
    await fl?.close();
    await lab.teardown();
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    expect(names.filter((n) => left.includes(n))).toEqual([]);
  });

  it('runs per-state, generic and FIFO hooks, and a non-zero track file demotes the master', async () => {
    fl = await failoverLab(lab, {
      hooks: (fw) => ({
        notifyMaster: `${fw.dir}/state.sh master`,
        notifyBackup: `${fw.dir}/state.sh backup`,
        notifyFault: `${fw.dir}/state.sh fault`,
        notify: `${fw.dir}/notify.sh`,
        fifo: { path: `${fw.dir}/keepalived.fifo`, script: `${fw.dir}/fifo.sh` },
        trackFile: { path: `${fw.dir}/ready`, init: 0 },
      }),
      beforeKeepalived: async (fw) => writeScripts(fw),
    });
    const [d1, d2] = [fl.fw.fw1.dir, fl.fw.fw2.dir];
    await eventually(() => read(`${d1}/state.log`).includes('master'), () => `fw1 state.log: ${read(`${d1}/state.log`)}`);
    await eventually(() => read(`${d1}/notify.log`).includes('GROUP CTS_G MASTER'), () => `fw1 notify.log: ${read(`${d1}/notify.log`)}`);
    await eventually(() => /GROUP "CTS_G" MASTER/.test(read(`${d1}/fifo.log`)), () => `fw1 fifo.log: ${read(`${d1}/fifo.log`)}`);
    await eventually(() => read(`${d2}/state.log`).includes('backup'), () => `fw2 state.log: ${read(`${d2}/state.log`)}`);
    expect(read(`${d1}/fifo.log`)).toMatch(/INSTANCE "CTS_IN" MASTER 150/);
    // Hooks sit on the sync group: the generic script hears about the group only; the FIFO reports instances too.
    expect(read(`${d1}/notify.log`)).not.toMatch(/INSTANCE/);

    // "Not in sync": fw1 writes 1 to its track file → FAULT, fw2 takes the VIPs without any power loss.
    writeFileSync(fl.fw.fw1.dir + '/ready', '1\n');
    await fl.waitForMaster('fw2');
    await eventually(() => read(`${d1}/state.log`).includes('fault'), () => `fw1 state.log: ${read(`${d1}/state.log`)}`);
    expect(read(`${d1}/fifo.log`)).toMatch(/GROUP "CTS_G" FAULT/);
    // Ready again: fw1 preempts.
    writeFileSync(fl.fw.fw1.dir + '/ready', '0\n');
    await fl.waitForMaster('fw1');
    console.log(`[failover-hooks] fw1 FIFO lines:\n${read(`${d1}/fifo.log`).trim()}`);
  });
});
