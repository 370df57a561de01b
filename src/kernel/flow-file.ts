// The flow file formats: the `ct list --json` document and one JSON flow per line, as `ct load` reads them.
import { flowFromJson, flowToJson } from './json.js';
import type { Flow } from './types.js';

/**
 * The JSON document of `ct list --json` and `ctsync dump`: a header line, one flow per line (so a line names a flow),
 * and a trailer with the count (a daemon streams the document, so it knows the count only at the end).
 */
export function listDocument(flows: Flow[]): string {
  return `${DOCUMENT_HEAD}${flows.map(flowLine).join(',\n')}${documentTail(flows.length)}`;
}

export const DOCUMENT_HEAD = '{"version":1,"flows":[\n';

/** One flow's line of the document (without the comma that separates lines). */
export function flowLine(f: Flow): string {
  return JSON.stringify(flowToJson(f));
}

export function documentTail(count: number): string {
  return `\n],"count":${count}}\n`;
}

/** Read a file of flows: the `ct list --json` document, or one JSON flow per line. Names every bad entry. */
export function parseFlowFile(text: string): { flows: Flow[]; problems: string[] } {
  const flows: Flow[] = [];
  const problems: string[] = [];
  const take = (v: unknown, where: string) => {
    const r = flowFromJson(v);
    if (Array.isArray(r)) problems.push(`${where}: ${r.map((p) => `${p.path} ${p.problem}`).join('; ')}`);
    else flows.push(r);
  };
  const lines = text.split('\n');
  const docStart = lines[0]?.trimStart().startsWith('{"version"');
  lines.forEach((raw, i) => {
    let line = raw.trim();
    if (!line || line.startsWith('#')) return;
    if (docStart && (i === 0 || line.startsWith(']'))) return; // the document's header and trailer (`]}` in earlier builds' documents)
    if (docStart && line.endsWith(',')) line = line.slice(0, -1);
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (err) {
      problems.push(`line ${i + 1}: not JSON (${(err as Error).message})`);
      return;
    }
    take(v, `line ${i + 1}`);
  });
  return { flows, problems };
}

