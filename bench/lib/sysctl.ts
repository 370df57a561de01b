// The root-namespace settings the kernel benchmarks need, raised for a run and put back after: nf_conntrack_max and
// the conntrack hash size. Both are global on this kernel (a namespace reads the init namespace's value and cannot
// write it), so a big table in a lab namespace needs the host's values raised.
import { readFileSync, writeFileSync } from 'node:fs';

const MAX = '/proc/sys/net/netfilter/nf_conntrack_max';
/** Buckets of the conntrack hash (writable in the host namespace only). */
const HASHSIZE = '/proc/sys/net/netfilter/nf_conntrack_buckets';

export interface HostChange {
  before: number;
  during: number;
  /** Puts the old value back (also run on process exit), unless someone else changed it since; says what it did. */
  restore(): string;
}

function raiseHost(file: string, name: string, needed: number): HostChange {
  const read = (): number => Number(readFileSync(file, 'utf8').trim());
  const before = read();
  if (before >= needed) return { before, during: before, restore: () => `host ${name} left at ${before} (already enough)` };
  writeFileSync(file, String(needed));
  const during = read();
  process.stderr.write(`raised host ${name} ${before} → ${during} for this run\n`);
  let said = '';
  const restore = (): string => {
    if (said) return said;
    process.off('exit', restore);
    try {
      // another run on this machine may have raised it for itself meanwhile: leave a value we did not set
      const now = read();
      if (now !== during) return (said = `host ${name} is now ${now} (changed by someone else): left as it is (was ${before})`);
      writeFileSync(file, String(before));
      return (said = `host ${name} restored to ${before}`);
    } catch (err) {
      // a namespace still holding many entries keeps working; the limit only gates new ones
      return (said = `host ${name} not restored: ${(err as Error).message}`);
    }
  };
  process.once('exit', restore);
  return { before, during, restore };
}

/** nf_conntrack_max, so the lab namespaces can hold `needed` entries together. */
export const raiseConntrackMax = (needed: number): HostChange => raiseHost(MAX, 'nf_conntrack_max', needed);

/**
 * The hash size, to one bucket per entry: with the default 262144 buckets a 1M-entry table has chains of 4 or more
 * and every insert walks them (a 1M write here: 5.6 s at 262144 buckets, 3.9 s at 1048576). An operator sizes it the
 * same way (systemd/90-ctsync.conf, `ctsync doctor`), so each implementation in the run gets the same host.
 */
export const raiseConntrackBuckets = (needed: number): HostChange => raiseHost(HASHSIZE, 'nf_conntrack_buckets', needed);

/** Entries in a namespace's table. */
export function conntrackCount(readInNs: (file: string) => Promise<string>): Promise<number> {
  return readInNs('/proc/sys/net/netfilter/nf_conntrack_count').then((s) => Number(s.trim()));
}
