"""The client of the ``tcp_rst_abort`` scenario (record).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.tcp_rst_abort_client JSON-ARGS``.
"""

import time

from tools.golden.scenarios.prelude import A, connect, payload, recv_n, rst_close, say

s = connect(A["dst"], 8080)
s.sendall(payload(3000, b"c"))
say("echoed", len(recv_n(s, 3000)))
time.sleep(0.1)
rst_close(s)
time.sleep(0.2)
say("done")
