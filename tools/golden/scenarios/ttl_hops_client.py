"""``ttl_hops_client`` (record_edges): traffic with a fixed TTL / hop limit.

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.ttl_hops_client JSON-ARGS``.

With ``ttl`` 2 the packets cross the router and leave it with TTL 1 (still delivered to
a host on the next link): a UDP exchange and a TCP connection with data, per address in
``echo``. ``burst`` UDP probes to ``dst`` go out with TTL 1 (they die at the router).
"""

import contextlib
import socket
import time

from tools.golden.scenarios.prelude import A, fam, hold, say


def set_ttl(s: socket.socket, host: str, ttl: int) -> None:
    if ":" in host:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
    else:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)


keep = []
for host in A.get("echo", []):
    u = socket.socket(fam(host), socket.SOCK_DGRAM)
    set_ttl(u, host, A["ttl"])
    u.settimeout(1.0)
    u.sendto(b"hop", (host, 5300))
    with contextlib.suppress(OSError):
        say("udp", len(u.recvfrom(100)[0]))
    t = socket.socket(fam(host), socket.SOCK_STREAM)
    set_ttl(t, host, A["ttl"])
    t.settimeout(2.0)
    with contextlib.suppress(OSError):
        t.connect((host, 8080))
        t.sendall(b"x" * 100)
        say("tcp", len(t.recv(100)))
    keep += [u, t]
for i in range(A.get("burst", 0)):
    u = socket.socket(fam(A["dst"]), socket.SOCK_DGRAM)
    set_ttl(u, A["dst"], 1)
    u.sendto(b"probe %d" % i, (A["dst"], 33434 + i))
    keep.append(u)
time.sleep(0.3)
say("done")
hold(A.get("limit", 30.0))
