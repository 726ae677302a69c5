"""A listener that joins multicast groups on one interface and holds (the ``multicast_joined``
scenario, record): run in the router namespace, it makes the router a host of those groups,
so the kernel delivers (and conntrack confirms) datagrams sent to them.

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.group_listener JSON-ARGS`` with ``iface``, ``addr4``
(the interface's IPv4 address) and ``groups`` ([group, port] pairs, IPv4 and IPv6).
"""

import socket
import struct

from tools.golden.scenarios.prelude import A, hold, say

index = socket.if_nametoindex(A["iface"])
socks = []
for group, port in A["groups"]:
    if ":" in group:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
        mreq6 = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", index)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq6)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("", port))
        mreq = socket.inet_aton(group) + socket.inet_aton(A["addr4"])
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    socks.append(s)
say("ready")
hold(A.get("limit", 30.0))
