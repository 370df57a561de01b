// An in-process transport pair for tests of the upper layers, with a link that can be cut, restored, made to drop
// frames or hold and reorder them.

import { countReason, type LinkState, type PeerInfo, type Transport, type TransportStats } from './types.js';

export interface MemoryPairOptions {
  /** Node ids of the two ends. Default `['node-a', 'node-b']`. */
  nodeIds?: [string, string];
  /** Bytes in flight per direction above which `send` reports backpressure. Default 65536. */
  highWaterMarkBytes?: number;
  /** How delivery is deferred (frames never arrive inside `send`). Default `setImmediate`. */
  schedule?: (fn: () => void) => { cancel(): void };
}

export type Direction = 'a->b' | 'b->a';

/** What the link does with one frame: deliver it, lose it, or hold it until `releaseHeld()`. */
export type LinkVerdict = 'deliver' | 'drop' | 'hold';

/** Fault injection on the simulated link. Losses here are invisible to the sender, as on a real network. */
export interface MemoryLink {
  /** Cuts the link: both ends see `down`, frames in flight are lost. */
  cut(): void;
  /** Restores a cut link: both ends see `up` if both are started. */
  restore(): void;
  isCut(): boolean;
  /** Loses the next `n` frames sent in `direction` (default both). */
  dropNext(n: number, direction?: Direction): void;
  /** Decides per frame; `undefined` removes the filter. Runs after `dropNext`. */
  setFilter(fn: ((frame: Buffer, direction: Direction) => LinkVerdict) | undefined): void;
  /** Delivers held frames, newest first by default (a reorder), and returns how many. */
  releaseHeld(order?: 'reverse' | 'fifo'): number;
  /** Frames lost by cut/dropNext/filter, and frames currently held. */
  counters(): { lost: number; held: number };
}

interface InFlight {
  frame: Buffer;
}

const defaultSchedule = (fn: () => void): { cancel(): void } => {
  const h = setImmediate(fn);
  return { cancel: () => clearImmediate(h) };
};

class Pipe {
  queue: InFlight[] = [];
  bytes = 0;
  needDrain = false;
  pending?: { cancel(): void };
  held: Buffer[] = [];
}

export class MemoryTransport implements Transport {
  readonly kind = 'memory';
  onFrame: (frame: Buffer, from: PeerInfo) => void = () => {};
  onLink: (peer: PeerInfo, state: LinkState, reason?: string) => void = () => {};
  onDrain: () => void = () => {};

  /** @internal set by createMemoryPair */
  other!: MemoryTransport;
  running = false;
  peerState: LinkState = 'closed';
  private since = Date.now();
  private everUp = false;
  private readonly counters = { bytesIn: 0, bytesOut: 0, framesIn: 0, framesOut: 0, reconnects: 0 };
  private readonly dropped: Record<string, number> = {};
  private readonly refused: Record<string, number> = {};
  /** @internal frames travelling from this end to the other */
  readonly out = new Pipe();

  constructor(
    readonly nodeId: string,
    private readonly net: MemoryNet,
  ) {}

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.everUp = false;
    this.setPeerState('connecting');
    this.net.reevaluate('peer_started');
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.net.discard(this);
    this.net.discard(this.other);
    this.net.reevaluate('peer_closed');
    this.setPeerState('closed', 'stopped');
  }

  send(frame: Buffer): boolean {
    if (!this.running) {
      countReason(this.dropped, 'stopped');
      return false;
    }
    if (this.peerState !== 'up') {
      countReason(this.dropped, 'no_link');
      return false;
    }
    this.counters.framesOut += 1;
    this.counters.bytesOut += frame.length;
    // A copy: the caller may reuse its buffer, as it could after socket.write.
    this.net.transmit(this, Buffer.from(frame));
    if (this.out.bytes > this.net.highWaterMark) {
      this.out.needDrain = true;
      return false;
    }
    return true;
  }

  /** Past the high-water mark, so that the sync layer's hold is exercised by every test over this transport. */
  congested(): boolean {
    return this.out.needDrain;
  }

  stats(): TransportStats {
    return {
      kind: this.kind,
      peers: [
        {
          nodeId: this.other.nodeId,
          state: this.peerState,
          since: this.since,
          ...(this.peerState === 'up' ? { address: `memory:${this.other.nodeId}` } : {}),
          ...this.counters,
          refused: { ...this.refused },
        },
      ],
      refused: {},
      dropped: { ...this.dropped },
    };
  }

  /** @internal */
  setPeerState(next: LinkState, reason?: string): void {
    if (next === this.peerState) return;
    if (next === 'down' && this.peerState === 'connecting') return; // never up yet: still connecting
    this.peerState = next;
    this.since = Date.now();
    if (next === 'up') {
      if (this.everUp) this.counters.reconnects += 1;
      this.everUp = true;
    }
    this.guard(() => this.onLink({ nodeId: this.other.nodeId, address: `memory:${this.other.nodeId}` }, next, reason));
  }

  /** @internal */
  deliver(frame: Buffer): void {
    this.counters.framesIn += 1;
    this.counters.bytesIn += frame.length;
    this.guard(() => this.onFrame(frame, { nodeId: this.other.nodeId, address: `memory:${this.other.nodeId}` }));
  }

  /** @internal */
  drained(): void {
    this.guard(() => this.onDrain());
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch {
      countReason(this.dropped, 'handler_error');
    }
  }
}

class MemoryNet implements MemoryLink {
  cutFlag = false;
  lost = 0;
  dropBudget: Record<Direction, number> = { 'a->b': 0, 'b->a': 0 };
  filter?: (frame: Buffer, direction: Direction) => LinkVerdict;
  a!: MemoryTransport;
  b!: MemoryTransport;

  constructor(
    readonly highWaterMark: number,
    private readonly schedule: (fn: () => void) => { cancel(): void },
  ) {}

  cut(): void {
    this.cutFlag = true;
    this.discard(this.a);
    this.discard(this.b);
    this.reevaluate('link_cut');
  }

  restore(): void {
    this.cutFlag = false;
    this.reevaluate('link_restored');
  }

  isCut(): boolean {
    return this.cutFlag;
  }

  dropNext(n: number, direction?: Direction): void {
    if (!direction || direction === 'a->b') this.dropBudget['a->b'] += n;
    if (!direction || direction === 'b->a') this.dropBudget['b->a'] += n;
  }

  setFilter(fn: ((frame: Buffer, direction: Direction) => LinkVerdict) | undefined): void {
    this.filter = fn;
  }

  releaseHeld(order: 'reverse' | 'fifo' = 'reverse'): number {
    let n = 0;
    for (const from of [this.a, this.b]) {
      const frames = order === 'reverse' ? from.out.held.reverse() : from.out.held;
      from.out.held = [];
      for (const f of frames) {
        this.enqueue(from, f);
        n += 1;
      }
    }
    return n;
  }

  counters(): { lost: number; held: number } {
    return { lost: this.lost, held: this.a.out.held.length + this.b.out.held.length };
  }

  /** Both ends' view of the link follows (both running && not cut). */
  reevaluate(reason: string): void {
    const up = this.a.running && this.b.running && !this.cutFlag;
    for (const t of [this.a, this.b]) {
      if (!t.running) continue;
      t.setPeerState(up ? 'up' : 'down', up ? undefined : reason);
    }
  }

  transmit(from: MemoryTransport, frame: Buffer): void {
    const dir: Direction = from === this.a ? 'a->b' : 'b->a';
    if (this.dropBudget[dir] > 0) {
      this.dropBudget[dir] -= 1;
      this.lost += 1;
      return;
    }
    const verdict = this.filter ? this.filter(frame, dir) : 'deliver';
    if (verdict === 'drop') {
      this.lost += 1;
      return;
    }
    if (verdict === 'hold') {
      from.out.held.push(frame);
      return;
    }
    this.enqueue(from, frame);
  }

  private enqueue(from: MemoryTransport, frame: Buffer): void {
    const pipe = from.out;
    pipe.queue.push({ frame });
    pipe.bytes += frame.length;
    if (!pipe.pending) pipe.pending = this.schedule(() => this.pump(from));
  }

  private pump(from: MemoryTransport): void {
    const pipe = from.out;
    pipe.pending = undefined;
    const to = from.other;
    // Deliver what is in flight now; frames sent from inside onFrame go out on the next turn, like a socket.
    const batch = pipe.queue;
    pipe.queue = [];
    for (const { frame } of batch) {
      pipe.bytes -= frame.length;
      if (!to.running || this.cutFlag) {
        this.lost += 1;
        continue;
      }
      to.deliver(frame);
    }
    if (pipe.needDrain && pipe.bytes <= this.highWaterMark) {
      pipe.needDrain = false;
      if (from.running) from.drained();
    }
  }

  /** Loses what `from` has in flight; a sender waiting for a drain gets it on a later turn, as a socket's close gives it. */
  discard(from: MemoryTransport): void {
    const pipe = from.out;
    this.lost += pipe.queue.length;
    pipe.queue = [];
    pipe.bytes = 0;
    pipe.pending?.cancel();
    pipe.pending = undefined;
    if (pipe.needDrain) this.schedule(() => from.running && from.drained());
    pipe.needDrain = false;
  }
}

/** Two connected in-memory transports and the link between them. Neither is started. */
export function createMemoryPair(opts: MemoryPairOptions = {}): { a: MemoryTransport; b: MemoryTransport; link: MemoryLink } {
  const [idA, idB] = opts.nodeIds ?? ['node-a', 'node-b'];
  const net = new MemoryNet(opts.highWaterMarkBytes ?? 65536, opts.schedule ?? defaultSchedule);
  const a = new MemoryTransport(idA, net);
  const b = new MemoryTransport(idB, net);
  a.other = b;
  b.other = a;
  net.a = a;
  net.b = b;
  return { a, b, link: net };
}
