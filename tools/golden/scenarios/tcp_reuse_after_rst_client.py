"""The client of the ``tcp_reuse_after_rst`` scenario (record_stress).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.tcp_reuse_after_rst_client JSON-ARGS``.
"""

import time

from tools.golden.scenarios.prelude import A, connect, hold, payload, recv_n, rst_close, say

dst = A["dst"]
src = (A["src"], 40700)
s = connect(dst, 8080, src=src, reuse=True)
s.sendall(payload(300, b"a"))
recv_n(s, 300)
rst_close(s)
time.sleep(0.1)
s = connect(dst, 8080, src=src, reuse=True)
s.sendall(payload(300, b"b"))
recv_n(s, 300)
src2 = (A["src"], 40710)
t = connect(dst, 8080, src=src2, reuse=True)
t.sendall(payload(300, b"c"))
recv_n(t, 300)
time.sleep(0.4)  # the server aborts this one
t.close()
time.sleep(0.1)
t = connect(dst, 8080, src=src2, reuse=True)
t.sendall(payload(300, b"d"))
say("echo", len(recv_n(t, 300)))
time.sleep(0.3)
say("done")
hold(30)
