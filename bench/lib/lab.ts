// The throwaway lab of a table-sized benchmark: root, a host that can hold the table, and all put back after.
import { Lab } from '../../src/lab/netns.js';
import { conntrackCount, raiseConntrackMax } from './sysctl.js';

const PREFIX = 'ctsb-';

/**
 * Runs `run` in a fresh `ctsb-*` lab (leftovers of an earlier run swept first) with nf_conntrack_max raised to hold
 * `entries` plus 10%; the lab is torn down and the limit put back however `run` ends.
 */
export async function withTableLab<T>(entries: number, run: (lab: Lab) => Promise<T>): Promise<T> {
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces)');
  Lab.sweep(PREFIX);
  const restoreMax = raiseConntrackMax(Math.max(262144, Math.ceil(entries * 1.1)));
  const lab = new Lab({ prefix: PREFIX });
  try {
    return await run(lab);
  } finally {
    await lab.teardown();
    restoreMax.restore();
  }
}

/** Entries in namespace `ns`'s table. */
export function tableCount(lab: Lab, ns: string): Promise<number> {
  return conntrackCount(async (f) => (await lab.exec(ns, ['cat', f])).stdout);
}
