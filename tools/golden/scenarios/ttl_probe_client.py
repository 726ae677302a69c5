"""``ttl_probe_client`` (record_edges): probes that die at the router (TTL / hop limit 1).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.ttl_probe_client JSON-ARGS``.

TCP SYNs with TTL 1 (IPv4) and hop limit 1 (IPv6), a burst of UDP probes with TTL 1 from
distinct ports (more than the router's ICMP rate limit answers), UDP with TTL 1 to the
router's own address (delivered locally), then one ordinary UDP exchange.
"""

import contextlib
import socket
import time

from tools.golden.scenarios.prelude import A, say

for dst, level, opt in (
    (A["dst"], socket.IPPROTO_IP, socket.IP_TTL),
    (A["dst6"], socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS),
):
    s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(level, opt, 1)
    s.settimeout(1.5)  # the SYN, one retransmission
    with contextlib.suppress(OSError):
        s.connect((dst, 8080))
    s.close()
say("syn")
burst = []
for i in range(A.get("burst", 12)):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
    u.sendto(b"probe %d" % i, (A["dst"], 33434 + i))
    burst.append(u)
for i in range(A.get("burst6", 10)):
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 1)
    u.sendto(b"probe6 %d" % i, (A["dst6"], 33434 + i))
    burst.append(u)
time.sleep(0.3)
say("burst")
for local in (A["router"], A["router6"]):
    u = socket.socket(socket.AF_INET6 if ":" in local else socket.AF_INET, socket.SOCK_DGRAM)
    if ":" in local:
        u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 1)
    else:
        u.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
    u.sendto(b"to the router", (local, 33500))
    burst.append(u)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(1.0)
u.sendto(b"plain", (A["dst"], 5300))
with contextlib.suppress(OSError):
    u.recvfrom(100)
time.sleep(0.3)
say("done")
