// Prometheus text exposition of the daemon's numbers, served over HTTP on a loopback address by default.
import { createServer, type Server } from 'node:http';

export type Sample = [labels: Record<string, string>, value: number];
export interface Metric {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  samples: Sample[];
}

export function renderMetrics(metrics: Metric[]): string {
  const out: string[] = [];
  for (const m of metrics) {
    out.push(`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`);
    for (const [labels, value] of m.samples) {
      const l = Object.entries(labels)
        .map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))}"`)
        .join(',');
      out.push(`${m.name}${l ? `{${l}}` : ''} ${Number.isFinite(value) ? value : 'NaN'}`);
    }
  }
  return `${out.join('\n')}\n`;
}

export async function serveMetrics(address: string, collect: () => Metric[]): Promise<Server> {
  const m = /^(.*):(\d+)$/.exec(address);
  if (!m) throw Object.assign(new Error(`metrics.listen '${address}' must be HOST:PORT`), { code: 'CTS_ERR_CONFIG_INVALID' });
  const host = m[1].replace(/^\[|\]$/g, '');
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('see /metrics\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(renderMetrics(collect()));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(m[2]), host, () => resolve());
  });
  return server;
}
