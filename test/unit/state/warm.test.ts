// The warm standby's bookkeeping against a fake kernel: what each round writes, what a takeover still has to
// write, and when it must fall back to writing everything. (test/kernel/sync-pair.test.ts runs it for real.)
import pino from 'pino';
import { describe, expect, test } from 'vitest';
import type { Conntrack, WriteOp, WriteReport } from '../../../src/kernel/conntrack.js';
import { DEFAULT_WRITE_POLICY } from '../../../src/kernel/write-rules.js';
import { flowKey } from '../../../src/state/key.js';
import { PeerTable } from '../../../src/state/peer-table.js';
import { WarmStandby } from '../../../src/state/warm.js';
import { tcpFlow } from './flows.js';

/** A kernel that records every op and refuses the flows listed in `refuse` (by key). */
function fakeKernel(refuse = new Set<string>()) {
  const ops: WriteOp[] = [];
  const ct = {
    async write(batch: WriteOp[]): Promise<WriteReport> {
      ops.push(...batch);
      const results = batch.map((o) => (refuse.has(flowKey(o.flow)) ? { outcome: 'failed' as const, errno: 22 } : { outcome: o.op === 'delete' ? ('deleted' as const) : ('created' as const) }));
      const failed = results.filter((r) => r.outcome === 'failed').length;
      return { results, counts: { created: 0, updated: 0, replaced: 0, deleted: 0, absent: 0, failed }, failedByErrno: failed ? { EINVAL: failed } : {}, durationMs: 0 };
    },
  };
  return { ct: ct as unknown as Conntrack, ops };
}

function setup(refuse?: Set<string>) {
  let now = 1_000_000;
  const peer = new PeerTable({ clock: { now: () => now } });
  const k = fakeKernel(refuse);
  const warm = new WarmStandby(k.ct, () => [peer], () => DEFAULT_WRITE_POLICY, () => now, pino({ level: 'silent' }));
  peer.onChange = (key) => warm.changed(key);
  return { peer, warm, ops: k.ops, advance: (ms: number) => (now += ms) };
}

describe('warm standby', () => {
  test('each round upserts what the peer added or changed and deletes what it removed', async () => {
    const { peer, warm, ops } = setup();
    for (let i = 0; i < 5; i++) peer.upsert(tcpFlow(i), i + 1, 1);
    await warm.round();
    expect(ops.map((o) => o.op)).toEqual(['upsert', 'upsert', 'upsert', 'upsert', 'upsert']);
    expect(warm.holds(flowKey(tcpFlow(3)))).toBe(true);
    expect(warm.stats()).toMatchObject({ held: 5, pending: 0, written: 5 });
    ops.length = 0;
    peer.delete(flowKey(tcpFlow(0)), 10);
    peer.refresh(flowKey(tcpFlow(1)), 50);
    await warm.round();
    expect(ops.map((o) => `${o.op} ${o.flow.orig.src}`)).toEqual([`delete ${tcpFlow(0).orig.src}`, `upsert ${tcpFlow(1).orig.src}`]);
    expect(ops[1]!.flow.timeout).toBe(50);
    expect(warm.holds(flowKey(tcpFlow(0)))).toBe(false);
  });

  test('a takeover returns only what is left, including what the kernel refused; afterwards the flows are ours', async () => {
    const { peer, warm } = setup(new Set([flowKey(tcpFlow(2))]));
    for (let i = 0; i < 4; i++) peer.upsert(tcpFlow(i), i + 1, 1);
    await warm.round();
    peer.upsert(tcpFlow(9), 20, 1); // arrives after the last round
    const delta = await warm.takeOver();
    expect(delta?.sort()).toEqual([flowKey(tcpFlow(2)), flowKey(tcpFlow(9))].sort());
    expect(warm.holds(flowKey(tcpFlow(0)))).toBe(false); // the mirror may take them as ours now
    expect(await warm.takeOver()).toBeUndefined(); // no longer following: the next takeover writes everything
  });

  test('lost events, or a kernel DESTROY, are not trusted away', async () => {
    const { peer, warm, ops } = setup();
    for (let i = 0; i < 3; i++) peer.upsert(tcpFlow(i), i + 1, 1);
    await warm.round();
    warm.destroyed(flowKey(tcpFlow(1))); // expired here first: written again next round
    ops.length = 0;
    await warm.round();
    expect(ops.map((o) => o.flow.orig.src)).toEqual([tcpFlow(1).orig.src]);
    warm.eventsLost();
    expect(warm.stats().trusted).toBe(false);
    expect(await warm.takeOver()).toBeUndefined();
  });

  test('back to BACKUP it writes the whole peer table again', async () => {
    const { peer, warm, ops } = setup();
    for (let i = 0; i < 3; i++) peer.upsert(tcpFlow(i), i + 1, 1);
    await warm.takeOver();
    peer.upsert(tcpFlow(7), 9, 1); // while MASTER: not followed
    warm.resume();
    warm.stop();
    await warm.round();
    expect(ops.map((o) => o.flow.orig.src).sort()).toEqual([0, 1, 2, 7].map((i) => tcpFlow(i).orig.src).sort());
  });
});
