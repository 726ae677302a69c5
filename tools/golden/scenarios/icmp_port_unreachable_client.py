"""The client of the ``icmp_port_unreachable`` scenario (record).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.icmp_port_unreachable_client JSON-ARGS``.
"""

import socket

from tools.golden.scenarios.prelude import A, say

u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.connect((A["dst"], 9997))
u.send(b"anyone?")
u.settimeout(1.0)
try:
    u.recv(100)
    say("answer?!")
except OSError as exc:
    say("error", exc)
say("done")
