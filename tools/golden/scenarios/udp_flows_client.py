"""The client of the ``udp_flows`` scenario (record).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.udp_flows_client JSON-ARGS``.
"""

import contextlib
import socket
import time

from tools.golden.scenarios.prelude import A, say

dst = A["dst"]
# 1: never answered (dropped silently at the server)
u1 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u1.sendto(b"nobody home", (dst, 9998))
time.sleep(0.1)
u1.sendto(b"nobody home 2", (dst, 9998))
# 2: one request, one response
u2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u2.settimeout(1.0)
u2.sendto(b"query", (dst, 5300))
say("reply", u2.recvfrom(100)[0])
# 3: a stream both ways lasting more than 2 s (ASSURED)
u3 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u3.settimeout(1.0)
for i in range(7):
    u3.sendto(b"stream %d" % i, (dst, 5300))
    with contextlib.suppress(OSError):
        u3.recvfrom(100)
    time.sleep(0.5)
say("done")
