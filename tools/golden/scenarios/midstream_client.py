"""``midstream_client`` (record).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.midstream_client JSON-ARGS``.
"""

import time

from tools.golden.scenarios.prelude import A, connect, hold, payload, recv_n, say

s = connect(A["dst"], A["port"])
s.sendall(payload(1000, b"c"))
say("pre", len(recv_n(s, 1000)))
end = A["t"] + A["secs"] + 0.5
n = 0
for _i in range(200):
    if time.time() >= end:
        break
    s.settimeout(max(0.01, end - time.time()))
    try:
        d = s.recv(65536)
    except OSError:
        break
    if not d:
        break
    s.sendall(payload(len(d) // 2 + 1, b"c"))
    n += 1
say("done", n)
hold(30)
