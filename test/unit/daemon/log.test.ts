// The daemon's log lines: what an error carries into the journal.
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, test } from 'vitest';
import { logOptions } from '../../../src/daemon/log.js';

/** Like ioredis's: the failed command rides on the error. */
class ReplyError extends Error {
  override name = 'ReplyError';
  constructor(message: string, readonly command: { name: string; args: unknown[] }) {
    super(message);
  }
}

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  return { logger: pino(logOptions('info', 'fw1'), stream), lines };
}

describe('log lines', () => {
  test('a refused Redis command is logged by name, never with its arguments (an AUTH carries the password), also nested', () => {
    const { logger, lines } = capture();
    const auth = new ReplyError('WRONGPASS invalid username-password pair', { name: 'auth', args: ['ctsync', 'hunter2-secret'] });
    const all = Object.assign(new Error('Failed to refresh slots cache.'), { lastNodeError: auth });
    logger.error({ err: auth }, 'refused');
    logger.error({ err: all }, 'cluster down');
    expect(lines).toHaveLength(2);
    expect(lines.join('\n')).not.toContain('hunter2-secret');
    const [one, two] = lines.map((l) => JSON.parse(l) as { node: string; err: Record<string, unknown> });
    expect(one).toMatchObject({ node: 'fw1', err: { type: 'ReplyError', message: 'WRONGPASS invalid username-password pair', command: { name: 'auth' } } });
    expect(one!.err.stack).toMatch(/^ReplyError: WRONGPASS/);
    expect(two).toMatchObject({ err: { message: 'Failed to refresh slots cache.', lastNodeError: { command: { name: 'auth' } } } });
  });

  test('other errors keep their own fields', () => {
    const { logger, lines } = capture();
    logger.warn({ err: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED', port: 6379 }) }, 'x');
    expect(JSON.parse(lines[0]!)).toMatchObject({ err: { message: 'connect ECONNREFUSED 127.0.0.1:6379', code: 'ECONNREFUSED', port: 6379 } });
  });
});
