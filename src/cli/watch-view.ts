// A live view of one kernel table for `ct watch`: events applied as they come, and after an overrun a
// dump-and-diff that emits what the lost events would have said.
import type { Conntrack } from '../kernel/conntrack.js';
import type { EventStream } from '../kernel/events.js';
import type { Flow, FlowEvent } from '../kernel/types.js';

export const viewKey = (f: Flow): string => JSON.stringify([f.family, f.zone ?? 0, f.orig.zone ?? 0, f.reply.zone ?? 0, f.orig]);

export class TableView {
  readonly flows = new Map<string, Flow>();
  resyncs = 0;
  private running?: Promise<void>;
  private again = false;
  /** Keys changed by live events while a dump runs: those events are newer than what the dump may say. */
  private touched?: Set<string>;

  constructor(
    private readonly ct: Conntrack,
    events: EventStream,
    private readonly emit: (ev: FlowEvent) => void,
    private readonly onResync: (changes: number) => void = () => {},
  ) {
    events.onEvent = (ev) => {
      const k = viewKey(ev.flow);
      this.touched?.add(k);
      if (ev.kind === 'destroy') this.flows.delete(k);
      else this.flows.set(k, ev.flow);
      emit(ev);
    };
    events.onOverrun = () => this.resync();
  }

  async start(): Promise<void> {
    for (const f of await this.ct.dump()) this.flows.set(viewKey(f), f);
  }

  /** Schedule a dump-and-diff; an overrun during one schedules one more after it. */
  resync(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.again = false;
    this.running = this.diff()
      .then((n) => this.onResync(n))
      .finally(() => {
        this.running = undefined;
        if (this.again) this.resync();
      });
    this.running.catch(() => {});
  }

  /** Resolves once no resync is running or scheduled. */
  async settled(): Promise<void> {
    while (this.running) await this.running.catch(() => {});
  }

  private async diff(): Promise<number> {
    this.touched = new Set();
    let dumped: Flow[];
    try {
      dumped = await this.ct.dump();
    } catch (err) {
      this.touched = undefined;
      throw err;
    }
    const touched = this.touched;
    this.touched = undefined;
    let changes = 0;
    const seen = new Set<string>();
    for (const f of dumped) {
      const k = viewKey(f);
      seen.add(k);
      if (touched.has(k)) continue;
      const old = this.flows.get(k);
      if (!old || old.status !== f.status || JSON.stringify(old.protoinfo) !== JSON.stringify(f.protoinfo) || old.mark !== f.mark) {
        this.flows.set(k, f);
        this.emit({ kind: old ? 'update' : 'new', flow: f, origin: 'kernel', portId: 0 });
        changes++;
      }
    }
    for (const [k, f] of this.flows) {
      if (seen.has(k) || touched.has(k)) continue;
      this.flows.delete(k);
      this.emit({ kind: 'destroy', flow: f, origin: 'kernel', portId: 0 });
      changes++;
    }
    return changes;
  }
}
