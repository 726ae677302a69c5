"""``keepalive_client`` (record_stress).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.keepalive_client JSON-ARGS``.
"""

import socket
import time

from tools.golden.scenarios.prelude import A, connect, hold, payload, recv_n, say

s = connect(A["dst"], 8080)
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 20)
s.sendall(payload(1000, b"k"))
say("echoed", len(recv_n(s, 1000)))
time.sleep(A["idle"])
say("done")
hold(30)
