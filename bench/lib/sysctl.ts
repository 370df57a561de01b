// The one root-namespace setting the kernel benchmarks need: nf_conntrack_max, raised for a run and put back after.
import { readFileSync, writeFileSync } from 'node:fs';

const MAX = '/proc/sys/net/netfilter/nf_conntrack_max';

/**
 * nf_conntrack_max is global on this kernel: inside a namespace it reads as the init namespace's value and a write
 * fails with EINVAL. A table of `needed` entries therefore needs the global limit raised. Returns the restore function
 * (also run on process exit), a no-op when the limit was already high enough. Another process may change the same
 * global value meanwhile (it is shared by every namespace on the machine): restore leaves a value it did not set.
 */
export function raiseConntrackMax(needed: number): () => void {
  const before = Number(readFileSync(MAX, 'utf8').trim());
  if (before >= needed) return () => {};
  writeFileSync(MAX, String(needed));
  process.stderr.write(`raised global nf_conntrack_max ${before} → ${needed} for this run\n`);
  let done = false;
  const restore = (): void => {
    if (done) return;
    done = true;
    try {
      // put it back only if nobody changed it since: another run on this machine may have raised it for itself
      const now = Number(readFileSync(MAX, 'utf8').trim());
      if (now !== needed) {
        process.stderr.write(`global nf_conntrack_max is now ${now} (changed by someone else): left as it is\n`);
        return;
      }
      writeFileSync(MAX, String(before));
      process.stderr.write(`restored global nf_conntrack_max ${before}\n`);
    } catch {
      // a namespace still holding many entries keeps working; the limit only gates new ones
    }
  };
  process.once('exit', restore);
  return restore;
}

/** Entries in a namespace's table. */
export function conntrackCount(readInNs: (file: string) => Promise<string>): Promise<number> {
  return readInNs('/proc/sys/net/netfilter/nf_conntrack_count').then((s) => Number(s.trim()));
}
