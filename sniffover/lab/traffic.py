"""Traffic generators for the failover lab, run inside a namespace.

    ip netns exec NS python3 -m sniffover.lab.traffic server --tcp-port 8000 --udp-port 9000 \
        --duration 60
    ip netns exec NS python3 -m sniffover.lab.traffic client --server 198.51.100.10 \
        --tcp 20 --udp 5 --duration 60
    ip netns exec NS python3 -m sniffover.lab.traffic garp --iface inside0 --ip 192.0.2.1

Protocol: a TCP request is the line ``ping <n>\\n``, the answer ``pong <n>\\n``; a UDP request is
the datagram ``ping <n>``, echoed unchanged. The line ``bye`` makes the server close first.

churn: many short TCP connections, one every ``1/--rate`` s (at most ``--count``), each living
a random time in ``--life MIN MAX`` (a request every 0.3 s), closed by the client or, one in
two, by the server (``bye``); bounded by ``--duration``.

Server: prints ``{"ready": true, ...}`` once listening, serves until ``--duration`` elapses.

Client: opens ``--tcp`` long-lived TCP connections and ``--udp`` UDP sockets (each its own source
port), does one request/response on each and prints ``{"ready": true, <result>}``; then reads
one command per line on stdin and answers one JSON line on stdout:

* ``probe``  -> one request/response on every TCP connection and UDP socket, concurrently
  (``--timeout`` each, default 3 s): ``{"tcp_ok", "tcp_total", "udp_ok", "udp_total", "failed"}``
* ``open N`` -> N more TCP connections, answered like ``probe`` for those only
* ``close K`` -> closes the K oldest TCP connections gracefully (FIN): ``{"closed": K}``
* ``info``   -> ``{"tcp_sports": [...], "udp_sports": [...], "dead": [...]}``
* ``quit``   -> ``{"bye": true}`` and exit

Everything is bounded: each exchange by ``--timeout``, the whole process by ``--duration``.

garp: sends ``--count`` gratuitous ARP requests (sender = target = ``--ip``, sender MAC = the
interface's MAC) to ff:ff:ff:ff:ff:ff through an AF_PACKET socket; for an IPv6 ``--ip``,
unsolicited neighbour advertisements (router and override flags, the interface's MAC) from
that address to ff02::1, as keepalived sends them: the hosts' neighbour caches move.

Server and client speak IPv6 when ``--bind``/``--server`` is an IPv6 address (the IPv6
server is IPv6-only, so an IPv4 one can listen on the same ports).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import selectors
import socket
import struct
import sys
import time
from typing import Any

ETH_P_ARP = 0x0806
MAX_CONNS = 4096


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


# --- server -----------------------------------------------------------------------------------


def _family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _server_socket(bind: str, kind: socket.SocketKind) -> socket.socket:
    s = socket.socket(_family(bind), kind)
    if ":" in bind:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return s


def run_server(tcp_port: int, udp_port: int, duration: float, bind: str = "0.0.0.0") -> int:
    deadline = time.monotonic() + duration
    sel = selectors.DefaultSelector()
    lsock = _server_socket(bind, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((bind, tcp_port))
    lsock.listen(1024)
    lsock.setblocking(False)
    usock = _server_socket(bind, socket.SOCK_DGRAM)
    usock.bind((bind, udp_port))
    usock.setblocking(False)
    sel.register(lsock, selectors.EVENT_READ, "listen")
    sel.register(usock, selectors.EVENT_READ, "udp")
    bufs: dict[socket.socket, bytes] = {}
    _emit({"ready": True, "tcp_port": tcp_port, "udp_port": udp_port})

    def drop(conn: socket.socket) -> None:
        sel.unregister(conn)
        bufs.pop(conn, None)
        conn.close()

    while (left := deadline - time.monotonic()) > 0:
        for key, _ in sel.select(timeout=min(left, 1.0)):
            kind = key.data
            if kind == "listen":
                for _ in range(64):
                    try:
                        conn, _addr = lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    if len(bufs) >= MAX_CONNS:
                        conn.close()
                        continue
                    conn.setblocking(False)
                    bufs[conn] = b""
                    sel.register(conn, selectors.EVENT_READ, "conn")
            elif kind == "udp":
                for _ in range(64):
                    try:
                        data, addr = usock.recvfrom(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    with contextlib.suppress(OSError):
                        usock.sendto(data, addr)
            else:
                obj = key.fileobj
                assert isinstance(obj, socket.socket)
                conn = obj
                try:
                    data = conn.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    drop(conn)
                    continue
                if not data:  # peer sent FIN: answer with ours
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_WR)
                    drop(conn)
                    continue
                buf = bufs[conn] + data
                *lines, rest = buf.split(b"\n")
                bufs[conn] = rest[-4096:]
                out = b"".join(
                    b"pong " + line[5:].strip() + b"\n"
                    for line in lines
                    if line.startswith(b"ping ")
                )
                if out:
                    try:
                        conn.sendall(out)
                    except OSError:
                        drop(conn)
                        continue
                if b"bye" in lines:  # the client asks us to close first (our FIN first)
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_WR)
                    drop(conn)
    for conn in list(bufs):
        conn.close()
    lsock.close()
    usock.close()
    return 0


# --- client -----------------------------------------------------------------------------------


class TcpFlow:
    __slots__ = ("sock", "sport", "buf", "dead")

    def __init__(self, sock: socket.socket, sport: int) -> None:
        self.sock = sock
        self.sport = sport
        self.buf = b""
        self.dead: str | None = None


class UdpFlow:
    __slots__ = ("sock", "sport")

    def __init__(self, sock: socket.socket, sport: int) -> None:
        self.sock = sock
        self.sport = sport


class Client:
    def __init__(
        self, server: str, tcp_port: int, udp_port: int, timeout: float, sport_base: int = 0
    ) -> None:
        self.server = server
        # fixed source ports (TCP from sport_base up, UDP from sport_base + 1000 up): two
        # clients with one address on two segments then have identical tuples (zones lab)
        self.sport_base = sport_base
        self.tcp_port = tcp_port
        self.udp_port = udp_port
        self.timeout = timeout
        self.tcp: list[TcpFlow] = []
        self.udp: list[UdpFlow] = []
        self.seq = 0

    # opening
    def open_tcp(self, n: int) -> tuple[list[TcpFlow], list[str]]:
        """Connect ``n`` sockets concurrently; returns the connected ones and failure reasons."""
        n = max(0, min(n, MAX_CONNS - len(self.tcp)))
        sel = selectors.DefaultSelector()
        pending: dict[socket.socket, int] = {}
        failed: list[str] = []
        first = self.sport_base + len(self.tcp) if self.sport_base else 0
        for i in range(n):
            s = socket.socket(_family(self.server), socket.SOCK_STREAM)
            s.setblocking(False)
            s.bind(("::" if ":" in self.server else "0.0.0.0", first + i if first else 0))
            sport = s.getsockname()[1]
            err = s.connect_ex((self.server, self.tcp_port))
            if err not in (0, errno.EINPROGRESS):
                failed.append(f"tcp:{sport}:connect:{errno.errorcode.get(err, err)}")
                s.close()
                continue
            pending[s] = sport
            sel.register(s, selectors.EVENT_WRITE)
        done: list[TcpFlow] = []
        deadline = time.monotonic() + self.timeout
        while pending and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(timeout=left):
                obj = key.fileobj
                assert isinstance(obj, socket.socket)
                s = obj
                sel.unregister(s)
                sport = pending.pop(s)
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    failed.append(f"tcp:{sport}:connect:{errno.errorcode.get(err, err)}")
                    s.close()
                else:
                    done.append(TcpFlow(s, sport))
        for s, sport in pending.items():
            failed.append(f"tcp:{sport}:connect:timeout")
            s.close()
        sel.close()
        self.tcp.extend(done)
        return done, failed

    def open_udp(self, n: int) -> list[UdpFlow]:
        flows = []
        first = self.sport_base + 1000 + len(self.udp) if self.sport_base else 0
        for i in range(max(0, min(n, MAX_CONNS - len(self.udp)))):
            s = socket.socket(_family(self.server), socket.SOCK_DGRAM)
            s.setblocking(False)
            s.bind(("::" if ":" in self.server else "0.0.0.0", first + i if first else 0))
            s.connect((self.server, self.udp_port))
            flows.append(UdpFlow(s, s.getsockname()[1]))
        self.udp.extend(flows)
        return flows

    # exchanging
    def exchange(self, tcp: list[TcpFlow], udp: list[UdpFlow]) -> dict[str, Any]:
        """One request/response on every given flow, concurrently, each bounded by the timeout."""
        self.seq += 1
        n = self.seq
        tcp_req = f"ping {n}\n".encode()
        tcp_want = f"pong {n}".encode()
        udp_req = f"ping {n}".encode()
        failed: list[str] = []
        sel = selectors.DefaultSelector()
        waiting = 0
        tcp_ok = udp_ok = 0
        for f in tcp:
            if f.dead:
                failed.append(f"tcp:{f.sport}:{f.dead}")
                continue
            try:
                f.sock.send(tcp_req)
            except OSError as e:
                f.dead = f"send:{errno.errorcode.get(e.errno or 0, e.errno)}"
                failed.append(f"tcp:{f.sport}:{f.dead}")
                continue
            sel.register(f.sock, selectors.EVENT_READ, f)
            waiting += 1
        for u in udp:
            try:
                u.sock.send(udp_req)
            except OSError as e:
                failed.append(f"udp:{u.sport}:send:{errno.errorcode.get(e.errno or 0, e.errno)}")
                continue
            sel.register(u.sock, selectors.EVENT_READ, u)
            waiting += 1
        deadline = time.monotonic() + self.timeout
        while waiting and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(timeout=left):
                flow = key.data
                if isinstance(flow, TcpFlow):
                    ok, reason = self._tcp_read(flow, tcp_want)
                    if ok or reason:
                        sel.unregister(flow.sock)
                        waiting -= 1
                        if ok:
                            tcp_ok += 1
                        else:
                            failed.append(f"tcp:{flow.sport}:{reason}")
                else:
                    assert isinstance(flow, UdpFlow)
                    ok, reason = self._udp_read(flow, udp_req)
                    if ok or reason:
                        sel.unregister(flow.sock)
                        waiting -= 1
                        if ok:
                            udp_ok += 1
                        else:
                            failed.append(f"udp:{flow.sport}:{reason}")
        for key in list(sel.get_map().values()):
            proto = "tcp" if isinstance(key.data, TcpFlow) else "udp"
            failed.append(f"{proto}:{key.data.sport}:timeout")
        sel.close()
        return {
            "tcp_ok": tcp_ok,
            "tcp_total": len(tcp),
            "udp_ok": udp_ok,
            "udp_total": len(udp),
            "failed": failed,
        }

    @staticmethod
    def _tcp_read(f: TcpFlow, want: bytes) -> tuple[bool, str | None]:
        """(answered, failure reason); stale answers to earlier timed-out requests are skipped."""
        try:
            data = f.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return False, None
        except OSError as e:
            f.dead = errno.errorcode.get(e.errno or 0, str(e.errno))
            return False, f.dead
        if not data:
            f.dead = "eof"
            return False, f.dead
        f.buf += data
        *lines, rest = f.buf.split(b"\n")
        f.buf = rest[-4096:]
        return (want in lines), None

    @staticmethod
    def _udp_read(u: UdpFlow, want: bytes) -> tuple[bool, str | None]:
        for _ in range(64):
            try:
                data = u.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return False, None
            except OSError as e:
                return False, errno.errorcode.get(e.errno or 0, str(e.errno))
            if data == want:
                return True, None
        return False, None

    def close_tcp(self, k: int) -> int:
        """Close the ``k`` oldest connections: drain, FIN, wait (bounded) for the peer's FIN."""
        victims, self.tcp = self.tcp[:k], self.tcp[k:]
        sel = selectors.DefaultSelector()
        for f in victims:
            try:
                while f.sock.recv(65536):
                    pass
            except OSError:
                pass
            try:
                f.sock.shutdown(socket.SHUT_WR)
                sel.register(f.sock, selectors.EVENT_READ, f)
            except OSError:
                f.sock.close()
        deadline = time.monotonic() + self.timeout
        while sel.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(timeout=left):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                try:
                    data = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(s)
                    s.close()
        for key in list(sel.get_map().values()):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            sel.unregister(s)
            s.close()
        sel.close()
        return len(victims)

    def info(self) -> dict[str, Any]:
        return {
            "tcp_sports": [f.sport for f in self.tcp],
            "udp_sports": [u.sport for u in self.udp],
            "dead": [f.sport for f in self.tcp if f.dead],
        }

    def close_all(self) -> None:
        for f in self.tcp:
            f.sock.close()
        for u in self.udp:
            u.sock.close()


def _command(client: Client, line: str) -> dict[str, Any] | None:
    """The answer to one command line, or None for ``quit``."""
    words = line.split()
    if not words:
        return {"error": "empty command"}
    cmd, args = words[0], words[1:]
    try:
        count = int(args[0]) if args else 1
    except ValueError:
        return {"error": f"bad count {args[0]!r}"}
    if cmd == "probe":
        return client.exchange(client.tcp, client.udp)
    if cmd == "open":
        flows, failed = client.open_tcp(count)
        res = client.exchange(flows, [])
        res["tcp_total"] = count
        res["failed"] = failed + res["failed"]
        return res
    if cmd == "close":
        return {"closed": client.close_tcp(count)}
    if cmd == "info":
        return client.info()
    if cmd == "quit":
        return None
    return {"error": f"unknown command {cmd!r}"}


def run_client(
    server: str,
    tcp: int,
    udp: int,
    tcp_port: int,
    udp_port: int,
    duration: float,
    timeout: float,
    sport_base: int = 0,
) -> int:
    deadline = time.monotonic() + duration
    client = Client(server, tcp_port, udp_port, timeout, sport_base)
    tflows, failed = client.open_tcp(tcp)
    uflows = client.open_udp(udp)
    res = client.exchange(tflows, uflows)
    res["tcp_total"] = tcp
    res["failed"] = failed + res["failed"]
    res["ready"] = True
    _emit(res)
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    sel = selectors.DefaultSelector()
    sel.register(stdin, selectors.EVENT_READ)
    buf = b""
    try:
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(timeout=min(left, 1.0)):
                continue
            try:
                data = os.read(stdin, 65536)
            except BlockingIOError:
                continue
            if not data:
                return 0
            buf += data
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                answer = _command(client, raw.decode(errors="replace"))
                if answer is None:
                    _emit({"bye": True})
                    return 0
                _emit(answer)
                if time.monotonic() > deadline:
                    return 0
    finally:
        client.close_all()
        sel.close()
    return 0


# --- churn: many short connections ------------------------------------------------------------


def _exchange(sock: socket.socket, line: bytes, want: bytes | None) -> bool:
    """Send ``line``, read until the data read ends with ``want`` (None: until EOF)."""
    buf = b""
    try:
        if line:
            sock.sendall(line)
        while want is None or not buf.endswith(want):
            data = sock.recv(4096)
            if not data:
                return want is None
            buf += data
    except OSError:
        return False
    return True


def run_churn(
    server: str, port: int, rate: float, life: tuple[float, float], count: int, duration: float
) -> int:
    """Open a connection every ``1/rate`` s (at most ``count``), each living a random time
    in ``life`` with a request every 0.3 s, closed by the client (FIN first) or, one in
    two, by the server (``bye``): many short connections always in flight. Prints
    ``{"ready": true}`` at once and ``{"opened", "closed", "failed"}`` at the end."""
    import random

    rng = random.Random(os.getpid())
    deadline = time.monotonic() + duration
    live: list[tuple[socket.socket, float, bool, list[float]]] = []
    opened = closed = failed = 0
    next_open = time.monotonic()
    _emit({"ready": True})
    while (now := time.monotonic()) < deadline:
        if opened < count and now >= next_open:
            next_open = now + 1.0 / rate
            opened += 1
            try:
                s = socket.create_connection((server, port), timeout=2.0)
            except OSError:
                failed += 1
            else:
                if _exchange(s, b"ping 0\n", b"\n"):
                    live.append((s, now + rng.uniform(*life), rng.random() < 0.5, [now + 0.3]))
                else:
                    failed += 1
                    s.close()
        for item in list(live):
            s, end, server_first, due = item
            if now >= end:
                live.remove(item)
                if server_first:
                    ok = _exchange(s, b"bye\n", None)
                else:
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_WR)
                    ok = _exchange(s, b"", None)
                s.close()
                closed += ok
                failed += not ok
            elif now >= due[0]:
                due[0] = now + 0.3
                if not _exchange(s, b"ping 1\n", b"\n"):
                    live.remove(item)
                    s.close()
                    failed += 1
        time.sleep(min(0.01, max(0.0, next_open - time.monotonic())))
    for s, *_ in live:
        s.close()
    _emit({"opened": opened, "closed": closed, "failed": failed})
    return 0


# --- gratuitous ARP -------------------------------------------------------------------------------


def garp_frame(mac: bytes, ip: str) -> bytes:
    """An Ethernet broadcast ARP request with sender IP = target IP = ``ip`` (a gratuitous ARP)."""
    bcast = b"\xff" * 6
    ipb = socket.inet_aton(ip)
    eth = bcast + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ipb + b"\x00" * 6 + ipb
    return eth + arp


def send_garp(iface: str, ip: str, count: int = 3, interval: float = 0.05) -> bytes:
    """Send ``count`` gratuitous ARPs for ``ip`` out of ``iface``; returns the MAC used."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
        s.bind((iface, 0))
        mac = s.getsockname()[4]
        frame = garp_frame(mac, ip)
        for i in range(max(1, min(count, 100))):
            if i:
                time.sleep(interval)
            s.send(frame)
    return bytes(mac)


def send_unsolicited_na(iface: str, ip: str, count: int = 3, interval: float = 0.05) -> bytes:
    """Send ``count`` unsolicited neighbour advertisements for ``ip`` (which ``iface`` holds)
    to all nodes; returns the MAC advertised. The kernel computes the ICMPv6 checksum."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as p:
        p.bind((iface, 0))
        mac = bytes(p.getsockname()[4])
    ifindex = socket.if_nametoindex(iface)
    target = socket.inet_pton(socket.AF_INET6, ip)
    # type 136, R (router) | O (override); option 2: target link-layer address
    na = struct.pack("!BBHI", 136, 0, 0, 0xA0000000) + target + bytes([2, 1]) + mac
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)  # RFC 4861: 255
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        s.bind((ip, 0, 0, 0))
        for i in range(max(1, min(count, 100))):
            if i:
                time.sleep(interval)
            s.sendto(na, ("ff02::1", 0, 0, ifindex))
    return mac


# --- CLI ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m sniffover.lab.traffic")
    sub = p.add_subparsers(dest="cmd", required=True)
    ps = sub.add_parser("server")
    ps.add_argument("--tcp-port", type=int, default=8000)
    ps.add_argument("--udp-port", type=int, default=9000)
    ps.add_argument("--duration", type=float, default=60.0)
    ps.add_argument("--bind", default="0.0.0.0")
    pc = sub.add_parser("client")
    pc.add_argument("--server", required=True)
    pc.add_argument("--tcp", type=int, default=1)
    pc.add_argument("--udp", type=int, default=0)
    pc.add_argument("--tcp-port", type=int, default=8000)
    pc.add_argument("--udp-port", type=int, default=9000)
    pc.add_argument("--duration", type=float, default=60.0)
    pc.add_argument("--timeout", type=float, default=3.0)
    pc.add_argument("--sport-base", type=int, default=0, choices=range(1024, 60000), metavar="N")
    pn = sub.add_parser("churn")
    pn.add_argument("--server", required=True)
    pn.add_argument("--tcp-port", type=int, default=8000)
    pn.add_argument("--rate", type=float, default=20.0)
    pn.add_argument("--life", type=float, nargs=2, default=(0.5, 3.0))
    pn.add_argument("--count", type=int, default=2000)
    pn.add_argument("--duration", type=float, default=60.0)
    pg = sub.add_parser("garp")
    pg.add_argument("--iface", required=True)
    pg.add_argument("--ip", required=True, action="append")
    pg.add_argument("--count", type=int, default=3)
    a = p.parse_args(argv)
    if a.cmd == "server":
        return run_server(a.tcp_port, a.udp_port, min(a.duration, 3600.0), a.bind)
    if a.cmd == "client":
        return run_client(
            a.server,
            a.tcp,
            a.udp,
            a.tcp_port,
            a.udp_port,
            min(a.duration, 3600.0),
            min(a.timeout, 30.0),
            a.sport_base,
        )
    if a.cmd == "churn":
        return run_churn(
            a.server,
            a.tcp_port,
            min(max(a.rate, 0.1), 200.0),
            (max(0.0, a.life[0]), min(max(a.life), 60.0)),
            min(a.count, 100_000),
            min(a.duration, 3600.0),
        )
    for ip in a.ip:
        send = send_unsolicited_na if ":" in ip else send_garp
        mac = send(a.iface, ip, a.count)
    _emit({"iface": a.iface, "ips": a.ip, "mac": mac.hex(":")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
