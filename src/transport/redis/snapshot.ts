// Owns the writer's side of the snapshot: reads this node's own outgoing frames (decodeFrame) and turns each into
// the hash operations that keep `{…}:snap` equal to the table those frames describe, plus the meta fields.
//
// One field per flow: the encoded FlowKey (canonical: the same bytes for an Upsert's entry and a Delete's key).
// One value per flow: a single-entry authoritative Upsert frame, MAC'd with the cluster key when one is set, so a
// reader verifies each value end to end like any frame. A full bulk (BulkBegin{full} … BulkEnd) also removes
// the fields it did not list, as a receiver's table does; that needs the set of fields this incarnation wrote.
// A Refresh frame (remaining timeouts re-read from the kernel) becomes a read-modify-write the writer runs once what
// precedes it is in Redis: read the flows' values, re-encode each with the new timeout (withTimeout), write them back.

import { decodeFrame, encodeFrame, type MacKey } from '../../wire/envelope.js';
import { keyFromWire, keyToWire } from '../../wire/entry.js';
import { FlowKey as FlowKeyMessage, type pb } from '../../wire/proto.js';

export interface SnapshotOps {
  set: Buffer[]; // field, value, field, value …
  del: Buffer[];
  /** Timeout refreshes of flows in the snapshot: fields[i] gets timeouts[i] (seconds) in its stored value. */
  refresh?: { fields: Buffer[]; timeouts: number[] };
  /** A full bulk ended: the snapshot is complete again. */
  complete: boolean;
}

const NO_OPS: SnapshotOps = { set: [], del: [], complete: false };
const UNLIMITED = { maxFrameBytes: Number.MAX_SAFE_INTEGER };

export class SnapshotTracker {
  /** Sync session and last sequenced seq seen in our frames (meta s / q). */
  session = 0;
  seq = 0;
  /** Frames that are not ctsync frames (tests, a foreign upper layer): carried, not snapshotted. */
  skipped = 0;
  private readonly fields = new Set<string>();
  private sweep?: { bulkId: number; touched: Set<string> };

  constructor(
    private readonly clusterId: string,
    private readonly nodeId: string,
    private readonly macKey: MacKey | undefined,
  ) {}

  get size(): number {
    return this.fields.size;
  }

  /** Forget everything (the snapshot was deleted). */
  reset(): void {
    this.fields.clear();
    this.sweep = undefined;
  }

  track(frame: Buffer): SnapshotOps {
    const r = decodeFrame(frame, UNLIMITED, { clusterId: this.clusterId });
    if (!r.ok || r.env.nodeId !== this.nodeId) {
      this.skipped++;
      return NO_OPS;
    }
    const env = r.env;
    if (env.seq) this.seq = Number(env.seq);
    switch (env.body) {
      case 'hello':
        this.session = Number(env.hello!.session ?? 0);
        return NO_OPS;
      case 'upsert': {
        const set: Buffer[] = [];
        for (const e of env.upsert!.entries ?? []) {
          const field = fieldOf(e);
          if (!field) continue;
          const s = field.toString('latin1');
          this.fields.add(s);
          this.sweep?.touched.add(s);
          set.push(field, this.value(e));
        }
        return { set, del: [], complete: false };
      }
      case 'delete': {
        const del: Buffer[] = [];
        for (const k of env.delete!.keys ?? []) {
          const field = fieldOf(k);
          if (!field) continue;
          const s = field.toString('latin1');
          this.fields.delete(s);
          this.sweep?.touched.delete(s);
          del.push(field);
        }
        return { set: [], del, complete: false };
      }
      case 'refresh': {
        const fields: Buffer[] = [];
        const timeouts: number[] = [];
        for (const it of env.refresh!.items ?? []) {
          const field = fieldOf(it);
          if (!field || !this.fields.has(field.toString('latin1'))) continue;
          fields.push(field);
          timeouts.push(it.timeout ?? 0);
        }
        return fields.length ? { set: [], del: [], refresh: { fields, timeouts }, complete: false } : NO_OPS;
      }
      case 'bulkBegin':
        if (env.bulkBegin!.full) this.sweep = { bulkId: Number(env.bulkBegin!.bulkId ?? 0), touched: new Set() };
        return NO_OPS;
      case 'bulkEnd': {
        const sw = this.sweep;
        if (!sw || sw.bulkId !== Number(env.bulkEnd!.bulkId ?? 0)) return NO_OPS;
        this.sweep = undefined;
        const del: Buffer[] = [];
        for (const s of this.fields) {
          if (sw.touched.has(s)) continue;
          this.fields.delete(s);
          del.push(Buffer.from(s, 'latin1'));
        }
        return { set: [], del, complete: true };
      }
      default:
        return NO_OPS;
    }
  }

  /** A stored value with the flow's remaining timeout replaced; undefined when it is not one of ours. */
  withTimeout(value: Buffer, timeout: number): Buffer | undefined {
    const r = decodeFrame(value, UNLIMITED, { clusterId: this.clusterId, macKey: this.macKey });
    const e = r.ok && r.env.nodeId === this.nodeId ? r.env.upsert?.entries?.[0] : undefined;
    if (!e) return undefined;
    e.timeout = timeout;
    return this.value(e);
  }

  /** The value stored for one flow: a single-entry authoritative Upsert frame, MAC'd like any frame. */
  private value(e: pb.IEntry): Buffer {
    return encodeFrame({ clusterId: this.clusterId, nodeId: this.nodeId, upsert: { entries: [e], authoritative: true } }, { macKey: this.macKey });
  }
}

/** The canonical field of a flow: its FlowKey re-encoded from the key fields (an Entry's fields 1-5 are a FlowKey). */
function fieldOf(k: pb.IFlowKey | pb.IRefreshItem): Buffer | undefined {
  const d = keyFromWire(k);
  if (!d.ok) return undefined;
  return Buffer.from(FlowKeyMessage.encode(keyToWire(d.value)).finish());
}
