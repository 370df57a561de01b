// The incumbent as a benchmark reference: a conntrackd FTFW pair over UDP unicast on the sync link, driven through
// its UNIX control socket (no client process per query) and measured from /proc.
//
// Facts this harness relies on, checked against conntrack-tools 1.4.7 on this machine:
// - `conntrackd -C FILE` without -d stays in the foreground ("starting in console mode"); `ip netns exec` execs it,
//   so the spawned PID is conntrackd itself. SIGTERM makes it remove its socket and lock file and exit.
// - It switches itself to SCHED_RR priority 99 (its default Scheduler); we keep that: it is what users run.
// - The client (`conntrackd -C FILE -s` and friends) connects to General.UNIX.Path and writes one native-endian
//   int, the request code (codes below, read off `strace` of the 1.4.7 client); the daemon writes its text answer
//   and closes. Talking to the socket directly costs ~0.1 ms instead of a ~3 ms client process.
// - Origin: conntrackd ignores only the events its own committer socket caused. Entries another process inserts
//   through ctnetlink (our batched writes) arrive as ordinary NEW events and are synced like traffic.
// - `conntrackd -c` holds the client connection open until the daemon has finished the commit, so the command's
//   wall time is the commit time. sync-ref.ts re-checks this on every run (kernel count right after return).
import { readFileSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Lab, LabProcess } from '../../src/lab/netns.js';
import { pairWorkDir, pollUntil, syncTopology, type CommitResult, type PairOptions, type SyncPair, type SyncTopology } from './harness.js';

/** Request codes of conntrackd 1.4.7's UNIX socket (include/conntrackd.h). */
export const enum CtdRequest {
  DumpInternal = 16, // -i
  DumpExternal = 17, // -e
  CommitCt = 18, // -c ct
  Stats = 21, // -s / -s ct: cache counts, traffic, message tracking
  SendBulk = 22, // -B
  RequestResync = 23, // -n
  StatsNetwork = 28, // -s network
  StatsCache = 29, // -s cache
  StatsRuntime = 30, // -s runtime
  StatsLink = 31, // -s link
  StatsRsqueue = 32, // -s rsqueue
  StatsQueue = 36, // -s queue
  FlushCaches = 45, // -f
  CommitAll = 46, // -c (ct, then expectations)
}

export const CONNTRACKD_PORT = 3780;

export interface ConntrackdNodeConfig {
  /** This node's sync-link address, the peer's, and the link's interface name. */
  self: string;
  peer: string;
  ifname: string;
  port: number;
  socketPath: string;
  lockFile: string;
  logFile: string;
  /** Cache buckets and the cache's entry limit (conntrackd refuses new entries beyond HashLimit). */
  hashSize: number;
  hashLimit: number;
  /** FTFW: objects kept for retransmission until acked. */
  resendQueueSize: number;
  /** Addresses (CIDR allowed) whose flows are not synced: the sync link itself. */
  ignore: string[];
}

/**
 * conntrackd.conf for one node: FTFW with the external cache on (entries reach the kernel only at commit), UDP
 * unicast to the peer, 4 MiB socket buffers (net.core.[rw]mem_max here), checksums on, and a large netlink event
 * buffer that may double on overrun. The filter syncs everything except the sync link's own UDP flow and loopback.
 */
export function conntrackdConfig(c: ConntrackdNodeConfig): string {
  const ignore = [...c.ignore, '127.0.0.1'].map((a) => `      IPv4_address ${a}`).join('\n');
  return `# written by bench/ref/conntrackd.ts for one benchmark run
Sync {
  Mode FTFW {
    ResendQueueSize ${c.resendQueueSize}
    ACKWindowSize 300
    DisableExternalCache no
  }
  UDP Default {
    IPv4_address ${c.self}
    IPv4_Destination_Address ${c.peer}
    Port ${c.port}
    Interface ${c.ifname}
    SndSocketBuffer 4194304
    RcvSocketBuffer 4194304
    Checksum on
  }
}
General {
  Systemd no
  HashSize ${c.hashSize}
  HashLimit ${c.hashLimit}
  LogFile ${c.logFile}
  Syslog no
  LockFile ${c.lockFile}
  UNIX {
    Path ${c.socketPath}
  }
  NetlinkBufferSize 33554432
  NetlinkBufferSizeMaxGrowth 268435456
  NetlinkOverrunResync yes
  NetlinkEventsReliable no
  Filter From Userspace {
    Address Ignore {
${ignore}
      IPv6_address ::1
    }
  }
}
`;
}

/** One request on conntrackd's control socket; resolves with its whole text answer (the daemon closes after it). */
export function conntrackdRequest(socketPath: string, code: CtdRequest, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = createConnection(socketPath);
    const timer = setTimeout(() => sock.destroy(new Error(`conntrackd at ${socketPath} did not answer request ${code} within ${timeoutMs} ms`)), timeoutMs);
    sock.once('connect', () => {
      const req = Buffer.alloc(4);
      req.writeInt32LE(code); // the client writes a host-order int; x86_64 is little endian
      sock.write(req);
    });
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.once('close', (hadError) => {
      clearTimeout(timer);
      if (!hadError) resolve(Buffer.concat(chunks).toString('utf8'));
    });
  });
}

export interface ConntrackdCacheStats {
  internal: number;
  external: number;
  /** Internal/external "connections created ... failed" counters. */
  internalCreateFailed: number;
  externalCreateFailed: number;
  malformed: number;
  lost: number;
}

/** Parses the answer to CtdRequest.Stats (`conntrackd -s`). Missing fields come back as NaN. */
export function parseStats(text: string): ConntrackdCacheStats {
  const section = (name: string): string => {
    const i = text.indexOf(`cache ${name}:`);
    return i < 0 ? '' : text.slice(i, text.indexOf('\n\n', i) < 0 ? undefined : text.indexOf('\n\n', i));
  };
  const num = (s: string, re: RegExp): number => {
    const m = re.exec(s);
    return m ? Number(m[1]) : NaN;
  };
  const active = /current active connections:\s*(\d+)/;
  const createdFailed = /connections created:\s*\d+\s*failed:\s*(\d+)/;
  return {
    internal: num(section('internal'), active),
    external: num(section('external'), active),
    internalCreateFailed: num(section('internal'), createdFailed),
    externalCreateFailed: num(section('external'), createdFailed),
    malformed: num(text, /(\d+)\s+Malformed msgs/),
    lost: num(text, /(\d+)\s+Lost msgs/),
  };
}

/** Selected counters of `conntrackd -s runtime` (netlink side). */
export function parseRuntime(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, label] of [
    ['eventsReceived', 'events received'],
    ['eventsFiltered', 'events filtered'],
    ['netlinkOverrun', 'netlink overrun'],
    ['resyncWithKernel', 'resync with kernel table'],
    ['netlinkBufferBytes', 'current buffer size \\(in bytes\\)'],
  ] as const) {
    const m = new RegExp(`${label}:\\s*(\\d+)`).exec(text);
    out[key] = m ? Number(m[1]) : NaN;
  }
  return out;
}

export interface ConntrackdNode {
  role: 'active' | 'standby';
  ns: string;
  confPath: string;
  socketPath: string;
  logFile: string;
  proc: LabProcess;
}

export interface ConntrackdPair extends SyncPair {
  readonly active: ConntrackdNode;
  readonly standby: ConntrackdNode;
  readonly workDir: string;
  /** External cache size on the standby, from one control-socket request (what `conntrackd -s` prints). */
  statsExternal(): Promise<number>;
  /** Same through a `conntrackd -C conf -s` client process in the standby's namespace (slower; for cross-checks). */
  statsExternalCli(): Promise<number>;
  /** A raw request to either node. */
  request(role: 'active' | 'standby', code: CtdRequest): Promise<string>;
  /** `conntrackd -C conf ARGS` in the node's namespace. */
  cli(role: 'active' | 'standby', args: readonly string[]): Promise<string>;
}

export interface ConntrackdPairOptions extends PairOptions {
  /** FTFW ResendQueueSize. Default 131072, conntrackd's own default. */
  resendQueueSize?: number;
  /** Cache hash buckets. Default 131072 (conntrackd's default is 65536 or derived; 131072 keeps chains short at 1M). */
  hashSize?: number;
}

/**
 * Starts conntrackd on act and sby (FTFW, UDP unicast over the sync veth) and resolves when both answer on their
 * control sockets. Everything they write lives under workDir; stop() ends them by PID and removes workDir if we
 * created it.
 */
export async function conntrackdPair(lab: Lab, opts: ConntrackdPairOptions = {}): Promise<ConntrackdPair> {
  const topo: SyncTopology = opts.topo ?? (await syncTopology(lab));
  const { dir: workDir, remove: removeDir } = pairWorkDir(opts.workDir, 'ctsr-');
  const capacity = opts.capacity ?? 1_000_000;
  const linkNet = `${topo.actAddr.split('.').slice(0, 3).join('.')}.0/24`;

  const start = (role: 'active' | 'standby'): ConntrackdNode => {
    const tag = role === 'active' ? 'act' : 'sby';
    const ns = role === 'active' ? topo.act : topo.sby;
    const node = {
      confPath: join(workDir, `${tag}.conf`),
      socketPath: join(workDir, `${tag}.ctl`),
      logFile: join(workDir, `${tag}.log`),
    };
    writeFileSync(
      node.confPath,
      conntrackdConfig({
        self: role === 'active' ? topo.actAddr : topo.sbyAddr,
        peer: role === 'active' ? topo.sbyAddr : topo.actAddr,
        ifname: role === 'active' ? topo.actIf : topo.sbyIf,
        port: CONNTRACKD_PORT,
        socketPath: node.socketPath,
        lockFile: join(workDir, `${tag}.lock`),
        logFile: node.logFile,
        hashSize: opts.hashSize ?? 131072,
        hashLimit: Math.max(262144, capacity * 2), // the manual's advice: twice the table, dead entries linger
        resendQueueSize: opts.resendQueueSize ?? 131072,
        ignore: [linkNet],
      }),
    );
    // Foreground: its console log lines go to our pipes and are dropped; the log file keeps them.
    const proc = lab.spawn(ns, ['conntrackd', '-C', node.confPath], { onLine: () => {}, onErrLine: () => {} });
    return { role, ns, proc, ...node };
  };

  const active = start('active');
  const standby = start('standby');
  const nodes = { active, standby };
  const logTail = (n: ConntrackdNode): string => {
    try {
      return readFileSync(n.logFile, 'utf8').split('\n').slice(-8).join('\n');
    } catch {
      return '(no log)';
    }
  };
  try {
    for (const n of [active, standby]) {
      await pollUntil(
        async () => {
          if (!n.proc.running) throw new Error(`conntrackd (${n.role}) exited at start:\n${logTail(n)}`);
          return conntrackdRequest(n.socketPath, CtdRequest.Stats, 1000).then(
            () => 1,
            () => 0,
          );
        },
        (v) => v === 1,
        { intervalMs: 20, timeoutMs: 10_000 },
      );
    }
  } catch (err) {
    await Promise.all([active.proc.stop(), standby.proc.stop()]);
    removeDir();
    throw err;
  }

  const request = (role: 'active' | 'standby', code: CtdRequest): Promise<string> => conntrackdRequest(nodes[role].socketPath, code);
  const cli = async (role: 'active' | 'standby', args: readonly string[]): Promise<string> => {
    const r = await lab.exec(nodes[role].ns, ['conntrackd', '-C', nodes[role].confPath, ...args], { timeoutMs: 600_000 });
    return r.stdout + r.stderr;
  };
  const statsExternal = async (): Promise<number> => parseStats(await request('standby', CtdRequest.Stats)).external;

  const pair: ConntrackdPair = {
    impl: 'conntrackd',
    topo,
    active,
    standby,
    workDir,
    activePid: active.proc.pid,
    standbyPid: standby.proc.pid,
    request,
    cli,
    statsExternal,
    statsExternalCli: async () => parseStats(await cli('standby', ['-s'])).external,
    peerTableSize: statsExternal,
    localTableSize: async () => parseStats(await request('active', CtdRequest.Stats)).internal,
    async commit(): Promise<CommitResult> {
      const t0 = performance.now();
      const output = await cli('standby', ['-c']);
      return { durationMs: performance.now() - t0, output: output.trim() };
    },
    async diagnostics() {
      const out: Record<string, number | string> = {};
      for (const role of ['active', 'standby'] as const) {
        const s = parseStats(await request(role, CtdRequest.Stats));
        const r = parseRuntime(await request(role, CtdRequest.StatsRuntime));
        const p = role === 'active' ? 'act' : 'sby';
        out[`${p}.internal`] = s.internal;
        out[`${p}.external`] = s.external;
        out[`${p}.internalCreateFailed`] = s.internalCreateFailed;
        out[`${p}.externalCreateFailed`] = s.externalCreateFailed;
        out[`${p}.malformedMsgs`] = s.malformed;
        out[`${p}.lostMsgs`] = s.lost;
        for (const [k, v] of Object.entries(r)) out[`${p}.${k}`] = v;
      }
      return out;
    },
    async stop() {
      await Promise.all([active.proc.stop(2000), standby.proc.stop(2000)]);
      removeDir();
    },
  };
  return pair;
}
