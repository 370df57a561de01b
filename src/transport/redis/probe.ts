// One look at Redis the way the transport reaches it, for `ctsync doctor`: connect (TLS, ACL user, sentinels or
// cluster seeds as configured), select redis.db, read the server's version. Nothing is written.
import { createClient, withConnectDefaults, type RedisClient, type RedisConnectOptions } from './options.js';

export interface RedisProbe {
  /** The server answered as configured (connected, authenticated, redis.db selected, INFO read). */
  reached: boolean;
  /** `redis_version` from INFO server. */
  version?: string;
  /** Why not, one line: the connection's errors (refused, TLS, WRONGPASS, a refused SELECT), else the timeout's. */
  error?: string;
}

/**
 * The client selects redis.db as it connects and is never ready when the server refuses it (createClient); the
 * refusal, like a refused password, reaches the client's error listener and is this probe's answer.
 */
export async function probeRedis(opts: RedisConnectOptions, timeoutMs?: number): Promise<RedisProbe> {
  const o = withConnectDefaults(opts);
  const limit = timeoutMs ?? o.connectTimeoutMs + 2000;
  const seen: string[] = [];
  let client: RedisClient | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    client = createClient(o, 'ctsync:doctor');
    client.on('error', (err: Error) => void (seen.includes(err.message) || seen.push(err.message)));
    const c = client;
    const steps = (async () => {
      await c.connect();
      return /^redis_version:(\S+)/m.exec(await c.info('server'))?.[1];
    })();
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${limit} ms`)), limit);
    });
    const version = await Promise.race([steps, late]);
    return { reached: true, ...(version ? { version } : {}) };
  } catch (err) {
    // the connection's own errors say more than the promise's "Connection is closed."
    return { reached: false, error: seen.length ? seen.join('; ') : (err as Error).message.split('\n')[0]! };
  } finally {
    clearTimeout(timer);
    client?.disconnect();
  }
}
