// Client side of the control socket: one request, optional progress callbacks, one result.
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
        else if (r.ok) finish(null, r.result);
        else finish(new ControlError(r.error.code, r.error.message));
      }
    });
  });
}
