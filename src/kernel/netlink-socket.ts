// Owns the NETLINK_NETFILTER socket: loading the patched native binding, options, batch receive, overrun and error reporting.

import { createRequire } from 'node:module';
import path from 'node:path';
import { REC_STRIDE } from './ct-records.js';

export const NETLINK_NETFILTER = 12;

// <sys/socket.h> / <asm-generic/socket.h>
export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
// <linux/netlink.h>
export const SOL_NETLINK = 270;
export const NETLINK_BROADCAST_ERROR = 4;
export const NETLINK_NO_ENOBUFS = 5;
export const NETLINK_CAP_ACK = 10;
export const NETLINK_EXT_ACK = 11;
// recvmmsg() vlen limit (UIO_MAXIOV) and the netlink dump datagram cap, SKB_WITH_OVERHEAD(32768)
const UIO_MAXIOV = 1024;
const DUMP_SLOT_SIZE = 32768;

const EPERM = 1;

/** Where scripts/build-netlink.mjs puts the patched binding, relative to the node_modules holding `netlink`. */
const BUILD_DIR_NAME = '.ctsync-netlink';

/** NetfilterSocketOptions.readAhead's bounds (the binding's). */
export const READ_AHEAD_MIN = 4096;
export const READ_AHEAD_MAX = 1 << 30;

export interface NetfilterSocketOptions {
  /** Network namespace to create the socket in: a name under /var/run/netns or an absolute path. Default: ours. */
  netns?: string;
  /** Multicast groups to join (NFNLGRP_*: conntrack NEW 1, UPDATE 2, DESTROY 3 ...). Default: none. */
  groups?: number[];
  /** Receive buffer in bytes: SO_RCVBUFFORCE, or SO_RCVBUF (capped by net.core.rmem_max) when not permitted. Default: kernel's. */
  rcvbuf?: number;
  /** Send buffer in bytes, same rules with SO_SNDBUFFORCE. Default: kernel's. */
  sndbuf?: number;
  /** Datagrams per recvmmsg() call, i.e. at most this many per onData call (readerThread: per read). 1..1024, default 64. */
  batch?: number;
  /** Datagrams read per readable event before yielding to the event loop. Default 1024. */
  maxPerWakeup?: number;
  /**
   * Bytes per receive slot; a larger datagram is dropped and counted as truncated. Default 32768, which fits any
   * datagram the kernel builds (dump datagrams are capped at SKB_WITH_OVERHEAD(32768)). 4096..1 MiB.
   */
  slotSize?: number;
  /**
   * Report the end of a burst: once a read drained the socket, wait up to this many microseconds (on this thread,
   * in ppoll) for more datagrams, and call onQuiet when none came. Reads stay large while a burst lasts, and the
   * pause after it is noticed within settleUs rather than at the next timer tick. Undefined: no waiting, no onQuiet.
   * 0..100000.
   */
  settleUs?: number;
  /**
   * Read on a thread of the binding's own: it drains the socket while JS handles what it read before, so the
   * kernel's copy-out leaves the JS thread and events that arrive while JS is busy are read ahead, up to readAhead
   * bytes (past that the kernel buffer fills and overruns as without the thread). Data, overruns and quiets still
   * reach JS in the socket's order; consecutive reads are joined into one onData of at most maxPerWakeup datagrams.
   * For a socket that only receives (sends work, but their replies arrive on that thread too).
   */
  readerThread?: boolean;
  /** Bytes the reader thread may hold that JS has not taken yet. READ_AHEAD_MIN..READ_AHEAD_MAX, default 32 MiB. */
  readAhead?: number;
  /**
   * After a read that did not fill its batch, the reader thread waits this many microseconds before the next one, so
   * that a burst's events, which come microseconds apart, are read many at a time rather than a few per wake-up.
   * 0..10000, default 100.
   */
  gatherUs?: number;
  /**
   * After the reader thread handed over a lone change (with its quiet), it waits this many microseconds before
   * reading again, so a trickle of changes reaches JS a few at a time, one wake-up of each thread per hold rather
   * than per change. 0..100000, default 0 (read as soon as the next change comes).
   */
  holdUs?: number;
  /**
   * Have the binding walk each read's messages and read NEW conntrack events of the plain form (ct-records.ts):
   * onData then gets their count and the bytes skipped as malformed, the records are in `records`.
   */
  ctScan?: boolean;
}

export interface SocketStats {
  datagrams: number; // delivered to onData
  bytes: number; // delivered to onData (datagrams padded to 4 bytes)
  wakeups: number; // readable events; with readerThread, bursts: reads of an empty socket that found data
  batches: number; // onData calls
  overruns: number; // ENOBUFS: the kernel dropped messages for us
  truncated: number; // datagrams larger than slotSize, dropped
  foreign: number; // datagrams not sent by the kernel (nl_pid != 0), dropped
  quiets: number; // onQuiet calls (settleUs): the socket stayed empty after delivering data
}

export type NetlinkError = Error & { code?: string; errno?: number; syscall?: string };

interface NativeOptions {
  netns?: string;
  batch?: number;
  maxPerWakeup?: number;
  slotSize?: number;
  kernelOnly?: boolean;
  overrunCallback?: () => void;
  settleUs?: number;
  quietCallback?: () => void;
  readerThread?: boolean;
  readAhead?: number;
  gatherUs?: number;
  holdUs?: number;
  ctScan?: Uint32Array;
}

/** The patched binding's NativeNetlink (see patches/netlink+0.3.0.patch). */
interface NativeNetlink {
  bind(port: number, groups: number): void;
  send(port: number, groups: number, data: Buffer | Buffer[], cb: (err?: NetlinkError) => void): void;
  close(): void;
  ref(): void;
  unref(): void;
  address(): { port: number; groups: number };
  addMembership(group: number): void;
  dropMembership(group: number): void;
  setsockopt(level: number, name: number, value: number): void;
  getsockopt(level: number, name: number): number;
  stats(): SocketStats;
}

type NativeNetlinkCtor = new (
  protocol: number,
  msgBuffer: number,
  onRead: (buf: Buffer, datagrams: number, records?: number, skipped?: number) => void,
  onError: (err: NetlinkError) => void,
  opts?: NativeOptions,
) => NativeNetlink;

function ctsError(code: string, message: string, cause?: unknown): NetlinkError {
  const err = new Error(message, cause === undefined ? undefined : { cause }) as NetlinkError;
  err.code = code;
  const errno = (cause as NetlinkError | undefined)?.errno;
  if (typeof errno === 'number') err.errno = errno;
  return err;
}

/** Path of the patched binding: $CTSYNC_NETLINK_BINDING, else the build dir of scripts/build-netlink.mjs. */
export function netlinkBindingPath(): string {
  const override = process.env.CTSYNC_NETLINK_BINDING;
  if (override) return override;
  const req = createRequire(import.meta.url);
  const nodeModules = path.dirname(path.dirname(req.resolve('netlink/package.json')));
  return path.join(nodeModules, BUILD_DIR_NAME, 'build', 'Release', 'netlink_binding.node');
}

let nativeCtor: NativeNetlinkCtor | undefined;
let nativeCtScan: ((buf: Buffer, out: Uint32Array) => [number, number]) | undefined;

/**
 * The binding's message scan on its own (what a ctScan socket does to each read): writes buf's records into out and
 * returns [records, or -1 when they do not fit; bytes skipped as malformed]. For tests and replays.
 */
export function scanRecords(buf: Buffer, out: Uint32Array): [number, number] {
  loadNative();
  return nativeCtScan!(buf, out);
}

/** Loads the binding into this thread once (sockets do it themselves; WritePool needs it before its workers). */
export function loadNative(): NativeNetlinkCtor {
  if (nativeCtor) return nativeCtor;
  let file = '(unresolved)';
  try {
    file = netlinkBindingPath();
    const mod = createRequire(import.meta.url)(file) as { NativeNetlink?: NativeNetlinkCtor; ctScan?: typeof nativeCtScan };
    const ctor = mod.NativeNetlink;
    // the shipped prebuild lacks these: refuse it rather than run with its crash-on-overrun receive path
    if (!ctor || typeof ctor.prototype.setsockopt !== 'function' || typeof ctor.prototype.stats !== 'function' || typeof mod.ctScan !== 'function') {
      throw new Error(`${file} is not the patched binding`);
    }
    nativeCtScan = mod.ctScan;
    nativeCtor = ctor;
    return ctor;
  } catch (e) {
    throw ctsError(
      'CTS_ERR_NETLINK_BINDING',
      `cannot load the patched netlink binding ${file}: ${(e as Error).message} (run: node scripts/build-netlink.mjs)`,
      e,
    );
  }
}

function checkInt(name: string, v: number | undefined, min: number, max: number): void {
  if (v !== undefined && !(Number.isInteger(v) && v >= min && v <= max)) {
    throw ctsError('CTS_ERR_NETLINK_OPTION', `${name} must be an integer in [${min}, ${max}], got ${String(v)}`);
  }
}

function netnsPath(netns: string): string {
  if (netns.includes('/')) {
    if (!path.isAbsolute(netns)) throw ctsError('CTS_ERR_NETLINK_OPTION', `netns must be a name or an absolute path, got ${netns}`);
    return netns;
  }
  if (netns === '' || netns === '.' || netns === '..') throw ctsError('CTS_ERR_NETLINK_OPTION', `bad netns name '${netns}'`);
  return `/var/run/netns/${netns}`;
}

const noop = (): void => {};

/**
 * A NETLINK_NETFILTER socket, bound with a kernel-assigned port id. Reads are batched: onData gets one Buffer per
 * recvmmsg() call (readerThread: per run of reads, up to maxPerWakeup datagrams) holding whole datagrams back to back
 * (each padded to 4 bytes), so it parses as one nlmsghdr stream. Nothing on the receive path throws: an overrun calls
 * onOverrun, a socket error or an exception thrown by onData/onOverrun calls onError.
 */
export class NetfilterSocket {
  readonly portId: number;
  /**
   * A read's datagrams. With ctScan, `records` says how many message records the binding wrote into `this.records`
   * for buf (valid during the call; -1 when they did not fit, then walk buf yourself), `skipped` how many bytes of buf
   * it skipped as malformed; without ctScan, records is -1.
   */
  onData: (buf: Buffer, records: number, skipped: number) => void = noop;
  /** ctScan's records (ct-records.ts), one per message, REC_STRIDE words each; room for maxPerWakeup messages. */
  readonly records: Uint32Array | undefined;
  onOverrun: () => void = noop;
  /** The socket delivered data, then stayed empty for settleUs (only with that option). */
  onQuiet: () => void = noop;
  onError: (err: NetlinkError) => void = noop;

  private readonly native: NativeNetlink;
  private closed = false;
  private finalStats: SocketStats | undefined;

  constructor(opts: NetfilterSocketOptions = {}) {
    checkInt('batch', opts.batch, 1, UIO_MAXIOV);
    checkInt('maxPerWakeup', opts.maxPerWakeup, 1, 1 << 20);
    checkInt('slotSize', opts.slotSize, 4096, 1 << 20);
    checkInt('rcvbuf', opts.rcvbuf, 1, 0x7fffffff);
    checkInt('sndbuf', opts.sndbuf, 1, 0x7fffffff);
    checkInt('settleUs', opts.settleUs, 0, 100_000);
    checkInt('readAhead', opts.readAhead, READ_AHEAD_MIN, READ_AHEAD_MAX);
    checkInt('gatherUs', opts.gatherUs, 0, 10_000);
    checkInt('holdUs', opts.holdUs, 0, 100_000);
    for (const g of opts.groups ?? []) checkInt('groups[]', g, 1, 0xffffffff);
    const Native = loadNative();

    const nativeOpts: NativeOptions = {
      batch: opts.batch ?? 64,
      maxPerWakeup: Math.max(opts.maxPerWakeup ?? 1024, opts.batch ?? 64),
      slotSize: opts.slotSize ?? DUMP_SLOT_SIZE,
      kernelOnly: true, // only root can unicast to us, but an event stream has no business with it
      overrunCallback: () => this.deliverOverrun(),
    };
    if (opts.netns !== undefined) nativeOpts.netns = netnsPath(opts.netns);
    if (opts.readerThread === true) nativeOpts.readerThread = true;
    if (opts.readAhead !== undefined) nativeOpts.readAhead = opts.readAhead;
    if (opts.gatherUs !== undefined) nativeOpts.gatherUs = opts.gatherUs;
    if (opts.holdUs !== undefined) nativeOpts.holdUs = opts.holdUs;
    if (opts.ctScan === true) this.records = nativeOpts.ctScan = new Uint32Array(nativeOpts.maxPerWakeup! * REC_STRIDE);
    if (opts.settleUs !== undefined) {
      nativeOpts.settleUs = opts.settleUs;
      nativeOpts.quietCallback = () => this.deliverQuiet();
    }
    let native: NativeNetlink;
    try {
      native = new Native(
        NETLINK_NETFILTER,
        0,
        (buf, _datagrams, records, skipped) => this.deliverData(buf, records ?? -1, skipped ?? 0),
        (err) => this.deliverError(err),
        nativeOpts,
      );
    } catch (e) {
      const where = opts.netns === undefined ? '' : ` in netns ${opts.netns}`;
      throw ctsError('CTS_ERR_NETLINK_SOCKET', `cannot create the netfilter netlink socket${where}: ${(e as Error).message}`, e);
    }
    this.native = native;
    try {
      if (opts.rcvbuf !== undefined) this.setBuffer(SO_RCVBUFFORCE, SO_RCVBUF, opts.rcvbuf);
      if (opts.sndbuf !== undefined) this.setBuffer(SO_SNDBUFFORCE, SO_SNDBUF, opts.sndbuf);
      native.bind(0, 0);
      this.portId = native.address().port;
      for (const g of opts.groups ?? []) native.addMembership(g);
    } catch (e) {
      native.close();
      this.closed = true;
      throw ctsError('CTS_ERR_NETLINK_SOCKET', `cannot set up the netfilter netlink socket: ${(e as Error).message}`, e);
    }
  }

  /** Sends the buffers as ONE datagram (one sendmsg with an iovec per buffer): a batch of whole messages. */
  send(msgs: Buffer | Buffer[]): Promise<void> {
    if (this.closed) return Promise.reject(ctsError('CTS_ERR_NETLINK_CLOSED', 'netlink socket is closed'));
    return new Promise((resolve, reject) => {
      try {
        this.native.send(0, 0, msgs, (err) => (err ? reject(err) : resolve()));
      } catch (e) {
        reject(e);
      }
    });
  }

  joinGroup(group: number): void {
    this.native.addMembership(group);
  }

  leaveGroup(group: number): void {
    this.native.dropMembership(group);
  }

  setSockOpt(level: number, name: number, value: number): void {
    this.native.setsockopt(level, name, value);
  }

  getSockOpt(level: number, name: number): number {
    return this.native.getsockopt(level, name);
  }

  /** Effective SO_RCVBUF (the kernel doubles what was asked for, for bookkeeping overhead). */
  get rcvbuf(): number {
    return this.native.getsockopt(SOL_SOCKET, SO_RCVBUF);
  }

  get stats(): SocketStats {
    if (this.finalStats) return { ...this.finalStats };
    const s = this.native.stats();
    return {
      datagrams: s.datagrams,
      bytes: s.bytes,
      wakeups: s.wakeups,
      batches: s.batches,
      overruns: s.overruns,
      truncated: s.truncated,
      foreign: s.foreign,
      quiets: s.quiets,
    };
  }

  /** Keeps the event loop alive while open (the default). */
  ref(): void {
    if (!this.closed) this.native.ref();
  }

  unref(): void {
    if (!this.closed) this.native.unref();
  }

  close(): void {
    if (this.closed) return;
    this.finalStats = this.stats;
    this.closed = true;
    this.native.close();
  }

  // SO_*BUFFORCE needs CAP_NET_ADMIN; without it the plain option still works up to net.core.[rw]mem_max
  private setBuffer(force: number, plain: number, bytes: number): void {
    try {
      this.native.setsockopt(SOL_SOCKET, force, bytes);
    } catch (e) {
      if ((e as NetlinkError).errno !== EPERM) throw e;
      this.native.setsockopt(SOL_SOCKET, plain, bytes);
    }
  }

  private deliverData(buf: Buffer, records: number, skipped: number): void {
    try {
      this.onData(buf, records, skipped);
    } catch (e) {
      this.handlerThrew('onData', e);
    }
  }

  private deliverOverrun(): void {
    try {
      this.onOverrun();
    } catch (e) {
      this.handlerThrew('onOverrun', e);
    }
  }

  private deliverQuiet(): void {
    try {
      this.onQuiet();
    } catch (e) {
      this.handlerThrew('onQuiet', e);
    }
  }

  private handlerThrew(handler: string, e: unknown): void {
    this.deliverError(ctsError('CTS_ERR_NETLINK_HANDLER', `${handler} threw: ${(e as Error)?.message ?? String(e)}`, e));
  }

  // an exception from onError itself goes to the native guard, i.e. process 'uncaughtException'
  private deliverError(err: NetlinkError): void {
    this.onError(err);
  }
}
