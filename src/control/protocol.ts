// The control socket protocol: one JSON object per line each way; a request gets progress lines, or the pieces of a
// streamed result (dump's document), then one reply.
export interface ControlRequest {
  id: number;
  cmd: string;
  args?: Record<string, unknown>;
}

export type ControlReply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: { code: string; message: string } }
  | { id: number; progress: { done: number; total: number; what: string } }
  | { id: number; chunk: string };

/** Largest request line accepted: control requests are tiny, so anything bigger is garbage. */
export const MAX_REQUEST_BYTES = 64 * 1024;

export class ControlError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
