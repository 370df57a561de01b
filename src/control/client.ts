// Client side of the control socket: one request, optional progress callbacks or streamed pieces, one result.
import { connect } from 'node:net';
import { ControlError, type ControlReply } from './protocol.js';

export class DaemonNotRunning extends Error {
  readonly code = 'CTS_ERR_NOT_RUNNING';
  constructor(path: string, cause: string) {
    super(`the ctsync daemon is not running (no answer on ${path}: ${cause}); start it with 'systemctl start ctsync' or 'ctsync daemon --config FILE'`);
  }
}

export function request(
  path: string,
  cmd: string,
  args: Record<string, unknown> = {},
  onProgress?: (p: { done: number; total: number; what: string }) => void,
  timeoutMs = 0,
): Promise<unknown> {
  return exchange(path, cmd, args, { onProgress, timeoutMs });
}

/** `dump`: the daemon streams the `ct list --json` document; onChunk gets its pieces in order. Resolves with how many
 * flows it listed. */
export async function dump(path: string, args: Record<string, unknown>, onChunk: (text: string) => void, timeoutMs = 0): Promise<{ table: string; count: number }> {
  return (await exchange(path, 'dump', args, { onChunk, timeoutMs })) as { table: string; count: number };
}

/** dump() into one string: the whole document (for tests and the lab; a CLI streams it). */
export async function dumpDocument(path: string, args: Record<string, unknown>, timeoutMs = 0): Promise<string> {
  const pieces: string[] = [];
  await dump(path, args, (t) => pieces.push(t), timeoutMs);
  return pieces.join('');
}

interface Hooks {
  onProgress?: (p: { done: number; total: number; what: string }) => void;
  onChunk?: (text: string) => void;
  timeoutMs: number;
}

function exchange(path: string, cmd: string, args: Record<string, unknown>, { onProgress, onChunk, timeoutMs }: Hooks): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    let buf = '';
    let settled = false;
    const finish = (err: Error | null, value?: unknown) => {
      if (settled) return;
      settled = true;
      sock.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    if (timeoutMs) sock.setTimeout(timeoutMs, () => finish(new ControlError('CTS_ERR_CONTROL_TIMEOUT', `no reply to '${cmd}' within ${timeoutMs} ms`)));
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${JSON.stringify({ id: 1, cmd, args })}\n`));
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') finish(new DaemonNotRunning(path, err.code));
      else finish(err);
    });
    sock.on('close', () => finish(new ControlError('CTS_ERR_CONTROL_CLOSED', `the daemon closed the control connection before answering '${cmd}'`)));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let r: ControlReply;
        try {
          r = JSON.parse(line) as ControlReply;
        } catch {
          finish(new ControlError('CTS_ERR_CONTROL_PROTOCOL', 'the daemon sent a line that is not JSON'));
          return;
        }
        if ('progress' in r) onProgress?.(r.progress);
        else if ('chunk' in r) {
          if (!onChunk) return finish(new ControlError('CTS_ERR_CONTROL_PROTOCOL', `the daemon streams the result of '${cmd}': read it with dump()`));
          onChunk(r.chunk);
        } else if (r.ok) finish(null, r.result);
        else finish(new ControlError(r.error.code, r.error.message));
      }
    });
  });
}
