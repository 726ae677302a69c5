"""``bulk_server`` (record_stress).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.bulk_server JSON-ARGS``.
"""

import time

from tools.golden.scenarios.prelude import A, hold, listener, payload, say

ls = listener(A["host"], A["port"])
say("ready")
ls.settimeout(10)
c, _a = ls.accept()
got = 0
want = A["up"]
end = time.time() + 8
c.settimeout(8)
while got < want and time.time() < end:
    d = c.recv(262144)
    if not d:
        break
    got += len(d)
sent = 0
chunk = payload(65536, b"s")
while sent < A["down"]:
    c.sendall(chunk)
    sent += len(chunk)
say("done", got, sent)
hold(30)
