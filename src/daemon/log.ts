// The one root pino logger (JSON lines on stderr); components take a child with their name.
import pino, { type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/** The root logger's options; tests build their capturing loggers from these too. */
export function logOptions(level = 'info', nodeId?: string): LoggerOptions {
  return { level, base: nodeId ? { node: nodeId } : {}, timestamp: pino.stdTimeFunctions.isoTime, serializers: { err: logError } };
}

export function createLogger(level = 'info', nodeId?: string): Logger {
  return pino(logOptions(level, nodeId), pino.destination(2));
}

/** A logger that drops everything: for tests and for commands that must print only their result. */
export const silentLogger: Logger = pino({ level: 'silent' });

/**
 * pino's error serializer, less the arguments of a failed Redis command: ioredis puts the command on its errors, and
 * a refused AUTH's arguments are the user and the password. The command's name stays. Nested errors too (a
 * Cluster's last node error).
 */
export function logError(err: Error): unknown {
  return withoutCommandArgs(pino.stdSerializers.err(err), 0);
}

function withoutCommandArgs(v: unknown, depth: number): unknown {
  if (!v || typeof v !== 'object' || Buffer.isBuffer(v) || depth > 6) return v;
  if (Array.isArray(v)) return v.map((x) => withoutCommandArgs(x, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    out[k] = k === 'command' && x && typeof x === 'object' ? { name: (x as { name?: unknown }).name } : withoutCommandArgs(x, depth + 1);
  }
  return out;
}
