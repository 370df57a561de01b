import { afterEach, describe, expect, test } from 'vitest';
import { connect } from 'node:net';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ControlServer } from '../../../src/control/server.js';
import { dump, dumpDocument, request, DaemonNotRunning } from '../../../src/control/client.js';
import { ControlError } from '../../../src/control/protocol.js';
import { spawn } from 'node:child_process';
import { CTSYNC_BIN, cannotRun } from '../../helpers/env.js';

const noCli = cannotRun([], true, false);
if (noCli) console.warn(`[control] the ctsync dump | head test is NOT RUN: ${noCli}`);

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

  test('a streamed result arrives in order, with the event loop turning between pieces; request() refuses one', async () => {
    const path = sockPath();
    // counts the event loop's turns
    let turns = 0;
    let spin: NodeJS.Immediate | undefined;
    const turn = () => {
      turns++;
      spin = setImmediate(turn);
    };
    turn();
    const seen: number[] = [];
    server = new ControlServer(path, log).handle('dump', async (_args, _progress, write) => {
      for (let i = 0; i < 5; i++) {
        seen.push(turns);
        await write(`piece ${i}\n`);
      }
      return { table: 'local', count: 5 };
    });
    await server.start();
    try {
      const pieces: string[] = [];
      expect(await dump(path, {}, (t) => pieces.push(t))).toEqual({ table: 'local', count: 5 });
      expect(pieces).toEqual([0, 1, 2, 3, 4].map((i) => `piece ${i}\n`));
      // each write lets the event loop turn before the next piece: a long dump never holds the daemon up
      for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1]!);
      expect(await dumpDocument(path, {})).toBe(pieces.join(''));
      await expect(request(path, 'dump')).rejects.toMatchObject({ code: 'CTS_ERR_CONTROL_PROTOCOL', message: expect.stringMatching(/read it with dump\(\)/) });
    } finally {
      clearImmediate(spin);
    }
  });

  test('a client that goes away in the middle of a streamed result stops it: the next write rejects', async () => {
    const path = sockPath();
    let failed: unknown;
    let written = 0;
    let stop = () => {};
    const stopped = new Promise<void>((resolve) => (stop = resolve));
    server = new ControlServer(path, log).handle('dump', async (_args, _progress, write) => {
      try {
        // far more than a socket buffers, so some write waits for a drain that never comes
        for (let i = 0; i < 10_000; i++) {
          await write('x'.repeat(64 * 1024));
          written++;
        }
      } catch (err) {
        failed = err;
      }
      stop();
      return {};
    });
    await server.start();
    await new Promise<void>((resolve, reject) => {
      const s = connect(path, () => s.write(`${JSON.stringify({ id: 1, cmd: 'dump' })}\n`));
      s.once('data', () => {
        s.destroy();
        resolve();
      });
      s.on('error', reject);
    });
    await stopped;
    expect(failed).toBeInstanceOf(ControlError);
    expect((failed as ControlError).code).toBe('CTS_ERR_CONTROL_CLOSED');
    expect(written).toBeLessThan(10_000);
  });

  test.skipIf(noCli)('ctsync dump streams to stdout, and a reader that goes away (| head) ends it quietly, exit 0', async () => {
    const path = sockPath();
    server = new ControlServer(path, log).handle('dump', async (_args, _progress, write) => {
      for (let i = 0; i < 2000; i++) await write(`${'y'.repeat(9999)}\n`);
      return { table: 'local', count: 2000 };
    });
    await server.start();
    const run = (closeAfter?: number) =>
      new Promise<{ code: number | null; bytes: number; stderr: string }>((resolve, reject) => {
        const child = spawn(process.execPath, [CTSYNC_BIN, 'dump', '--socket', path], { stdio: ['ignore', 'pipe', 'pipe'] });
        let bytes = 0;
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => {
          bytes += d.length;
          if (closeAfter !== undefined && bytes >= closeAfter) child.stdout.destroy();
        });
        child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, bytes, stderr }));
      });
    expect(await run()).toEqual({ code: 0, bytes: 2000 * 10_000, stderr: '' });
    const cut = await run(50);
    expect([cut.code, cut.stderr]).toEqual([0, '']);
    expect(cut.bytes).toBeLessThan(2000 * 10_000);
  });

  test('a command against a daemon that is not running says so', async () => {
    await expect(request(sockPath(), 'stats')).rejects.toBeInstanceOf(DaemonNotRunning);
  });
});
