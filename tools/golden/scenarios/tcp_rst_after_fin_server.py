"""The server of the ``tcp_rst_after_fin`` scenario (record_stress).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.tcp_rst_after_fin_server JSON-ARGS``.
"""

import socket
import time

from tools.golden.scenarios.prelude import A, drain, hold, listener, payload, recv_n, rst_close, say

ls = listener(A["host"], 8080)
say("ready")
ls.settimeout(10)
c, _a = ls.accept()
recv_n(c, 500)
c.sendall(payload(500, b"a"))
drain(c, 2.0)  # client's FIN
rst_close(c)
c, _a = ls.accept()
recv_n(c, 500)
c.sendall(payload(4000, b"b"))
c.shutdown(socket.SHUT_WR)
time.sleep(0.5)
c.close()
c, _a = ls.accept()
recv_n(c, 500)
c.sendall(payload(500, b"c"))
drain(c, 2.0)  # client's FIN
time.sleep(0.1)
try:
    c.sendall(payload(700, b"C"))  # to a closed socket: RST
    time.sleep(0.2)
    c.sendall(payload(700, b"D"))
except OSError:
    pass
time.sleep(0.3)
say("done")
hold(30)
