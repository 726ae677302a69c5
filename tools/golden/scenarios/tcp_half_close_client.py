"""The client of the ``tcp_half_close`` scenario (record).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.tcp_half_close_client JSON-ARGS``.
"""

import socket
import time

from tools.golden.scenarios.prelude import A, connect, hold, payload, recv_n, say

s = connect(A["dst"], 8080)
s.sendall(payload(3000, b"c"))
time.sleep(0.1)
s.shutdown(socket.SHUT_WR)
say("got", recv_n(s, 4500, 3.0).__len__())
say("done")
hold(30)
