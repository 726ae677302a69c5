"""``simclose_server`` (record).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.simclose_server JSON-ARGS``.
"""

import socket

from tools.golden.scenarios.prelude import A, drain, hold, listener, payload, recv_n, say, until

ls = listener(A["host"], A["port"])
say("ready")
ls.settimeout(10)
c, _a = ls.accept()
got = recv_n(c, A["n"])
c.sendall(payload(A["n"], b"s"))
say("exchanged", len(got))
until(A["t"])
c.shutdown(socket.SHUT_WR)
say("eof", drain(c))
c.close()
say("done")
hold(30)
