"""The client of the ``tcp_syn_on_established`` scenario (record_stress).

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.tcp_syn_on_established_client JSON-ARGS``.
"""

from tools.golden.scenarios.prelude import A, connect, hold, payload, recv_n, rst_close, say, until

src = (A["src"], 40800)
s = connect(A["dst"], 8080, src=src, reuse=True)
s.sendall(payload(1200, b"a"))
say("echoed", len(recv_n(s, 1200)))
rst_close(s)  # the RST never leaves the client
say("aborted")
until(A["t"])
s = connect(A["dst"], 8080, src=src, reuse=True, timeout=5.0)
s.sendall(payload(800, b"b"))
say("echoed again", len(recv_n(s, 800)))
say("done")
hold(30)
