"""The client of the ``tcp_syn_retransmit`` scenario (record).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.tcp_syn_retransmit_client JSON-ARGS``.
"""

from tools.golden.scenarios.prelude import A, connect, hold, payload, recv_n, say

s = connect(A["dst"], 8081, timeout=4.0)
say("connected")
s.sendall(payload(2000, b"c"))
say("echoed", len(recv_n(s, 2000)))
say("done")
hold(30)
