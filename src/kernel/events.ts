// The conntrack event stream: NEW/UPDATE/DESTROY (and expectation) events classified from the header, tagged by origin.
import { NetfilterSocket, READ_AHEAD_MAX, READ_AHEAD_MIN, type NetfilterSocketOptions } from './netlink-socket.js';
import { forEachMessage, NLM_F_CREATE, NLM_F_EXCL, NfnlSubsys, CtMsg, ExpMsg } from './nfnetlink.js';
import { decodeFlow, DecodeError, newPlainFlow, scanPlainFlow, type PlainFlow } from './flow-codec.js';
import { plainFromRecord, Rec, REC_STRIDE } from './ct-records.js';
import { decodeExpectation } from './expect-codec.js';
import type { EventKind, ExpectationEvent, FlowEvent } from './types.js';

/** NFNLGRP_* multicast groups. */
export const enum NfnlGroup {
  ConntrackNew = 1,
  ConntrackUpdate = 2,
  ConntrackDestroy = 3,
  ExpNew = 4,
  ExpUpdate = 5,
  ExpDestroy = 6,
}

export interface EventStreamOptions extends Omit<NetfilterSocketOptions, 'groups'> {
  /** Which events to receive (default: all conntrack events, no expectation events). */
  groups?: NfnlGroup[];
  /**
   * The caller's key of a flow, from the message's attribute bytes (FlowEvent.key): only the receive buffer has
   * them, and building the key from them skips a text round trip. The key is the state layer's: it passes this in.
   */
  keyOf?: (buf: Buffer, off: number, end: number, family: number) => string | undefined;
  /** keyOf for a message scanPlainFlow accepted, from what the scan found (needed for the onPlainNew path). */
  keyOfPlain?: (buf: Buffer, flow: PlainFlow) => string;
}

export interface EventStats {
  new: number;
  update: number;
  destroy: number;
  expectations: number;
  ours: number;
  malformed: number;
  overruns: number;
}

/** A socket of 16 MiB holds ~13k TCP events (skb truesize ~1280 B): 100+ ms of the kernel's top rate. */
export const DEFAULT_EVENT_RCVBUF = 16 << 20;

export class EventStream {
  readonly sock: NetfilterSocket;
  /** Netlink port ids of our own writers: events they caused are tagged 'ours'. */
  readonly ourPorts = new Set<number>();
  readonly stats: EventStats = { new: 0, update: 0, destroy: 0, expectations: 0, ours: 0, malformed: 0, overruns: 0 };
  onEvent: (ev: FlowEvent) => void = () => {};
  onExpectation: (ev: ExpectationEvent) => void = () => {};
  /** Events were lost: the caller must dump and diff to restore an exact view. */
  onOverrun: () => void = () => {};
  /** Events came, then none for settleUs (only with that option): a burst ended. */
  onQuiet: () => void = () => {};
  /**
   * Optional fast path for NEW events of the plain form (scanPlainFlow: no NAT, no helper, labels or unknown
   * attributes), used only with the keyOfPlain option: offered the fields read in place before any Flow is built.
   * Returning true takes the event (it is counted, and onEvent is not called); false hands it to the ordinary decode
   * and onEvent.
   * `buf` and the offsets in `flow` are valid only during the call.
   */
  onPlainNew?: (key: string, flow: PlainFlow, buf: Buffer) => boolean;
  private readonly plain = newPlainFlow();

  private readonly keyOf?: EventStreamOptions['keyOf'];
  private readonly keyOfPlain?: EventStreamOptions['keyOfPlain'];

  constructor(opts: EventStreamOptions = {}) {
    this.keyOf = opts.keyOf;
    this.keyOfPlain = opts.keyOfPlain;
    this.groups = opts.groups ?? [NfnlGroup.ConntrackNew, NfnlGroup.ConntrackUpdate, NfnlGroup.ConntrackDestroy];
    const { keyOf: _keyOf, keyOfPlain: _keyOfPlain, ...sockOpts } = opts;
    // the binding's reader thread takes the kernel's copy-out off the JS thread; it may read ahead as many bytes of
    // events as the kernel buffer holds (which, counted by skb truesize, is several times fewer events), clamped to
    // the binding's bounds so that every kernel.eventBuffer the config accepts starts the socket
    const rcvbuf = sockOpts.rcvbuf ?? DEFAULT_EVENT_RCVBUF;
    const readAhead = Math.min(Math.max(rcvbuf, READ_AHEAD_MIN), READ_AHEAD_MAX);
    this.sock = new NetfilterSocket({ readerThread: true, readAhead, ctScan: true, ...sockOpts, rcvbuf, groups: this.groups });
    this.records = this.sock.records;
    this.sock.onData = (buf, records, skipped) => this.receive(buf, records, skipped);
    this.sock.onQuiet = () => this.onQuiet();
    this.sock.onOverrun = () => {
      this.stats.overruns++;
      this.onOverrun();
    };
  }

  private readonly groups: NfnlGroup[];
  private paused = false;
  /** The binding's message records (ctScan). */
  private readonly records: Uint32Array | undefined;

  /**
   * Stop receiving events (leave the groups). With no listener the kernel builds no events at all, which makes
   * our own mass writes (a commit) several times faster; whatever happens meanwhile is lost, so the caller must
   * dump-and-diff after resume().
   */
  pause(): void {
    if (this.paused) return;
    this.paused = true;
    for (const g of this.groups) this.sock.leaveGroup(g);
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    for (const g of this.groups) this.sock.joinGroup(g);
  }

  close(): void {
    this.sock.close();
  }

  /** A read's messages: from the binding's records when it scanned them, else walked here. */
  private receive(buf: Buffer, records: number, skipped: number): void {
    const u = this.records;
    if (records < 0 || u === undefined) {
      this.stats.malformed += forEachMessage(buf, (m) => this.message(buf, m.type, m.flags, m.pid, m.family, m.payloadOff, m.end, -1));
      return;
    }
    this.stats.malformed += skipped;
    for (let r = 0, end = records * REC_STRIDE; r < end; r += REC_STRIDE) {
      this.message(buf, u[r + Rec.Type]!, u[r + Rec.Flags]!, u[r + Rec.Pid]!, u[r + Rec.Family]!, u[r + Rec.Payload]!, u[r + Rec.End]!, r);
    }
  }

  /** One message; rec = its record's first word in `records`, or -1 (no record: scan the bytes). */
  private message(
    buf: Buffer, type: number, flags: number, pid: number, family: number, payloadOff: number, end: number, rec: number,
  ): void {
    const subsys = type >> 8;
    const msg = type & 0xff;
    // our own writes' echoes are counted, not decoded: a commit of 1M entries echoes 1M events nobody reads
    if (pid !== 0 && this.ourPorts.has(pid)) {
      this.stats.ours++;
      return;
    }
    const origin = 'kernel';
    // a NEW-type message is a new entry only with CREATE|EXCL; without them the kernel reports an update
    const kind: EventKind | undefined =
      msg === CtMsg.New ? ((flags & (NLM_F_CREATE | NLM_F_EXCL)) !== 0 ? 'new' : 'update') : msg === CtMsg.Delete ? 'destroy' : undefined;
    if (kind === undefined) {
      this.stats.malformed++;
      return;
    }
    if (subsys === NfnlSubsys.Ctnetlink) {
      // the plain form's key comes from its scan; anything else walks the attributes for it
      const plain =
        kind === 'new' &&
        this.onPlainNew !== undefined &&
        this.keyOfPlain !== undefined &&
        (rec >= 0 ? plainFromRecord(this.records!, rec, family, this.plain) : scanPlainFlow(buf, payloadOff, end, family, this.plain));
      const key = plain ? this.keyOfPlain!(buf, this.plain) : this.keyOf?.(buf, payloadOff, end, family);
      if (plain && this.onPlainNew!(key!, this.plain, buf)) {
        this.stats.new++;
        return;
      }
      const flow = decodeFlow(buf, payloadOff, end, family);
      if (flow instanceof DecodeError) {
        this.stats.malformed++;
        return;
      }
      this.stats[kind]++;
      this.onEvent({ kind, flow, origin, portId: pid, key });
    } else if (subsys === NfnlSubsys.CtnetlinkExp && (msg === ExpMsg.New || msg === ExpMsg.Delete)) {
      const exp = decodeExpectation(buf, payloadOff, end, family);
      if (exp instanceof DecodeError) {
        this.stats.malformed++;
        return;
      }
      this.stats.expectations++;
      this.onExpectation({ kind, exp, origin, portId: pid });
    } else {
      this.stats.malformed++;
    }
  }
}
