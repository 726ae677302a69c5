"""``zerowin_client`` (record_stress).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.zerowin_client JSON-ARGS``.
"""

import socket

from tools.golden.scenarios.prelude import A, hold, say

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.settimeout(5)
s.connect((A["dst"], 8080))
s.send(b"hello")
say("done")
hold(30)  # never reads: the window closes, the server probes it
