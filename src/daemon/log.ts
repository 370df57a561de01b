// The one root pino logger (JSON lines on stderr); components take a child with their name.
import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(level = 'info', nodeId?: string): Logger {
  return pino({ level, base: nodeId ? { node: nodeId } : {}, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination(2));
}

/** A logger that drops everything: for tests and for commands that must print only their result. */
export const silentLogger: Logger = pino({ level: 'silent' });
