// The conntrack table as a service: dump, batched create/update/delete/upsert with a result per entry, flush.
import { NetfilterSocket, type NetfilterSocketOptions } from './netlink-socket.js';
import { AttrWriter } from './nla.js';
import {
  forEachMessage,
  decodeNlError,
  NLMSG_ERROR,
  NLMSG_DONE,
  NLM_F_REQUEST,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NfnlSubsys,
  CtMsg,
  ExpMsg,
  type NlMsgView,
} from './nfnetlink.js';
import { decodeFlow, encodeFlow, encodeTuple, DecodeError } from './flow-codec.js';
import { decodeExpectation, encodeExpectation } from './expect-codec.js';
import { prepareCreate, prepareUpdate, type WritePolicy, DEFAULT_WRITE_POLICY } from './write-rules.js';
import { EEXIST, ENOENT, ENOBUFS, EINTR, KernelError, errnoName } from './errno.js';
import type { Flow, Expectation } from './types.js';

const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10; // acks without the echoed request: 4x less receive buffer per ack
const NETLINK_EXT_ACK = 11;
const CTA_TUPLE_ORIG = 1;
const CTA_TUPLE_REPLY = 2;
const CTA_MARK = 8;
const CTA_ZONE = 18;
const CTA_MARK_MASK = 21;
const AF_UNSPEC = 0;

/** Messages per sendmsg; the kernel handles them in one pass, the acks fit a 16 MiB buffer many times over. */
const BATCH = 256;
/** Batches in flight before we wait for acks: bounds the acks queued in our receive buffer. */
const WINDOW = 8;
const DUMP_RETRIES = 5;

export interface DumpFilter {
  family?: number; // Af; all families when absent
  zone?: number;
  mark?: number;
  markMask?: number;
}

/** A dump line's conntrack message, attributes at [off, end) of buf (valid only during the call); true = taken. */
export type RawLine = (buf: Buffer, off: number, end: number, family: number) => boolean;

export type WriteOpKind = 'create' | 'update' | 'delete' | 'upsert' | 'replace';
export interface WriteOp {
  op: WriteOpKind;
  flow: Flow;
}
export type Outcome = 'created' | 'updated' | 'replaced' | 'deleted' | 'absent' | 'failed';
export interface WriteResult {
  outcome: Outcome;
  errno?: number; // for 'failed'
}
export interface WriteReport {
  results: WriteResult[];
  counts: Record<Outcome, number>;
  failedByErrno: Record<string, number>;
  durationMs: number;
}

interface Pending {
  onMessage(buf: Buffer, m: NlMsgView): void;
  onDone(errno: number): void;
}

export interface ConntrackStats {
  requests: number;
  malformed: number;
  overruns: number;
}

/** A command socket on one network namespace's conntrack table. */
export class Conntrack {
  readonly sock: NetfilterSocket;
  private readonly seqs = new SeqRange();
  private readonly pending = new Map<number, Pending>();
  readonly stats: ConntrackStats = { requests: 0, malformed: 0, overruns: 0 };

  constructor(opts: NetfilterSocketOptions = {}) {
    this.sock = new NetfilterSocket({ rcvbuf: 16 << 20, sndbuf: 4 << 20, ...opts, groups: [] });
    try {
      this.sock.setSockOpt(SOL_NETLINK, NETLINK_CAP_ACK, 1);
      this.sock.setSockOpt(SOL_NETLINK, NETLINK_EXT_ACK, 1);
    } catch {
      // older kernels: acks just get bigger
    }
    this.sock.onData = (buf) => this.receive(buf);
    this.sock.onOverrun = () => this.overrun();
  }

  /** Our netlink port id: the kernel stamps it on the events our writes cause. */
  get portId(): number {
    return this.sock.portId;
  }

  close(): void {
    for (const p of this.pending.values()) p.onDone(EINTR);
    this.pending.clear();
    this.sock.close();
  }

  private receive(buf: Buffer): void {
    this.stats.malformed += forEachMessage(buf, (m) => {
      const p = this.pending.get(m.seq);
      if (!p) return;
      if (m.type === NLMSG_ERROR) {
        this.pending.delete(m.seq);
        p.onDone(decodeNlError(buf, m).errno);
      } else if (m.type === NLMSG_DONE) {
        this.pending.delete(m.seq);
        p.onDone(0);
      } else {
        p.onMessage(buf, m);
      }
    });
  }

  /** Replies were dropped: no pending request can be trusted to complete, so fail them all (callers retry). */
  private overrun(): void {
    this.stats.overruns++;
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.onDone(ENOBUFS);
  }

  private nextSeq(): number {
    return this.seqs.take(1);
  }

  /** Dump the table; retried when the kernel reports the dump was interrupted by a concurrent change of the hash. */
  async dump(filter: DumpFilter = {}): Promise<Flow[]> {
    let flows: Flow[] = [];
    await this.dumpEach((f) => flows.push(f), filter, () => (flows = []));
    return flows;
  }

  /**
   * Stream the table to `onFlow` without holding it (a dump of 1M entries as objects would take ~800 MB).
   * On an interrupted dump the whole dump is repeated: `onRestart` tells the consumer to forget what it saw.
   * `onLine`, if given (and no zone is filtered), sees each line's message first, undecoded: a line it takes
   * (returns true for) never reaches onFlow, and costs no Flow.
   */
  async dumpEach(onFlow: (f: Flow) => void, filter: DumpFilter = {}, onRestart?: () => void, onLine?: RawLine): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.dumpOnce(filter, onFlow, filter.zone === undefined ? onLine : undefined);
      } catch (err) {
        const errno = (err as KernelError).errno;
        if (attempt >= DUMP_RETRIES || (errno !== EINTR && errno !== ENOBUFS)) throw err;
        onRestart?.();
      }
    }
  }

  private dumpOnce(filter: DumpFilter, onFlow: (f: Flow) => void, onLine: RawLine | undefined): Promise<void> {
    const w = new AttrWriter();
    const seq = this.nextSeq();
    w.beginMessage((NfnlSubsys.Ctnetlink << 8) | CtMsg.Get, NLM_F_REQUEST | NLM_F_DUMP, seq, filter.family ?? AF_UNSPEC);
    if (filter.mark !== undefined) {
      w.u32be(CTA_MARK, filter.mark);
      w.u32be(CTA_MARK_MASK, filter.markMask ?? 0xffffffff);
    }
    w.endMessage();
    let interrupted = false;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, {
        onMessage: (buf, m) => {
          if (m.flags & NLM_F_DUMP_INTR) interrupted = true;
          if (onLine !== undefined && onLine(buf, m.payloadOff, m.end, m.family)) return;
          const f = decodeFlow(buf, m.payloadOff, m.end, m.family);
          if (f instanceof DecodeError) {
            this.stats.malformed++;
            return;
          }
          if (filter.zone !== undefined && (f.zone ?? 0) !== filter.zone) return;
          onFlow(f);
        },
        onDone: (errno) => {
          if (errno) reject(new KernelError(errno, 'conntrack dump'));
          else if (interrupted) reject(new KernelError(EINTR, 'conntrack dump'));
          else resolve();
        },
      });
      this.stats.requests++;
      this.sock.send(w.finish()).catch((err) => {
        this.pending.delete(seq);
        reject(err);
      });
    });
  }

  async dumpExpectations(family = AF_UNSPEC): Promise<Expectation[]> {
    const w = new AttrWriter();
    const seq = this.nextSeq();
    w.beginMessage((NfnlSubsys.CtnetlinkExp << 8) | ExpMsg.Get, NLM_F_REQUEST | NLM_F_DUMP, seq, family);
    w.endMessage();
    const out: Expectation[] = [];
    await new Promise<void>((resolve, reject) => {
      this.pending.set(seq, {
        onMessage: (buf, m) => {
          const e = decodeExpectation(buf, m.payloadOff, m.end, m.family);
          if (e instanceof DecodeError) this.stats.malformed++;
          else out.push(e);
        },
        onDone: (errno) => (errno ? reject(new KernelError(errno, 'expectation dump')) : resolve()),
      });
      this.sock.send(w.finish()).catch(reject);
    });
    return out;
  }

  /**
   * Send one message per item, BATCH per sendmsg, and resolve with the errno per item (0 = done).
   * Only the last message of a batch asks for an ack: the kernel handles a datagram's messages in order and
   * answers failures even without NLM_F_ACK, so when that ack arrives every message before it without an
   * error has succeeded. That halves the kernel's work and our receive buffer use compared to an ack each.
   */
  private roundTrip<T>(items: T[], build: Encode<T>): Promise<number[]> {
    return this.sendAll(datagrams(items, build, this.seqs), items.length);
  }

  /** Sends datagrams built elsewhere (encodeBatches, in another thread) with the same ack barrier and window. */
  sendEncoded(batches: Datagram[]): Promise<number[]> {
    const last = batches.at(-1);
    return this.sendAll(batches, last ? last.at + last.count : 0);
  }

  /** WINDOW datagrams in flight at most; resolves with the errno of each of the `total` messages. */
  private async sendAll(batches: Iterable<Datagram>, total: number): Promise<number[]> {
    const errnos = new Array<number>(total).fill(ENOBUFS);
    const inflight: Promise<void>[] = [];
    for (const b of batches) {
      inflight.push(this.sendBatch(b.datagram, b.seq0, b.count, errnos, b.at));
      if (inflight.length >= WINDOW) await inflight.shift();
    }
    await Promise.all(inflight);
    return errnos;
  }

  /** One datagram of `count` messages numbered seq0 onwards; their errnos land in errnos[at..]. */
  private sendBatch(datagram: Buffer, seq0: number, count: number, errnos: number[], at: number): Promise<void> {
    const last = seq0 + count - 1;
    const done = new Promise<void>((resolve) => {
      for (let seq = seq0; seq < last; seq++) this.pending.set(seq, { onMessage: () => {}, onDone: (errno) => (errnos[at + seq - seq0] = errno) });
      this.pending.set(last, {
        onMessage: () => {},
        onDone: (errno) => {
          errnos[at + count - 1] = errno;
          // the barrier: whatever has not failed by now succeeded, unless the replies were lost
          for (let seq = seq0; seq < last; seq++) if (this.pending.delete(seq)) errnos[at + seq - seq0] = errno === ENOBUFS ? ENOBUFS : 0;
          resolve();
        },
      });
    });
    this.stats.requests += count;
    this.sock.send(datagram).catch((err) => {
      // the whole datagram was refused: every message of it fails with the send error
      const errno = Math.abs((err as { errno?: number }).errno ?? ENOBUFS);
      for (let seq = seq0; seq <= last; seq++) {
        const p = this.pending.get(seq);
        this.pending.delete(seq);
        p?.onDone(errno);
      }
    });
    return done;
  }

  private msg(w: AttrWriter, type: number, flags: number, seq: number, flow: Flow): void {
    w.beginMessage((NfnlSubsys.Ctnetlink << 8) | type, NLM_F_REQUEST | flags, seq, flow.family);
  }

  private sendCreates(flows: Flow[], policy: WritePolicy): Promise<number[]> {
    return this.roundTrip(flows, (w, f, seq, ack) => encodeCreate(w, f, policy, seq, ack));
  }

  private sendUpdates(flows: Flow[], policy: WritePolicy): Promise<number[]> {
    return this.roundTrip(flows, (w, f, seq, ack) => {
      this.msg(w, CtMsg.New, ack, seq, f);
      encodeFlow(w, prepareUpdate(f, policy));
      w.endMessage();
    });
  }

  /** Delete by one tuple (the original, or the reply: a stray entry can clash on either). */
  private sendDeletes(flows: Flow[], by: 'orig' | 'reply' = 'orig'): Promise<number[]> {
    return this.roundTrip(flows, (w, f, seq, ack) => {
      this.msg(w, CtMsg.Delete, ack, seq, f);
      if (by === 'orig') encodeTuple(w, CTA_TUPLE_ORIG, f.orig, f.family);
      else encodeTuple(w, CTA_TUPLE_REPLY, f.reply, f.family);
      if (f.zone !== undefined) w.u16be(CTA_ZONE, f.zone);
      w.endMessage();
    });
  }

  /**
   * Apply many writes with a result per entry. Masters go before related flows (the kernel needs the master
   * first). Upsert: create → EEXIST → update → refused → replace. Replace: create → EEXIST → delete both
   * tuples → create. Delete: ENOENT counts as 'absent'.
   */
  async write(ops: WriteOp[], policy: WritePolicy = DEFAULT_WRITE_POLICY): Promise<WriteReport> {
    const t0 = performance.now();
    const results = new Array<WriteResult>(ops.length);
    const masters: number[] = [];
    const related: number[] = [];
    ops.forEach((o, i) => (o.flow.master && o.op !== 'delete' ? related : masters).push(i));
    for (const group of [masters, related]) if (group.length) await this.writeGroup(ops, group, policy, results);
    return writeReport(results, performance.now() - t0);
  }

  private async writeGroup(ops: WriteOp[], idx: number[], policy: WritePolicy, results: WriteResult[]): Promise<void> {
    const of = (kind: WriteOpKind[]) => idx.filter((i) => kind.includes(ops[i].op));
    const flows = (list: number[]) => list.map((i) => ops[i].flow);
    const fail = (i: number, errno: number) => (results[i] = { outcome: 'failed', errno });

    const dels = of(['delete']);
    (await this.sendDeletes(flows(dels))).forEach((e, k) =>
      e === 0 ? (results[dels[k]] = { outcome: 'deleted' }) : e === ENOENT ? (results[dels[k]] = { outcome: 'absent' }) : fail(dels[k], e),
    );

    const upd = of(['update']);
    (await this.sendUpdates(flows(upd), policy)).forEach((e, k) => (e === 0 ? (results[upd[k]] = { outcome: 'updated' }) : fail(upd[k], e)));

    const creates = of(['create', 'upsert', 'replace']);
    const exist: number[] = [];
    (await this.sendCreates(flows(creates), policy)).forEach((e, k) => {
      const i = creates[k];
      if (e === 0) results[i] = { outcome: 'created' };
      else if (e === EEXIST && ops[i].op !== 'create') exist.push(i);
      else fail(i, e);
    });

    // upsert: an existing entry is updated in place when the kernel allows it
    const toUpdate = exist.filter((i) => ops[i].op === 'upsert');
    const toReplace = exist.filter((i) => ops[i].op === 'replace');
    (await this.sendUpdates(flows(toUpdate), policy)).forEach((e, k) => {
      if (e === 0) results[toUpdate[k]] = { outcome: 'updated' };
      else toReplace.push(toUpdate[k]);
    });
    if (!toReplace.length) return;
    // replace: the clash may be on either tuple (a stray NAT'd entry), so delete by both, then create
    await this.sendDeletes(flows(toReplace), 'orig');
    await this.sendDeletes(flows(toReplace), 'reply');
    (await this.sendCreates(flows(toReplace), policy)).forEach((e, k) =>
      e === 0 ? (results[toReplace[k]] = { outcome: 'replaced' }) : fail(toReplace[k], e),
    );
  }

  /** Create expectations (their masters must exist). */
  async writeExpectations(exps: Expectation[]): Promise<number[]> {
    return this.roundTrip(exps, (w, e, seq, ack) => {
      w.beginMessage((NfnlSubsys.CtnetlinkExp << 8) | ExpMsg.New, NLM_F_REQUEST | ack | NLM_F_CREATE | NLM_F_EXCL, seq, e.family);
      encodeExpectation(w, e);
      w.endMessage();
    });
  }

  /** Empty the table (one family, or all). */
  async flush(family = AF_UNSPEC): Promise<void> {
    const [errno] = await this.roundTrip([family], (w, fam, seq, ack) => {
      w.beginMessage((NfnlSubsys.Ctnetlink << 8) | CtMsg.Delete, NLM_F_REQUEST | ack, seq, fam);
      w.endMessage();
    });
    if (errno) throw new KernelError(errno, 'conntrack flush');
  }
}

/** One create request (CT_NEW, CREATE|EXCL) for f, as the kernel's write rules want it. */
export function encodeCreate(w: AttrWriter, f: Flow, policy: WritePolicy, seq: number, ackFlag: number): void {
  w.beginMessage((NfnlSubsys.Ctnetlink << 8) | CtMsg.New, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | ackFlag, seq, f.family);
  encodeFlow(w, prepareCreate(f, policy));
  w.endMessage();
}

/** Writes one whole request for item, numbered seq; ackFlag is NLM_F_ACK for a datagram's last message only. */
export type Encode<T> = (w: AttrWriter, item: T, seq: number, ackFlag: number) => void;

/** One sendmsg: `count` messages numbered from seq0, for items at..at+count of the caller's list. */
export interface Datagram {
  datagram: Buffer;
  seq0: number;
  count: number;
  at: number;
}

/** Sequence numbers handed out in runs: never 0, never wrapping inside a run. */
export class SeqRange {
  private seq = Math.floor(Math.random() * 0x3fffffff);

  /** n consecutive numbers; returns the first. */
  take(n: number): number {
    if (this.seq + n > 0xffffffff) this.seq = 0;
    const first = this.seq + 1;
    this.seq += n;
    return first;
  }
}

/** The items' requests, BATCH per datagram, encoded lazily (a writer in its window holds only WINDOW of them). */
function* datagrams<T>(items: T[], encode: Encode<T>, seqs: SeqRange): Generator<Datagram> {
  for (let start = 0; start < items.length; start += BATCH) {
    const end = Math.min(items.length, start + BATCH);
    const w = new AttrWriter(256 * (end - start));
    const seq0 = seqs.take(end - start);
    for (let i = start; i < end; i++) encode(w, items[i]!, seq0 + i - start, i === end - 1 ? NLM_F_ACK : 0);
    yield { datagram: w.finish(), seq0, count: end - start, at: start };
  }
}

/** All of the items' datagrams at once, for Conntrack.sendEncoded in another thread. */
export function encodeBatches<T>(items: T[], encode: Encode<T>, seqs: SeqRange): Datagram[] {
  return [...datagrams(items, encode, seqs)];
}

/** Counts by outcome and failures by errno name, as write() reports them. */
export function writeReport(results: WriteResult[], durationMs: number): WriteReport {
  const counts: Record<Outcome, number> = { created: 0, updated: 0, replaced: 0, deleted: 0, absent: 0, failed: 0 };
  const failedByErrno: Record<string, number> = {};
  for (const r of results) {
    counts[r.outcome]++;
    if (r.outcome === 'failed') {
      const name = errnoName(r.errno ?? 0);
      failedByErrno[name] = (failedByErrno[name] ?? 0) + 1;
    }
  }
  return { results, counts, failedByErrno, durationMs };
}
