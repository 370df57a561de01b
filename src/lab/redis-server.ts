// Starts a real redis-server for tests, benchmarks and labs: a free loopback port (or a given address), its own temp dir, optional ACL
// users, TLS, extra config lines, or sentinel mode; stopped (and restarted) by its PID only. Tests that cannot find
// redis-server say so (redisMissing()). Sentinel sets and clusters built from these: redis-topology.ts.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** What the ctsync ACL user needs besides its keys (as documented at `redis.username`): tests prove it is enough. */
export const REDIS_ACL_GRANTS = '+@read +@write +@stream +@hash +@transaction +@connection -@dangerous +info +cluster|slots +cluster|info';

export function redisMissing(): string | undefined {
  try {
    execFileSync('sh', ['-c', 'command -v redis-server'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'needs redis-server on PATH (apt-get install redis-server; .ci/run installs it)';
  }
}

export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface RedisServerOptions {
  /** Default 127.0.0.1 and a free port. */
  host?: string;
  port?: number;
  /** ACL users: name → password; each gets the grants documented at `redis.username` (config/schema.ts). The default user is then disabled. */
  users?: Record<string, string>;
  /** Keep data across restart() (appendonly, fsync always). Default false: a restart loses everything. */
  persist?: boolean;
  /** With `users`: keep the default user too (no password, every command), for replication, sentinels and redis-cli. */
  defaultUser?: boolean;
  /** TLS only: `port` is the TLS port (no plaintext one) and clients must show a certificate signed by `caFile`. */
  tls?: { caFile: string; certFile: string; keyFile: string };
  /** More redis.conf lines (replicaof, cluster-enabled, the `sentinel …` lines …). */
  conf?: string[];
  /** Run as a sentinel (`redis-server CONF --sentinel`). */
  sentinel?: boolean;
  /** Prefix the command with this (e.g. ['ip', 'netns', 'exec', NS]). */
  wrap?: string[];
}

/** Servers running now: SIGKILLed by PID when this process exits, so a test that gives up (a hook timeout while a
 *  set is still starting) leaves no redis-server behind. */
const running = new Set<ChildProcess>();
let exitHook = false;
function track(p: ChildProcess): void {
  running.add(p);
  p.once('exit', () => running.delete(p));
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const c of running) if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, 'SIGKILL');
  });
}

export class RedisServer {
  readonly dir: string;
  private proc?: ChildProcess;
  host: string;
  port: number;

  private constructor(private readonly o: RedisServerOptions, port: number) {
    this.dir = mkdtempSync(join(tmpdir(), 'ctsync-redis-'));
    this.host = o.host ?? '127.0.0.1';
    this.port = port;
    const lines = [
      `bind ${this.host}`, o.tls ? `port 0\ntls-port ${this.port}` : `port ${this.port}`, `dir ${this.dir}`, 'daemonize no', 'save ""', 'protected-mode no', 'loglevel warning',
      `logfile ${join(this.dir, 'redis.log')}`,
      o.persist ? 'appendonly yes\nappendfsync always' : 'appendonly no',
    ];
    if (o.tls) lines.push(`tls-cert-file ${o.tls.certFile}`, `tls-key-file ${o.tls.keyFile}`, `tls-ca-cert-file ${o.tls.caFile}`, 'tls-auth-clients yes');
    if (o.users) {
      if (!o.defaultUser) lines.push('user default off');
      for (const [u, p] of Object.entries(o.users)) lines.push(`user ${u} on >${p} ~{ctsync:* ${REDIS_ACL_GRANTS}`);
    }
    lines.push(...(o.conf ?? []));
    writeFileSync(join(this.dir, 'redis.conf'), `${lines.join('\n')}\n`);
  }

  static async start(o: RedisServerOptions = {}): Promise<RedisServer> {
    const s = new RedisServer(o, o.port ?? (await freeLoopbackPort()));
    await s.launch();
    return s;
  }

  /** The TLS files the server was started with (TLS-only servers), for clients of tests and labs. */
  get tlsFiles(): RedisServerOptions['tls'] {
    return this.o.tls;
  }

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  private async launch(): Promise<void> {
    const argv = [...(this.o.wrap ?? []), 'redis-server', join(this.dir, 'redis.conf'), ...(this.o.sentinel ? ['--sentinel'] : [])];
    const proc = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
    this.proc = proc;
    track(proc);
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`redis-server exited with ${proc.exitCode} (see ${join(this.dir, 'redis.log')})`);
      if (await this.answers()) return;
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on ${this.address}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** True once something accepts connections on the port (a PING needs auth with ACL users). */
  private answers(): Promise<boolean> {
    if (this.o.wrap) {
      // inside a namespace: ask with redis-cli there
      try {
        const out = execFileSync(this.o.wrap[0]!, [...this.o.wrap.slice(1), 'redis-cli', '-h', this.host, '-p', String(this.port), 'PING'], { stdio: 'pipe', timeout: 2000 }).toString();
        return Promise.resolve(/PONG|NOAUTH|NOPERM/.test(out));
      } catch {
        return Promise.resolve(false);
      }
    }
    return new Promise((resolve) => {
      const s = net.connect(this.port, this.host);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
  }

  /** SIGKILL by PID (no shutdown save): what a crash looks like. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode) return;
    await new Promise<void>((res) => {
      p.once('exit', () => res());
      process.kill(p.pid!, 'SIGKILL');
    });
    this.proc = undefined;
  }

  async restart(): Promise<void> {
    await this.kill();
    await this.launch();
  }

  /** Stops the server (by its PID) and removes its directory. */
  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
