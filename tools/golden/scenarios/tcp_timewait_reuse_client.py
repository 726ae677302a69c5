"""The client of the ``tcp_timewait_reuse`` scenario (record).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.tcp_timewait_reuse_client JSON-ARGS``.
"""

import time

from tools.golden.scenarios.prelude import A, connect, hold, payload, recv_n, say

src = (A["src"], A["sport"])
s = connect(A["dst"], 8080, src=src, reuse=True)
s.sendall(payload(2000, b"a"))
say("echoed", len(recv_n(s, 2000)))
s.close()
time.sleep(1.3)  # tcp_tw_reuse wants the TIME_WAIT timestamp to be > 1 s old
s = connect(A["dst"], 8080, src=src, reuse=True)
s.sendall(payload(2000, b"b"))
say("echoed again", len(recv_n(s, 2000)))
say("done")
hold(30)
