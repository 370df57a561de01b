// `ctsync dump`: tables as the `ct list --json` document, sent down the control socket a slice of flows at a time.
import { DOCUMENT_HEAD, documentTail, flowLine } from '../kernel/flow-file.js';
import type { Flow } from '../kernel/types.js';
import type { FlowTable } from '../state/table.js';
import type { Write } from '../control/server.js';

/** What a dump reads: the local table or a peer table. */
export interface DumpSource {
  readonly table: FlowTable;
  get(key: string, now?: number): Flow | undefined;
}

/** Flows per piece: 10-16 ms of work here (median; a GC can make one 0.1 s), which is as long as frames on the sync
 * link wait (bench/control-dump.ts). */
const SLICE = 1000;

/**
 * Writes the document of `sources`' flows and returns how many it listed. Built whole, the document held the event
 * loop 0.6 s at 40k flows and 21-27 s at 1M (bench/control-dump.ts): past link.deadAfter the peers declare the sync
 * link dead. Between pieces the daemon goes on syncing; a flow that comes or goes meanwhile may be listed or
 * not, as in any dump of a live table, and the table's slots stay put, so no other flow is missed or listed twice.
 */
export async function writeDocument(sources: DumpSource[], now: () => number, write: Write): Promise<number> {
  let count = 0;
  let text = DOCUMENT_HEAD;
  for (const src of sources) {
    for (let cursor = 0; cursor >= 0; ) {
      const lines: string[] = [];
      const at = now();
      cursor = src.table.scan(cursor, SLICE, (k) => {
        const f = src.get(k, at);
        if (f) lines.push(flowLine(f));
      });
      if (!lines.length) continue;
      text += (count ? ',\n' : '') + lines.join(',\n');
      count += lines.length;
      await write(text);
      text = '';
    }
  }
  await write(text + documentTail(count));
  return count;
}
