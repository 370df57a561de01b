// Throwaway network-namespace labs: namespaces, links, addresses, routes, sysctls, nft and processes, all torn down.
import { execFileSync, spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

/** IFNAMSIZ - 1: interface names are limited to 15 bytes; we keep namespace names within it too. */
export const MAX_NAME_LEN = 15;

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface ExecOptions {
  /** Written to the child's stdin, then stdin is closed. */
  input?: string;
  /** Resolve with a non-zero code instead of throwing. Default false. */
  allowFail?: boolean;
  /** Kill the child (its process group) after this long. Default 30000 ms. */
  timeoutMs?: number;
}

export interface SpawnOptions {
  /** Called with every stdout line (without the newline). */
  onLine?: (line: string) => void;
  /** Called with every stderr line. Default: kept in `stderrTail`. */
  onErrLine?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
}

export class LabError extends Error {
  readonly code = 'CTS_ERR_LAB';
  constructor(message: string, readonly result?: ExecResult) {
    super(message);
  }
}

/** A process started inside a namespace. It leads its own process group so stop() reaches its children too. */
export class LabProcess {
  readonly pid: number;
  /** Process group id: the child was spawned detached, so it equals pid. */
  readonly pgid: number;
  /** Resolves with the exit code (or null when killed by a signal) once the process has gone. */
  readonly exited: Promise<number | null>;
  /** The last stderr lines, for error messages. */
  readonly stderrTail: string[] = [];
  private done = false;

  constructor(readonly ns: string, readonly argv: readonly string[], private readonly child: ChildProcess, opts: SpawnOptions) {
    if (child.pid === undefined) throw new LabError(`could not spawn ${argv.join(' ')} in ${ns}`);
    this.pid = child.pid;
    this.pgid = child.pid;
    this.exited = new Promise((resolve) => {
      child.once('close', (code) => {
        this.done = true;
        resolve(code);
      });
      child.once('error', () => {
        this.done = true;
        resolve(null);
      });
    });
    if (child.stdout) createInterface({ input: child.stdout }).on('line', (l) => opts.onLine?.(l));
    if (child.stderr) {
      createInterface({ input: child.stderr }).on('line', (l) => {
        if (opts.onErrLine) opts.onErrLine(l);
        this.stderrTail.push(l);
        if (this.stderrTail.length > 20) this.stderrTail.shift();
      });
    }
  }

  get running(): boolean {
    return !this.done;
  }

  /** Writes to the process's stdin. */
  write(data: string): void {
    this.child.stdin?.write(data);
  }

  /** SIGTERM to the process group, SIGKILL after graceMs if it is still there. Idempotent. */
  async stop(graceMs = 1000): Promise<number | null> {
    if (this.done) return this.exited;
    signalGroup(this.pgid, 'SIGTERM');
    const timer = setTimeout(() => signalGroup(this.pgid, 'SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Synchronous SIGKILL, for exit handlers that cannot wait. */
  killNow(): void {
    if (!this.done) signalGroup(this.pgid, 'SIGKILL');
  }
}

function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    // ESRCH: the group is already gone, which is what we wanted.
  }
}

function run(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawnChild(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.pid && signalGroup(child.pid, 'SIGKILL'), opts.timeoutMs ?? 30_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const result = { stdout, stderr, code: code ?? (signal ? 128 : 1) };
      if (result.code !== 0 && !opts.allowFail) {
        reject(new LabError(`${argv.join(' ')} failed (${result.code}): ${stderr.trim()}`, result));
      } else resolve(result);
    });
    child.stdin.on('error', () => {}); // EPIPE when the command does not read stdin
    child.stdin.end(opts.input ?? '');
  });
}

function runSync(argv: readonly string[]): string {
  try {
    return execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
  } catch {
    return '';
  }
}

/** Names of every namespace `ip netns` knows. */
function listNamespaces(): string[] {
  return runSync(['ip', 'netns', 'list'])
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n !== '');
}

// Owner marks: which process created a namespace, so sweep() never deletes a live run's lab (same prefix, other process).
const OWNER_DIR = '/run/ctsync-lab';
function markOwner(ns: string): void {
  try {
    mkdirSync(OWNER_DIR, { recursive: true });
    writeFileSync(`${OWNER_DIR}/${ns}`, String(process.pid));
  } catch {
    // Without a mark the namespace is merely sweepable by anyone: acceptable.
  }
}
function ownerAlive(ns: string): boolean {
  try {
    const pid = Number(readFileSync(`${OWNER_DIR}/${ns}`, 'utf8'));
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Kills whatever still runs inside a namespace and deletes it. Synchronous so exit handlers can use it. */
function destroyNamespaceSync(ns: string): void {
  for (const pid of runSync(['ip', 'netns', 'pids', ns]).split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
  runSync(['ip', 'netns', 'del', ns]);
  rmSync(`${OWNER_DIR}/${ns}`, { force: true });
}

// One set of exit/signal handlers for all live labs, installed while at least one exists.
const liveLabs = new Set<Lab>();
const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
function onExit(): void {
  for (const lab of [...liveLabs]) lab.teardownSync();
}
function onSignal(sig: NodeJS.Signals): void {
  onExit();
  uninstallHandlers();
  // Re-raise so the default action (or another owner's handler) still decides how the process ends.
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}
let handlersInstalled = false;
function installHandlers(): void {
  // addNamespace calls this for every namespace: install once, or each lab leaks one listener per namespace.
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', onExit);
  for (const s of signals) process.on(s, onSignal);
}
function uninstallHandlers(): void {
  handlersInstalled = false;
  process.off('exit', onExit);
  for (const s of signals) process.off(s, onSignal);
}

export interface LabOptions {
  /** Every namespace name starts with it; sweep() finds leftovers by it. E.g. `ctsh-`. */
  prefix: string;
}

/**
 * A set of namespaces and the processes running in them. Every command targets one of this lab's namespaces
 * (`ip -n NS` / `ip netns exec NS`), so the root namespace never gets an address, route, link or rule.
 */
export class Lab {
  readonly prefix: string;
  /** One random suffix per lab: its namespaces sort together in `ip netns list`. */
  readonly suffix: string;
  private readonly namespaces: string[] = [];
  private readonly procs = new Set<LabProcess>();
  private tornDown = false;

  constructor(opts: LabOptions) {
    if (!/^[a-z0-9-]{2,8}$/.test(opts.prefix)) {
      throw new LabError(`lab prefix "${opts.prefix}" must be 2-8 chars of [a-z0-9-] (names are limited to ${MAX_NAME_LEN})`);
    }
    this.prefix = opts.prefix;
    const taken = new Set(listNamespaces());
    let suffix: string;
    do suffix = randomBytes(2).toString('hex');
    while ([...taken].some((n) => n.startsWith(this.prefix) && n.endsWith(`-${suffix}`)));
    this.suffix = suffix;
  }

  /** Full namespace name for a short name: `${prefix}${name}-${suffix}`, at most 15 characters. */
  nsName(name: string): string {
    const full = `${this.prefix}${name}-${this.suffix}`;
    if (!/^[a-z0-9]+$/.test(name) || full.length > MAX_NAME_LEN) {
      throw new LabError(`namespace "${full}" is invalid or longer than ${MAX_NAME_LEN} chars; use a shorter name than "${name}"`);
    }
    return full;
  }

  /** Namespaces this lab created, in creation order. */
  get names(): readonly string[] {
    return this.namespaces;
  }

  /** Creates a namespace with loopback up; returns its full name. */
  async addNamespace(name: string): Promise<string> {
    if (this.tornDown) throw new LabError('lab already torn down');
    const ns = this.nsName(name);
    await run(['ip', 'netns', 'add', ns]);
    this.namespaces.push(ns);
    markOwner(ns);
    liveLabs.add(this);
    installHandlers();
    await this.ip(ns, ['link', 'set', 'lo', 'up']);
    return ns;
  }

  private own(ns: string): string {
    if (!this.namespaces.includes(ns)) throw new LabError(`namespace "${ns}" does not belong to this lab`);
    return ns;
  }

  private static ifname(name: string): string {
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) throw new LabError(`interface name "${name}" is invalid or longer than 15 chars`);
    return name;
  }

  /** `ip -n NS ...args`. */
  async ip(ns: string, args: readonly string[], opts?: ExecOptions): Promise<ExecResult> {
    return run(['ip', '-n', this.own(ns), ...args], opts);
  }

  /** A veth pair created inside nsA and its peer moved straight into nsB; both ends up. */
  async addVeth(nsA: string, ifA: string, nsB: string, ifB: string): Promise<void> {
    await this.ip(nsA, ['link', 'add', Lab.ifname(ifA), 'type', 'veth', 'peer', 'name', Lab.ifname(ifB), 'netns', this.own(nsB)]);
    await this.setLink(nsA, ifA, 'up');
    await this.setLink(nsB, ifB, 'up');
  }

  /** Adds a v4 or v6 address in CIDR form. v6 skips duplicate address detection so it is usable at once. */
  async addAddress(ns: string, ifname: string, cidr: string): Promise<void> {
    const extra = cidr.includes(':') ? ['nodad'] : [];
    await this.ip(ns, ['addr', 'add', cidr, 'dev', Lab.ifname(ifname), ...extra]);
  }

  /** A bridge (the "switch") inside ns, up, with multicast snooping off so VRRP adverts always flood. */
  async addBridge(ns: string, name: string): Promise<void> {
    await this.ip(ns, ['link', 'add', Lab.ifname(name), 'type', 'bridge', 'mcast_snooping', '0']);
    await this.setLink(ns, name, 'up');
  }

  async attachToBridge(ns: string, ifname: string, bridge: string): Promise<void> {
    await this.ip(ns, ['link', 'set', Lab.ifname(ifname), 'master', Lab.ifname(bridge)]);
  }

  /** `ip route replace DEST via GW [dev IF]`; DEST may be `default`. The family follows the gateway. */
  async addRoute(ns: string, dest: string, via: string, dev?: string): Promise<void> {
    const fam = via.includes(':') ? '-6' : '-4';
    await this.ip(ns, [fam, 'route', 'replace', dest, 'via', via, ...(dev ? ['dev', Lab.ifname(dev)] : [])]);
  }

  async setLink(ns: string, ifname: string, state: 'up' | 'down'): Promise<void> {
    await this.ip(ns, ['link', 'set', Lab.ifname(ifname), state]);
  }

  /** `sysctl -w key=value` inside ns (net.* sysctls are per namespace). */
  async sysctl(ns: string, key: string, value: string | number): Promise<void> {
    if (!/^net\.[A-Za-z0-9_.\/-]+$/.test(key)) throw new LabError(`only per-namespace net.* sysctls may be set, not "${key}"`);
    await this.exec(ns, ['sysctl', '-q', '-w', `${key}=${value}`]);
  }

  /** Loads an nft ruleset (the text `nft -f` reads) into ns. */
  async loadNft(ns: string, ruleset: string): Promise<void> {
    await this.exec(ns, ['nft', '-f', '-'], { input: ruleset });
  }

  /** Runs argv inside ns and waits for it. Throws on a non-zero exit unless allowFail. */
  async exec(ns: string, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult> {
    return run(['ip', 'netns', 'exec', this.own(ns), ...argv], opts);
  }

  /** Starts a long-running argv inside ns in its own process group; teardown() stops it if nobody else does. */
  spawn(ns: string, argv: readonly string[], opts: SpawnOptions = {}): LabProcess {
    if (this.tornDown) throw new LabError('lab already torn down');
    const child = spawnChild('ip', ['netns', 'exec', this.own(ns), ...argv], {
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true, // own process group: stop() signals -pgid and reaches grandchildren
      env: opts.env ?? process.env,
    });
    const proc = new LabProcess(ns, argv, child, opts);
    child.stdin?.on('error', () => {});
    this.procs.add(proc);
    void proc.exited.then(() => this.procs.delete(proc));
    return proc;
  }

  /** Stops every process (SIGTERM, then SIGKILL), then deletes every namespace. Idempotent. */
  async teardown(): Promise<void> {
    await Promise.all([...this.procs].map((p) => p.stop(500)));
    this.teardownSync();
  }

  /** The synchronous part of teardown, safe inside 'exit' and signal handlers. */
  teardownSync(): void {
    this.tornDown = true;
    for (const p of this.procs) p.killNow();
    this.procs.clear();
    // Processes we did not spawn directly (daemons that forked) still live in our namespaces: kill them too.
    for (const ns of this.namespaces.splice(0).reverse()) destroyNamespaceSync(ns);
    liveLabs.delete(this);
    if (liveLabs.size === 0) uninstallHandlers();
  }

  /**
   * Deletes leftover namespaces whose name starts with prefix (a crashed earlier run), except those of labs alive
   * in this process or owned by another process that is still running. Returns the deleted names.
   */
  static sweep(prefix: string): string[] {
    if (!/^[a-z0-9-]{2,8}$/.test(prefix)) throw new LabError(`refusing to sweep with prefix "${prefix}"`);
    const live = new Set<string>();
    for (const lab of liveLabs) for (const n of lab.names) live.add(n);
    const stale = listNamespaces().filter((n) => n.startsWith(prefix) && !live.has(n) && !ownerAlive(n));
    for (const ns of stale) destroyNamespaceSync(ns);
    return stale;
  }
}

/** Runs fn with a fresh lab and always tears it down, also when fn throws. */
export async function withLab<T>(opts: LabOptions, fn: (lab: Lab) => Promise<T>): Promise<T> {
  const lab = new Lab(opts);
  try {
    return await fn(lab);
  } finally {
    await lab.teardown();
  }
}
