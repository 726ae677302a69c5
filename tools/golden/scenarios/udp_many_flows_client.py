"""The client of the ``udp_many_flows`` scenario (record_stress).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.udp_many_flows_client JSON-ARGS``.
"""

import contextlib
import socket
import time

from tools.golden.scenarios.prelude import A, fam, hold, say

socks = []
for i in range(300):
    dst = A["dst6"] if i % 7 == 3 else A["dst4"]
    u = socket.socket(fam(dst), socket.SOCK_DGRAM)
    u.settimeout(0.05)
    port = 9998 if i % 5 == 4 else 5300
    u.sendto(b"flow %d" % i, (dst, port))
    if port == 5300:
        with contextlib.suppress(OSError):
            u.recvfrom(100)
    socks.append((u, dst, port))
    time.sleep(0.005)
# about a third become streams: more traffic after 2 s, some only one way
time.sleep(max(0.0, A["t0"] + 2.6 - time.time()))
for i, (u, dst, port) in enumerate(socks):
    if i % 3 == 0:
        u.sendto(b"again %d" % i, (dst, port))
        if port == 5300:
            with contextlib.suppress(OSError):
                u.recvfrom(100)
say("done")
hold(30)
