"""``retrans_client`` (record_stress).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.retrans_client JSON-ARGS``.
"""

import contextlib

from tools.golden.scenarios.prelude import A, connect, hold, payload, recv_n, say, until

s = connect(A["dst"], 8080)
n = 0
for _i in range(A["rounds"]):
    s.sendall(payload(3000, b"r"))
    n += len(recv_n(s, 3000, 2.0))
say("lossy", n)
until(A["t_block"])
with contextlib.suppress(OSError):
    s.sendall(payload(1400, b"z"))  # dropped at the server: retransmitted by RTO
say("done")
hold(30)
