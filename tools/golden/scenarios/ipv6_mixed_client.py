"""The client of the ``ipv6_mixed`` scenario (record).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.ipv6_mixed_client JSON-ARGS``.
"""

import socket

from tools.golden.scenarios.prelude import A, connect, hold, payload, recv_n, say

dst = A["dst"]
s1 = connect(dst, 8080)
s1.sendall(payload(3000, b"a"))
say("echoed", len(recv_n(s1, 3000)))
s1.close()
s2 = connect(dst, 8080)
s2.sendall(payload(2000, b"b"))
say("echoed", len(recv_n(s2, 2000)))
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.settimeout(1.0)
u.sendto(b"query6", (dst, 5300))
say("reply", u.recvfrom(100)[0])
c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
c.connect((dst, 9997))
c.send(b"closed?")
c.settimeout(1.0)
try:
    c.recv(100)
except OSError as exc:
    say("error", exc)
say("done")
hold(30)
