// Kernel tests of NetfilterSocket and the patched netlink binding: overrun survival, SO_RCVBUFFORCE, batching, netns, throwing handlers.

import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NetfilterSocket,
  NETLINK_NO_ENOBUFS,
  netlinkBindingPath,
  READ_AHEAD_MAX,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SOL_NETLINK,
  SOL_SOCKET,
} from '../../src/kernel/netlink-socket.js';
import { EventStream } from '../../src/kernel/events.js';

const NFNLGRP_CONNTRACK_NEW = 1;
const IPCTNL_MSG_CT_NEW = 0x100; // (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
const NLMSG_ERROR = 2;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const NLA_F_NESTED = 0x8000;
const IPS_CONFIRMED = 0x8;
const AF_INET = 2;
const IPPROTO_UDP = 17;

const isRoot = process.getuid?.() === 0;
if (!isRoot) {
  // never a silent skip: say why in the output
  console.warn('test/kernel/netlink-socket.test.ts: SKIPPED, needs root (network namespaces, ctnetlink writes)');
}

function nla(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const out = Buffer.alloc((len + 3) & ~3);
  out.writeUInt16LE(len, 0); // nla header: host order
  out.writeUInt16LE(type, 2);
  payload.copy(out, 4);
  return out;
}
const nest = (type: number, ...attrs: Buffer[]): Buffer => nla(type | NLA_F_NESTED, Buffer.concat(attrs));
const u8 = (v: number): Buffer => Buffer.from([v]);
const be16 = (v: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v); // ctnetlink payload: network order
  return b;
};
const be32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};
const ip4 = (a: number): Buffer => be32(a);

function tuple(type: number, src: number, dst: number, sport: number, dport: number): Buffer {
  // CTA_TUPLE_IP { CTA_IP_V4_SRC, CTA_IP_V4_DST }, CTA_TUPLE_PROTO { CTA_PROTO_NUM, _SRC_PORT, _DST_PORT }
  return nest(type, nest(1, nla(1, ip4(src)), nla(2, ip4(dst))), nest(2, nla(1, u8(IPPROTO_UDP)), nla(2, be16(sport)), nla(3, be16(dport))));
}

/** A minimal IPCTNL_MSG_CT_NEW creating a confirmed UDP entry 10.x → 10.y (DOMAIN.md: both tuples, timeout, CONFIRMED). */
function ctNewUdp(i: number, seq: number, ack = false): Buffer {
  const src = 0x0a000000 | (i & 0xffff);
  const dst = 0x0a010000 | ((i >>> 16) & 0xffff);
  const body = Buffer.concat([
    Buffer.from([AF_INET, 0, 0, 0]), // nfgenmsg: family, version 0, res_id 0
    tuple(1, src, dst, 1000 + (i % 50000), 53),
    tuple(2, dst, src, 53, 1000 + (i % 50000)),
    nla(7, be32(600)), // CTA_TIMEOUT
    nla(3, be32(IPS_CONFIRMED)), // CTA_STATUS
  ]);
  const hdr = Buffer.alloc(16);
  hdr.writeUInt32LE(16 + body.length, 0);
  hdr.writeUInt16LE(IPCTNL_MSG_CT_NEW, 4);
  hdr.writeUInt16LE(NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | (ack ? NLM_F_ACK : 0), 6);
  hdr.writeUInt32LE(seq, 8);
  return Buffer.concat([hdr, body]);
}

interface Walk {
  messages: number;
  types: Map<number, number>;
  errors: number[]; // NLMSG_ERROR codes (0 = ACK)
}

/** Walks an nlmsghdr stream and fails the test on a partial message. */
function walk(buf: Buffer, into: Walk): void {
  let off = 0;
  while (off < buf.length) {
    expect(buf.length - off).toBeGreaterThanOrEqual(16);
    const len = buf.readUInt32LE(off);
    expect(len).toBeGreaterThanOrEqual(16);
    expect(off + len).toBeLessThanOrEqual(buf.length);
    const type = buf.readUInt16LE(off + 4);
    into.messages++;
    into.types.set(type, (into.types.get(type) ?? 0) + 1);
    if (type === NLMSG_ERROR) into.errors.push(buf.readInt32LE(off + 16));
    off += (len + 3) & ~3;
  }
}
const newWalk = (): Walk => ({ messages: 0, types: new Map(), errors: [] });

/**
 * Waits for cond, always letting the event loop through at least one poll phase first: after an overrun the
 * kernel drops every broadcast to the socket (NETLINK_S_CONGESTED) until a read finds its queue empty, so a test
 * that goes on within the same tick would see its next events vanish.
 */
async function until(cond: () => boolean, what: string, limitMs = 20_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  do {
    await new Promise((r) => setTimeout(r, 10));
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  } while (!cond());
}

let seq = 1;
let nextEntry = 0;
/** Creates n fresh entries, 256 CT_NEW messages per sendmsg (one datagram each). */
async function insert(sender: NetfilterSocket, n: number): Promise<void> {
  for (let done = 0; done < n; ) {
    const k = Math.min(256, n - done);
    const msgs: Buffer[] = [];
    for (let j = 0; j < k; j++) msgs.push(ctNewUdp(nextEntry++, seq++));
    await sender.send(msgs);
    done += k;
  }
}

describe.runIf(isRoot)('NetfilterSocket in a throwaway netns (root)', () => {
  const ns = `ctsn-${randomBytes(4).toString('hex')}`;
  const open: NetfilterSocket[] = [];
  const track = (s: NetfilterSocket): NetfilterSocket => (open.push(s), s);

  beforeAll(() => {
    execFileSync('ip', ['netns', 'add', ns]);
    try {
      execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    } catch (e) {
      execFileSync('ip', ['netns', 'del', ns]);
      throw e;
    }
  });

  afterAll(() => {
    for (const s of open) s.close();
    spawnSync('ip', ['netns', 'del', ns]);
  });

  it('creates the socket in the named netns: its table is not ours', async () => {
    const sender = track(new NetfilterSocket({ netns: ns }));
    const replies = newWalk();
    sender.onData = (b) => walk(b, replies);
    const entry = 0xfff0; // far from the flood's range
    await sender.send(ctNewUdp(entry, seq++, true));
    await until(() => replies.errors.length >= 1, 'the ACK');
    expect(replies.errors).toEqual([0]);
    // our own namespace's conntrack does not have 10.0.255.240
    const here = spawnSync('conntrack', ['-L', '-s', '10.0.255.240'], { encoding: 'utf8' });
    expect(here.stdout).not.toContain('10.0.255.240');
    const there = spawnSync('ip', ['netns', 'exec', ns, 'conntrack', '-L', '-s', '10.0.255.240'], { encoding: 'utf8' });
    expect(there.stdout).toContain('10.0.255.240');
    sender.close();
  });

  it('survives an ENOBUFS overrun: onOverrun fires, counted, and the socket keeps receiving', async () => {
    const listener = track(new NetfilterSocket({ netns: ns, groups: [NFNLGRP_CONNTRACK_NEW] }));
    // a tiny plain SO_RCVBUF (the kernel doubles it and applies its minimum): a few events fit
    listener.setSockOpt(SOL_SOCKET, SO_RCVBUF, 4096);
    expect(listener.rcvbuf).toBeLessThan(16384);
    const sender = track(new NetfilterSocket({ netns: ns }));
    const errors: Error[] = [];
    let overruns = 0;
    const events = newWalk();
    listener.onOverrun = () => overruns++;
    listener.onError = (e) => errors.push(e);
    listener.onData = (b) => walk(b, events);
    sender.onError = (e) => errors.push(e);

    // one sendmsg is processed synchronously on this thread: nobody reads while the kernel queues 256 events
    await insert(sender, 2048);
    await until(() => overruns > 0, 'onOverrun');
    expect(listener.stats.overruns).toBeGreaterThan(0);
    expect(listener.stats.overruns).toBe(overruns);
    expect(errors).toEqual([]);

    // still alive: give it room, and every following event must arrive
    listener.setSockOpt(SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20);
    await until(() => listener.stats.wakeups > 0 && events.messages > 0, 'first events');
    await new Promise((r) => setTimeout(r, 50)); // let the flood's tail drain
    const before = events.types.get(IPCTNL_MSG_CT_NEW) ?? 0;
    const overrunsBefore = overruns;
    await insert(sender, 500);
    await until(() => (events.types.get(IPCTNL_MSG_CT_NEW) ?? 0) >= before + 500, '500 events after the overrun');
    expect(overruns).toBe(overrunsBefore);
    expect(errors).toEqual([]);
    listener.close();
    sender.close();
  });

  it('batches: many datagrams per onData call, each a whole message', async () => {
    const listener = track(new NetfilterSocket({ netns: ns, groups: [NFNLGRP_CONNTRACK_NEW], rcvbuf: 16 << 20, batch: 64 }));
    const sender = track(new NetfilterSocket({ netns: ns }));
    const events = newWalk();
    let calls = 0;
    let biggest = 0;
    listener.onData = (b) => {
      calls++;
      const n = events.messages;
      walk(b, events);
      biggest = Math.max(biggest, events.messages - n);
    };
    await insert(sender, 4096);
    await until(() => (events.types.get(IPCTNL_MSG_CT_NEW) ?? 0) >= 4096, '4096 NEW events');
    const s = listener.stats;
    expect(s.overruns).toBe(0);
    expect(s.truncated).toBe(0);
    expect(s.datagrams).toBe(events.messages); // one event per datagram
    expect(s.batches).toBe(calls);
    expect(biggest).toBeGreaterThan(1);
    expect(biggest).toBeLessThanOrEqual(64);
    expect(calls).toBeLessThan(events.messages / 4);
    listener.close();
    sender.close();
  });

  it('settleUs: onQuiet once a burst has been delivered and the socket stayed empty; never without the option', async () => {
    const settled = track(new NetfilterSocket({ netns: ns, groups: [NFNLGRP_CONNTRACK_NEW], rcvbuf: 16 << 20, settleUs: 1000 }));
    const plain = track(new NetfilterSocket({ netns: ns, groups: [NFNLGRP_CONNTRACK_NEW], rcvbuf: 16 << 20 }));
    const sender = track(new NetfilterSocket({ netns: ns }));
    const seen = newWalk();
    const atQuiet: number[] = []; // events delivered when each onQuiet came
    settled.onData = (b) => walk(b, seen);
    settled.onQuiet = () => atQuiet.push(seen.messages);
    let plainQuiets = 0;
    plain.onQuiet = () => plainQuiets++;
    await insert(sender, 1000);
    await until(() => seen.messages >= 1000 && atQuiet.at(-1) === 1000, 'onQuiet after the 1000th event');
    expect(seen.messages).toBe(1000);
    expect(settled.stats.quiets).toBe(atQuiet.length);
    // each quiet follows new data: never two in a row, never one before the first event
    expect(atQuiet[0]).toBeGreaterThan(0);
    for (let i = 1; i < atQuiet.length; i++) expect(atQuiet[i]).toBeGreaterThan(atQuiet[i - 1]!);
    expect(plain.stats.datagrams).toBe(1000);
    expect(plainQuiets).toBe(0);
    expect(plain.stats.quiets).toBe(0);
    for (const s of [settled, plain, sender]) s.close();
  });

  it('settleUs: events from another process that come closer together than settleUs share one quiet', async () => {
    // a 100 ms window against conntrack(8) runs a few ms apart: a noisy machine may split the run, not 20 times
    const settled = track(new NetfilterSocket({ netns: ns, groups: [NFNLGRP_CONNTRACK_NEW], rcvbuf: 16 << 20, settleUs: 100_000 }));
    let quiets = 0;
    settled.onQuiet = () => quiets++;
    const script = 'for i in $(seq 1 20); do conntrack -I -p udp -s 10.9.0.$i -d 10.9.1.1 --sport 1000 --dport 53 -t 60 2>/dev/null || exit 1; done';
    await promisify(execFile)('ip', ['netns', 'exec', ns, 'sh', '-c', script]); // async: our loop reads meanwhile
    await until(() => settled.stats.datagrams >= 20 && quiets > 0 && settled.stats.quiets === quiets, '20 events and a quiet');
    expect(settled.stats.datagrams).toBe(20);
    // the reads that found one event each went on waiting instead of reporting quiet
    expect(settled.stats.batches).toBeGreaterThan(quiets);
    expect(quiets).toBeLessThanOrEqual(5);
    settled.close();
  });

  it('reports send errors as errno rejections (EEXIST on a duplicate create)', async () => {
    const sender = track(new NetfilterSocket({ netns: ns }));
    const replies = newWalk();
    sender.onData = (b) => walk(b, replies);
    await sender.send(ctNewUdp(0xfff1, seq++, true));
    await sender.send(ctNewUdp(0xfff1, seq++, true));
    await until(() => replies.errors.length >= 2, 'two replies');
    expect(replies.errors).toEqual([0, -17]); // -EEXIST
    // a send on a closed socket rejects with a stable code
    sender.close();
    await expect(sender.send(ctNewUdp(0xfff2, seq++))).rejects.toMatchObject({ code: 'CTS_ERR_NETLINK_CLOSED' });
  });

  it('an exception thrown by onData is reported through onError and the socket keeps working', async () => {
    const sender = track(new NetfilterSocket({ netns: ns }));
    const errors: Array<Error & { code?: string }> = [];
    const replies = newWalk();
    let calls = 0;
    sender.onError = (e) => errors.push(e);
    sender.onData = (b) => {
      if (++calls === 1) throw new Error('handler bug');
      walk(b, replies);
    };
    await sender.send(ctNewUdp(0xfff3, seq++, true));
    await until(() => errors.length === 1, 'onError');
    expect(errors[0]?.code).toBe('CTS_ERR_NETLINK_HANDLER');
    expect(errors[0]?.message).toContain('handler bug');
    await sender.send(ctNewUdp(0xfff4, seq++, true));
    await until(() => replies.errors.length === 1, 'the next reply');
    expect(replies.errors).toEqual([0]);
    sender.close();
  });

  it('binding in its original per-datagram mode: an overrun is an ENOBUFS error object and reading goes on', async () => {
    // what an unmodified caller of the package (no options, no overrun callback) gets from the patched binding
    type Legacy = {
      bind(p: number, g: number): void;
      addMembership(g: number): void;
      setsockopt(l: number, n: number, v: number): void;
      close(): void;
    };
    const { NativeNetlink } = createRequire(import.meta.url)(netlinkBindingPath()) as {
      NativeNetlink: new (proto: number, msgBuffer: number, r: (b: Buffer) => void, e: (err: Error) => void, o?: object) => Legacy;
    };
    const errors: Array<Error & { code?: string; syscall?: string }> = [];
    let reads = 0;
    const native = new NativeNetlink(12, 0, () => reads++, (e) => errors.push(e), { netns: `/var/run/netns/${ns}` });
    try {
      native.setsockopt(SOL_SOCKET, SO_RCVBUF, 4096);
      native.bind(0, 0);
      native.addMembership(NFNLGRP_CONNTRACK_NEW);
      const sender = track(new NetfilterSocket({ netns: ns }));
      await insert(sender, 1024);
      await until(() => errors.length > 0, 'the ENOBUFS error');
      expect(errors[0]).toMatchObject({ code: 'ENOBUFS', errno: 105, syscall: 'recvmsg' });
      native.setsockopt(SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20);
      const before = reads;
      await insert(sender, 100);
      await until(() => reads >= before + 100, '100 reads after the overrun');
      sender.close();
    } finally {
      native.close();
    }
  });

  it('a process that exits while WritePool workers hold open sockets exits cleanly (no crash in teardown)', () => {
    // the compiled module: worker threads cannot load TypeScript sources. Both workers answer (so their sockets are
    // open), then the process exits under them.
    const pool = new URL('../../dist/src/kernel/write-pool.js', import.meta.url).href;
    const code = `const { WritePool } = await import(${JSON.stringify(pool)}); const p = WritePool.open(2, ${JSON.stringify(ns)}); await Promise.all([p.send([], () => {}), p.send([], () => {})]); process.exit(0);`;
    const script = join(mkdtempSync(join(tmpdir(), 'ctsync-pool-')), 'exit.mjs');
    writeFileSync(script, code);
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 20_000 });
    rmSync(dirname(script), { recursive: true });
    expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
  });

  it('rejects a netns that does not exist with CTS_ERR_NETLINK_SOCKET', () => {
    expect(() => new NetfilterSocket({ netns: `ctsn-missing-${randomBytes(4).toString('hex')}` })).toThrow(
      expect.objectContaining({ code: 'CTS_ERR_NETLINK_SOCKET', errno: 2 }),
    );
  });
});

// The reader thread (readerThread): a thread of the binding drains the socket while JS is busy. The events come from
// conntrack(8) run synchronously, so this JS thread is blocked for the whole burst and only the reader thread can read.
describe.runIf(isRoot)('NetfilterSocket with the reader thread, in a throwaway netns (root)', () => {
  const ns = `ctsn-${randomBytes(4).toString('hex')}`;
  const open: NetfilterSocket[] = [];
  const track = (s: NetfilterSocket): NetfilterSocket => (open.push(s), s);
  let net = 0; // each burst its own 10.8.<net>.x addresses, so no insert collides with an earlier one

  /** Creates n UDP entries with conntrack(8), blocking this thread until all exist. */
  function blockingBurst(n: number): void {
    const b = net++;
    const script = `for i in $(seq 1 ${n}); do conntrack -I -p udp -s 10.8.${b}.$i -d 10.9.${b}.1 --sport 1000 --dport 53 -t 60 2>/dev/null || exit 1; done`;
    execFileSync('ip', ['netns', 'exec', ns, 'sh', '-c', script]);
  }

  /** Creates one UDP entry with conntrack(8) without blocking this thread. */
  async function lone(): Promise<void> {
    const b = net++;
    await promisify(execFile)('ip', ['netns', 'exec', ns, 'conntrack', '-I', '-p', 'udp', '-s', `10.8.${b}.1`, '-d', `10.9.${b}.1`, '--sport', '1000', '--dport', '53', '-t', '60']);
  }

  beforeAll(() => {
    execFileSync('ip', ['netns', 'add', ns]);
  });

  afterAll(() => {
    for (const s of open) s.close();
    spawnSync('ip', ['netns', 'del', ns]);
  });

  it('reads ahead while JS is blocked: a kernel buffer of a few events does not overrun, and the reads are joined', async () => {
    const opts = { netns: ns, groups: [NFNLGRP_CONNTRACK_NEW], batch: 16, maxPerWakeup: 64 };
    const threaded = track(new NetfilterSocket({ ...opts, readerThread: true }));
    const plain = track(new NetfilterSocket(opts)); // the control: the same buffer without the thread
    for (const s of [threaded, plain]) s.setSockOpt(SOL_SOCKET, SO_RCVBUF, 4096); // the kernel's minimum: ~3 events
    const sizes: number[] = [];
    const seen = newWalk();
    threaded.onData = (b) => {
      const before = seen.messages;
      walk(b, seen);
      sizes.push(seen.messages - before);
    };
    blockingBurst(120);
    await until(() => seen.messages >= 120, '120 events through the reader thread');
    expect(seen.messages).toBe(120);
    expect(threaded.stats.overruns).toBe(0);
    expect(threaded.stats.datagrams).toBe(120);
    expect(plain.stats.overruns).toBeGreaterThan(0); // what the thread saved us from
    // read ahead while blocked, handed over in joined pieces of at most maxPerWakeup
    expect(sizes.length).toBeLessThanOrEqual(8);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(64);
    expect(Math.max(...sizes)).toBeGreaterThan(16);
    expect(threaded.stats.batches).toBe(sizes.length);
    threaded.close();
    plain.close();
  });

  it('past readAhead the kernel buffer overruns as without the thread: onOverrun, in order, and reading goes on', async () => {
    const s = track(new NetfilterSocket({ netns: ns, groups: [NFNLGRP_CONNTRACK_NEW], readerThread: true, readAhead: 4096 }));
    s.setSockOpt(SOL_SOCKET, SO_RCVBUF, 4096);
    const order: string[] = [];
    const errors: Error[] = [];
    const seen = newWalk();
    s.onData = (b) => {
      walk(b, seen);
      order.push('data');
    };
    s.onOverrun = () => order.push('overrun');
    s.onError = (e) => errors.push(e);
    blockingBurst(150); // 4 KiB read ahead holds ~17 events, the kernel buffer ~3: the rest are lost
    await until(() => order.includes('overrun'), 'onOverrun');
    expect(order[0]).toBe('data'); // what was read ahead before the loss comes first
    expect(s.stats.overruns).toBe(order.filter((o) => o === 'overrun').length);
    expect(seen.messages).toBeLessThan(150);
    expect(errors).toEqual([]);
    // the socket keeps receiving, and nothing more is lost
    s.setSockOpt(SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20);
    await new Promise((r) => setTimeout(r, 50));
    const before = seen.messages;
    const overruns = s.stats.overruns;
    blockingBurst(10);
    await until(() => seen.messages >= before + 10, '10 events after the overrun');
    expect(s.stats.overruns).toBe(overruns);
    s.close();
  });

  it('settleUs: onQuiet after each delivered burst, after its data, and never more often than bursts', async () => {
    const s = track(new NetfilterSocket({ netns: ns, groups: [NFNLGRP_CONNTRACK_NEW], readerThread: true, settleUs: 200 }));
    const seen = newWalk();
    const atQuiet: number[] = [];
    s.onData = (b) => walk(b, seen);
    s.onQuiet = () => atQuiet.push(seen.messages);
    blockingBurst(50);
    await until(() => atQuiet.at(-1) === 50, 'onQuiet after the 50th event');
    blockingBurst(50);
    await until(() => atQuiet.at(-1) === 100, 'onQuiet after the 100th event');
    expect(atQuiet[0]).toBeGreaterThan(0);
    for (let i = 1; i < atQuiet.length; i++) expect(atQuiet[i]).toBeGreaterThan(atQuiet[i - 1]!);
    expect(s.stats.quiets).toBe(atQuiet.length);
    expect(s.stats.quiets).toBeLessThanOrEqual(s.stats.wakeups);
    s.close();
  });

  it('settleUs: a lone event reaches JS together with its quiet, in one turn of the loop (one wake-up, not two)', async () => {
    const s = track(new NetfilterSocket({ netns: ns, groups: [NFNLGRP_CONNTRACK_NEW], readerThread: true, settleUs: 200 }));
    const seen = newWalk();
    let turnBetween = 0; // quiets that came after the loop had a turn since their data
    let pendingTurn = false;
    let quiets = 0;
    s.onData = (b) => {
      walk(b, seen);
      pendingTurn = false;
      setImmediate(() => (pendingTurn = true));
    };
    s.onQuiet = () => {
      quiets++;
      if (pendingTurn) turnBetween++;
    };
    for (let i = 1; i <= 5; i++) {
      await lone(); // async: this thread is free to take the event the moment the reader hands it over
      await until(() => quiets === i && seen.messages === i, `the quiet of lone event ${i}`);
    }
    expect(turnBetween).toBe(0);
    expect(s.stats.batches).toBe(5); // one handoff per event
    expect(s.stats.wakeups).toBe(5);
    expect(s.stats.quiets).toBe(5);
    s.close();
  });

  it('holdUs: after a lone event the thread lets a trickle queue up, and hands it over a batch per hold, each with its quiet', async () => {
    const s = track(new NetfilterSocket({ netns: ns, groups: [NFNLGRP_CONNTRACK_NEW], readerThread: true, settleUs: 200, holdUs: 50_000 }));
    const seen = newWalk();
    const atQuiet: number[] = [];
    s.onData = (b) => walk(b, seen);
    s.onQuiet = () => atQuiet.push(seen.messages);
    // 20 lone events a few ms apart: without the hold each is a handoff of its own (see the test above)
    for (let i = 0; i < 20; i++) {
      await lone();
      await new Promise((r) => setTimeout(r, 2));
    }
    await until(() => atQuiet.at(-1) === 20, 'the quiet after the 20th event');
    // the first goes at once; the rest come in holds of 50 ms, however slowly this machine ran the loop above
    expect(atQuiet[0]).toBe(1);
    expect(s.stats.batches).toBeLessThan(10);
    expect(s.stats.batches).toBe(atQuiet.length); // each handoff carries its quiet
    expect(s.stats.quiets).toBe(atQuiet.length);
    s.close();
  });

  it('holdUs: a hold that gathered more than one read (batch) hands it all over with one quiet and holds again', async () => {
    const s = track(new NetfilterSocket({ netns: ns, groups: [NFNLGRP_CONNTRACK_NEW], readerThread: true, batch: 4, settleUs: 200, holdUs: 100_000 }));
    const seen = newWalk();
    const atQuiet: number[] = [];
    s.onData = (b) => walk(b, seen);
    s.onQuiet = () => atQuiet.push(seen.messages);
    // one event every few ms for about half a second: each 100 ms hold gathers far more than a read of 4 takes
    await lone();
    await promisify(execFile)('ip', ['netns', 'exec', ns, 'sh', '-c', `for i in $(seq 1 120); do conntrack -I -p udp -s 10.7.$((i / 200)).$((i % 200 + 1)) -d 10.9.0.1 --sport 1000 --dport 53 -t 60 2>/dev/null || exit 1; done`]);
    await until(() => atQuiet.at(-1) === 121, 'the quiet after the 121st event');
    const sizes = atQuiet.map((n, i) => n - (atQuiet[i - 1] ?? 0));
    expect(sizes[0]).toBe(1); // the lone first one, at once
    // every later handoff is a whole hold's gathering; before, each hold's first read of 4 went as a burst and the
    // next event after it as a lone one, a handoff of 1 per hold (one is allowed for a stall of the writer loop)
    expect(sizes.slice(1).filter((n) => n <= 1).length).toBeLessThanOrEqual(1);
    expect(s.stats.quiets).toBe(atQuiet.length);
    expect(s.stats.batches).toBe(atQuiet.length); // each hold reaches JS once, with its quiet
    s.close();
  });

  it('close() from inside onData stops the thread; nothing is delivered after it', async () => {
    const s = track(new NetfilterSocket({ netns: ns, groups: [NFNLGRP_CONNTRACK_NEW], readerThread: true, batch: 4, maxPerWakeup: 8 }));
    let calls = 0;
    s.onData = () => {
      calls++;
      s.close();
    };
    blockingBurst(40); // read ahead in pieces of 4: more than one onData would follow without the close
    await until(() => calls > 0, 'the first onData');
    await new Promise((r) => setTimeout(r, 100));
    expect(calls).toBe(1);
  });

  it('the event stream reads ahead within the binding\'s bounds for any receive buffer the config allows', () => {
    // kernel.eventBuffer has no upper bound of its own; the largest buffer the socket takes must still start
    for (const rcvbuf of [1, 4096, 0x7fffffff]) {
      const events = new EventStream({ netns: ns, rcvbuf });
      events.close();
    }
    expect(() => new NetfilterSocket({ netns: ns, readerThread: true, readAhead: READ_AHEAD_MAX + 1 })).toThrow(/readAhead/);
  });

  it('a process that exits with a reader thread running exits cleanly, by process.exit() and by an empty loop', () => {
    const mod = new URL('../../dist/src/kernel/netlink-socket.js', import.meta.url).href;
    const results = ['process.exit(0);', 's.unref();'].map((end) => {
      const code = `const { NetfilterSocket } = await import(${JSON.stringify(mod)}); const s = new NetfilterSocket({ netns: ${JSON.stringify(ns)}, groups: [1], readerThread: true, settleUs: 100 }); ${end}`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 20_000 });
      return { end, status: r.status, signal: r.signal, stderr: r.stderr };
    });
    expect(results).toEqual([
      { end: 'process.exit(0);', status: 0, signal: null, stderr: '' },
      { end: 's.unref();', status: 0, signal: null, stderr: '' },
    ]);
  });
});

describe.runIf(isRoot)('socket options (root)', () => {
  it('SO_RCVBUFFORCE gives more than net.core.rmem_max; plain SO_RCVBUF is capped', () => {
    const rmemMax = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8'));
    const forced = new NetfilterSocket({ rcvbuf: rmemMax * 2 });
    const plain = new NetfilterSocket();
    try {
      expect(forced.rcvbuf).toBeGreaterThan(rmemMax * 2); // the kernel doubles the request
      plain.setSockOpt(SOL_SOCKET, SO_RCVBUF, rmemMax * 2);
      expect(plain.rcvbuf).toBeLessThanOrEqual(rmemMax * 2);
      expect(plain.rcvbuf).toBeLessThan(forced.rcvbuf);
    } finally {
      forced.close();
      plain.close();
    }
  });

  it('generic setsockopt/getsockopt round-trips NETLINK_NO_ENOBUFS', () => {
    const s = new NetfilterSocket();
    try {
      expect(s.getSockOpt(SOL_NETLINK, NETLINK_NO_ENOBUFS)).toBe(0);
      s.setSockOpt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1);
      expect(s.getSockOpt(SOL_NETLINK, NETLINK_NO_ENOBUFS)).toBe(1);
      expect(() => s.setSockOpt(SOL_NETLINK, 9999, 1)).toThrow(expect.objectContaining({ code: 'ENOPROTOOPT', syscall: 'setsockopt' }));
    } finally {
      s.close();
    }
  });
});

// A JS exception escaping a native callback used to call std::terminate (exit 134). These run the binding in a
// child `node` (plain CommonJS via -e, loading the .node file by path: no TypeScript needed in the child) and look
// at how it ends. The child talks only to its own kernel over netlink: NLMSG_NOOP with NLM_F_ACK gets an ACK back.
describe.runIf(isRoot)('patched binding: exceptions from callbacks (child process, root)', () => {
  const child = `
    const { NativeNetlink } = require(process.env.NL_BINDING);
    if (process.env.MODE === 'handled') process.on('uncaughtException', (e) => console.log('caught: ' + e.message));
    const noop = Buffer.alloc(16);
    noop.writeUInt32LE(16, 0); noop.writeUInt16LE(1, 4); noop.writeUInt16LE(1 | 4, 6); // NLMSG_NOOP, REQUEST|ACK
    let reads = 0;
    const s = new NativeNetlink(12, 0, () => {
      if (++reads === 1) throw new Error('boom from handler');
      console.log('second read ok');
      s.close();
    }, (e) => console.log('error ' + e.code), { batch: 8 });
    s.bind(0, 0);
    s.send(0, 0, noop, () => {});
    setTimeout(() => s.send(0, 0, noop, () => {}), 100);
  `;
  const run = (mode: string) =>
    spawnSync(process.execPath, ['-e', child], {
      encoding: 'utf8',
      env: { ...process.env, NL_BINDING: netlinkBindingPath(), MODE: mode },
      timeout: 20_000,
    });

  it('with an uncaughtException handler: the handler gets it and the socket keeps working', () => {
    const r = run('handled');
    expect(r.stdout).toContain('caught: boom from handler');
    expect(r.stdout).toContain('second read ok');
    expect(r.status).toBe(0);
  });

  it('without a handler: a normal uncaught exception (exit 1, stack printed), not an abort', () => {
    const r = run('unhandled');
    expect(r.signal).toBeNull();
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('boom from handler');
  });
});
