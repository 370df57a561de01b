import { describe, expect, it } from 'vitest';
import type { Flow, FlowEvent } from '../../../src/kernel/types.js';
import { FakeClock } from '../../../src/state/clock.js';
import { flowKey } from '../../../src/state/key.js';
import { DIRTY_STATE, DIRTY_TIMEOUT, LocalTable, rebornOf, type LocalChange } from '../../../src/state/local-table.js';
import { natUdpFlow, tcpFlow, withTcp } from './flows.js';

const ev = (kind: FlowEvent['kind'], flow: Flow, origin: FlowEvent['origin'] = 'kernel'): FlowEvent => ({
  kind,
  flow,
  origin,
  portId: origin === 'ours' ? 1234 : 0,
});

function table(): { t: LocalTable; clock: FakeClock } {
  const clock = new FakeClock(1000);
  return { t: new LocalTable({ clock }), clock };
}

describe('rebornOf', () => {
  it('sends new incarnations as reborn, other changes plainly, and nothing for what the replicas do not need', () => {
    const all: LocalChange[] = ['added', 'replaced', 'changed', 'refreshed', 'unchanged', 'removed', 'unknown', 'ignored'];
    expect(all.map(rebornOf)).toEqual([true, true, false, undefined, undefined, false, undefined, undefined]);
  });
});

describe('LocalTable events', () => {
  it('adds on NEW, removes on DESTROY, and hands out increasing versions', () => {
    const { t } = table();
    const a = t.applyEvent(ev('new', tcpFlow(1)));
    expect(a).toEqual({ change: 'added', key: flowKey(tcpFlow(1)), version: 1, slot: t.table.slotOf(flowKey(tcpFlow(1))) });
    expect(a.slot).toBeGreaterThanOrEqual(0);
    expect(t.get(a.key)).toEqual(tcpFlow(1));
    const d = t.applyEvent(ev('destroy', tcpFlow(1)));
    expect(d.change).toBe('removed');
    expect(d.version).toBe(2);
    expect(d.slot).toBe(-1);
    expect(t.size).toBe(0);
    expect(t.applyEvent(ev('destroy', tcpFlow(1))).change).toBe('unknown');
    expect(t.counters.destroyUnknown).toBe(1);
  });

  it('ignores the echo of our own writes', () => {
    const { t } = table();
    expect(t.applyEvent(ev('new', tcpFlow(1), 'ours')).change).toBe('ignored');
    expect(t.size).toBe(0);
    expect(t.counters.ignoredOurs).toBe(1);
  });

  it('classifies updates: state changes need a send, timeout-only changes do not', () => {
    const { t } = table();
    const f = tcpFlow(1, { mark: 3, labels: Buffer.alloc(16, 1), helper: 'ftp' });
    const { key } = t.applyEvent(ev('new', f));
    t.takeDirty(key);
    // An update event without protoinfo, mark, labels or helper means "unchanged", not "cleared".
    const partial: Flow = { family: 2, orig: f.orig, reply: f.reply, status: f.status, timeout: 100, id: f.id };
    const r1 = t.applyEvent(ev('update', partial));
    expect(r1.change).toBe('refreshed');
    expect(r1.version).toBe(1);
    expect(t.get(key)).toEqual({ ...f, timeout: 100 });
    expect(t.takeDirty(key)).toBe(DIRTY_TIMEOUT);

    const r2 = t.applyEvent(ev('update', withTcp({ ...partial, timeout: 120 }, 4)));
    expect(r2.change).toBe('changed');
    expect(r2.version).toBe(2);
    expect(t.get(key)!.protoinfo!.tcp!.state).toBe(4);
    expect(t.takeDirty(key) & DIRTY_STATE).toBe(DIRTY_STATE);

    expect(t.applyEvent(ev('update', { ...partial, timeout: 120, mark: 9 })).change).toBe('changed');
    expect(t.get(key)!.mark).toBe(9);
    expect(t.get(key)!.labels).toEqual(Buffer.alloc(16, 1));
    expect(t.applyEvent(ev('update', { ...partial, timeout: 120 })).change).toBe('unchanged');
  });

  it('treats a re-created connection on the same tuple as a new incarnation', () => {
    const { t } = table();
    const f = withTcp(tcpFlow(1), 7); // TIME_WAIT
    const { key } = t.applyEvent(ev('new', f));
    const m1 = t.meta(key)!;
    // The DESTROY was lost; the kernel re-created the entry on a SYN: SYN_SENT, a new id.
    const again = t.applyEvent(ev('update', withTcp(tcpFlow(1, { id: 5555, status: 8 }), 1)));
    expect(again.change).toBe('replaced');
    const m2 = t.meta(key)!;
    expect(m2.born).toBe(m2.version);
    expect(m2.born).toBeGreaterThan(m1.born);
    // Without ids, a backwards TCP move alone says the same.
    const g = withTcp(tcpFlow(2, { id: undefined }), 8);
    t.applyEvent(ev('new', g));
    expect(t.applyEvent(ev('update', withTcp(g, 1))).change).toBe('replaced');
    // A NEW for a held key always does.
    expect(t.applyEvent(ev('new', g)).change).toBe('replaced');
  });
});

describe('LocalTable dump and diff', () => {
  it('fills an empty table from a dump', () => {
    const { t } = table();
    const flows = Array.from({ length: 50 }, (_, i) => tcpFlow(i));
    const d = t.replaceAll(flows);
    expect(d.added.length).toBe(50);
    expect(d.changed).toEqual([]);
    expect(d.removed).toEqual([]);
    expect(t.size).toBe(50);
  });

  it('returns exactly what was added, changed, refreshed and removed', () => {
    const { t } = table();
    for (let i = 0; i < 10; i++) t.applyEvent(ev('new', tcpFlow(i)));
    t.applyEvent(ev('new', natUdpFlow(100)));
    const dump = [
      tcpFlow(0), // unchanged
      tcpFlow(1, { timeout: 5 }), // refreshed
      tcpFlow(2, { mark: 1 }), // changed
      withTcp(tcpFlow(3), 5), // changed (state)
      tcpFlow(4, { id: 1 }), // replaced: another conntrack on the same tuple
      ...[5, 6, 7].map((i) => tcpFlow(i)),
      tcpFlow(20), // added
      tcpFlow(21), // added
      // 8, 9 and the UDP flow are gone
    ];
    const d = t.diff(dump);
    expect(d.added).toEqual([flowKey(tcpFlow(20)), flowKey(tcpFlow(21))]);
    expect(d.changed.sort()).toEqual([2, 3, 4].map((i) => flowKey(tcpFlow(i))).sort());
    expect(d.refreshed).toEqual([flowKey(tcpFlow(1))]);
    expect(d.removed.map((r) => r.key).sort()).toEqual([flowKey(tcpFlow(8)), flowKey(tcpFlow(9)), flowKey(natUdpFlow(100))].sort());
    expect(d.unchanged).toBe(4);
    expect(t.size).toBe(dump.length);
    for (const f of dump) expect(t.get(flowKey(f))).toEqual(f);
    const versions = d.removed.map((r) => r.version);
    expect(new Set(versions).size).toBe(3);
    expect(Math.min(...versions)).toBeGreaterThan(t.meta(flowKey(tcpFlow(21)))!.version);
  });

  it('keeps an entry’s timeout for a line without one, and calls that line unchanged, not refreshed', () => {
    const { t, clock } = table();
    const key = t.applyEvent(ev('new', tcpFlow(0, { timeout: 100 }))).key;
    const before = t.meta(key);
    clock.advance(10_000);
    const d = t.diff([{ ...tcpFlow(0), timeout: undefined }]); // our estimate (90 s) is close enough, so the mirror drops it
    expect([d.unchanged, d.refreshed, d.changed, t.counters.refreshed]).toEqual([1, [], [], 0]);
    expect(t.meta(key)).toEqual(before); // the timeout as reported at the time it was
    expect(t.get(key, clock.now())!.timeout).toBe(90);
  });

  it('gives a new incarnation found by a dump the line’s timeout, even where the old one’s would have been kept', () => {
    const { t } = table();
    const key = t.applyEvent(ev('new', tcpFlow(0, { timeout: 100 }))).key;
    t.beginResync();
    expect(t.resyncFlow(tcpFlow(0, { timeout: 95, id: 1 }), key, t.table.slotOf(key), true)).toBe('replaced');
    t.endResync();
    expect(t.get(key)!.timeout).toBe(95);
  });

  it('lets events seen during the dump win over the dump', () => {
    const { t } = table();
    for (let i = 0; i < 4; i++) t.applyEvent(ev('new', tcpFlow(i)));
    t.beginResync();
    t.resyncFlow(tcpFlow(0));
    // Meanwhile: flow 1 destroyed (the dump read it before), flow 9 created (the dump missed it).
    t.applyEvent(ev('destroy', tcpFlow(1)));
    t.applyEvent(ev('new', tcpFlow(9)));
    expect(t.resyncFlow(tcpFlow(1))).toBe('ignored');
    t.resyncFlow(tcpFlow(2));
    const d = t.endResync();
    expect(t.has(flowKey(tcpFlow(1)))).toBe(false);
    expect(t.has(flowKey(tcpFlow(9)))).toBe(true);
    expect(d.removed.map((r) => r.key)).toEqual([flowKey(tcpFlow(3))]);
    expect(t.size).toBe(3);
  });

  it('keeps protoinfo and timeout of offloaded flows, which dumps omit', () => {
    const { t } = table();
    const f = tcpFlow(1);
    t.applyEvent(ev('new', f));
    const offloaded: Flow = { ...f, status: f.status! | (1 << 14), timeout: undefined, protoinfo: undefined };
    const d = t.diff([offloaded]);
    expect(d.changed).toEqual([]);
    const got = t.get(flowKey(f))!;
    expect(got.protoinfo).toEqual(f.protoinfo);
    expect(got.timeout).toBe(f.timeout);
  });
});
