"""Both ends of the ``udplite`` scenarios (record): UDP-Lite (IPPROTO_UDPLITE, 136) sockets.

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.udplite_peer JSON-ARGS``.

``A["role"] == "server"``: one socket per ``A["listen"]`` (host, port, coverage) that echoes
what it receives, then hold. ``"client"``: for each ``A["flows"]`` (dst, port, coverage) a
socket that sends ``A["n"]`` datagrams, each waiting for its echo; then for each
``A["crafted"]`` (src, dst, port, sport) one datagram from a raw socket whose checksum is
computed with protocol 17 in the pseudo-header (what the kernel's conntrack checks, see
conntrack/protocols.py udplite_error). Coverage 0 = the whole datagram.
"""

import contextlib
import socket
import struct
import threading
import time

from tools.golden.scenarios.prelude import A, fam, hold, say

IPPROTO_UDPLITE = 136
UDPLITE_SEND_CSCOV, UDPLITE_RECV_CSCOV = 10, 11


def udplite_socket(host: str, cscov: int, port: int | None = None) -> socket.socket:
    """A socket of ``host``'s family, bound to ``host``:``port`` when a port is given."""
    s = socket.socket(fam(host), socket.SOCK_DGRAM, IPPROTO_UDPLITE)
    if cscov:
        s.setsockopt(IPPROTO_UDPLITE, UDPLITE_SEND_CSCOV, cscov)
        s.setsockopt(IPPROTO_UDPLITE, UDPLITE_RECV_CSCOV, cscov)
    if port is not None:
        s.bind((host, port))
    return s


def echo(s: socket.socket, limit: float = 30.0, max_pkts: int = 100) -> None:
    end = time.time() + limit
    for _ in range(max_pkts):
        s.settimeout(max(0.01, end - time.time()))
        try:
            d, a = s.recvfrom(65536)
        except OSError:
            return
        s.sendto(d, a)


def checksum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total & 0xFFFF) or 0xFFFF


def crafted(src: str, dst: str, port: int, sport: int) -> None:
    af = fam(dst)
    data = b"crafted udplite" * 3
    seg = struct.pack("!HHHH", sport, port, 0, 0) + data
    a, b = socket.inet_pton(af, src), socket.inet_pton(af, dst)
    if af == socket.AF_INET:
        pseudo = a + b + struct.pack("!BBH", 0, 17, len(seg))
    else:
        pseudo = a + b + struct.pack("!IBBBB", len(seg), 0, 0, 0, 17)
    seg = seg[:6] + struct.pack("!H", checksum(pseudo + seg)) + data
    r = socket.socket(af, socket.SOCK_RAW, IPPROTO_UDPLITE)
    r.sendto(seg, (dst, 0))
    r.close()


if A["role"] == "server":
    for host, port, cscov in A["listen"]:
        threading.Thread(
            target=echo, args=(udplite_socket(host, cscov, port),), daemon=True
        ).start()
    say("ready")
    hold(A.get("limit", 30.0))
else:
    answered = 0
    for dst, port, cscov in A["flows"]:
        s = udplite_socket(dst, cscov)
        s.settimeout(1.0)
        for i in range(A.get("n", 3)):
            s.sendto(b"udplite %d " % i + b"p" * 60, (dst, port))
            with contextlib.suppress(OSError):
                s.recvfrom(2000)
                answered += 1
            time.sleep(0.2)
    for src, dst, port, sport in A.get("crafted", []):
        crafted(src, dst, port, sport)
        time.sleep(0.1)
    say("done", answered)
