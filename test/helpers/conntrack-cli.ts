// Test oracle: runs `conntrack -L` in a lab namespace and parses its text into records comparable with our Flow model.
import type { Expectation, Flow, Tuple } from '../../src/kernel/types.js';
import type { Lab } from '../../src/lab/netns.js';

/** One direction as `conntrack -L -o extended` prints it. Counters appear only with nf_conntrack_acct=1. */
export interface CliTuple {
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  icmpType?: number;
  icmpCode?: number;
  icmpId?: number;
  /** GRE keys (srckey=/dstkey=), as printed (hex text). */
  srcKey?: string;
  dstKey?: string;
  /** Per-direction zone (zone-orig= / zone-reply=). */
  zone?: number;
  packets?: bigint;
  bytes?: bigint;
}

/** One line of `conntrack -L [-o extended[,id]]`. */
export interface CliFlow {
  /** AF_INET = 2, AF_INET6 = 10 (taken from the address when the line has no l3 columns). */
  family: number;
  proto: number;
  protoName: string;
  /** Seconds left. Ticks down between two reads and restarts on every packet: never compare it exactly. */
  timeout?: number;
  /** TCP/SCTP/DCCP state name as printed (ESTABLISHED, TIME_WAIT, COOKIE_WAIT, ...). */
  state?: string;
  orig: CliTuple;
  reply: CliTuple;
  /** Bracketed status words: ASSURED, UNREPLIED, OFFLOAD, HW_OFFLOAD. */
  flags: string[];
  mark?: number;
  zone?: number;
  /** As printed: label names from connlabel.conf, comma separated. */
  labels?: string;
  use?: number;
  helper?: string;
  secctx?: string;
  /** Conntrack id (`-o id`): differs between nodes. */
  id?: number;
  deltaTime?: number;
  /** key=value pairs this parser does not know, kept so a new conntrack version does not lose data silently. */
  extra: Record<string, string>;
  raw: string;
}

/** One line of `conntrack -L expect`. */
export interface CliExpectation {
  family: number;
  timeout: number;
  proto: number;
  tuple: CliTuple;
  mask: CliTuple;
  master: CliTuple;
  /** Bare words such as PERMANENT, INACTIVE, USERSPACE. */
  flags: string[];
  class?: number;
  helper?: string;
  zone?: number;
  extra: Record<string, string>;
  raw: string;
}

export class CliParseError extends Error {
  constructor(message: string, readonly line: string) {
    super(`${message}: ${line}`);
  }
}

const AF_INET = 2;
const AF_INET6 = 10;
const familyOf = (addr: string): number => (addr.includes(':') ? AF_INET6 : AF_INET);

/** True for lines that carry no record: blanks, our fixture comments, conntrack's summary line. */
function isNoise(line: string): boolean {
  const t = line.trim();
  return t === '' || t.startsWith('#') || t.startsWith('conntrack v');
}

/** Applies one key=value to a tuple; false when the key is not a tuple key. */
function setTupleKey(t: Partial<CliTuple>, key: string, value: string): boolean {
  switch (key) {
    case 'src':
      t.src = value;
      return true;
    case 'dst':
      t.dst = value;
      return true;
    case 'sport':
      t.sport = Number(value);
      return true;
    case 'dport':
      t.dport = Number(value);
      return true;
    case 'type':
      t.icmpType = Number(value);
      return true;
    case 'code':
      t.icmpCode = Number(value);
      return true;
    case 'id':
      t.icmpId = Number(value);
      return true;
    case 'srckey':
      t.srcKey = value;
      return true;
    case 'dstkey':
      t.dstKey = value;
      return true;
    case 'packets':
      t.packets = BigInt(value);
      return true;
    case 'bytes':
      t.bytes = BigInt(value);
      return true;
    default:
      return false;
  }
}

function finishTuple(t: Partial<CliTuple>, what: string, line: string): CliTuple {
  if (t.src === undefined || t.dst === undefined) throw new CliParseError(`${what} tuple without src/dst`, line);
  return t as CliTuple;
}

/** Parses one flow line; undefined for noise lines; throws CliParseError on a line it cannot make sense of. */
export function parseConntrackLine(line: string): CliFlow | undefined {
  if (isNoise(line)) return undefined;
  const tokens = line.trim().split(/\s+/);
  let i = 0;
  if (/^\[\d+(\.\d+)?\]$/.test(tokens[0]!)) i++; // `-o timestamp` event prefix
  // Optional "ipv4 2" (extended), then "tcp 6", then the timeout (absent for offloaded flows).
  let family: number | undefined;
  if (/^(ipv4|ipv6|unknown)$/.test(tokens[i]!) && /^\d+$/.test(tokens[i + 1] ?? '')) {
    family = Number(tokens[i + 1]);
    i += 2;
  }
  const protoName = tokens[i++];
  const protoNum = tokens[i++];
  if (!protoName || !/^\d+$/.test(protoNum ?? '')) throw new CliParseError('no protocol columns', line);
  const rec: Omit<CliFlow, 'orig' | 'reply' | 'family'> = { proto: Number(protoNum), protoName, flags: [], extra: {}, raw: line };
  if (/^\d+$/.test(tokens[i] ?? '')) rec.timeout = Number(tokens[i++]);
  if (/^[A-Z_0-9]+$/.test(tokens[i] ?? '')) rec.state = tokens[i++];

  const orig: Partial<CliTuple> = {};
  const reply: Partial<CliTuple> = {};
  // Phase follows the printed order: orig tuple, reply tuple (starts at the second src=), then entry attributes.
  let phase: 'orig' | 'reply' | 'meta' = 'orig';
  for (; i < tokens.length; i++) {
    const tok = tokens[i]!;
    const flag = /^\[([A-Z_]+)\]$/.exec(tok);
    if (flag) {
      rec.flags.push(flag[1]!);
      continue;
    }
    const eq = tok.indexOf('=');
    if (eq <= 0) throw new CliParseError(`unexpected token "${tok}"`, line);
    const key = tok.slice(0, eq);
    const value = tok.slice(eq + 1);
    if (key === 'src' && phase === 'orig' && orig.src !== undefined) phase = 'reply';
    if (key === 'zone-orig') orig.zone = Number(value);
    else if (key === 'zone-reply') reply.zone = Number(value);
    else if (phase !== 'meta' && setTupleKey(phase === 'orig' ? orig : reply, key, value)) continue;
    else {
      phase = 'meta';
      switch (key) {
        case 'mark':
          rec.mark = Number(value);
          break;
        case 'zone':
          rec.zone = Number(value);
          break;
        case 'use':
          rec.use = Number(value);
          break;
        case 'id':
          rec.id = Number(value);
          break;
        case 'helper':
          rec.helper = value;
          break;
        case 'secctx':
          rec.secctx = value;
          break;
        case 'labels':
          rec.labels = value;
          break;
        case 'delta-time':
          rec.deltaTime = Number(value);
          break;
        default:
          rec.extra[key] = value;
      }
    }
  }
  const o = finishTuple(orig, 'orig', line);
  return { ...rec, family: family ?? familyOf(o.src), orig: o, reply: finishTuple(reply, 'reply', line) };
}

export function parseConntrackOutput(text: string): CliFlow[] {
  return text.split('\n').flatMap((l) => parseConntrackLine(l) ?? []);
}

/** Parses one `conntrack -L expect` line: timeout, proto=, tuple, mask-*, master-*, then class/helper/flags. */
export function parseExpectLine(line: string): CliExpectation | undefined {
  if (isNoise(line)) return undefined;
  const tokens = line.trim().split(/\s+/);
  if (!/^\d+$/.test(tokens[0]!)) throw new CliParseError('expectation without timeout', line);
  const rec: Omit<CliExpectation, 'tuple' | 'mask' | 'master' | 'family'> = {
    timeout: Number(tokens[0]),
    proto: 0,
    flags: [],
    extra: {},
    raw: line,
  };
  const parts = { tuple: {} as Partial<CliTuple>, mask: {} as Partial<CliTuple>, master: {} as Partial<CliTuple> };
  let phase: keyof typeof parts | 'meta' = 'tuple';
  for (const tok of tokens.slice(1)) {
    const eq = tok.indexOf('=');
    if (eq <= 0) {
      rec.flags.push(...tok.split(',').filter(Boolean));
      continue;
    }
    let key = tok.slice(0, eq);
    const value = tok.slice(eq + 1);
    if (key === 'proto') {
      rec.proto = Number(value);
      continue;
    }
    if (key.startsWith('mask-')) (phase = 'mask'), (key = key.slice(5));
    else if (key.startsWith('master-')) (phase = 'master'), (key = key.slice(7));
    if (phase !== 'meta' && setTupleKey(parts[phase], key, value)) continue;
    phase = 'meta';
    if (key === 'class') rec.class = Number(value);
    else if (key === 'helper') rec.helper = value;
    else if (key === 'zone') rec.zone = Number(value);
    else rec.extra[key] = value;
  }
  const tuple = finishTuple(parts.tuple, 'expected', line);
  return {
    ...rec,
    family: familyOf(tuple.src),
    tuple,
    mask: finishTuple(parts.mask, 'mask', line),
    master: finishTuple(parts.master, 'master', line),
  };
}

export function parseExpectOutput(text: string): CliExpectation[] {
  return text.split('\n').flatMap((l) => parseExpectLine(l) ?? []);
}

// ---- running conntrack in a lab namespace --------------------------------------------------------------------------

export interface ListOptions {
  /** Only this family (`-f ipv4|ipv6`). Default: both. */
  family?: 'ipv4' | 'ipv6';
}

/** `conntrack -L -o extended,id` inside ns. */
export async function listFlows(lab: Lab, ns: string, opts: ListOptions = {}): Promise<CliFlow[]> {
  const fam = opts.family ? ['-f', opts.family] : [];
  const r = await lab.exec(ns, ['conntrack', '-L', ...fam, '-o', 'extended,id']);
  return parseConntrackOutput(r.stdout);
}

/** `conntrack -L expect` inside ns. */
export async function listExpectations(lab: Lab, ns: string, opts: ListOptions = {}): Promise<CliExpectation[]> {
  const fam = opts.family ? ['-f', opts.family] : [];
  const r = await lab.exec(ns, ['conntrack', '-L', 'expect', ...fam]);
  return parseExpectOutput(r.stdout);
}

/** Polls listFlows until pick() finds something (conntrack state lags packets by a little). */
export async function waitForFlow(
  lab: Lab,
  ns: string,
  pick: (f: CliFlow) => boolean,
  timeoutMs = 5000,
): Promise<CliFlow> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = (await listFlows(lab, ns)).find(pick);
    if (hit) return hit;
    if (Date.now() > deadline) throw new Error(`no matching conntrack entry in ${ns} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// ---- comparison with the Flow model --------------------------------------------------------------------------------

/**
 * The fields two nodes (or the kernel and our decoder) must agree on. Left out on purpose:
 * - timeout: ticks down between reads, restarts on each packet, and is only an estimate on a standby;
 * - use (a refcount), id (per node), packets/bytes and delta-time (cannot be set through ctnetlink);
 * - OFFLOAD/HW_OFFLOAD (a local forwarding decision, not connection state).
 */
export interface ComparableTuple {
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  icmpType?: number;
  icmpCode?: number;
  icmpId?: number;
  zone?: number;
}

export interface ComparableFlow {
  family: number;
  proto: number;
  state?: string;
  orig: ComparableTuple;
  reply: ComparableTuple;
  assured: boolean;
  /** conntrack prints [UNREPLIED] when IPS_SEEN_REPLY is clear. */
  seenReply: boolean;
  mark: number;
  zone: number;
  helper?: string;
  labels?: string;
  secctx?: string;
}

function tupleOut(t: CliTuple | Tuple): ComparableTuple {
  const c: ComparableTuple = { src: t.src, dst: t.dst };
  if (t.sport !== undefined) c.sport = t.sport;
  if (t.dport !== undefined) c.dport = t.dport;
  if (t.icmpType !== undefined) c.icmpType = t.icmpType;
  if (t.icmpCode !== undefined) c.icmpCode = t.icmpCode;
  if (t.icmpId !== undefined) c.icmpId = t.icmpId;
  if (t.zone !== undefined && t.zone !== 0) c.zone = t.zone;
  return c;
}

function withOptional<T extends object>(base: T, extras: Partial<T>): T {
  for (const [k, v] of Object.entries(extras)) if (v !== undefined) (base as Record<string, unknown>)[k] = v;
  return base;
}

export function toComparable(f: CliFlow): ComparableFlow {
  return withOptional(
    {
      family: f.family,
      proto: f.proto,
      orig: tupleOut(f.orig),
      reply: tupleOut(f.reply),
      assured: f.flags.includes('ASSURED'),
      seenReply: !f.flags.includes('UNREPLIED'),
      mark: f.mark ?? 0,
      zone: f.zone ?? 0,
    } as ComparableFlow,
    { state: f.state, helper: f.helper, labels: f.labels, secctx: f.secctx },
  );
}

/** State names conntrack prints, indexed by TCP_CONNTRACK_* / SCTP_CONNTRACK_* / CT_DCCP_*. */
export const TCP_STATE_NAMES = ['NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2'];
export const SCTP_STATE_NAMES = ['NONE', 'CLOSED', 'COOKIE_WAIT', 'COOKIE_ECHOED', 'ESTABLISHED', 'SHUTDOWN_SENT', 'SHUTDOWN_RECD', 'SHUTDOWN_ACK_SENT', 'HEARTBEAT_SENT', 'HEARTBEAT_ACKED'];
export const DCCP_STATE_NAMES = ['NONE', 'REQUEST', 'RESPOND', 'PARTOPEN', 'OPEN', 'CLOSEREQ', 'CLOSING', 'TIMEWAIT', 'IGNORE', 'INVALID'];

const IPS_SEEN_REPLY = 1 << 1;
const IPS_ASSURED = 1 << 2;

/** The same comparable view of a decoded Flow, so a test can check our decoder (or a replica) against the CLI. */
export function flowToComparable(f: Flow): ComparableFlow {
  const p = f.protoinfo;
  const state = p?.tcp
    ? TCP_STATE_NAMES[p.tcp.state]
    : p?.sctp
      ? SCTP_STATE_NAMES[p.sctp.state]
      : p?.dccp
        ? DCCP_STATE_NAMES[p.dccp.state]
        : undefined;
  const status = f.status ?? 0;
  return withOptional(
    {
      family: f.family,
      proto: f.orig.proto,
      orig: tupleOut(f.orig),
      reply: tupleOut(f.reply),
      assured: (status & IPS_ASSURED) !== 0,
      seenReply: (status & IPS_SEEN_REPLY) !== 0,
      mark: f.mark ?? 0,
      zone: f.zone ?? 0,
    } as ComparableFlow,
    { state, helper: f.helper },
  );
}

/** A stable text key for set comparisons (orig tuple + zone identify an entry). */
export function comparableKey(c: ComparableFlow): string {
  const t = c.orig;
  return [c.family, c.proto, c.zone, t.src, t.dst, t.sport ?? t.icmpType, t.dport ?? t.icmpCode, t.icmpId ?? ''].join('|');
}

/** True when two timeouts read at different moments could be the same entry (b read no earlier than a). */
export function timeoutsAgree(a: number, b: number, elapsedSec: number, slackSec = 2): boolean {
  return b <= a + slackSec && b >= a - elapsedSec - slackSec;
}

export interface ComparableExpectation {
  family: number;
  proto: number;
  tuple: ComparableTuple;
  mask: ComparableTuple;
  master: ComparableTuple;
  helper?: string;
  class?: number;
  zone: number;
}

export function expectationToComparable(e: CliExpectation): ComparableExpectation {
  return withOptional(
    {
      family: e.family,
      proto: e.proto,
      tuple: tupleOut(e.tuple),
      mask: tupleOut(e.mask),
      master: tupleOut(e.master),
      zone: e.zone ?? 0,
    } as ComparableExpectation,
    { helper: e.helper, class: e.class },
  );
}

/** The same view of a decoded Expectation. */
export function expectationModelToComparable(e: Expectation): ComparableExpectation {
  return withOptional(
    {
      family: e.family,
      proto: e.tuple.proto,
      tuple: tupleOut(e.tuple),
      mask: tupleOut(e.mask),
      master: tupleOut(e.master),
      zone: e.zone ?? 0,
    } as ComparableExpectation,
    { helper: e.helper, class: e.class },
  );
}
