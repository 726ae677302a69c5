"""The client of the ``mixed_many`` scenario (record).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.mixed_many_client JSON-ARGS``.
"""

import contextlib
import socket
import time

from tools.golden.scenarios.prelude import A, connect, fam, hold, payload, recv_n, rst_close, say

V6 = A.get("v6_every", 5)  # every V6-th TCP connection is IPv6
V6U = A.get("udp_v6_every", V6)  # and every V6U-th UDP flow
keep = []
outcome: dict[int, int] = {}
for i in range(40):
    dst = A["dst6"] if i % V6 == V6 - 1 else A["dst4"]
    kind = i % 4
    try:
        if kind == 3:
            with contextlib.suppress(OSError):
                connect(dst, 8084, timeout=1.0)
        else:
            s = connect(dst, 8080, timeout=2.0)
            s.sendall(payload(500 + 37 * i, b"m"))
            recv_n(s, 500 + 37 * i, 2.0)
            if kind == 0:
                keep.append(s)
            elif kind == 1:
                s.close()
            else:
                rst_close(s)
        outcome[kind] = outcome.get(kind, 0) + 1
    except OSError as exc:
        say("tcp error", i, exc)
    time.sleep(0.04)
for j in range(30):
    dst = A["dst6"] if j % V6U == V6U - 1 else A["dst4"]
    u = socket.socket(fam(dst), socket.SOCK_DGRAM)
    u.settimeout(0.3)
    port = (5300, 9998, 9997)[j % 3]
    u.sendto(b"udp %d" % j, (dst, port))
    if port == 5300:
        with contextlib.suppress(OSError):
            u.recvfrom(100)
    keep.append(u)
    time.sleep(0.03)
say("done", outcome)
hold(30)
