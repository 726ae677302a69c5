"""``simclose_client`` (record).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.simclose_client JSON-ARGS``.
"""

import socket
import time

from tools.golden.scenarios.prelude import A, connect, drain, payload, recv_n, say, until

s = connect(A["dst"], A["port"], src=A["src"])
s.sendall(payload(A["n"], b"c"))
got = recv_n(s, A["n"])
say("exchanged", len(got))
until(A["t"])
s.shutdown(socket.SHUT_WR)
say("eof", drain(s))
s.close()
time.sleep(0.3)
say("done")
