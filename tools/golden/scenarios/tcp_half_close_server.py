"""The server of the ``tcp_half_close`` scenario (record).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.tcp_half_close_server JSON-ARGS``.
"""

import time

from tools.golden.scenarios.prelude import A, drain, hold, listener, payload, say

ls = listener(A["host"], 8080)
say("ready")
ls.settimeout(10)
c, _a = ls.accept()
n = drain(c, 5.0)
say("eof", n)
for _i in range(3):
    c.sendall(payload(1500, b"s"))
    time.sleep(0.1)
say("done")
hold(30)
