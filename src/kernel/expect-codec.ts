// The ctnetlink expectation codec (NFNL_SUBSYS_CTNETLINK_EXP): CTA_EXPECT_* attributes <-> Expectation.
//
// Same conventions as flow-codec.ts: unknown attributes kept in Expectation.unknown (and a CTA_EXPECT_NAT nest
// with a child we do not model is also kept whole there), decode never throws, encode re-emits unknowns only
// when asked (readOnly / keepUnknown).

import { CtaExpect, CtaExpectNat } from './ctnetlink-const.js';
import { DecodeError, decodeTuple, dropRaw, encodeTuple, type EncodeOptions } from './flow-codec.js';
import { AttrWriter, readRawAttr, readStrz, readU32BE } from './nla.js';
import type { Expectation, RawAttr, Tuple } from './types.js';

const E_TRUNCATED = new DecodeError('truncated');
const E_BAD_LENGTH = new DecodeError('bad_length');
const E_BAD_NEST = new DecodeError('bad_nest');
const E_MISSING_TUPLE = new DecodeError('missing_tuple');

function frame(buf: Buffer, p: number, end: number, nested: boolean): number | DecodeError {
  if (end - p < 4) return nested ? E_BAD_NEST : E_TRUNCATED;
  const len = buf[p]! | (buf[p + 1]! << 8);
  if (len < 4) return nested ? E_BAD_NEST : E_BAD_LENGTH;
  if (len > end - p) return nested ? E_BAD_NEST : E_TRUNCATED;
  return len;
}

function pushUnknown(list: RawAttr[] | undefined, a: RawAttr): RawAttr[] {
  if (list === undefined) return [a];
  list.push(a);
  return list;
}

/**
 * Decodes the attribute region [off, end) of an IPCTNL_MSG_EXP_NEW / DELETE message. CTA_EXPECT_MASTER,
 * CTA_EXPECT_TUPLE and CTA_EXPECT_MASK are required (missing_tuple otherwise). Never throws.
 */
export function decodeExpectation(buf: Buffer, off: number, end: number, family: number): Expectation | DecodeError {
  if (off < 0 || end > buf.length || off > end) return E_TRUNCATED;
  let master: Tuple | undefined;
  let tuple: Tuple | undefined;
  let mask: Tuple | undefined;
  const e: Expectation = {
    family,
    master: undefined as unknown as Tuple,
    tuple: undefined as unknown as Tuple,
    mask: undefined as unknown as Tuple,
    timeout: undefined,
    id: undefined,
    zone: undefined,
    flags: undefined,
    class: undefined,
    helper: undefined,
    fn: undefined,
    nat: undefined,
    unknown: undefined,
  };
  let p = off;
  while (p < end) {
    const len = frame(buf, p, end, false);
    if (typeof len !== 'number') return len;
    const type = (buf[p + 2]! | (buf[p + 3]! << 8)) & 0x3fff;
    const d = p + 4;
    const dl = len - 4;
    switch (type) {
      case CtaExpect.Master:
      case CtaExpect.Tuple:
      case CtaExpect.Mask: {
        const t = decodeTuple(buf, d, p + len);
        if (t instanceof DecodeError) return t;
        if (type === CtaExpect.Master) master = t;
        else if (type === CtaExpect.Tuple) tuple = t;
        else mask = t;
        break;
      }
      case CtaExpect.Timeout:
      case CtaExpect.Id:
      case CtaExpect.Flags:
      case CtaExpect.Class: {
        if (dl !== 4) return E_BAD_LENGTH;
        const v = readU32BE(buf, d);
        if (type === CtaExpect.Timeout) e.timeout = v;
        else if (type === CtaExpect.Id) e.id = v;
        else if (type === CtaExpect.Flags) e.flags = v;
        else e.class = v;
        break;
      }
      case CtaExpect.Zone:
        if (dl !== 2) return E_BAD_LENGTH;
        e.zone = (buf[d]! << 8) | buf[d + 1]!;
        break;
      case CtaExpect.HelpName:
        e.helper = readStrz(buf, d, dl);
        break;
      case CtaExpect.Fn:
        e.fn = readStrz(buf, d, dl);
        break;
      case CtaExpect.Nat: {
        let dir: number | undefined;
        let nt: Tuple | undefined;
        let foreign = false;
        let q = d;
        const qe = p + len;
        while (q < qe) {
          const cl = frame(buf, q, qe, true);
          if (typeof cl !== 'number') return cl;
          const ct = (buf[q + 2]! | (buf[q + 3]! << 8)) & 0x3fff;
          if (ct === CtaExpectNat.Dir) {
            if (cl !== 8) return E_BAD_LENGTH;
            dir = readU32BE(buf, q + 4);
          } else if (ct === CtaExpectNat.Tuple) {
            const t = decodeTuple(buf, q + 4, q + cl);
            if (t instanceof DecodeError) return t;
            nt = t;
          } else foreign = true;
          q += (cl + 3) & ~3;
        }
        // A NAT nest without its tuple has nothing to model: keep it raw rather than invent a tuple. A repeated
        // nest replaces the earlier one, raw copy included.
        e.nat = nt !== undefined ? { dir: dir ?? 0, tuple: nt } : undefined;
        if (e.unknown !== undefined) {
          dropRaw(e.unknown, CtaExpect.Nat);
          if (e.unknown.length === 0) e.unknown = undefined;
        }
        if (foreign || nt === undefined) e.unknown = pushUnknown(e.unknown, readRawAttr(buf, p, len));
        break;
      }
      default:
        e.unknown = pushUnknown(e.unknown, readRawAttr(buf, p, len));
    }
    p += (len + 3) & ~3;
  }
  if (master === undefined || tuple === undefined || mask === undefined) return E_MISSING_TUPLE;
  e.master = master;
  e.tuple = tuple;
  e.mask = mask;
  return e;
}

function hasRaw(list: RawAttr[] | undefined, type: number): boolean {
  if (list === undefined) return false;
  for (let i = 0; i < list.length; i++) if (list[i]!.type === type) return true;
  return false;
}

/**
 * The attributes of an expectation (the caller wraps them in beginMessage/endMessage). readOnly adds CTA_EXPECT_ID.
 * Throws AddressError on an address that does not parse.
 */
export function encodeExpectation(w: AttrWriter, e: Expectation, opts?: EncodeOptions): void {
  const ro = opts?.readOnly === true;
  const keep = opts?.keepUnknown ?? ro;
  const u = keep ? e.unknown : undefined;
  const fam = e.family;
  encodeTuple(w, CtaExpect.Master, e.master, fam, keep);
  encodeTuple(w, CtaExpect.Tuple, e.tuple, fam, keep);
  encodeTuple(w, CtaExpect.Mask, e.mask, fam, keep);
  if (e.timeout !== undefined) w.u32be(CtaExpect.Timeout, e.timeout);
  if (ro && e.id !== undefined) w.u32be(CtaExpect.Id, e.id);
  if (e.helper !== undefined) w.strz(CtaExpect.HelpName, e.helper);
  if (e.zone !== undefined) w.u16be(CtaExpect.Zone, e.zone);
  if (e.flags !== undefined) w.u32be(CtaExpect.Flags, e.flags);
  if (e.class !== undefined) w.u32be(CtaExpect.Class, e.class);
  if (e.nat !== undefined && !hasRaw(u, CtaExpect.Nat)) {
    const tok = w.nest(CtaExpect.Nat);
    w.u32be(CtaExpectNat.Dir, e.nat.dir);
    encodeTuple(w, CtaExpectNat.Tuple, e.nat.tuple, fam, keep);
    w.endNest(tok);
  }
  if (e.fn !== undefined) w.strz(CtaExpect.Fn, e.fn);
  if (u !== undefined) for (let i = 0; i < u.length; i++) w.raw(u[i]!);
}
