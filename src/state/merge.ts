// Merge rules for what peers send: monotonic TCP state and sticky status bits (as pfsync), incarnations, tombstones.
//
// Versions: every change the sender's local table makes gets the next number of one sender-wide sequence
// (`version`); `born` is the version at which the current incarnation of that key was created (a kernel NEW, or a
// re-creation seen as a TCP state moving backwards or a new conntrack id). Both travel with every upsert. Within a
// sender epoch they order everything: an older version is stale, a larger `born` is a new connection on the same
// tuple. Versions of different sender epochs (a restarted sender) are not comparable: the sync layer clears the
// peer table or runs a full bulk (beginBulk/endBulk) when a peer restarts.

import { Ips, TcpState } from '../kernel/types.js';

/**
 * Rank of each TCP_CONNTRACK_* state in the life of one connection. SYN_SENT2 (simultaneous open, numerically 9)
 * sits between SYN_SENT and SYN_RECV. States the kernel may add later rank -1: they are never judged backwards.
 */
const TCP_RANK: readonly number[] = (() => {
  const order = [
    TcpState.None,
    TcpState.SynSent,
    TcpState.SynSent2,
    TcpState.SynRecv,
    TcpState.Established,
    TcpState.FinWait,
    TcpState.CloseWait,
    TcpState.LastAck,
    TcpState.TimeWait,
    TcpState.Close,
  ];
  const rank: number[] = new Array<number>(16).fill(-1);
  order.forEach((s, i) => (rank[s] = i));
  return rank;
})();

/** Position of a TCP state in NONE < SYN_SENT < SYN_SENT2 < SYN_RECV < ESTABLISHED < FIN_WAIT < CLOSE_WAIT < LAST_ACK < TIME_WAIT < CLOSE; -1 if unknown. */
export function tcpRank(state: number): number {
  return state >= 0 && state < TCP_RANK.length ? TCP_RANK[state]! : -1;
}

/** True if going from `from` to `to` would move a connection's TCP state backwards. */
export function isTcpBackwards(from: number, to: number): boolean {
  const a = tcpRank(from);
  const b = tcpRank(to);
  return a >= 0 && b >= 0 && b < a;
}

/** Status bits that, once set, stay set for the life of a connection (the kernel refuses to clear them: EBUSY). */
export const STICKY_STATUS = Ips.Assured | Ips.SeenReply;

/** The incoming status with the sticky bits of the stored one kept. */
export function mergeStatus(stored: number, incoming: number): number {
  return (incoming | (stored & STICKY_STATUS)) >>> 0;
}

/** How an upsert relates to what is stored for its key. */
export type UpsertVerdict =
  | 'new' // nothing stored: add
  | 'reincarnation' // a newer connection on the same tuple: replace wholesale, backwards moves allowed
  | 'update' // newer version of the same connection: merge monotonically
  | 'duplicate' // same version (a re-send of current state): contents already held; the timeout may be fresher
  | 'stale' // older version or older incarnation: ignore
  | 'tombstoned'; // the sender destroyed this key at a version not older than this upsert: never resurrect

/**
 * Judges an upsert of (version, born) against the stored entry (undefined if none) and the tombstone version
 * (undefined if none). Pure: the peer table applies the verdict.
 */
export function judgeUpsert(
  stored: { version: number; born: number } | undefined,
  tombstone: number | undefined,
  version: number,
  born: number,
): UpsertVerdict {
  return stored === undefined
    ? judgeUpsertAt(false, 0, 0, tombstone, version, born)
    : judgeUpsertAt(true, stored.version, stored.born, tombstone, version, born);
}

/** judgeUpsert with the stored entry's version and born as numbers (`held` false: nothing stored): no object per call. */
export function judgeUpsertAt(
  held: boolean,
  storedVersion: number,
  storedBorn: number,
  tombstone: number | undefined,
  version: number,
  born: number,
): UpsertVerdict {
  if (tombstone !== undefined && version <= tombstone) return 'tombstoned';
  if (!held) return 'new';
  if (born > storedBorn) return version > storedVersion ? 'reincarnation' : 'stale';
  if (born < storedBorn) return 'stale';
  if (version < storedVersion) return 'stale';
  if (version === storedVersion) return 'duplicate';
  return 'update';
}

/** How a delete relates to what is stored. */
export type DeleteVerdict = 'delete' | 'unknown' | 'stale';

/** A delete at `version` removes the stored entry unless the entry is newer (a later incarnation already arrived). */
export function judgeDelete(storedVersion: number | undefined, version: number): DeleteVerdict {
  if (storedVersion === undefined) return 'unknown';
  return version < storedVersion ? 'stale' : 'delete';
}
