"""The client of the ``tcp_many_short`` scenario (record_stress).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.tcp_many_short_client JSON-ARGS``.
"""

import time

from tools.golden.scenarios.prelude import A, connect, payload, recv_n, rst_close, say

ok = 0
for i in range(200):
    try:
        s = connect(A["dst"], 8080, timeout=2.0)
        s.sendall(payload(100 + i, b"q"))
        recv_n(s, 100 + i, 1.0)
        if i % 10 == 7:
            rst_close(s)
        else:
            s.close()
        ok += 1
    except OSError as exc:
        say("error", i, exc)
    time.sleep(0.01)
time.sleep(0.3)
say("done", ok)
