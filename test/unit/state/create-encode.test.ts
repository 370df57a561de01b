// The commit's fast create encoder (straight from table slots) against the path it short-cuts,
// encodeCreate(flowAt(slot)): the same bytes for any flow it accepts, and it accepts the common flows.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { encodeCreate } from '../../../src/kernel/conntrack.js';
import { AttrWriter } from '../../../src/kernel/nla.js';
import { DEFAULT_WRITE_POLICY, type WritePolicy } from '../../../src/kernel/write-rules.js';
import { encodeCreateAt } from '../../../src/state/create-encode.js';
import { flowKey } from '../../../src/state/key.js';
import { FlowTable } from '../../../src/state/table.js';
import type { Flow } from '../../../src/kernel/types.js';
import { AF_INET, AF_INET6, establishedTcp4, flowArb, plainFlowOf, protoFor, tupleOf, u16, u32, u8 } from '../wire/arbitraries.js';

/** Flows of the kind a commit mostly writes: any family and protocol, unNATed, with or without the usual fields. */
const commonFlow: fc.Arbitrary<Flow> = fc
  .constantFrom(AF_INET, AF_INET6)
  .chain((family) => protoFor(family).chain((proto) => fc.record({ family: fc.constant(family), orig: tupleOf(family, proto) })))
  .chain(({ family, orig }) =>
    fc.record(
      {
        replyZone: u16,
        zone: u16,
        status: u32,
        mark: u32,
        timeout: fc.integer({ min: 0, max: 500_000 }),
        tcp: fc.record({ state: fc.integer({ min: 0, max: 9 }), wscaleOrig: fc.integer({ min: 0, max: 14 }), wscaleReply: fc.integer({ min: 0, max: 14 }), flagsOrig: u8, flagsReply: u8 }, { requiredKeys: ['state'] }),
        synproxy: fc.record({ isn: u32, its: u32, tsoff: u32 }),
      },
      { requiredKeys: [] },
    ).map((x): Flow => plainFlowOf(family, orig, x)),
  );

const policies: WritePolicy[] = [DEFAULT_WRITE_POLICY, { liberal: false, labels: false, defaultTimeout: 77 }];

/** Both encodings of every slot; the fast one is undefined where it declined (and then wrote nothing). */
function encodeBoth(table: FlowTable, slot: number, now: number, policy: WritePolicy): { fast?: Buffer; slow: Buffer } {
  const a = new AttrWriter();
  const took = encodeCreateAt(a, table, slot, now, policy, 42, 4);
  const fast = a.finish();
  if (!took) expect(fast.length).toBe(0);
  const b = new AttrWriter();
  encodeCreate(b, table.flowAt(slot, now), policy, 42, 4);
  return { fast: took ? fast : undefined, slow: b.finish() };
}

describe('encodeCreateAt', () => {
  test('writes what encodeCreate(flowAt) writes, for any flow it takes', () => {
    let took = 0;
    fc.assert(
      fc.property(fc.array(fc.oneof(commonFlow, flowArb()), { minLength: 1, maxLength: 20 }), fc.integer({ min: 0, max: 600_000 }), (flows, later) => {
        const table = new FlowTable();
        const slots: number[] = [];
        for (const f of flows) {
          const key = flowKey(f);
          if (table.has(key)) continue;
          table.set(key, f, 1, 0, 1_000_000);
          slots.push(table.slotOf(key));
        }
        for (const slot of slots) {
          for (const p of policies) {
            let both: ReturnType<typeof encodeBoth>;
            try {
              both = encodeBoth(table, slot, 1_000_000 + later, p);
            } catch {
              continue; // a flow the reference path cannot encode (an odd tuple): not the fast path's business
            }
            if (both.fast) {
              took++;
              expect(both.fast.toString('hex')).toBe(both.slow.toString('hex'));
            }
          }
        }
      }),
      { numRuns: 300 },
    );
    expect(took).toBeGreaterThan(100); // the property said something
  });

  test('takes the common flows: established TCP (v4), UDP without protoinfo, zones, marks, synproxy', () => {
    const table = new FlowTable();
    const flows: Flow[] = fc.sample(establishedTcp4, 50);
    flows.push(
      { family: 2, orig: { src: '10.0.0.1', dst: '10.0.0.2', proto: 17, sport: 5000, dport: 53 }, reply: { src: '10.0.0.2', dst: '10.0.0.1', proto: 17, sport: 53, dport: 5000 }, timeout: 30 },
      { family: 10, orig: { src: 'fd00::1', dst: 'fd00::2', proto: 6, sport: 1, dport: 2, zone: 3 }, reply: { src: 'fd00::2', dst: 'fd00::1', proto: 6, sport: 2, dport: 1, zone: 4 }, zone: 5, mark: 9, status: 0xe, synproxy: { isn: 1, its: 2, tsoff: 3 } },
    );
    for (const f of flows) table.set(flowKey(f), f, 1, 0, 1000);
    let n = 0;
    table.forEach((_k, slot) => {
      const { fast, slow } = encodeBoth(table, slot, 2000, DEFAULT_WRITE_POLICY);
      expect(fast?.toString('hex')).toBe(slow.toString('hex'));
      n++;
    });
    expect(n).toBe(table.size);
  });

  test('declines what it does not handle (NAT, ICMP) without writing anything', () => {
    const table = new FlowTable();
    const nat: Flow = { family: 2, orig: { src: '10.0.0.1', dst: '10.0.0.2', proto: 6, sport: 1, dport: 2 }, reply: { src: '10.0.0.2', dst: '192.0.2.9', proto: 6, sport: 2, dport: 7 } };
    const icmp: Flow = { family: 2, orig: { src: '10.0.0.1', dst: '10.0.0.2', proto: 1, icmpId: 1, icmpType: 8, icmpCode: 0 }, reply: { src: '10.0.0.2', dst: '10.0.0.1', proto: 1, icmpId: 1, icmpType: 0, icmpCode: 0 } };
    for (const f of [nat, icmp]) {
      table.set(flowKey(f), f, 1, 0, 1000);
      expect(encodeBoth(table, table.slotOf(flowKey(f)), 2000, DEFAULT_WRITE_POLICY).fast).toBeUndefined();
    }
  });
});
