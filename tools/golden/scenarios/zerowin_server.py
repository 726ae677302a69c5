"""``zerowin_server`` (record_stress).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.zerowin_server JSON-ARGS``.
"""

import time

from tools.golden.scenarios.prelude import A, hold, listener, payload, say

ls = listener(A["host"], 8080)
say("ready")
ls.settimeout(10)
c, _a = ls.accept()
c.setblocking(False)
sent = 0
end = time.time() + A["secs"]
chunk = payload(16384, b"w")
while time.time() < end and sent < (64 << 20):
    try:
        sent += c.send(chunk)
    except BlockingIOError:
        time.sleep(0.05)
    except OSError:
        break
say("done", sent)
hold(30)
