// keepalived's notify conventions parsed: the generic notify's arguments, per-state names, and FIFO lines.

export type HaState = 'MASTER' | 'BACKUP' | 'FAULT' | 'STOP';
const STATES: readonly string[] = ['MASTER', 'BACKUP', 'FAULT', 'STOP'];

export interface Transition {
  state: HaState;
  /** INSTANCE or GROUP name, when keepalived said. */
  scope?: 'INSTANCE' | 'GROUP';
  name?: string;
  priority?: number;
}

export type Parsed = { ok: true; value: Transition } | { ok: false; error: string };

const USAGE =
  "expected keepalived's generic notify arguments 'GROUP|INSTANCE NAME MASTER|BACKUP|FAULT|STOP [PRIORITY]', or one of master, backup, fault, stop";

/** `ctsync notify ARGS`: keepalived's generic notify (4 appended arguments) or a per-state word. */
export function parseNotifyArgs(args: string[]): Parsed {
  if (args.length === 1 && STATES.includes(args[0].toUpperCase())) return { ok: true, value: { state: args[0].toUpperCase() as HaState } };
  if (args.length < 3 || args.length > 4) return { ok: false, error: `got ${args.length} argument(s); ${USAGE}` };
  const [scope, name, state, prio] = args;
  if (scope !== 'GROUP' && scope !== 'INSTANCE') return { ok: false, error: `'${scope}' is not GROUP or INSTANCE; ${USAGE}` };
  if (!STATES.includes(state)) {
    // DELETED (instance removed on reload) and the *_PRIORITY reports change nothing for us
    return { ok: false, error: `state '${state}' is not one ctsync acts on (MASTER, BACKUP, FAULT, STOP)` };
  }
  const t: Transition = { state: state as HaState, scope, name };
  if (prio !== undefined) {
    if (!/^\d{1,3}$/.test(prio)) return { ok: false, error: `priority '${prio}' is not a number 0-255` };
    t.priority = Number(prio);
  }
  return { ok: true, value: t };
}

/**
 * One line of keepalived's notify FIFO: `INSTANCE "VI_1" MASTER 100`, `GROUP "G1" BACKUP 0`. Lines ctsync does
 * not act on (MASTER_RX_LOWER_PRI, *_PRIORITY, DELETED, VS/RS lines) are `ignored`, not errors.
 */
export function parseFifoLine(line: string): Parsed | { ok: 'ignored'; reason: string } {
  const m = /^(INSTANCE|GROUP)\s+"([^"]*)"\s+([A-Z_]+)(?:\s+(\d+))?\s*$/.exec(line.trim());
  if (!m) {
    if (/^(VS|RS|MONITOR)\b/.test(line.trim())) return { ok: 'ignored', reason: 'not a VRRP line' };
    return { ok: false, error: `malformed FIFO line ${JSON.stringify(line.slice(0, 120))}: expected TYPE "NAME" STATE PRIORITY` };
  }
  const [, scope, name, state, prio] = m;
  if (!STATES.includes(state)) return { ok: 'ignored', reason: `state ${state}` };
  return { ok: true, value: { state: state as HaState, scope: scope as 'INSTANCE' | 'GROUP', name, priority: prio === undefined ? undefined : Number(prio) } };
}
