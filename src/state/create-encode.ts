// Create requests for a commit straight from table slots: the common entry (TCP/UDP-like tuple, binary addresses,
// no rare fields) without building a Flow and its text addresses on the way. The bytes are exactly those of
// encodeCreate(w, table.flowAt(slot, now), ...) (test/unit/state/create-encode.test.ts holds both paths to it);
// any other entry returns false and the caller takes that path.
import type { AttrWriter } from '../kernel/nla.js';
import { Cta, CtaIp, CtaProto, CtaProtoinfo, CtaProtoinfoTcp, CtaSynproxy, CtaTuple } from '../kernel/ctnetlink-const.js';
import { CtMsg, NfnlSubsys, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST } from '../kernel/nfnetlink.js';
import { statusForWrite, tcpFlagsForWrite, type WritePolicy } from '../kernel/write-rules.js';
import { keyFamily, keyTupleBytes, type KeyZones } from './key.js';
import type { FlowTable } from './table.js';

const AF_INET = 2;

// reused by every call (single-threaded, no re-entry)
const tuple = Buffer.alloc(1 + 2 * 16 + 4);
const zones: KeyZones = { ctZone: -1, origZone: -1, replyZone: -1 };
const synproxy = new Uint32Array(4);
const tcp = new Int16Array(5);

/** One CT_NEW (CREATE|EXCL) for the entry at slot into w, or false (nothing written) when it is not a common one. */
export function encodeCreateAt(w: AttrWriter, table: FlowTable, slot: number, now: number, policy: WritePolicy, seq: number, ackFlag: number): boolean {
  const key = table.keyAt(slot)!;
  const len = keyTupleBytes(key, tuple, 0, zones);
  if (len === 0 || !table.isPlainOrSynproxyAt(slot, synproxy)) return false;
  const family = keyFamily(key);
  const alen = family === AF_INET ? 4 : 16;
  const ported = len > 1 + 2 * alen;
  w.beginMessage((NfnlSubsys.Ctnetlink << 8) | CtMsg.New, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | ackFlag, seq, family);
  // the reply tuple is the original one mirrored (a plain entry stores no other)
  writeTuple(w, Cta.TupleOrig, alen, ported, false, zones.origZone);
  writeTuple(w, Cta.TupleReply, alen, ported, true, zones.replyZone);
  if (zones.ctZone >= 0) w.u16be(Cta.Zone, zones.ctZone);
  w.u32be(Cta.Status, statusForWrite(table.statusAt(slot)));
  const remaining = table.remainingOrNoneAt(slot, now);
  w.u32be(Cta.Timeout, remaining < 0 ? policy.defaultTimeout : remaining);
  if (table.tcpInto(slot, tcp)) {
    const both = tcp[1]! >= 0 && tcp[2]! >= 0;
    const pi = w.nest(Cta.Protoinfo);
    const n = w.nest(CtaProtoinfo.Tcp);
    w.u8(CtaProtoinfoTcp.State, tcp[0]!);
    if (both) {
      w.u8(CtaProtoinfoTcp.WscaleOriginal, tcp[1]!);
      w.u8(CtaProtoinfoTcp.WscaleReply, tcp[2]!);
    }
    const fo = tcpFlagsForWrite(tcp[3]! < 0 ? undefined : tcp[3]!, both, policy) & 0xff;
    const fr = tcpFlagsForWrite(tcp[4]! < 0 ? undefined : tcp[4]!, both, policy) & 0xff;
    w.u16be(CtaProtoinfoTcp.FlagsOriginal, (fo << 8) | fo); // flags, then the mask: the same bits
    w.u16be(CtaProtoinfoTcp.FlagsReply, (fr << 8) | fr);
    w.endNest(n);
    w.endNest(pi);
  }
  if (synproxy[3]) {
    const n = w.nest(Cta.Synproxy);
    w.u32be(CtaSynproxy.Isn, synproxy[0]!);
    w.u32be(CtaSynproxy.Its, synproxy[1]!);
    w.u32be(CtaSynproxy.Tsoff, synproxy[2]!);
    w.endNest(n);
  }
  const mark = table.markAt(slot);
  if (mark !== undefined) w.u32be(Cta.Mark, mark);
  w.endMessage();
  return true;
}

/** tuple holds [proto][src][dst][sport][dport] (keyTupleBytes); mirrored swaps both pairs. */
function writeTuple(w: AttrWriter, type: number, alen: number, ported: boolean, mirrored: boolean, zone: number): void {
  const t = w.nest(type);
  const ip = w.nest(CtaTuple.Ip);
  const src = mirrored ? 1 + alen : 1;
  const dst = mirrored ? 1 : 1 + alen;
  w.slice(alen === 4 ? CtaIp.V4Src : CtaIp.V6Src, tuple, src, alen);
  w.slice(alen === 4 ? CtaIp.V4Dst : CtaIp.V6Dst, tuple, dst, alen);
  w.endNest(ip);
  const pr = w.nest(CtaTuple.Proto);
  w.u8(CtaProto.Num, tuple[0]!);
  if (ported) {
    const p = 1 + 2 * alen;
    w.slice(CtaProto.SrcPort, tuple, mirrored ? p + 2 : p, 2);
    w.slice(CtaProto.DstPort, tuple, mirrored ? p : p + 2, 2);
  }
  w.endNest(pr);
  if (zone >= 0) w.u16be(CtaTuple.Zone, zone);
  w.endNest(t);
}
