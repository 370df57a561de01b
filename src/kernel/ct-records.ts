// The binding's conntrack message records (NetfilterSocketOptions.ctScan): the event path's first step, the walk over
// a read's messages and scanPlainFlow's reading of a NEW event, done in C++ (namespace ctscan in the binding patch,
// which must keep this layout) so that the JS thread starts from fields instead of attribute bytes.
import type { PlainFlow } from './flow-codec.js';

/** u32 words of one message's record; Off..Payload as forEachMessage's NlMsgView, Proto.. as PlainFlow. */
export const enum Rec {
  Off, End, Type, Flags, Pid, Family, Payload, Bits, Proto, SrcAt, DstAt, Sport, Dport, Zone, Status, Timeout, Mark, Id,
  TcpState, WsOrig, WsReply, FlOrig, FlReply, Isn, Its, Tsoff,
}
export const REC_STRIDE = 28;

/** Rec.Bits: Plain = scanPlainFlow would accept the message; the Has* bits say which u32 values are present. */
export const enum RecBit {
  Plain = 1, HasZone = 2, HasStatus = 4, HasTimeout = 8, HasMark = 16, HasId = 32, Protoinfo = 64, Synproxy = 128,
}

/**
 * What scanPlainFlow would have put into out, from the record at word r of u. Absent byte-sized values are stored as
 * 0xffffffff, which `| 0` reads as -1. False, out untouched, for a message not of the plain form.
 */
export function plainFromRecord(u: Uint32Array, r: number, family: number, out: PlainFlow): boolean {
  const bits = u[r + Rec.Bits]!;
  if ((bits & RecBit.Plain) === 0) return false;
  out.family = family;
  out.addrLen = family === 2 ? 4 : 16;
  out.proto = u[r + Rec.Proto]!;
  out.srcAt = u[r + Rec.SrcAt]!;
  out.dstAt = u[r + Rec.DstAt]!;
  out.sport = u[r + Rec.Sport]!;
  out.dport = u[r + Rec.Dport]!;
  out.zone = u[r + Rec.Zone]! | 0;
  out.status = bits & RecBit.HasStatus ? u[r + Rec.Status]! : -1;
  out.timeout = bits & RecBit.HasTimeout ? u[r + Rec.Timeout]! : -1;
  out.mark = bits & RecBit.HasMark ? u[r + Rec.Mark]! : -1;
  out.id = bits & RecBit.HasId ? u[r + Rec.Id]! : -1;
  out.protoinfo = (bits & RecBit.Protoinfo) !== 0;
  out.tcpState = u[r + Rec.TcpState]! | 0;
  out.wscaleOrig = u[r + Rec.WsOrig]! | 0;
  out.wscaleReply = u[r + Rec.WsReply]! | 0;
  out.flagsOrig = u[r + Rec.FlOrig]! | 0;
  out.flagsReply = u[r + Rec.FlReply]! | 0;
  out.synproxy = (bits & RecBit.Synproxy) !== 0;
  if (out.synproxy) {
    out.isn = u[r + Rec.Isn]!;
    out.its = u[r + Rec.Its]!;
    out.tsoff = u[r + Rec.Tsoff]!;
  }
  return true;
}
