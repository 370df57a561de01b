import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Flow } from '../../../src/kernel/types.js';
import { FakeClock } from '../../../src/state/clock.js';
import { flowKey } from '../../../src/state/key.js';
import { isTcpBackwards, judgeDelete, judgeUpsert, mergeStatus, tcpRank } from '../../../src/state/merge.js';
import { PeerTable } from '../../../src/state/peer-table.js';
import { tcpFlow, withTcp } from './flows.js';

const ASSURED = 4;
const SEEN_REPLY = 2;
// TCP_CONNTRACK_* in connection-life order (SYN_SENT2 = 9 sits after SYN_SENT).
const LIFE = [0, 1, 9, 2, 3, 4, 5, 6, 7, 8];

describe('merge rules', () => {
  it('orders TCP states along the life of a connection', () => {
    expect(LIFE.map(tcpRank)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(isTcpBackwards(3, 1)).toBe(true); // ESTABLISHED → SYN_SENT
    expect(isTcpBackwards(9, 1)).toBe(true); // SYN_SENT2 → SYN_SENT
    expect(isTcpBackwards(1, 9)).toBe(false);
    expect(isTcpBackwards(8, 3)).toBe(true); // CLOSE → ESTABLISHED
    expect(isTcpBackwards(3, 42)).toBe(false); // unknown states are not judged
  });

  it('keeps ASSURED and SEEN_REPLY once set', () => {
    expect(mergeStatus(ASSURED | SEEN_REPLY | 8, 8)).toBe(ASSURED | SEEN_REPLY | 8);
    expect(mergeStatus(8, 8 | ASSURED)).toBe(8 | ASSURED);
    expect(mergeStatus(0x10, 8)).toBe(8); // other bits follow the sender
  });

  it('judges upserts and deletes by version and incarnation', () => {
    expect(judgeUpsert(undefined, undefined, 5, 5)).toBe('new');
    expect(judgeUpsert(undefined, 5, 5, 5)).toBe('tombstoned');
    expect(judgeUpsert(undefined, 5, 6, 6)).toBe('new');
    expect(judgeUpsert({ version: 5, born: 1 }, undefined, 6, 1)).toBe('update');
    expect(judgeUpsert({ version: 5, born: 1 }, undefined, 5, 1)).toBe('duplicate');
    expect(judgeUpsert({ version: 5, born: 1 }, undefined, 4, 1)).toBe('stale');
    expect(judgeUpsert({ version: 5, born: 1 }, undefined, 6, 6)).toBe('reincarnation');
    expect(judgeUpsert({ version: 9, born: 6 }, undefined, 10, 1)).toBe('stale');
    expect(judgeDelete(undefined, 3)).toBe('unknown');
    expect(judgeDelete(5, 4)).toBe('stale');
    expect(judgeDelete(5, 5)).toBe('delete');
  });
});

type Op =
  | { op: 'up'; version: number; born: number; state: number; status: number; timeout: number }
  | { op: 'del'; version: number };

/**
 * What a sender's local table emits for one key: incarnations, each a run of updates whose TCP state only moves
 * forward and whose ASSURED/SEEN_REPLY bits are only ever set, optionally ended by a delete.
 */
const history = fc
  .array(
    fc.record({
      steps: fc.array(fc.record({ adv: fc.nat(3), assure: fc.boolean(), timeout: fc.integer({ min: 1, max: 600 }) }), {
        minLength: 1,
        maxLength: 6,
      }),
      start: fc.nat(LIFE.length - 1),
      deleted: fc.boolean(),
    }),
    { minLength: 1, maxLength: 4 },
  )
  .map((incs) => {
    const ops: Op[] = [];
    let v = 0;
    for (const inc of incs) {
      const born = v + 1;
      let rank = inc.start;
      let status = 8;
      for (const s of inc.steps) {
        rank = Math.min(LIFE.length - 1, rank + s.adv);
        if (s.assure) status |= ASSURED | SEEN_REPLY;
        ops.push({ op: 'up', version: ++v, born, state: LIFE[rank]!, status, timeout: s.timeout });
      }
      if (inc.deleted) ops.push({ op: 'del', version: ++v });
    }
    return ops;
  });

/** The network: every message delivered at least once, in any order, some twice. */
const delivery = history.chain((ops) =>
  fc
    .tuple(
      fc.shuffledSubarray(ops, { minLength: ops.length, maxLength: ops.length }),
      fc.array(fc.constantFrom(...ops), { maxLength: 4 }),
      fc.array(fc.nat(), { maxLength: 4 }),
    )
    .map(([shuffled, dups, at]) => {
      const out = [...shuffled];
      dups.forEach((d, i) => out.splice((at[i] ?? 0) % (out.length + 1), 0, d));
      return { ops, out };
    }),
);

const base = tcpFlow(1);
const KEY = flowKey(base);

function apply(p: PeerTable, m: Op): void {
  if (m.op === 'del') p.delete(KEY, m.version);
  else p.upsert(withTcp({ ...base, status: m.status, timeout: m.timeout }, m.state), m.version, m.born, KEY);
}

describe('PeerTable merge under reordering and duplication (property)', () => {
  it('never moves TCP state backwards or clears ASSURED within an incarnation', () => {
    fc.assert(
      fc.property(delivery, ({ out }) => {
        const p = new PeerTable({ clock: new FakeClock() });
        const seen = new Map<number, { rank: number; status: number }>(); // by born
        for (const m of out) {
          apply(p, m);
          const meta = p.meta(KEY);
          if (meta === undefined) continue;
          const f = p.get(KEY)!;
          const now = { rank: tcpRank(f.protoinfo!.tcp!.state), status: f.status! };
          const prev = seen.get(meta.born);
          if (prev !== undefined) {
            expect(now.rank).toBeGreaterThanOrEqual(prev.rank);
            expect(now.status & prev.status & (ASSURED | SEEN_REPLY)).toBe(prev.status & (ASSURED | SEEN_REPLY));
          }
          seen.set(meta.born, now);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('holds for arbitrary upserts too, even ones a correct sender would not emit', () => {
    const anyUpsert = fc
      .record({ version: fc.integer({ min: 1, max: 30 }), born: fc.constantFrom(1, 10, 20), state: fc.constantFrom(...LIFE), status: fc.constantFrom(8, 8 | ASSURED, 8 | SEEN_REPLY, 14) })
      .filter((u) => u.born <= u.version);
    fc.assert(
      fc.property(fc.array(anyUpsert, { maxLength: 30 }), (ups) => {
        const p = new PeerTable({ clock: new FakeClock() });
        const seen = new Map<number, { rank: number; status: number }>();
        for (const u of ups) {
          apply(p, { op: 'up', timeout: 60, ...u });
          const meta = p.meta(KEY)!;
          const f = p.get(KEY)!;
          const now = { rank: tcpRank(f.protoinfo!.tcp!.state), status: f.status! };
          const prev = seen.get(meta.born);
          if (prev !== undefined) {
            expect(now.rank).toBeGreaterThanOrEqual(prev.rank);
            expect(now.status & prev.status & (ASSURED | SEEN_REPLY)).toBe(prev.status & (ASSURED | SEEN_REPLY));
          }
          seen.set(meta.born, now);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('never resurrects a destroyed flow with an upsert older than the delete', () => {
    fc.assert(
      fc.property(delivery, ({ out }) => {
        const p = new PeerTable({ clock: new FakeClock() });
        let lastDelete = 0;
        for (const m of out) {
          apply(p, m);
          if (m.op === 'del') lastDelete = Math.max(lastDelete, m.version);
          const meta = p.meta(KEY);
          if (meta !== undefined) expect(meta.version).toBeGreaterThan(lastDelete);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('converges to the sender’s final state whatever the order', () => {
    fc.assert(
      fc.property(delivery, ({ ops, out }) => {
        const p = new PeerTable({ clock: new FakeClock() });
        for (const m of out) apply(p, m);
        const last = ops[ops.length - 1]!;
        if (last.op === 'del') {
          expect(p.has(KEY)).toBe(false);
        } else {
          const f = p.get(KEY)!;
          expect(p.meta(KEY)!.version).toBe(last.version);
          expect(f.protoinfo!.tcp!.state).toBe(last.state);
          expect(f.status).toBe(last.status);
        }
        expect(p.size).toBeLessThanOrEqual(1);
      }),
      { numRuns: 300 },
    );
  });
});

describe('PeerTable merge details', () => {
  it('counts blocked backwards moves and kept sticky bits', () => {
    const p = new PeerTable({ clock: new FakeClock() });
    p.upsert(withTcp(base, 4), 1, 1);
    expect(p.upsert(withTcp({ ...base, status: 8 }, 3), 2, 1)).toBe('updated');
    const f = p.get(KEY)!;
    expect(f.protoinfo!.tcp!.state).toBe(4);
    expect(f.status).toBe(base.status);
    expect(p.counters.tcpBackwardsBlocked).toBe(1);
    expect(p.counters.stickyStatusKept).toBe(1);
    // A newer incarnation may go back to SYN_SENT and drop ASSURED.
    expect(p.upsert(withTcp({ ...base, status: 8 }, 1), 3, 3)).toBe('reincarnated');
    expect(p.get(KEY)!.protoinfo!.tcp!.state).toBe(1);
    expect(p.get(KEY)!.status).toBe(8);
  });

  it('keeps protoinfo and timeout when an update has none (offloaded flow)', () => {
    const clock = new FakeClock(0);
    const p = new PeerTable({ clock });
    p.upsert(base, 1, 1);
    clock.advance(5000);
    const off: Flow = { ...base, protoinfo: undefined, timeout: undefined, status: base.status! | (1 << 14) };
    expect(p.upsert(off, 2, 1)).toBe('updated');
    expect(p.get(KEY)!.protoinfo).toEqual(base.protoinfo);
    expect(p.remainingTimeout(KEY)).toBe(base.timeout! - 5);
  });
});
