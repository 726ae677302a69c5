"""``frag_server`` (record_edges): a TCP server whose replies leave with DF cleared.

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.frag_server JSON-ARGS``.
Each connection: read ``n`` bytes, answer ``n`` bytes, twice; then hold it open.
"""

import socket
import threading

from tools.golden.scenarios.prelude import A, hold, listener, payload, recv_n, say

IP_MTU_DISCOVER, IP_PMTUDISC_DONT = 10, 0


def serve(c: socket.socket) -> None:
    c.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
    for _ in range(A.get("rounds", 2)):
        if len(recv_n(c, A["n"])) < A["n"]:
            return
        c.sendall(payload(A["n"], b"s"))


ls = listener(A["host"], A["port"])
ls.settimeout(20.0)
say("ready")
for _ in range(4):
    try:
        conn, _a = ls.accept()
    except OSError:
        break
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
hold(A.get("limit", 30.0))
