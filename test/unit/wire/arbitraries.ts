// fast-check generators for the shared conntrack model (Flow, Tuple, Expectation), reusable by every layer's tests.
//
// Addresses are generated as bytes and printed the way `conntrack -L` does (src/wire/addr.ts), so text compares
// equal after any decode. Flows cover both families and every protocol conntrack tracks, NAT and non-NAT reply
// tuples, per-direction zones, all optional fields, values outside the compact encodings' ranges, and the
// node-local fields (id, counters, ...) that sync must drop.
import fc from 'fast-check';
import type { Expectation, Flow, ProtoInfo, Tuple } from '../../../src/kernel/types.js';
import { formatAddress } from '../../../src/wire/addr.js';

export const AF_INET = 2;
export const AF_INET6 = 10;

const PORT_PROTOS = [6, 17, 136, 132, 33, 47] as const; // TCP, UDP, UDP-Lite, SCTP, DCCP, GRE
const GENERIC_PROTOS = [50, 51, 115] as const; // ESP, AH, L2TP: tracked by the generic tracker, no L4 fields

export const u8 = fc.integer({ min: 0, max: 0xff });
export const u16 = fc.integer({ min: 0, max: 0xffff });
export const u32 = fc.integer({ min: 0, max: 0xffffffff });

export const ipv4 = fc.uint8Array({ minLength: 4, maxLength: 4 }).map((b) => formatAddress(b, 0, 4));

// Words biased towards 0 and 0xffff so that "::" compression, ::ffff:a.b.c.d and ::a.b.c.d all occur.
const v6word = fc.oneof(
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 1, arbitrary: fc.constant(0xffff) },
  { weight: 4, arbitrary: u16 },
);
export const ipv6 = fc.array(v6word, { minLength: 8, maxLength: 8 }).map((words) => {
  const b = Buffer.alloc(16);
  words.forEach((w, i) => b.writeUInt16BE(w, 2 * i));
  return formatAddress(b, 0, 16);
});

export const address = (family: number): fc.Arbitrary<string> => (family === AF_INET ? ipv4 : ipv6);

export const icmpProto = (family: number): number => (family === AF_INET ? 1 : 58);

/** Protocols a tuple of this family can carry. */
export const protoFor = (family: number): fc.Arbitrary<number> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...PORT_PROTOS) },
    { weight: 2, arbitrary: fc.constant(icmpProto(family)) },
    { weight: 1, arbitrary: fc.constantFrom(...GENERIC_PROTOS) },
  );

/** ICMP types with and without a kernel inverse (echo, timestamp, ... and e.g. router solicitation). */
const icmpType = (proto: number): fc.Arbitrary<number> =>
  proto === 1 ? fc.oneof(fc.constantFrom(8, 0, 13, 14, 15, 16, 17, 18, 3, 10), u8) : fc.oneof(fc.constantFrom(128, 129, 139, 140, 133), u8);

/** A tuple as the kernel reports it: the protocol's full L4 fields (or none for generic protocols). */
export const tupleOf = (family: number, proto: number, zone = true): fc.Arbitrary<Tuple> => {
  const base = fc.record({ src: address(family), dst: address(family) });
  const z = zone ? fc.option(u16, { nil: undefined, freq: 5 }) : fc.constant(undefined);
  let l4: fc.Arbitrary<Partial<Tuple>>;
  if (proto === 1 || proto === 58) {
    l4 = fc.record({ icmpType: icmpType(proto), icmpCode: u8, icmpId: u16 });
  } else if ((PORT_PROTOS as readonly number[]).includes(proto)) {
    l4 = fc.record({ sport: u16, dport: u16 });
  } else {
    l4 = fc.constant({});
  }
  return fc.tuple(base, l4, z).map(([b, l, zn]) => {
    const t: Tuple = { src: b.src, dst: b.dst, proto, ...l };
    if (zn !== undefined) t.zone = zn;
    return t;
  });
};

/**
 * Tuples the kernel would not produce but the model can hold: partial or foreign L4 fields, out-of-range
 * values, mixed families. They must still survive the wire (long form).
 */
export const oddTuple = (family: number): fc.Arbitrary<Tuple> =>
  fc
    .record(
      {
        src: address(family),
        dst: fc.oneof(address(family), ipv4, ipv6),
        proto: fc.integer({ min: 0, max: 300 }),
        sport: fc.integer({ min: 0, max: 70000 }),
        dport: u16,
        icmpType: u8,
        icmpCode: fc.integer({ min: 0, max: 300 }),
        icmpId: u16,
        zone: u16,
      },
      { requiredKeys: ['src', 'dst', 'proto'] },
    )
    .map((t) => t as Tuple);

export const anyTuple = (family: number): fc.Arbitrary<Tuple> =>
  fc.oneof({ weight: 4, arbitrary: protoFor(family).chain((p) => tupleOf(family, p)) }, { weight: 1, arbitrary: oddTuple(family) });

/** The kernel's no-NAT reply tuple; undefined for ICMP types without an inverse. */
export function inverseOf(t: Tuple): Tuple | undefined {
  const inv: Record<number, number> = t.proto === 1
    ? { 8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17 }
    : { 128: 129, 129: 128, 139: 140, 140: 139 };
  const r: Tuple = { src: t.dst, dst: t.src, proto: t.proto };
  if (t.dport !== undefined) r.sport = t.dport;
  if (t.sport !== undefined) r.dport = t.sport;
  if (t.icmpType !== undefined) {
    const ty = t.proto === 1 || t.proto === 58 ? inv[t.icmpType] : t.icmpType;
    if (ty === undefined) return undefined;
    r.icmpType = ty;
  }
  if (t.icmpCode !== undefined) r.icmpCode = t.icmpCode;
  if (t.icmpId !== undefined) r.icmpId = t.icmpId;
  return r;
}

const tcpInfo: fc.Arbitrary<NonNullable<ProtoInfo['tcp']>> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record(
      {
        state: fc.integer({ min: 0, max: 9 }),
        wscaleOrig: fc.integer({ min: 0, max: 14 }),
        wscaleReply: fc.integer({ min: 0, max: 14 }),
        flagsOrig: fc.integer({ min: 0, max: 0x3f }),
        flagsReply: fc.integer({ min: 0, max: 0x3f }),
      },
      { requiredKeys: ['state'] },
    ),
  },
  {
    weight: 1, // outside the packed ranges, or encode-only masks: tcp_ext
    arbitrary: fc.record(
      {
        state: u8,
        wscaleOrig: u8,
        wscaleReply: u8,
        flagsOrig: u8,
        flagsReply: u8,
        flagsOrigMask: u8,
        flagsReplyMask: u8,
      },
      { requiredKeys: ['state'] },
    ),
  },
);

const sctpInfo = fc.record({ state: fc.integer({ min: 0, max: 10 }), vtagOrig: u32, vtagReply: u32 }, { requiredKeys: ['state'] });
const dccpInfo = fc.record(
  { state: fc.integer({ min: 0, max: 9 }), role: fc.integer({ min: 0, max: 2 }), handshakeSeq: fc.bigInt({ min: 0n, max: (1n << 48n) - 1n }) },
  { requiredKeys: ['state'] },
);

const protoinfoFor = (proto: number): fc.Arbitrary<ProtoInfo | undefined> => {
  const unknown = fc.option(fc.constant([{ type: 99, nested: false, data: Buffer.from([1, 2]) }]), { nil: undefined });
  if (proto === 6) return fc.option(fc.record({ tcp: tcpInfo, unknown }, { requiredKeys: ['tcp'] }), { nil: undefined, freq: 6 });
  if (proto === 132) return fc.option(fc.record({ sctp: sctpInfo }), { nil: undefined, freq: 6 });
  if (proto === 33) return fc.option(fc.record({ dccp: dccpInfo }), { nil: undefined, freq: 6 });
  return fc.constant(undefined);
};

const natRange = (family: number) =>
  fc.record({ minIp: address(family), maxIp: address(family), minPort: u16, maxPort: u16 }, { requiredKeys: [] });
const seqAdj = fc.record({ correctionPos: u32, offsetBefore: u32, offsetAfter: u32 });
const labels = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b));
const counters = fc.record({ packets: fc.bigUintN(64), bytes: fc.bigUintN(64) });

/** Fields of a Flow besides the tuples; all optional, including ones sync drops. */
const flowExtras = (family: number, proto: number) =>
  fc.record(
    {
      status: u32,
      timeout: u32,
      mark: u32,
      zone: u16,
      id: u32,
      use: u32,
      secmark: u32,
      labels,
      labelsMask: labels,
      protoinfo: protoinfoFor(proto),
      countersOrig: counters,
      countersReply: counters,
      timestampStart: fc.bigUintN(64),
      natSrc: natRange(family),
      natDst: natRange(family),
      seqAdjOrig: seqAdj,
      seqAdjReply: seqAdj,
      helper: fc.constantFrom('ftp', 'sip', 'h323', 'tftp', 'amanda', ''),
      master: anyTuple(family),
      synproxy: fc.record({ isn: u32, its: u32, tsoff: u32 }),
      unknown: fc.constant([{ type: 77, nested: true, data: Buffer.from([0]) }]),
    },
    { requiredKeys: [] },
  );

/** Any flow of the given family (or both), as the kernel layer might hand it over. */
/** The fields a plain flow may carry besides its tuples (the shape EntryBatch.addPlain writes). */
export interface PlainFields {
  zone?: number;
  replyZone?: number;
  status?: number;
  mark?: number;
  timeout?: number;
  tcp?: NonNullable<ProtoInfo['tcp']>;
  synproxy?: { isn: number; its: number; tsoff: number };
}

/** A plain flow: the reply is the inverse of `orig` (with its own zone, if any), TCP protoinfo only for TCP. */
export function plainFlowOf(family: number, orig: Tuple, x: PlainFields): Flow {
  const reply = { ...(inverseOf(orig) ?? { ...orig, src: orig.dst, dst: orig.src }) };
  delete reply.zone;
  if (x.replyZone !== undefined) reply.zone = x.replyZone;
  const f: Flow = { family, orig, reply };
  if (x.zone !== undefined) f.zone = x.zone;
  if (x.status !== undefined) f.status = x.status;
  if (x.mark !== undefined) f.mark = x.mark;
  if (x.timeout !== undefined) f.timeout = x.timeout;
  if (x.tcp !== undefined && orig.proto === 6) f.protoinfo = { tcp: { ...x.tcp } };
  if (x.synproxy !== undefined) f.synproxy = x.synproxy;
  return f;
}

export const flowArb = (families: number[] = [AF_INET, AF_INET6]): fc.Arbitrary<Flow> =>
  fc
    .constantFrom(...families)
    .chain((family) => protoFor(family).map((proto) => ({ family, proto })))
    .chain(({ family, proto }) =>
      fc.record({
        family: fc.constant(family),
        orig: fc.oneof({ weight: 9, arbitrary: tupleOf(family, proto) }, { weight: 1, arbitrary: oddTuple(family) }),
        nat: fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
        natReply: tupleOf(family, proto),
        replyZone: fc.option(u16, { nil: undefined, freq: 5 }),
        extras: flowExtras(family, proto),
      }),
    )
    .map(({ family, orig, nat, natReply, replyZone, extras }) => {
      let reply = nat ? natReply : inverseOf(orig) ?? natReply;
      reply = { ...reply };
      delete reply.zone;
      if (replyZone !== undefined) reply.zone = replyZone;
      const f: Flow = { family, orig, reply, ...extras };
      if (f.protoinfo === undefined) delete f.protoinfo;
      return f;
    });

/** A steady-state IPv4 TCP established flow without NAT, as the wire-size goal describes it. */
export const establishedTcp4 = fc
  .record({ src: ipv4, dst: ipv4, sport: u16, dport: u16, timeout: fc.integer({ min: 0, max: 432000 }) })
  .map(({ src, dst, sport, dport, timeout }): Flow => ({
    family: AF_INET,
    orig: { src, dst, proto: 6, sport, dport },
    reply: { src: dst, dst: src, proto: 6, sport: dport, dport: sport },
    status: 0xe, // ASSURED | SEEN_REPLY | CONFIRMED
    timeout,
    mark: 0,
    protoinfo: { tcp: { state: 3, wscaleOrig: 7, wscaleReply: 7, flagsOrig: 0x23, flagsReply: 0x23 } },
  }));

export const expectationArb: fc.Arbitrary<Expectation> = fc
  .constantFrom(AF_INET, AF_INET6)
  .chain((family) =>
    fc.record(
      {
        family: fc.constant(family),
        master: anyTuple(family),
        tuple: anyTuple(family),
        mask: anyTuple(family),
        timeout: u32,
        id: u32,
        zone: u16,
        flags: u32,
        class: u32,
        helper: fc.constantFrom('ftp', 'sip'),
        fn: fc.constantFrom('nat-follow-master', 'sip'),
        nat: fc.record({ dir: fc.integer({ min: 0, max: 1 }), tuple: anyTuple(family) }),
      },
      { requiredKeys: ['family', 'master', 'tuple', 'mask'] },
    ),
  ) as fc.Arbitrary<Expectation>;
