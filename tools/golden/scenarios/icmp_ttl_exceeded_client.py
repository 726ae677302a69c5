"""The client of the ``icmp_ttl_exceeded`` scenario (record_stress).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.icmp_ttl_exceeded_client JSON-ARGS``.
"""

import contextlib
import socket
import time

from tools.golden.scenarios.prelude import A, say

dst = A["dst"]
for ttl in (1, 1, 2):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    u.settimeout(0.5)
    u.sendto(b"probe ttl %d" % ttl, (dst, 5300))
    with contextlib.suppress(OSError):
        u.recvfrom(100)
    u.close()
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 1)
u6.sendto(b"probe6", (A["dst6"], 33434))
time.sleep(0.3)
say("done")
