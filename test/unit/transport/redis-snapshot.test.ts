// The Redis snapshot's handling of timeout refreshes: which flows a Refresh frame touches, and how a stored value
// is re-encoded with the new timeout (only values this node signed: a forged one is never re-signed).
import { describe, expect, test } from 'vitest';
import { SnapshotTracker } from '../../../src/transport/redis/index.js';
import { createMacKey, decodeFrame, encodeFrame } from '../../../src/wire/envelope.js';
import { flowKeyOf, flowToEntry, refreshToWire } from '../../../src/wire/entry.js';
import { Ips, TcpState, type Flow } from '../../../src/kernel/types.js';

const MAC = createMacKey('redis-snapshot-unit-cluster-key-0123456789');
const env = { clusterId: 'c1', nodeId: 'fw-a' };

function flow(i: number, timeout = 30): Flow {
  const src = `10.9.0.${i}`;
  return {
    family: 2,
    orig: { src, dst: '10.2.0.1', proto: 6, sport: 1000 + i, dport: 443 },
    reply: { src: '10.2.0.1', dst: src, proto: 6, sport: 443, dport: 1000 + i },
    status: Ips.Confirmed | Ips.SeenReply | Ips.Assured,
    timeout,
    mark: 0,
    protoinfo: { tcp: { state: TcpState.Established } },
  };
}

const timeoutOf = (value: Buffer) => {
  const r = decodeFrame(value, { maxFrameBytes: 1 << 20 }, { clusterId: 'c1', macKey: MAC });
  if (!r.ok) throw new Error(`value does not verify: ${r.reason}`);
  return r.env.upsert!.entries![0]!.timeout;
};

describe('snapshot tracker: timeout refreshes', () => {
  test('a refresh lists only flows the snapshot holds, and the stored value is re-signed with the new timeout', () => {
    const t = new SnapshotTracker('c1', 'fw-a', MAC);
    const up = t.track(encodeFrame({ ...env, seq: 1, upsert: { entries: [flowToEntry(flow(1)), flowToEntry(flow(2))] } }, { macKey: MAC }));
    expect(up.set).toHaveLength(4);
    t.track(encodeFrame({ ...env, seq: 2, delete: { keys: [flowToEntry(flow(2))] } }, { macKey: MAC }));
    const items = [1, 2, 3].map((i) => refreshToWire(flowKeyOf(flow(i)), 600));
    const ops = t.track(encodeFrame({ ...env, seq: 3, refresh: { items } }, { macKey: MAC }));
    // flow 2 was deleted and flow 3 never sent: only flow 1's field, the same bytes as its upsert's
    expect(ops.refresh).toEqual({ fields: [up.set[0]], timeouts: [600] });
    expect(t.seq).toBe(3);
    const patched = t.withTimeout(up.set[1]!, 600)!;
    expect(timeoutOf(up.set[1]!)).toBe(30);
    expect(timeoutOf(patched)).toBe(600);
  });

  test('a stored value this node did not sign (forged in Redis, or another node\'s) is not re-signed', () => {
    const t = new SnapshotTracker('c1', 'fw-a', MAC);
    const entry = { entries: [flowToEntry(flow(1))], authoritative: true };
    expect(t.withTimeout(encodeFrame({ ...env, upsert: entry }, { macKey: createMacKey('another-cluster-key-0123456789abcdef') }), 600)).toBeUndefined();
    expect(t.withTimeout(encodeFrame({ ...env, upsert: entry }), 600)).toBeUndefined();
    expect(t.withTimeout(encodeFrame({ ...env, nodeId: 'fw-b', upsert: entry }, { macKey: MAC }), 600)).toBeUndefined();
    expect(t.withTimeout(encodeFrame({ ...env, upsert: entry }, { macKey: MAC }), 600)).toBeDefined();
  });
});
