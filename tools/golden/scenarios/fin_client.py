"""``fin_client`` (record).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.fin_client JSON-ARGS``.
"""

import time

from tools.golden.scenarios.prelude import A, connect, payload, recv_n, say

s = connect(A["dst"], A["port"], src=A.get("src"))
s.sendall(payload(A["n"], b"c"))
got = recv_n(s, A["n"])
say("echoed", len(got))
s.close()
time.sleep(0.3)
say("done")
