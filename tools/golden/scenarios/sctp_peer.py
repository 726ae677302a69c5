"""``sctp_peer`` (record).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.sctp_peer JSON-ARGS``.
"""

import socket

from tools.golden.scenarios.prelude import A, fam, hold, say, until

socks = {f: socket.socket(f, socket.SOCK_RAW, 132) for f in (socket.AF_INET, socket.AF_INET6)}
say("ready")
for off, dst, pkt in A["sends"][:500]:
    until(A["t0"] + off)
    socks[fam(dst)].sendto(bytes.fromhex(pkt), (dst, 0))
say("done")
hold(A.get("limit", 30.0))
