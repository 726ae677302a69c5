"""``midstream_server`` (record).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.midstream_server JSON-ARGS``.
"""

import time

from tools.golden.scenarios.prelude import A, hold, listener, payload, recv_n, say, until

ls = listener(A["host"], A["port"])
say("ready")
ls.settimeout(10)
c, _a = ls.accept()
got = recv_n(c, 1000)
c.sendall(payload(1000, b"s"))
say("pre", len(got))
until(A["t"])
sent = 0
end = time.time() + A["secs"]
for _i in range(100):
    if time.time() >= end:
        break
    c.sendall(payload(700, b"s"))
    sent += 1
    time.sleep(0.1)
say("done", sent)
hold(30)
