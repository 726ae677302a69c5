"""The client of the ``tcp_close_while_data_in_flight`` scenario (record_stress).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.tcp_close_while_data_in_flight_client JSON-ARGS``.
"""

import socket
import time

from tools.golden.scenarios.prelude import A, connect, drain, hold, recv_n, say

dst = A["dst"]
a = connect(dst, 8080)
recv_n(a, 20000)
a.close()  # unread data: RST, the server keeps sending into it
b = connect(dst, 8080)
b.shutdown(socket.SHUT_WR)  # FIN while data flows the other way
c = connect(dst, 8080)
recv_n(c, 30000)
c.shutdown(socket.SHUT_RDWR)
say("b got", drain(b, 3.0))
time.sleep(0.5)
say("done")
hold(30)
