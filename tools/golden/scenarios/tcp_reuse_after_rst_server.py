"""The server of the ``tcp_reuse_after_rst`` scenario (record_stress).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.tcp_reuse_after_rst_server JSON-ARGS``.
"""

import threading
import time

from tools.golden.scenarios.prelude import A, echo_conn, hold, listener, recv_n, rst_close, say

ls = listener(A["host"], 8080)
say("ready")
ls.settimeout(10)
for i in range(4):
    c, _a = ls.accept()
    d = recv_n(c, 300)
    c.sendall(d)
    if i == 2:
        time.sleep(0.1)
        rst_close(c)
    else:
        threading.Thread(target=echo_conn, args=(c, 20), daemon=True).start()
say("done")
hold(30)
