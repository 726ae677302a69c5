"""``frag_client`` (record_edges): TCP data and UDP datagrams that leave with DF cleared,
so a link with a smaller MTU on the way fragments them (or the sender does, for UDP).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.frag_client JSON-ARGS``.
"""

import contextlib
import socket

from tools.golden.scenarios.prelude import A, fam, hold, payload, recv_n, say

IP_MTU_DISCOVER, IP_PMTUDISC_DONT = 10, 0
IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DONT = 23, 0

conns = []
for dst in A.get("tcp", []):
    s = socket.socket(fam(dst), socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
    s.settimeout(3.0)
    s.connect((dst, A["port"]))
    for _ in range(A.get("rounds", 2)):
        s.sendall(payload(A["n"], b"c"))
        got = recv_n(s, A["n"])
        say("echoed", len(got))
    conns.append(s)
for dst in A.get("udp", []):
    u = socket.socket(fam(dst), socket.SOCK_DGRAM)
    if ":" in dst:
        u.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DONT)
    else:
        u.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
    u.settimeout(1.0)
    u.sendto(payload(A.get("udp_n", 3000), b"u"), (dst, A.get("udp_port", 5300)))
    with contextlib.suppress(OSError):
        say("udp", len(u.recvfrom(65536)[0]))
say("done")
hold(A.get("limit", 30.0))  # the connections stay open through the dump
