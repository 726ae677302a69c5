"""The server of the ``tcp_close_while_data_in_flight`` scenario (record_stress).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.tcp_close_while_data_in_flight_server JSON-ARGS``.
"""

import threading
import time

from tools.golden.scenarios.prelude import A, hold, listener, payload, say

ls = listener(A["host"], 8080)
say("ready")


def stream(c, n):
    try:
        c.settimeout(3)
        for _i in range(n):
            c.sendall(payload(8192, b"f"))
            time.sleep(0.01)
        c.close()
    except OSError:
        pass


ls.settimeout(10)
for _i in range(3):
    c, _a = ls.accept()
    threading.Thread(target=stream, args=(c, 150), daemon=True).start()
time.sleep(4)
say("done")
hold(30)
