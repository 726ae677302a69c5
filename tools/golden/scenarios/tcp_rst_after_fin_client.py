"""The client of the ``tcp_rst_after_fin`` scenario (record_stress).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.tcp_rst_after_fin_client JSON-ARGS``.
"""

import socket
import time

from tools.golden.scenarios.prelude import A, connect, drain, payload, recv_n, say

dst = A["dst"]
s = connect(dst, 8080)
s.sendall(payload(500, b"1"))
recv_n(s, 500)
s.shutdown(socket.SHUT_WR)
drain(s, 2.0)
s.close()
time.sleep(0.2)
s = connect(dst, 8080)
s.sendall(payload(500, b"2"))
time.sleep(0.3)  # 4000 bytes + FIN arrive, none read
s.close()  # unread data: RST
time.sleep(0.2)
s = connect(dst, 8080)
s.sendall(payload(500, b"3"))
recv_n(s, 500)
s.close()  # FIN; the server's later data gets an RST
time.sleep(1.0)
say("done")
