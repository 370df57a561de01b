#!/usr/bin/env python3
"""Traffic endpoints run inside lab namespaces (ip netns exec): each subcommand makes real conntrack entries.

Servers print "ready" once listening; clients print one line per event so the TypeScript side can follow them.
Standard library only, so CI needs nothing beyond python3.
"""
import argparse
import os
import random
import select
import signal
import socket
import struct
import sys
import threading
import time


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def dual_stack(kind):
    # One socket for both families: v4 clients arrive as ::ffff:a.b.c.d.
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return s


# --- TCP ---------------------------------------------------------------------------------------------------------

def tcp_server(a):
    srv = dual_stack(socket.SOCK_STREAM)
    srv.bind(("::", a.port))
    srv.listen(128)
    out("ready")

    def serve(conn):
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def tcp_stream(a):
    """Long-lived connection: send a numbered line every interval, print "echo N GAP_MS" for each echo."""
    s = socket.create_connection((a.host, a.port), timeout=a.connect_timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(None)
    out("connected %s %d" % s.getsockname()[:2])
    buf = b""
    n = 0
    last = time.monotonic()
    next_send = last
    while True:
        now = time.monotonic()
        if now >= next_send:
            n += 1
            try:
                s.sendall(b"line %d\n" % n)
            except OSError as e:
                out("error %s" % (e.errno,))
                sys.exit(1)
            next_send = now + a.interval
        try:
            r, _, _ = select.select([s], [], [], max(0.0, next_send - time.monotonic()))
            data = s.recv(65536) if r else None
        except OSError as e:  # e.g. ECONNRESET when a firewall without state answers with RST
            out("error %s" % (e.errno,))
            sys.exit(1)
        if r:
            if not data:
                out("closed")
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                now = time.monotonic()
                out("echo %s %d" % (line.split(b" ")[-1].decode(), int((now - last) * 1000)))
                last = now


def tcp_once(a):
    """Short connection: one request, one echo, client closes first (its side ends in TIME_WAIT)."""
    s = socket.create_connection((a.host, a.port), timeout=a.connect_timeout)
    out("connected %s %d" % s.getsockname()[:2])
    s.sendall(b"hello\n")
    got = b""
    while not got.endswith(b"\n"):
        chunk = s.recv(100)
        if not chunk:
            break
        got += chunk
    s.shutdown(socket.SHUT_WR)
    s.recv(100)  # wait for the server's FIN so conntrack sees the whole close
    s.close()
    out("done")


# --- UDP ---------------------------------------------------------------------------------------------------------

def udp_server(a):
    s = dual_stack(socket.SOCK_DGRAM)
    s.bind(("::", a.port))
    out("ready")
    while True:
        data, peer = s.recvfrom(65536)
        s.sendto(data, peer)


def udp_once(a):
    s = socket.socket(family_of(a.host), socket.SOCK_DGRAM)
    s.settimeout(a.connect_timeout)
    s.sendto(b"ping", (a.host, a.port))
    s.recvfrom(100)
    out("reply %s %d" % s.getsockname()[:2])
    if a.hold:
        # Keep the socket (and so the source port) until stopped, for tests that look the flow up by port.
        signal.pause()


def udp_flood(a):
    """One datagram to each of N distinct ports: N new conntrack entries, bounded, as fast as the socket goes."""
    fam = family_of(a.host)
    per_socket = a.ports
    socks = []
    sent = 0
    started = time.monotonic()
    while sent < a.count:
        if sent % per_socket == 0:
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.setblocking(False)
            socks.append(s)
        port = a.base_port + (sent % per_socket)
        try:
            socks[-1].sendto(b"x", (a.host, port))
            sent += 1
        except BlockingIOError:
            select.select([], [socks[-1]], [], 0.1)
    for s in socks:
        s.close()
    out("sent %d %d" % (sent, int((time.monotonic() - started) * 1000)))



def udp_stream_server(a):
    """Waits for the client's first datagram, then sends "seq N" to it every interval (server-to-client stream)."""
    s = dual_stack(socket.SOCK_DGRAM)
    s.bind(("::", a.port))
    out("ready")
    _, peer = s.recvfrom(65536)
    out("peer %s %d" % peer[:2])
    n = 0
    while True:
        n += 1
        try:
            s.sendto(b"seq %d\n" % n, peer)
        except OSError as e:  # e.g. EHOSTUNREACH while the gateway moves: keep the stream going
            out("send-error %d %s" % (n, e.errno))
        time.sleep(a.interval)


def udp_stream_client(a):
    """Sends one datagram (so the flow is created from the inside), then prints "recv SEQ GAP_MS" per datagram."""
    s = socket.socket(family_of(a.host), socket.SOCK_DGRAM)
    s.connect((a.host, a.port))
    s.send(b"hello\n")
    out("sent %s %d" % s.getsockname()[:2])
    last = None
    while True:
        try:
            data = s.recv(65536)
        except OSError as e:  # ICMP port unreachable before the server is up: not fatal for a stream
            out("error %s" % (e.errno,))
            continue
        now = time.monotonic()
        gap = 0 if last is None else int((now - last) * 1000)
        last = now
        out("recv %s %d" % (data.split(b" ")[-1].strip().decode(), gap))

# --- ICMP echo ---------------------------------------------------------------------------------------------------

def inet_checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ping(a):
    """Echo requests over a raw socket (no ping binary here); exits 0 after `count` replies."""
    v6 = ":" in a.host
    if v6:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)  # kernel fills the checksum
        req, rep = 128, 129
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        req, rep = 8, 0
    s.settimeout(a.connect_timeout)
    ident = a.ident if a.ident else random.randint(1, 0xFFFF)
    got = 0
    for seq in range(1, a.count + 1):
        hdr = struct.pack("!BBHHH", req, 0, 0, ident, seq) + b"ctsync-lab"
        if not v6:
            hdr = hdr[:2] + struct.pack("!H", inet_checksum(hdr)) + hdr[4:]
        s.sendto(hdr, (a.host, 0))
        deadline = time.monotonic() + a.connect_timeout
        while time.monotonic() < deadline:
            pkt = s.recv(2048)
            icmp = pkt if v6 else pkt[(pkt[0] & 0x0F) * 4:]
            typ, _, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
            if typ == rep and rid == ident and rseq == seq:
                got += 1
                out("reply %d %d" % (ident, seq))
                break
    if got != a.count:
        sys.exit(1)


# --- SCTP (no kernel SCTP here: raw packets with CRC32c) ----------------------------------------------------------

def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def sctp_packet(sport, dport, vtag, chunks):
    body = struct.pack("!HHII", sport, dport, vtag, 0) + chunks
    # RFC 4960 appendix B: the CRC is stored little-endian-reflected, i.e. the raw crc value in little endian.
    return body[:8] + struct.pack("<I", crc32c(body)) + body[12:]


def sctp_chunk(ctype, flags, value):
    chunk = struct.pack("!BBH", ctype, flags, 4 + len(value)) + value
    return chunk + b"\0" * (-len(chunk) % 4)


def sctp_socket(addr):
    return socket.socket(family_of(addr), socket.SOCK_RAW, 132)


def sctp_recv(s, want_type, port, deadline):
    """Next SCTP packet to `port` whose first chunk is want_type: (src addr, sport, vtag, chunk value)."""
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            pkt, peer = s.recvfrom(4096)
        except socket.timeout:
            break
        if s.family == socket.AF_INET:
            pkt = pkt[(pkt[0] & 0x0F) * 4:]  # v4 raw sockets deliver the IP header too
        if len(pkt) < 16:
            continue
        sport, dport, vtag = struct.unpack("!HHI", pkt[:8])
        ctype, _, clen = struct.unpack("!BBH", pkt[12:16])
        if dport == port and ctype == want_type:
            return peer[0], sport, vtag, pkt[16:12 + clen]
    raise SystemExit("sctp: no chunk type %d within timeout" % want_type)


INIT, INIT_ACK, COOKIE_ECHO, COOKIE_ACK, ABORT = 1, 2, 10, 11, 6


def sctp_server(a):
    """Answers INIT with INIT-ACK (+cookie) and COOKIE-ECHO with COOKIE-ACK, like a listening SCTP endpoint."""
    s = sctp_socket(a.bind)
    out("ready")
    my_tag = random.randint(1, 0xFFFFFFFF)
    while True:
        pkt, peer = s.recvfrom(4096)
        if s.family == socket.AF_INET:
            pkt = pkt[(pkt[0] & 0x0F) * 4:]
        if len(pkt) < 16:
            continue
        sport, dport, vtag = struct.unpack("!HHI", pkt[:8])
        ctype = pkt[12]
        if dport != a.port:
            continue
        if ctype == INIT:
            peer_tag = struct.unpack("!I", pkt[16:20])[0]
            # State Cookie parameter (type 7): we are stateless, so the cookie just carries both tags.
            cookie_param = struct.pack("!HH", 7, 4 + 8) + struct.pack("!II", peer_tag, my_tag)
            init_ack = struct.pack("!IIHHI", my_tag, 65536, 1, 1, random.randint(0, 0xFFFFFFFF)) + cookie_param
            s.sendto(sctp_packet(a.port, sport, peer_tag, sctp_chunk(INIT_ACK, 0, init_ack)), (peer[0], 0))
        elif ctype == COOKIE_ECHO:
            peer_tag = struct.unpack("!I", pkt[16:20])[0]  # the cookie carries the client's tag
            s.sendto(sctp_packet(a.port, sport, peer_tag, sctp_chunk(COOKIE_ACK, 0, b"")), (peer[0], 0))
            out("established %s %d" % (peer[0], sport))


def sctp_client(a):
    """INIT → INIT-ACK → COOKIE-ECHO → COOKIE-ACK: conntrack walks the association to ESTABLISHED."""
    s = sctp_socket(a.host)
    sport = a.sport if a.sport else random.randint(20000, 60000)
    my_tag = random.randint(1, 0xFFFFFFFF)
    init = struct.pack("!IIHHI", my_tag, 65536, 1, 1, random.randint(0, 0xFFFFFFFF))
    s.sendto(sctp_packet(sport, a.port, 0, sctp_chunk(INIT, 0, init)), (a.host, 0))
    deadline = time.monotonic() + a.connect_timeout
    _, _, vtag, value = sctp_recv(s, INIT_ACK, sport, deadline)
    if vtag != my_tag:
        raise SystemExit("sctp: INIT-ACK with wrong verification tag")
    peer_tag = struct.unpack("!I", value[:4])[0]
    params = value[16:]
    cookie = b""
    while len(params) >= 4:
        ptype, plen = struct.unpack("!HH", params[:4])
        if ptype == 7:
            cookie = params[4:plen]
        params = params[(plen + 3) & ~3:]
    s.sendto(sctp_packet(sport, a.port, peer_tag, sctp_chunk(COOKIE_ECHO, 0, cookie)), (a.host, 0))
    sctp_recv(s, COOKIE_ACK, sport, deadline)
    out("established %d %d %d" % (sport, my_tag, peer_tag))
    if a.hold:
        signal.pause()


# --- FTP (just enough for the kernel's ftp helper) -----------------------------------------------------------------

def ftp_server(a):
    """Greets, answers PASV with a 227 reply naming `advertise`:data_port, and accepts one data connection."""
    srv = dual_stack(socket.SOCK_STREAM)
    srv.bind(("::", a.port))
    srv.listen(8)
    data = dual_stack(socket.SOCK_STREAM)
    data.bind(("::", a.data_port))
    data.listen(8)
    out("ready")

    def data_loop():
        while True:
            conn, _ = data.accept()
            conn.sendall(b"ctsync lab file\n")
            conn.close()

    threading.Thread(target=data_loop, daemon=True).start()
    while True:
        conn, _ = srv.accept()
        conn.sendall(b"220 ctsync lab ftp\r\n")
        f = conn.makefile("rb")
        for raw in f:
            cmd = raw.strip().upper()
            if cmd.startswith(b"PASV"):
                h = a.advertise.split(".")
                reply = "227 Entering Passive Mode (%s,%s,%s,%s,%d,%d)\r\n" % (
                    h[0], h[1], h[2], h[3], a.data_port >> 8, a.data_port & 0xFF)
                conn.sendall(reply.encode())
            elif cmd.startswith(b"QUIT"):
                conn.sendall(b"221 bye\r\n")
                break
            else:
                conn.sendall(b"200 ok\r\n")
        conn.close()


def ftp_client(a):
    s = socket.create_connection((a.host, a.port), timeout=a.connect_timeout)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"USER anonymous\r\n")
    f.readline()
    s.sendall(b"PASV\r\n")
    line = f.readline().decode()
    nums = line[line.index("(") + 1:line.index(")")].split(",")
    host, port = ".".join(nums[:4]), int(nums[4]) * 256 + int(nums[5])
    out("pasv %s %d" % (host, port))
    if a.open_data:
        # Through NAT the helper rewrote the 227 reply, so the advertised address is reachable from here.
        d = socket.create_connection((host, port), timeout=a.connect_timeout)
        got = d.recv(100)
        d.close()
        out("data %d" % len(got))
    # Hold the control connection (and so the expectation's master) until stopped.
    signal.signal(signal.SIGTERM, lambda *_: (s.sendall(b"QUIT\r\n"), sys.exit(0)))
    signal.pause()


# --- A flaky wire (nfnetlink_queue; this kernel has no sch_netem) ----------------------------------------------

NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQNL_CFG_CMD_BIND, NFQNL_COPY_META = 1, 1
NF_DROP, NF_ACCEPT = 0, 1
NLMSG_ERROR = 2


def nfq_message(kind, queue, attrs, flags):
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue)  # nfgenmsg: res_id = queue number, network order
    for atype, value in attrs:
        attr = struct.pack("=HH", 4 + len(value), atype) + value  # nlattr header: host order
        body += attr + b"\0" * (-len(attr) % 4)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, 0, 0) + body


def nfq_config(s, queue, attrs):
    s.send(nfq_message(NFQNL_MSG_CONFIG, queue, attrs, 1 | 4))  # NLM_F_REQUEST | NLM_F_ACK
    reply = s.recv(65536)
    _, mtype = struct.unpack_from("=IH", reply)
    err = struct.unpack_from("=i", reply, 16)[0] if mtype == NLMSG_ERROR else 0
    if err:
        raise OSError(-err, f"nfqueue config of queue {queue}: {os.strerror(-err)}")


def flaky_link(a):
    """Takes the packets an iptables NFQUEUE rule queues to --queue (this kernel lacks nft's queue statement),
    drops --drop percent of them, holds --hold percent back for --hold-ms (so the packets after them overtake them)
    and passes the rest at once. Prints "stats PASSED DROPPED HELD" whenever the counts change, at most every
    50 ms."""
    import heapq
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
    s.bind((0, 0))
    nfq_config(s, a.queue, [(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, 0))])
    nfq_config(s, a.queue, [(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))])
    rng = random.Random(a.seed)
    held = []  # (due, packet id)
    counts = [0, 0, 0]
    shown, shown_at = None, 0.0

    def verdict(pid, v):
        s.send(nfq_message(NFQNL_MSG_VERDICT, a.queue, [(NFQA_VERDICT_HDR, struct.pack("!II", v, pid))], 1))

    out("ready")
    while True:
        now = time.monotonic()
        while held and held[0][0] <= now:
            verdict(heapq.heappop(held)[1], NF_ACCEPT)
        if counts != shown and now - shown_at >= 0.05:
            out("stats %d %d %d" % tuple(counts))
            shown, shown_at = list(counts), now
        wait = min(held[0][0] - now if held else 0.05, 0.05)
        if not select.select([s], [], [], max(wait, 0))[0]:
            continue
        data = s.recv(262144)
        off = 0
        while off + 16 <= len(data):
            length, mtype = struct.unpack_from("=IH", data, off)
            if mtype == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                at = off + 20
                while at + 4 <= off + length:
                    alen, atype = struct.unpack_from("=HH", data, at)
                    if atype & 0x7FFF == NFQA_PACKET_HDR:
                        pid = struct.unpack_from("!I", data, at + 4)[0]
                        roll = rng.random() * 100
                        if roll < a.drop:
                            verdict(pid, NF_DROP)
                            counts[1] += 1
                        elif roll < a.drop + a.hold:
                            heapq.heappush(held, (time.monotonic() + a.hold_ms / 1000, pid))
                            counts[2] += 1
                        else:
                            verdict(pid, NF_ACCEPT)
                            counts[0] += 1
                        break
                    at += max(4, (alen + 3) & ~3)
            off += max(16, (length + 3) & ~3)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name, fn, *args):
        sp = sub.add_parser(name)
        sp.set_defaults(fn=fn)
        sp.add_argument("--connect-timeout", type=float, default=5.0)
        for arg in args:
            sp.add_argument(arg[0], **arg[1])
        return sp

    host = ("--host", {"required": True})
    port = ("--port", {"type": int, "required": True})
    hold = ("--hold", {"action": "store_true"})
    add("tcp-server", tcp_server, port)
    add("tcp-stream", tcp_stream, host, port, ("--interval", {"type": float, "default": 0.1}))
    add("tcp-once", tcp_once, host, port)
    add("udp-server", udp_server, port)
    add("udp-once", udp_once, host, port, hold)
    add("udp-stream-server", udp_stream_server, port, ("--interval", {"type": float, "default": 0.1}))
    add("udp-stream-client", udp_stream_client, host, port)
    add("udp-flood", udp_flood, host, ("--count", {"type": int, "required": True}),
        ("--base-port", {"type": int, "default": 1024}), ("--ports", {"type": int, "default": 60000}))
    add("ping", ping, host, ("--count", {"type": int, "default": 1}), ("--ident", {"type": int, "default": 0}))
    add("sctp-server", sctp_server, port, ("--bind", {"default": "0.0.0.0"}))
    add("sctp-client", sctp_client, host, port, hold, ("--sport", {"type": int, "default": 0}))
    add("ftp-server", ftp_server, port, ("--data-port", {"type": int, "default": 50000}),
        ("--advertise", {"required": True}))
    add("flaky-link", flaky_link, ("--queue", {"type": int, "required": True}),
        ("--drop", {"type": float, "default": 0}), ("--hold", {"type": float, "default": 0}),
        ("--hold-ms", {"type": float, "default": 30}), ("--seed", {"type": int, "default": None}))
    add("ftp-client", ftp_client, host, port, ("--open-data", {"action": "store_true"}))
    a = p.parse_args()
    # SIGTERM from LabProcess.stop(): exit quietly.
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    a.fn(a)


if __name__ == "__main__":
    main()
