// Redis key names of one cluster. Every key of one node shares the hash tag {ctsync:<cluster>:<node>}, so a node's
// stream, snapshot, meta, presence and cursors live in one Cluster slot and one MULTI can update them together.

export interface NodeKeys {
  /** The node's frames, in send order (XADD MAXLEN ~). Entry fields: i = writer incarnation, n = frame number, f = frame. */
  stream: string;
  /** Hash: encoded FlowKey → an authenticated single-entry Upsert frame holding the flow's last state. */
  snap: string;
  /** Hash: i, n (the stream entry the snapshot includes), s, q (sync session and seq), c (1 = complete). */
  meta: string;
  /** String with a TTL: the writer's incarnation while it runs. */
  alive: string;
  /** Hash written by this node as a reader: writer node id → last stream id processed. */
  cursors: string;
}

export function nodeKeys(clusterId: string, nodeId: string): NodeKeys {
  const tag = `{ctsync:${clusterId}:${nodeId}}`;
  return { stream: `${tag}:stream`, snap: `${tag}:snap`, meta: `${tag}:meta`, alive: `${tag}:alive`, cursors: `${tag}:cursors` };
}
