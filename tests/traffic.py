#!/usr/bin/python3
"""Traffic generators for the in-guest scenarios (python3 standard library only).

  traffic.py tcp-serve  ADDR PORT --ready FILE      echo server: reads a line, echoes it, waits for EOF
  traffic.py tcp-client ADDR PORT [--count N] [--abort]   N connections: send, read echo, close
                                                  (--abort: close with SO_LINGER 0, i.e. send RST)
  traffic.py tcp-refused ADDR PORT [--count N]    N connects that must be refused (RST)
  traffic.py tcp-close-race ADDR PORT [--to ADDR2 PORT2] [--count N] [--gap S]
                        listens on ADDR:PORT and makes N connections to it (or to ADDR2:PORT2,
                        e.g. a DNAT port forward to it) whose two ends close at the same moment,
                        from two threads on different CPUs where there are two, S seconds
                        apart (default 0); prints
                        "connections=N cpus=A,B"
  traffic.py udp-echo   ADDR PORT --ready FILE      echo server
  traffic.py udp-client ADDR PORT [--count N] [--no-reply]  N sockets, one datagram each
  traffic.py ping       ADDR [--count N]            N ICMP/ICMPv6 echo requests, each with its own id
  traffic.py protocols ADDR [--count N] [--sctp PORT] [--udplite PORT] [--packet PACKET]...
                        in one process (each process start costs seconds in slow guests):
                        SCTP and UDP-Lite echo servers (threads) on ADDR and N clients each
                        (SCTP: one-to-one sockets, connect, echo, shut down; UDP-Lite: one
                        datagram and its echo), then hand-made IPv4 packets through raw
                        sockets; PACKET is KIND,SRC,DST[,NAME=VALUE...] with KIND one of
                        sctp-init (an INIT chunk; sport=, dport=), sctp-heartbeat (a HEARTBEAT
                        chunk; sport=, dport=), dccp-request (sport=, dport=),
                        gre-pptp (GRE version 1 as PPTP sends it; key= the call id),
                        gre (plain GRE version 0), data (proto= the IP protocol, default 253);
                        exchange=1 also sends one back from DST and a second one from SRC
  traffic.py udp-clash  ADDR PORT [--count N] [--sport P] [--gap S]  N new flows (source ports
                        P..P+N-1, S seconds apart),
                        each started by two processes on two CPUs sending the same 5-tuple at
                        the same moment, so that their two packets race to confirm the flow's
                        entry (conntrack -S counts the races the kernel resolved as
                        clash_resolve); prints "flows=N"
  traffic.py udp-burst  ADDR [ADDR...] --count N [--port-base P] [--time-limit S] [--rate R]
                        one datagram per flow from one unconnected socket; prints
                        "sent=N failed=N seconds=S rate=R"
Every command exits non-zero on an unexpected outcome, with the reason on stderr.
"""

import argparse
import mmap
import os
import socket
import struct
import sys
import threading
import time

TIMEOUT = 5.0


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def touch(path):
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(path + ".tmp", path)


def tcp_serve(a):
    s = socket.socket(family(a.addr), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.addr, a.port))
    s.listen(128)
    touch(a.ready)
    while True:
        c, _ = s.accept()
        c.settimeout(TIMEOUT)
        try:
            data = c.recv(4096)
            if data:
                c.sendall(data)
            while c.recv(4096):  # wait for the client's FIN (or RST)
                pass
        except OSError:
            pass
        finally:
            c.close()


def tcp_client(a):
    for i in range(a.count):
        s = socket.socket(family(a.addr), socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        s.connect((a.addr, a.port))
        msg = b"hello %d\n" % i
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        if got != msg:
            sys.exit(f"tcp-client: connection {i}: echo mismatch {got!r}")
        if a.abort:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    # Give the server time to see the close and answer with its own FIN.
    time.sleep(0.2)


def tcp_refused(a):
    for i in range(a.count):
        s = socket.socket(family(a.addr), socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        try:
            s.connect((a.addr, a.port))
        except ConnectionRefusedError:
            continue
        finally:
            s.close()
        sys.exit(f"tcp-refused: connection {i} to port {a.port} was accepted")


def tcp_close_race(a):
    srv = socket.socket(family(a.addr), socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((a.addr, a.port))
    srv.listen(16)
    srv.settimeout(TIMEOUT)
    target = (a.to[0], int(a.to[1])) if a.to else (a.addr, a.port)
    cpus = sorted(os.sched_getaffinity(0))[:2]
    # Two meeting points per connection: both ends exist, then both close. The
    # threads leave the second one together, so the two FINs cross: each CPU
    # handles its own end's FIN while the other's is in flight.
    meet = threading.Barrier(2, timeout=TIMEOUT)
    failed = []

    def server():
        # sched_setaffinity(0) pins the calling thread only.
        os.sched_setaffinity(0, {cpus[-1]})
        try:
            for _ in range(a.count):
                c, _ = srv.accept()
                meet.wait()
                meet.wait()
                c.close()
        except (OSError, threading.BrokenBarrierError) as e:
            failed.append(f"server: {e}")
            meet.abort()

    t = threading.Thread(target=server)
    t.start()
    os.sched_setaffinity(0, {cpus[0]})
    try:
        for i in range(a.count):
            s = socket.socket(family(target[0]), socket.SOCK_STREAM)
            s.settimeout(TIMEOUT)
            s.connect(target)
            meet.wait()
            meet.wait()
            s.close()
            time.sleep(a.gap)
    except (OSError, threading.BrokenBarrierError) as e:
        failed.append(f"client, connection {i}: {e}")
        meet.abort()
    t.join()
    if failed:
        sys.exit("tcp-close-race: " + "; ".join(failed))
    # Let the last FIN/ACK exchange finish before the caller looks at the table.
    time.sleep(0.2)
    print(f"connections={a.count} cpus={','.join(map(str, cpus))}")


def udp_echo(a):
    s = socket.socket(family(a.addr), socket.SOCK_DGRAM)
    s.bind((a.addr, a.port))
    touch(a.ready)
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)


def udp_client(a):
    socks = []
    for i in range(a.count):
        s = socket.socket(family(a.addr), socket.SOCK_DGRAM)
        s.settimeout(TIMEOUT)
        if a.sport:
            # A fixed source port: a later call continues the same flow.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("::" if ":" in a.addr else "0.0.0.0", a.sport + i))
        msg = b"ping %d" % i
        s.sendto(msg, (a.addr, a.port))
        if not a.no_reply:
            data, _ = s.recvfrom(65535)
            if data != msg:
                sys.exit(f"udp-client: datagram {i}: reply mismatch {data!r}")
        socks.append(s)  # keep the source port bound until the end
    for s in socks:
        s.close()


def udp_clash(a):
    # Two processes, one per CPU where there are two, each with its own socket bound to
    # the same source port (SO_REUSEPORT) and connected to ADDR:PORT, so their datagrams
    # share one 5-tuple. Per round they meet at a spin barrier in shared memory (threads
    # would take turns at the interpreter lock) and send at once: both packets find no
    # entry, each makes an unconfirmed one, and the later to confirm loses the race.
    # Round i uses source port --sport + i: a new flow each round.
    shared = mmap.mmap(-1, 8)
    cpus = sorted(os.sched_getaffinity(0))
    children = []
    for k in range(2):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.sched_setaffinity(0, {cpus[k % len(cpus)]})
                clash_rounds(a, shared, k)
            except BaseException as e:  # report, never return into the parent's code
                print(f"udp-clash: sender {k}: {e}", file=sys.stderr)
                code = 1
            os._exit(code)
        children.append(pid)
    failed = [pid for pid in children if os.waitpid(pid, 0)[1] != 0]
    if failed:
        sys.exit(f"udp-clash: {len(failed)} sender(s) failed")
    print(f"flows={a.count}")


def clash_rounds(a, shared, k):
    mine, other = 4 * k, 4 * (1 - k)
    for i in range(a.count):
        s = socket.socket(family(a.addr), socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((a.addr, a.sport + i))
        s.connect((a.addr, a.port))
        struct.pack_into("I", shared, mine, i + 1)
        while struct.unpack_from("I", shared, other)[0] < i + 1:
            pass
        s.send(b"x")
        s.close()
        if a.gap:
            time.sleep(a.gap)


def sctp_server(listener, done):
    while True:
        c, _ = listener.accept()
        c.settimeout(TIMEOUT)
        try:
            data = c.recv(4096)
            if data:
                c.sendall(data)
            while c.recv(4096):  # until the client's SHUTDOWN
                pass
        except OSError:
            pass
        finally:
            c.close()
            done.release()


def udplite_server(s):
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)


def protocols(a):
    echo_local(a)
    raw(a.packets)


def echo_local(a):
    fam = family(a.addr)
    if a.sctp:
        listener = socket.socket(fam, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((a.addr, a.sctp))
        listener.listen(16)
        done = threading.Semaphore(0)
        threading.Thread(target=sctp_server, args=(listener, done), daemon=True).start()
        for i in range(a.count):
            s = socket.socket(fam, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
            s.settimeout(TIMEOUT)
            # Bound to the server's address: one path, hence one conntrack entry.
            s.bind((a.addr, 0))
            s.connect((a.addr, a.sctp))
            msg = b"hello %d" % i
            s.sendall(msg)
            if s.recv(4096) != msg:
                sys.exit(f"protocols: SCTP association {i}: echo mismatch")
            s.close()
            # The server's close follows the SHUTDOWN exchange.
            if not done.acquire(timeout=TIMEOUT):
                sys.exit(f"protocols: SCTP association {i}: no shutdown")
    if a.udplite:
        server = socket.socket(fam, socket.SOCK_DGRAM, socket.IPPROTO_UDPLITE)
        server.bind((a.addr, a.udplite))
        threading.Thread(target=udplite_server, args=(server,), daemon=True).start()
        for i in range(a.count):
            s = socket.socket(fam, socket.SOCK_DGRAM, socket.IPPROTO_UDPLITE)
            s.settimeout(TIMEOUT)
            msg = b"ping %d" % i
            s.sendto(msg, (a.addr, a.udplite))
            if s.recvfrom(65535)[0] != msg:
                sys.exit(f"protocols: UDP-Lite datagram {i}: echo mismatch")
            s.close()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def raw_payload(kind, src, dst, o):
    """The IP protocol and layer-4 bytes of one packet of `kind`."""
    sport, dport = int(o.get("sport", 0)), int(o.get("dport", 0))
    if kind == "sctp-init":
        # RFC 9260 3.3.2: an INIT with a non-zero initiate tag, alone in the
        # packet; the common header's tag is 0, its checksum CRC32c (stored
        # little endian, as Linux's sctp_compute_cksum() does).
        chunk = struct.pack("!BBHIIHHI", 1, 0, 20, 0x1234ABCD, 65536, 10, 10, 1)
        hdr = struct.pack("!HHI", sport, dport, 0)
        crc = crc32c(hdr + bytes(4) + chunk)
        return socket.IPPROTO_SCTP, hdr + struct.pack("<I", crc) + chunk
    if kind == "sctp-heartbeat":
        # RFC 9260 3.3.5: a HEARTBEAT (with its Heartbeat Info) under a
        # non-zero tag, as a peer probes a secondary path with.
        chunk = struct.pack("!BBHHH", 4, 0, 16, 1, 12) + b"trk-test"
        hdr = struct.pack("!HHI", sport, dport, 0x5EED5EED)
        crc = crc32c(hdr + bytes(4) + chunk)
        return socket.IPPROTO_SCTP, hdr + struct.pack("<I", crc) + chunk
    if kind == "dccp-request":
        # RFC 4340 5.1, 5.2: Data Offset 5 words, 48-bit sequence numbers
        # (X=1), type 0 (Request), then the service code; the checksum covers
        # the pseudo-header and the whole packet.
        hdr = struct.pack("!HHBBHBB", sport, dport, 5, 0, 0, (0 << 1) | 1, 0)
        pkt = hdr + (1).to_bytes(6, "big") + struct.pack("!I", 42)
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 33, len(pkt))
        csum = checksum(pseudo + pkt)
        return 33, pkt[:6] + struct.pack("!H", csum) + pkt[8:]
    if kind == "gre-pptp":
        # RFC 2637 4.1: key present, version 1, PPP, payload length 0, call id.
        return socket.IPPROTO_GRE, struct.pack("!HHHH", 0x2001, 0x880B, 0, int(o["key"]))
    if kind == "gre":
        return socket.IPPROTO_GRE, struct.pack("!HH", 0, 0x0800)
    if kind == "data":
        return int(o.get("proto", 253)), b"tracker-test"
    sys.exit(f"protocols: unknown packet kind {kind!r}")


def raw(packets):
    for spec in packets:
        kind, src, dst, *opts = spec.split(",")
        o = dict(opt.split("=", 1) for opt in opts)
        hops = [(src, dst)]
        if o.get("exchange") == "1":
            hops += [(dst, src), (src, dst)]
        proto = raw_payload(kind, src, dst, o)[0]
        # An unbound raw socket of the protocol takes the looped-back packets,
        # so that no ICMP protocol-unreachable answers them.
        catcher = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
        for hop_src, hop_dst in hops:
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
            s.bind((hop_src, 0))
            s.sendto(raw_payload(kind, hop_src, hop_dst, o)[1], (hop_dst, 0))
            s.close()
            time.sleep(0.02)
        catcher.close()


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(a):
    v6 = family(a.addr) == socket.AF_INET6
    if v6:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        req_type, rep_type = 128, 129
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        req_type, rep_type = 8, 0
    s.settimeout(TIMEOUT)
    base = os.getpid() & 0x7FFF
    for i in range(a.count):
        ident = (base + i * 7) & 0xFFFF
        payload = b"tracker-test"
        hdr = struct.pack("!BBHHH", req_type, 0, 0, ident, 1)
        csum = 0 if v6 else checksum(hdr + payload)  # the kernel fills ICMPv6 checksums
        pkt = struct.pack("!BBHHH", req_type, 0, csum, ident, 1) + payload
        s.sendto(pkt, (a.addr, 0))
        deadline = time.monotonic() + TIMEOUT
        while True:
            if time.monotonic() > deadline:
                sys.exit(f"ping: no echo reply for id {ident}")
            data = s.recv(65535)
            if not v6:
                data = data[(data[0] & 0x0F) * 4:]  # IPv4 raw sockets include the IP header
            if len(data) >= 8:
                t, _, _, rid, _ = struct.unpack("!BBHHH", data[:8])
                if t == rep_type and rid == ident:
                    break


def udp_burst(a):
    fam = family(a.addr[0])
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    ports = 65536 - a.port_base
    sent = failed = 0
    start = time.monotonic()
    deadline = start + a.time_limit
    msg = b"x"
    for i in range(a.count):
        addr = a.addr[(i // ports) % len(a.addr)]
        port = a.port_base + i % ports
        try:
            s.sendto(msg, (addr, port))
            sent += 1
        except OSError:
            failed += 1
        if i % 100 == 99:
            now = time.monotonic()
            if now > deadline:
                break
            if a.rate:  # pace to a.rate datagrams per second
                ahead = (i + 1) / a.rate - (now - start)
                if ahead > 0:
                    time.sleep(ahead)
    secs = time.monotonic() - start
    print(f"sent={sent} failed={failed} seconds={secs:.2f} rate={sent / secs:.0f}")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("tcp-serve", "udp-echo"):
        q = sub.add_parser(name)
        q.add_argument("addr")
        q.add_argument("port", type=int)
        q.add_argument("--ready", required=True)
    for name in ("tcp-client", "tcp-refused", "udp-client"):
        q = sub.add_parser(name)
        q.add_argument("addr")
        q.add_argument("port", type=int)
        q.add_argument("--count", type=int, default=1)
        q.add_argument("--abort", action="store_true")
        q.add_argument("--no-reply", action="store_true")
        q.add_argument("--sport", type=int, default=0, help="udp-client: first fixed source port")
    q = sub.add_parser("tcp-close-race")
    q.add_argument("addr")
    q.add_argument("port", type=int)
    q.add_argument("--to", nargs=2, metavar=("ADDR", "PORT"))
    q.add_argument("--count", type=int, default=1)
    q.add_argument("--gap", type=float, default=0.0)
    q = sub.add_parser("ping")
    q.add_argument("addr")
    q.add_argument("--count", type=int, default=1)
    q = sub.add_parser("protocols")
    q.add_argument("addr")
    q.add_argument("--count", type=int, default=1)
    q.add_argument("--sctp", type=int, default=0, metavar="PORT")
    q.add_argument("--udplite", type=int, default=0, metavar="PORT")
    q.add_argument("--packet", action="append", default=[], dest="packets")
    q = sub.add_parser("udp-clash")
    q.add_argument("addr")
    q.add_argument("port", type=int)
    q.add_argument("--count", type=int, default=1)
    q.add_argument("--sport", type=int, default=20000, help="source port of the first flow")
    q.add_argument("--gap", type=float, default=0.0, help="seconds between rounds")
    q = sub.add_parser("udp-burst")
    q.add_argument("addr", nargs="+")
    q.add_argument("--count", type=int, required=True)
    q.add_argument("--port-base", type=int, default=10000)
    q.add_argument("--time-limit", type=float, default=30.0)
    q.add_argument("--rate", type=float, default=0, help="datagrams per second (0: as fast as possible)")
    a = p.parse_args()
    {
        "tcp-serve": tcp_serve,
        "tcp-client": tcp_client,
        "tcp-refused": tcp_refused,
        "tcp-close-race": tcp_close_race,
        "udp-echo": udp_echo,
        "udp-client": udp_client,
        "ping": ping,
        "protocols": protocols,
        "udp-clash": udp_clash,
        "udp-burst": udp_burst,
    }[a.cmd](a)


if __name__ == "__main__":
    try:
        main()
    except (OSError, socket.timeout) as e:
        sys.exit(f"{sys.argv[1] if len(sys.argv) > 1 else 'traffic'}: {e}")
