"""Generic server: TCP echo and UDP echo listeners (``A["tcp"]``, ``A["udp"]``: host, port
pairs), then hold until killed.

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.echo_server JSON-ARGS``.
"""

from tools.golden.scenarios.prelude import A, hold, listener, say, tcp_echo_server, udp_echo_server

for h, p in A.get("tcp", []):
    tcp_echo_server(listener(h, p))
for h, p in A.get("udp", []):
    udp_echo_server(h, p)
say("ready")
hold(A.get("limit", 60.0))
