"""``zone_client`` (record_zones): the same flows, from the same source ports, in every zone.

A TCP connection closed by the client (TIME_WAIT), one left open (ESTABLISHED, held until
the recorder kills us), and a UDP exchange; ``A["base"]`` is the first source port.

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.zone_client JSON-ARGS``.
"""

import contextlib
import socket
import time

from tools.golden.scenarios.prelude import A, connect, hold, payload, recv_n, say

dst, base = A["dst"], A["base"]
s = connect(dst, 8080, src=("0.0.0.0", base))
s.sendall(payload(300, b"c"))
say("echoed", len(recv_n(s, 300)))
s.close()
kept = connect(dst, 8080, src=("0.0.0.0", base + 1))
kept.sendall(payload(100, b"k"))
recv_n(kept, 100)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", base + 2))
u.settimeout(2.0)
for _ in range(2):
    u.sendto(payload(40, b"u"), (dst, 5300))
    with contextlib.suppress(OSError):
        u.recvfrom(2048)
    time.sleep(0.05)
time.sleep(0.3)
say("done")
hold(A.get("limit", 30.0))
