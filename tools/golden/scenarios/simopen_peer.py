"""``simopen_peer`` (record).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.simopen_peer JSON-ARGS``.
"""

import socket

from tools.golden.scenarios.prelude import A, hold, payload, recv_n, say, until

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind((A["me"], A["myport"]))
until(A["t"])
s.settimeout(4.0)
s.connect((A["peer"], A["peerport"]))
say("connected")
if A["first"]:
    s.sendall(payload(1000, b"c"))
    say("got", len(recv_n(s, 1000)))
else:
    got = recv_n(s, 1000)
    s.sendall(payload(1000, b"s"))
    say("got", len(got))
say("done")
hold(30)
