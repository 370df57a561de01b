// A pino logger that keeps every line in memory, so tests can assert what the transport logged.

import { Writable } from 'node:stream';
import { pino, type Level, type Logger } from 'pino';
import { logOptions } from '../../../src/daemon/log.js';

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export function captureLogger(level: Level = 'debug'): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as LogLine);
      cb();
    },
  });
  // The write callback runs synchronously, so a line is in `lines` as soon as the log call returns. The daemon's
  // options (its error serializer among them), so that tests see what the daemon would write.
  const logger = pino(logOptions(level), stream);
  return { logger, lines };
}

export const WARN = 40;
