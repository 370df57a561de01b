// The daemon's UNIX control socket (mode 0600, root only): routes each request to one handler, never trusts input.
import { createServer, type Server, type Socket } from 'node:net';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { ControlError, MAX_REQUEST_BYTES, type ControlReply, type ControlRequest } from './protocol.js';

export type Progress = (done: number, total: number, what: string) => void;
/** Sends a piece of a streamed result; resolves once the client can take more and the event loop had a turn (so a
 * long dump never stalls the daemon), rejects if the client went away. */
export type Write = (text: string) => Promise<void>;
export type Handler = (args: Record<string, unknown>, progress: Progress, write: Write) => unknown | Promise<unknown>;

export class ControlServer {
  private server?: Server;
  private readonly handlers = new Map<string, Handler>();
  readonly stats = { requests: 0, bad: 0 };

  constructor(
    private readonly path: string,
    private readonly log: Logger,
  ) {}

  handle(cmd: string, h: Handler): this {
    this.handlers.set(cmd, h);
    return this;
  }

  async start(): Promise<void> {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    rmSync(this.path, { force: true }); // a stale socket of a crashed daemon
    const server = createServer((s) => this.serve(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // umask-independent: nobody but root may connect, even for the instant before chmod
      const old = process.umask(0o177);
      server.listen(this.path, () => {
        process.umask(old);
        resolve();
      });
    });
    chmodSync(this.path, 0o600);
    this.server = server;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((r) => s.close(() => r()));
    rmSync(this.path, { force: true });
  }

  private serve(sock: Socket): void {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => {});
    const send = (r: ControlReply) => sock.writable && sock.write(`${JSON.stringify(r)}\n`);
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REQUEST_BYTES && !buf.includes('\n')) {
        this.stats.bad++;
        send({ id: 0, ok: false, error: { code: 'CTS_ERR_CONTROL_BAD_REQUEST', message: 'request line too long' } });
        sock.destroy();
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        void this.dispatch(line, send, sock);
      }
    });
  }

  private async dispatch(line: string, send: (r: ControlReply) => void, sock: Socket): Promise<void> {
    let req: ControlRequest;
    try {
      req = JSON.parse(line) as ControlRequest;
      if (!req || typeof req !== 'object' || typeof req.cmd !== 'string' || typeof req.id !== 'number') throw new Error('not a request');
    } catch {
      this.stats.bad++;
      send({ id: 0, ok: false, error: { code: 'CTS_ERR_CONTROL_BAD_REQUEST', message: 'expected one JSON object per line: {"id":1,"cmd":"stats"}' } });
      return;
    }
    this.stats.requests++;
    const h = this.handlers.get(req.cmd);
    if (!h) {
      send({ id: req.id, ok: false, error: { code: 'CTS_ERR_CONTROL_UNKNOWN', message: `unknown command '${req.cmd}'; known: ${[...this.handlers.keys()].join(', ')}` } });
      return;
    }
    try {
      const args = req.args && typeof req.args === 'object' ? req.args : {};
      const write: Write = (chunk) => writeChunk(sock, `${JSON.stringify({ id: req.id, chunk })}\n`);
      const result = await h(args, (done, total, what) => send({ id: req.id, progress: { done, total, what } }), write);
      send({ id: req.id, ok: true, result });
    } catch (err) {
      const e = err as Error & { code?: string };
      if (!(err instanceof ControlError)) this.log.error({ err, cmd: req.cmd }, 'control command failed');
      send({ id: req.id, ok: false, error: { code: e.code ?? 'CTS_ERR_CONTROL_FAILED', message: e.message } });
    }
  }
}

function writeChunk(sock: Socket, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!sock.writable) return reject(new ControlError('CTS_ERR_CONTROL_CLOSED', 'the client closed the control connection'));
    if (sock.write(line)) return void setImmediate(resolve);
    const done = (err?: Error) => {
      sock.off('drain', done).off('close', gone);
      if (err) reject(err);
      else resolve();
    };
    const gone = () => done(new ControlError('CTS_ERR_CONTROL_CLOSED', 'the client closed the control connection'));
    sock.on('drain', done).on('close', gone);
  });
}
