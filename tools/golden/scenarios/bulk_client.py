"""``bulk_client`` (record_stress).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.bulk_client JSON-ARGS``.
"""

import socket

from tools.golden.scenarios.prelude import A, fam, hold, payload, recv_n, say

s = socket.socket(fam(A["dst"]), socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, A["rcvbuf"])
s.settimeout(5)
s.connect((A["dst"], A["port"]))
chunk = payload(65536, b"c")
sent = 0
while sent < A["up"]:
    s.sendall(chunk)
    sent += len(chunk)
got = recv_n(s, A["down"], 8.0)
say("done", sent, len(got))
hold(30)
