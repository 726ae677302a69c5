"""The client of the ``tcp_syn_unanswered`` scenario (record).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.tcp_syn_unanswered_client JSON-ARGS``.
"""

from tools.golden.scenarios.prelude import A, connect, say

try:
    s = connect(A["dst"], 8082, timeout=1.5)
    say("connected?!")
except OSError as exc:
    say("gave up", exc)
say("done")
