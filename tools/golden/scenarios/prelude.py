"""Shared helpers of the traffic programs the golden recorder runs inside its namespaces.

Every loop is bounded in count and time; the recorder ends every process by its pid.
``A`` holds the program's arguments: the JSON object in ``argv[1]`` (empty without one).
Imports only the standard library, so a scenario starts as fast as ``python3 -c`` did.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import sys
import threading
import time
from typing import Any

A: dict[str, Any] = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}


def say(*a: object) -> None:
    print(*a, flush=True)


def until(t: float) -> None:
    d = t - time.time()
    if d > 0:
        time.sleep(min(d, 30.0))


def fam(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def payload(n: int, tag: bytes = b"x") -> bytes:
    return (tag * n)[:n]


def recv_n(s: socket.socket, n: int, limit: float = 5.0) -> bytes:
    buf = b""
    end = time.time() + limit
    while len(buf) < n and time.time() < end:
        s.settimeout(max(0.01, end - time.time()))
        try:
            d = s.recv(n - len(buf))
        except OSError:
            break
        if not d:
            break
        buf += d
    return buf


def drain(s: socket.socket, limit: float = 5.0) -> int:
    """Read until EOF (or error / time limit); returns the byte count."""
    n = 0
    end = time.time() + limit
    while time.time() < end:
        s.settimeout(max(0.01, end - time.time()))
        try:
            d = s.recv(65536)
        except OSError:
            break
        if not d:
            break
        n += len(d)
    return n


def listener(host: str, port: int) -> socket.socket:
    s = socket.socket(fam(host), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(128)
    return s


def connect(
    host: str,
    port: int,
    src: Any = None,
    timeout: float = 3.0,
    reuse: bool = False,
) -> socket.socket:
    s = socket.socket(fam(host), socket.SOCK_STREAM)
    if reuse:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if src is not None:
        s.bind(tuple(src))
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def rst_close(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def hold(limit: float = 60.0) -> None:
    """Keep sockets open until the parent kills us (bounded anyway)."""
    time.sleep(limit)


def echo_conn(c: socket.socket, limit: float = 60.0) -> None:
    end = time.time() + limit
    try:
        while time.time() < end:
            c.settimeout(max(0.01, end - time.time()))
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        c.close()


def tcp_echo_server(ls: socket.socket, limit: float = 60.0, max_conns: int = 200) -> None:
    def run() -> None:
        end = time.time() + limit
        for _ in range(max_conns):
            ls.settimeout(max(0.01, end - time.time()))
            try:
                c, _a = ls.accept()
            except OSError:
                return
            threading.Thread(target=echo_conn, args=(c, limit), daemon=True).start()

    threading.Thread(target=run, daemon=True).start()


def udp_echo_server(
    host: str, port: int, limit: float = 60.0, max_pkts: int = 1000
) -> socket.socket:
    s = socket.socket(fam(host), socket.SOCK_DGRAM)
    s.bind((host, port))

    def run() -> None:
        end = time.time() + limit
        for _ in range(max_pkts):
            s.settimeout(max(0.01, end - time.time()))
            try:
                d, a = s.recvfrom(65536)
            except OSError:
                return
            s.sendto(d, a)

    threading.Thread(target=run, daemon=True).start()
    return s
