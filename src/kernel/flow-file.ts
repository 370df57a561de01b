// The flow file formats: the `ct list --json` document and one JSON flow per line, as `ct load` reads them.
import { flowFromJson, flowToJson } from './json.js';
import type { Flow } from './types.js';

/** The JSON document of `ct list --json`: a header, then one flow per line so a line names a flow. */
export function listDocument(flows: Flow[]): string {
  const lines = flows.map((f) => JSON.stringify(flowToJson(f)));
  return `{"version":1,"count":${flows.length},"flows":[\n${lines.join(',\n')}\n]}\n`;
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
    if (docStart && (i === 0 || line === ']}')) return; // the document's header and trailer
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

