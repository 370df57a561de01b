// nlmsghdr / nfgenmsg layout, message type numbers, and iteration over the messages of one netlink datagram.

import { align4, nlaCheck, nlaTypeLE, readStrz, NLMSG_HDRLEN, NFGENMSG_LEN } from './nla.js';

export { NLMSG_HDRLEN, NFGENMSG_LEN };

export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;
/** Types below this are netlink control messages (no nfgenmsg). */
export const NLMSG_MIN_TYPE = 0x10;

export const NLM_F_REQUEST = 1;
export const NLM_F_MULTI = 2;
export const NLM_F_ACK = 4;
export const NLM_F_ECHO = 8;
export const NLM_F_DUMP_INTR = 16;
export const NLM_F_DUMP_FILTERED = 32;
// GET requests
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
export const NLM_F_ATOMIC = 0x400;
export const NLM_F_DUMP = 0x300; // NLM_F_ROOT | NLM_F_MATCH
// NEW requests
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;
// NLMSG_ERROR (acknowledgements)
export const NLM_F_CAPPED = 0x100;
export const NLM_F_ACK_TLVS = 0x200;

/** enum nlmsgerr_attrs: TLVs after an NLMSG_ERROR when NLM_F_ACK_TLVS is set (NETLINK_EXT_ACK). */
export const enum NlmsgerrAttr {
  Msg = 1, // NLMSGERR_ATTR_MSG: NUL-terminated text
  Offs = 2, // NLMSGERR_ATTR_OFFS: u32 offset of the offending attribute in the request
  Cookie = 3, // NLMSGERR_ATTR_COOKIE
}

export const NFNETLINK_V0 = 0;

/** NFNL_SUBSYS_*: the high byte of nlmsg_type. */
export const enum NfnlSubsys {
  Ctnetlink = 1, // NFNL_SUBSYS_CTNETLINK
  CtnetlinkExp = 2, // NFNL_SUBSYS_CTNETLINK_EXP
}

/** enum cntl_msg_types: the low byte of nlmsg_type for NFNL_SUBSYS_CTNETLINK. */
export const enum CtMsg {
  New = 0, // IPCTNL_MSG_CT_NEW
  Get = 1, // IPCTNL_MSG_CT_GET
  Delete = 2, // IPCTNL_MSG_CT_DELETE
  GetCtrZero = 3, // IPCTNL_MSG_CT_GET_CTRZERO
  GetStatsCpu = 4, // IPCTNL_MSG_CT_GET_STATS_CPU
  GetStats = 5, // IPCTNL_MSG_CT_GET_STATS
  GetDying = 6, // IPCTNL_MSG_CT_GET_DYING
  GetUnconfirmed = 7, // IPCTNL_MSG_CT_GET_UNCONFIRMED
}

/** enum ctnl_exp_msg_types: the low byte of nlmsg_type for NFNL_SUBSYS_CTNETLINK_EXP. */
export const enum ExpMsg {
  New = 0, // IPCTNL_MSG_EXP_NEW
  Get = 1, // IPCTNL_MSG_EXP_GET
  Delete = 2, // IPCTNL_MSG_EXP_DELETE
  GetStatsCpu = 3, // IPCTNL_MSG_EXP_GET_STATS_CPU
}

/** nlmsg_type of a subsystem message: (subsys << 8) | msg. */
export function nfnlMsgType(subsys: number, msg: number): number {
  return ((subsys & 0xff) << 8) | (msg & 0xff);
}

/** One message of a datagram, as offsets into the datagram's buffer (valid while that buffer is). */
export interface NlMsgView {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  off: number; // start of nlmsghdr
  len: number; // nlmsg_len
  family: number; // nfgenmsg.nfgen_family (0 for control messages)
  resId: number; // nfgenmsg.res_id (big endian on the wire)
  payloadOff: number; // after nfgenmsg; after nlmsghdr for control messages (< NLMSG_MIN_TYPE)
  end: number; // off + len
}

/**
 * Calls cb for every well-formed message in buf. Never throws (a throwing cb is the caller's business) and does
 * bounded work: every step advances by at least one header. Returns the number of bytes skipped as malformed:
 * 0 for a clean datagram. A bad nlmsg_len (shorter than the header, or past the end) stops the walk, since
 * nothing after it can be trusted; an nfnetlink message too short for its nfgenmsg is skipped alone.
 */
export function forEachMessage(buf: Buffer, cb: (m: NlMsgView) => void): number {
  const n = buf.length;
  let off = 0;
  let skipped = 0;
  while (off < n) {
    if (n - off < NLMSG_HDRLEN) return skipped + (n - off);
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || len > n - off) return skipped + (n - off);
    const type = buf[off + 4]! | (buf[off + 5]! << 8);
    const flags = buf[off + 6]! | (buf[off + 7]! << 8);
    const seq = buf.readUInt32LE(off + 8);
    const pid = buf.readUInt32LE(off + 12);
    const end = off + len;
    if (type < NLMSG_MIN_TYPE) {
      cb({ type, flags, seq, pid, off, len, family: 0, resId: 0, payloadOff: off + NLMSG_HDRLEN, end });
    } else if (len < NLMSG_HDRLEN + NFGENMSG_LEN) {
      skipped += len;
    } else {
      const family = buf[off + 16]!;
      const resId = (buf[off + 18]! << 8) | buf[off + 19]!;
      cb({ type, flags, seq, pid, off, len, family, resId, payloadOff: off + NLMSG_HDRLEN + NFGENMSG_LEN, end });
    }
    const next = off + align4(len);
    // The last message may omit its alignment padding.
    off = next > n ? n : next;
  }
  return skipped;
}

const EPROTO = 71;

/**
 * Reads an NLMSG_ERROR (or the status of an NLMSG_DONE). errno is positive, 0 for an acknowledgement. seq and
 * msgType come from the echoed request header when present. A message too short to carry its error code reports
 * EPROTO rather than a false success. Never throws.
 */
export function decodeNlError(
  buf: Buffer,
  m: NlMsgView,
): { errno: number; seq: number; msgType: number; extAckMsg?: string } {
  const p = m.off + NLMSG_HDRLEN;
  if (m.end - p < 4) return { errno: EPROTO, seq: m.seq, msgType: 0 };
  const err = buf.readInt32LE(p);
  const errno = err < 0 ? -err : err;
  const orig = p + 4;
  if (m.type !== NLMSG_ERROR || m.end - orig < NLMSG_HDRLEN) return { errno, seq: m.seq, msgType: 0 };
  const origLen = buf.readUInt32LE(orig);
  const msgType = buf[orig + 4]! | (buf[orig + 5]! << 8);
  const seq = buf.readUInt32LE(orig + 8);
  const out: { errno: number; seq: number; msgType: number; extAckMsg?: string } = { errno, seq, msgType };
  if ((m.flags & NLM_F_ACK_TLVS) === 0) return out;
  // Without NLM_F_CAPPED the whole request is echoed before the TLVs.
  let t = (m.flags & NLM_F_CAPPED) !== 0 ? orig + NLMSG_HDRLEN : orig + align4(origLen);
  if (t < orig + NLMSG_HDRLEN) t = orig + NLMSG_HDRLEN;
  while (t < m.end) {
    const len = nlaCheck(buf, t, m.end);
    if (len < 0) break;
    if (nlaTypeLE(buf, t) === NlmsgerrAttr.Msg) out.extAckMsg = readStrz(buf, t + 4, len - 4);
    t += align4(len);
  }
  return out;
}
