import { afterEach, describe, expect, test } from 'vitest';
import { connect } from 'node:net';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ControlServer } from '../../../src/control/server.js';
import { request, DaemonNotRunning } from '../../../src/control/client.js';

const log = pino({ level: 'silent' });
let server: ControlServer | undefined;
const dirs: string[] = [];
afterEach(async () => {
  await server?.stop();
  server = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function sockPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ctsync-ctl-'));
  dirs.push(dir);
  return join(dir, 'ctl.sock');
}

function raw(path: string, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(path, () => s.write(text));
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      got += d;
      if (got.endsWith('\n')) {
        s.destroy();
        resolve(got);
      }
    });
    s.on('error', reject);
  });
}

describe('control socket', () => {
  test('routes a request to its handler, streams progress, and is mode 0600', async () => {
    const path = sockPath();
    server = new ControlServer(path, log).handle('count', async (args, progress) => {
      progress(1, 2, 'half');
      return { n: (args.n as number) + 1 };
    });
    await server.start();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const seen: number[] = [];
    expect(await request(path, 'count', { n: 41 }, (p) => seen.push(p.done))).toEqual({ n: 42 });
    expect(seen).toEqual([1]);
  });

  test('garbage gets a clear error, is counted, and the server keeps serving', async () => {
    const path = sockPath();
    server = new ControlServer(path, log).handle('ping', () => 'pong');
    await server.start();
    const reply = JSON.parse(await raw(path, 'this is not json\n'));
    expect(reply.ok).toBe(false);
    expect(reply.error.code).toBe('CTS_ERR_CONTROL_BAD_REQUEST');
    expect(server.stats.bad).toBe(1);
    await expect(request(path, 'nope')).rejects.toMatchObject({ code: 'CTS_ERR_CONTROL_UNKNOWN' });
    expect(await request(path, 'ping')).toBe('pong');
  });

  test('a command against a daemon that is not running says so', async () => {
    await expect(request(sockPath(), 'stats')).rejects.toBeInstanceOf(DaemonNotRunning);
  });
});
