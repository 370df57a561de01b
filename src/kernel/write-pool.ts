// Create requests sent from worker threads, for a commit: the kernel inserts an entry inside our sendmsg, so one
// thread spends about as long in the kernel as in JavaScript. Here the main thread encodes and each worker only
// sends (and counts acks) on its own socket, so the kernel's half runs on other cores.
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { Conntrack, encodeBatches, SeqRange, type Datagram, type Encode } from './conntrack.js';
import { ENOBUFS } from './errno.js';
import { loadNative } from './netlink-socket.js';

const ROLE = 'ctsync-write-pool';

interface Job {
  id: number;
  batches: Datagram[];
}

interface Lane {
  worker: Worker;
  seqs: SeqRange;
  busy: number;
  jobs: Map<number, { resolve(errnos: number[]): void; reject(err: Error): void }>;
}

export class WritePool {
  private nextId = 1;

  private constructor(private readonly lanes: Lane[]) {}

  /**
   * `size` workers with a conntrack socket each in netns (ours when absent). Undefined where threads cannot load
   * this module (run from TypeScript sources, as unit tests do): the caller then writes from its own thread.
   */
  static open(size: number, netns?: string): WritePool | undefined {
    if (!import.meta.url.endsWith('.js')) return undefined;
    // A worker ending with its socket open leaves libuv closing handles whose callbacks live in the binding; if no
    // other thread holds the binding, it is already unloaded then and the process crashes. This thread holds it.
    loadNative();
    const lanes = Array.from({ length: size }, (): Lane => {
      const lane: Lane = { worker: new Worker(new URL(import.meta.url), { workerData: { role: ROLE, netns } }), seqs: new SeqRange(), busy: 0, jobs: new Map() };
      lane.worker.on('message', (m: { id: number; errnos: number[] }) => {
        const job = lane.jobs.get(m.id);
        lane.jobs.delete(m.id);
        lane.busy--;
        job?.resolve(m.errnos);
      });
      const fail = (err: Error) => {
        for (const j of lane.jobs.values()) j.reject(err);
        lane.jobs.clear();
      };
      lane.worker.on('error', fail);
      lane.worker.on('exit', (code) => fail(new Error(`write worker exited (${code})`)));
      return lane;
    });
    return new WritePool(lanes);
  }

  get size(): number {
    return this.lanes.length;
  }

  /**
   * One request per item, encoded here by `encode` (as Conntrack's own requests are) and sent by the least busy
   * worker: the errno per item (0 = done), as Conntrack.write sees them.
   */
  send<T>(items: T[], encode: Encode<T>): Promise<number[]> {
    const lane = this.lanes.reduce((a, b) => (b.busy < a.busy ? b : a));
    const job: Job = { id: this.nextId++, batches: encodeBatches(items, encode, lane.seqs) };
    lane.busy++;
    return new Promise((resolve, reject) => {
      lane.jobs.set(job.id, { resolve, reject });
      lane.worker.postMessage(job);
    });
  }

  /** Lets each worker close its socket and end (a worker torn down with an open socket can crash the process). */
  async close(): Promise<void> {
    await Promise.all(
      this.lanes.map(
        (l) =>
          new Promise<void>((resolve) => {
            l.worker.once('exit', () => resolve());
            l.worker.postMessage('close');
          }),
      ),
    );
  }
}

// The worker's side: one socket, datagrams in, errnos out.
if (!isMainThread && (workerData as { role?: string } | null)?.role === ROLE) {
  const port = parentPort!;
  const ct = new Conntrack({ netns: (workerData as { netns?: string }).netns });
  port.on('message', (m: Job | 'close') => {
    if (m === 'close') {
      ct.close();
      port.close();
      return;
    }
    // structured clone turns each Buffer into a plain Uint8Array: view it as a Buffer again
    const batches = m.batches.map((b) => ({ ...b, datagram: Buffer.from(b.datagram.buffer, b.datagram.byteOffset, b.datagram.byteLength) }));
    const total = batches.reduce((n, b) => n + b.count, 0);
    ct.sendEncoded(batches).then(
      (errnos) => port.postMessage({ id: m.id, errnos }),
      // unanswered, as Conntrack.write reports lost replies
      () => port.postMessage({ id: m.id, errnos: new Array<number>(total).fill(ENOBUFS) }),
    );
  });
}
