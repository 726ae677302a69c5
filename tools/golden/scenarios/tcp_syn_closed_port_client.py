"""The client of the ``tcp_syn_closed_port`` scenario (record).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.tcp_syn_closed_port_client JSON-ARGS``.
"""

from tools.golden.scenarios.prelude import A, connect, say

try:
    connect(A["dst"], 8083, timeout=2.0)
    say("connected?!")
except OSError as exc:
    say("refused", exc)
say("done")
