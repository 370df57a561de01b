// Traffic generators that run inside lab namespaces (via traffic.py) and leave real conntrack entries on a router.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LabError, type Lab, type LabProcess } from './netns.js';

/** traffic.py next to this module (tsx/vitest), or in the source tree when running from dist/src/lab/. */
export function trafficScript(): string {
  const candidates = [new URL('./traffic.py', import.meta.url), new URL('../../../src/lab/traffic.py', import.meta.url)];
  for (const c of candidates) {
    const path = fileURLToPath(c);
    if (existsSync(path)) return path;
  }
  throw new LabError('src/lab/traffic.py not found next to traffic.js nor in the source tree');
}

function py(args: readonly (string | number)[]): string[] {
  return ['python3', '-u', trafficScript(), ...args.map(String)];
}

/** Starts a server and waits for its "ready" line (or its early death). */
async function spawnReady(lab: Lab, ns: string, args: (string | number)[], onLine?: (l: string) => void): Promise<LabProcess> {
  let ready!: () => void;
  const readyP = new Promise<void>((r) => (ready = r));
  const proc = lab.spawn(ns, py(args), {
    onLine: (l) => (l === 'ready' ? ready() : onLine?.(l)),
  });
  const died = proc.exited.then((code) => {
    throw new LabError(`${args[0]} in ${ns} exited (${code}) before ready: ${proc.stderrTail.join(' | ')}`);
  });
  await Promise.race([readyP, died, timeout(10_000, `${args[0]} in ${ns} not ready`)]);
  return proc;
}

function timeout(ms: number, what: string): Promise<never> {
  return new Promise((_, reject) => setTimeout(() => reject(new LabError(`${what} within ${ms} ms`)), ms).unref());
}

/** Runs a one-shot client to completion; returns its stdout lines. */
async function runClient(lab: Lab, ns: string, args: (string | number)[], timeoutMs = 15_000): Promise<string[]> {
  const r = await lab.exec(ns, py(args), { timeoutMs });
  return r.stdout.split('\n').filter(Boolean);
}

/** Where a client connects and where the matching server runs. */
export interface Endpoints {
  clientNs: string;
  serverNs: string;
  /** Address the client connects to: the server, or a DNAT address on the router. v4 or v6. */
  host: string;
  port: number;
  /** Port the server listens on, when DNAT changes it. Default: port. */
  serverPort?: number;
}

export interface Stoppable {
  stop(): Promise<void>;
}

export interface TcpStreamStats {
  /** Echoed lines received so far. */
  echoed: number;
  /** Time between the last two echoes. */
  lastGapMs: number;
  /** Longest time between two echoes: the outage a failover caused. */
  maxGapMs: number;
  /** Number of the last echoed line (the client numbers its lines 1, 2, 3...). */
  lastLine: number;
  /** Echoes whose number was not the previous one plus one: a line lost, duplicated or reordered. */
  outOfOrder: number;
  /** Client's own address and port (the orig tuple's src/sport on the client side of any NAT). */
  local?: { addr: string; port: number };
  closed: boolean;
  /** errno text when the connection failed (e.g. "104" for ECONNRESET after a failover without state). */
  error?: string;
}

export interface TcpStream extends Stoppable {
  readonly stats: TcpStreamStats;
  /** Resolves once `n` echoes in total have arrived; rejects after timeoutMs or if the stream ends. */
  waitForEchoes(n: number, timeoutMs?: number): Promise<void>;
}

/** A long-lived TCP connection that sends a line every intervalMs and counts echoes until stopped. */
export async function tcpStream(lab: Lab, e: Endpoints & { intervalMs?: number }): Promise<TcpStream> {
  const server = await spawnReady(lab, e.serverNs, ['tcp-server', '--port', e.serverPort ?? e.port]);
  const stats: TcpStreamStats = { echoed: 0, lastGapMs: 0, maxGapMs: 0, lastLine: 0, outOfOrder: 0, closed: false };
  const waiters = new Set<() => void>();
  const client = lab.spawn(e.clientNs, py(['tcp-stream', '--host', e.host, '--port', e.port, '--interval', (e.intervalMs ?? 100) / 1000]), {
    onLine: (line) => {
      const [kind, a, b] = line.split(' ');
      if (kind === 'connected') stats.local = { addr: a!, port: Number(b) };
      if (kind === 'echo') {
        stats.echoed++;
        if (Number(a) !== stats.lastLine + 1) stats.outOfOrder++;
        stats.lastLine = Number(a);
        stats.lastGapMs = Number(b);
        // The first echo's gap includes connection setup; a failover shows up in later ones.
        if (stats.echoed > 1) stats.maxGapMs = Math.max(stats.maxGapMs, stats.lastGapMs);
      }
      if (kind === 'closed') stats.closed = true;
      if (kind === 'error') stats.error = a;
      for (const w of waiters) w();
    },
  });
  void client.exited.then(() => {
    stats.closed = true;
    for (const w of waiters) w();
  });
  return {
    stats,
    waitForEchoes(n, timeoutMs = 10_000) {
      return waitUntil(waiters, timeoutMs, () => {
        if (stats.echoed >= n) return true;
        if (stats.closed) throw new LabError(`tcp stream ended after ${stats.echoed} echoes: ${client.stderrTail.join(' | ')}`);
        return false;
      }, () => `only ${stats.echoed}/${n} echoes within ${timeoutMs} ms`);
    },
    async stop() {
      await client.stop();
      await server.stop();
    },
  };
}

/** A short TCP connection: connect, one echo, client closes first. Returns the client's source port. */
export async function tcpShort(lab: Lab, e: Endpoints): Promise<{ sport: number }> {
  const server = await spawnReady(lab, e.serverNs, ['tcp-server', '--port', e.serverPort ?? e.port]);
  try {
    const lines = await runClient(lab, e.clientNs, ['tcp-once', '--host', e.host, '--port', e.port]);
    return { sport: Number(lines.find((l) => l.startsWith('connected'))?.split(' ')[2]) };
  } finally {
    await server.stop();
  }
}

/** One UDP request and its reply. Returns the client's source port. */
export async function udpRequestReply(lab: Lab, e: Endpoints): Promise<{ sport: number }> {
  const server = await spawnReady(lab, e.serverNs, ['udp-server', '--port', e.serverPort ?? e.port]);
  try {
    const lines = await runClient(lab, e.clientNs, ['udp-once', '--host', e.host, '--port', e.port]);
    return { sport: Number(lines.find((l) => l.startsWith('reply'))?.split(' ')[2]) };
  } finally {
    await server.stop();
  }
}

/** ICMP or ICMPv6 echo (family follows host); rejects unless every request got its reply. Returns the echo id. */
export async function ping(lab: Lab, clientNs: string, host: string, count = 1): Promise<{ id: number }> {
  const lines = await runClient(lab, clientNs, ['ping', '--host', host, '--count', count]);
  return { id: Number(lines[0]?.split(' ')[1]) };
}

/**
 * An SCTP association handshake (INIT, INIT-ACK, COOKIE-ECHO, COOKIE-ACK) from raw sockets with correct CRC32c:
 * this kernel has no SCTP sockets, but conntrack tracks the packets to ESTABLISHED. Returns the client port and tags.
 */
export async function sctpAssociation(lab: Lab, e: Endpoints): Promise<{ sport: number; vtagClient: number; vtagServer: number }> {
  const bind = e.host.includes(':') ? '::' : '0.0.0.0';
  const server = await spawnReady(lab, e.serverNs, ['sctp-server', '--port', e.serverPort ?? e.port, '--bind', bind]);
  try {
    const lines = await runClient(lab, e.clientNs, ['sctp-client', '--host', e.host, '--port', e.port]);
    const [, sport, c, s] = (lines.find((l) => l.startsWith('established')) ?? '').split(' ');
    return { sport: Number(sport), vtagClient: Number(c), vtagServer: Number(s) };
  } finally {
    await server.stop();
  }
}

export interface FtpSession extends Stoppable {
  /** The address:port the client saw in the 227 reply (rewritten by NAT if any). */
  readonly pasv: { host: string; port: number };
}

/**
 * An FTP control session whose PASV reply makes the router's ftp helper create an expectation; the session stays
 * open until stop(). advertise = the server's own v4 address (what it puts in the 227 reply). openData also makes
 * the data connection, i.e. a RELATED flow with a master.
 */
export async function ftpSession(
  lab: Lab,
  e: Endpoints & { advertise: string; dataPort?: number; openData?: boolean },
): Promise<FtpSession> {
  const server = await spawnReady(lab, e.serverNs, [
    'ftp-server', '--port', e.serverPort ?? e.port, '--data-port', e.dataPort ?? 50000, '--advertise', e.advertise,
  ]);
  let gotPasv!: (p: { host: string; port: number }) => void;
  let dataDone!: () => void;
  const pasvP = new Promise<{ host: string; port: number }>((r) => (gotPasv = r));
  const dataP = new Promise<void>((r) => (dataDone = r));
  const args = ['ftp-client', '--host', e.host, '--port', e.port, ...(e.openData ? ['--open-data'] : [])];
  const client = lab.spawn(e.clientNs, py(args), {
    onLine: (l) => {
      const [kind, a, b] = l.split(' ');
      if (kind === 'pasv') gotPasv({ host: a!, port: Number(b) });
      if (kind === 'data') dataDone();
    },
  });
  const died = client.exited.then((code) => {
    throw new LabError(`ftp client exited (${code}): ${client.stderrTail.join(' | ')}`);
  });
  const stopAll = async (): Promise<void> => {
    await client.stop();
    await server.stop();
  };
  try {
    const pasv = await Promise.race([pasvP, died, timeout(10_000, 'no PASV reply')]);
    if (e.openData) await Promise.race([dataP, died, timeout(10_000, 'no FTP data connection')]);
    void died.catch(() => {});
    return { pasv, stop: stopAll };
  } catch (err) {
    void died.catch(() => {});
    await stopAll();
    throw err;
  }
}

/** Upper bound for udpFlood: enough for overrun tests, small enough not to exhaust nf_conntrack_max by accident. */
export const UDP_FLOOD_MAX = 1_000_000;

/**
 * Sends one UDP datagram to each of `count` (ports, socket) pairs as fast as possible: `count` distinct new flows.
 * Nobody needs to listen (the server answers with ICMP port unreachable, which does not remove the entry).
 */
export async function udpFlood(
  lab: Lab,
  o: { clientNs: string; host: string; count: number; basePort?: number; ports?: number },
): Promise<{ sent: number; elapsedMs: number }> {
  if (!Number.isInteger(o.count) || o.count < 1 || o.count > UDP_FLOOD_MAX) {
    throw new LabError(`udpFlood count must be 1..${UDP_FLOOD_MAX}, got ${o.count}`);
  }
  if ((o.basePort ?? 1024) < 1 || (o.basePort ?? 1024) + (o.ports ?? 60000) > 65536) {
    throw new LabError('udpFlood basePort + ports must stay within 1..65535');
  }
  const lines = await runClient(
    lab,
    o.clientNs,
    ['udp-flood', '--host', o.host, '--count', o.count, '--base-port', o.basePort ?? 1024, '--ports', o.ports ?? 60000],
    120_000,
  );
  const [, sent, ms] = (lines.find((l) => l.startsWith('sent')) ?? 'sent 0 0').split(' ');
  return { sent: Number(sent), elapsedMs: Number(ms) };
}

export interface UdpStreamStats {
  /** Datagrams received by the client. */
  received: number;
  /** Highest sequence number seen; lastSeq - received = datagrams lost on the way. */
  lastSeq: number;
  /** Longest time between two datagrams: the outage a failover caused. */
  maxGapMs: number;
  /** Client's own address and port (the flow's orig src/sport). */
  local?: { addr: string; port: number };
}

export interface UdpStream extends Stoppable {
  readonly stats: UdpStreamStats;
  /** Resolves once `n` datagrams in total have arrived; rejects after timeoutMs or if the client ends. */
  waitForDatagrams(n: number, timeoutMs?: number): Promise<void>;
}

/**
 * A server-to-client UDP stream: the client sends one datagram (so the flow is created from the inside, the only
 * direction a strict firewall admits), then the server sends "seq N" every intervalMs and the client counts gaps.
 */
export async function udpStream(lab: Lab, e: Endpoints & { intervalMs?: number }): Promise<UdpStream> {
  const server = await spawnReady(lab, e.serverNs, ['udp-stream-server', '--port', e.serverPort ?? e.port, '--interval', (e.intervalMs ?? 100) / 1000]);
  const stats: UdpStreamStats = { received: 0, lastSeq: 0, maxGapMs: 0 };
  const waiters = new Set<() => void>();
  const client = lab.spawn(e.clientNs, py(['udp-stream-client', '--host', e.host, '--port', e.port]), {
    onLine: (line) => {
      const [kind, a, b] = line.split(' ');
      if (kind === 'sent') stats.local = { addr: a!, port: Number(b) };
      if (kind === 'recv') {
        stats.received++;
        stats.lastSeq = Math.max(stats.lastSeq, Number(a));
        if (stats.received > 1) stats.maxGapMs = Math.max(stats.maxGapMs, Number(b));
      }
      for (const w of waiters) w();
    },
  });
  let ended = false;
  void client.exited.then(() => {
    ended = true;
    for (const w of waiters) w();
  });
  return {
    stats,
    waitForDatagrams(n, timeoutMs = 10_000) {
      return waitUntil(waiters, timeoutMs, () => {
        if (stats.received >= n) return true;
        if (ended) throw new LabError(`udp stream client ended after ${stats.received} datagrams: ${client.stderrTail.join(' | ')}`);
        return false;
      }, () => `only ${stats.received}/${n} datagrams within ${timeoutMs} ms`);
    },
    async stop() {
      await client.stop();
      await server.stop();
    },
  };
}

export interface FlakyLinkStats {
  /** Packets passed at once, dropped, and held back (then passed), so far. */
  passed: number;
  dropped: number;
  held: number;
}

export interface FlakyLink extends Stoppable {
  readonly stats: FlakyLinkStats;
}

/**
 * Makes what ns sends out of ifname cross a flaky wire, as tc netem would (this kernel has none): an iptables
 * NFQUEUE rule hands each IPv4 packet to traffic.py, which drops dropPercent of them, holds holdPercent back for
 * holdMs so that the packets sent after them overtake them, and passes the rest. The packets are lost or reordered
 * after the sender's TCP has sent them, as on a wire. stop() removes the rule.
 */
export async function flakyLink(lab: Lab, ns: string, o: { ifname: string; queue: number; dropPercent: number; holdPercent: number; holdMs: number }): Promise<FlakyLink> {
  const stats: FlakyLinkStats = { passed: 0, dropped: 0, held: 0 };
  const args = ['flaky-link', '--queue', o.queue, '--drop', o.dropPercent, '--hold', o.holdPercent, '--hold-ms', o.holdMs];
  const proc = await spawnReady(lab, ns, args, (line) => {
    const [kind, passed, dropped, held] = line.split(' ');
    if (kind === 'stats') Object.assign(stats, { passed: Number(passed), dropped: Number(dropped), held: Number(held) });
  });
  const rule = ['OUTPUT', '-o', o.ifname, '-j', 'NFQUEUE', '--queue-num', String(o.queue), '--queue-bypass'];
  await lab.exec(ns, ['iptables', '-A', ...rule]);
  return {
    stats,
    async stop() {
      await lab.exec(ns, ['iptables', '-D', ...rule], { allowFail: true });
      await proc.stop();
    },
  };
}

/**
 * Resolves once `ready()` is true, re-checked whenever a waiter in `waiters` is called (each output line of a
 * stream); rejects when `ready()` throws, or with `timeout()`'s message after `timeoutMs`.
 */
function waitUntil(waiters: Set<() => void>, timeoutMs: number, ready: () => boolean, timeout: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: unknown): void => {
      clearTimeout(timer);
      waiters.delete(check);
      if (err) reject(err);
      else resolve();
    };
    const check = (): void => {
      try {
        if (ready()) done();
      } catch (err) {
        done(err);
      }
    };
    const timer = setTimeout(() => done(new LabError(timeout())), timeoutMs);
    waiters.add(check);
    check();
  });
}
