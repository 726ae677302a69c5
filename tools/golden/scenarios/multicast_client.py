"""The client of the ``multicast_broadcast`` scenario (record): the datagrams a LAN is full
of, to groups a router does not join (IGMPv3 reports, LLMNR, SSDP, mDNS) and to those it
joins unasked (224.0.0.1, ff02::1, ff02::2), broadcasts, and one unicast flow.

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.multicast_client JSON-ARGS`` with ``src4`` (the
client's address), ``bcast`` (the broadcast addresses to send to), ``dst4``/``dst6`` and
``port`` (an echo server).
"""

import contextlib
import socket
import struct
import time

from tools.golden.scenarios.prelude import A, say

IFINDEX = socket.if_nametoindex(A.get("iface", "eth0"))
GROUPS4 = [
    ("224.0.0.252", 5355),  # LLMNR
    ("239.255.255.250", 1900),  # SSDP
    ("224.0.0.251", 5353),  # mDNS
    ("224.0.0.2", 9),  # all-routers: joined only by a multicast router
    ("239.1.2.3", 5000),  # an application group
    ("224.0.0.1", 9),  # all-systems: every interface joins it
]
GROUPS6 = [
    ("ff02::fb", 5353),  # mDNS
    ("ff02::1:3", 5355),  # LLMNR
    ("ff02::c", 1900),  # SSDP
    ("ff05::c", 1900),  # SSDP, site scope
    ("ff02::1", 9),  # all-nodes
    ("ff02::2", 9),  # all-routers: joined by a forwarding router
]


def send4(dst: str, port: int, broadcast: bool = False) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if broadcast:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(A["src4"]))
    for i in range(2):  # twice: the second finds the entry, if there is one
        s.sendto(b"query %d to %s" % (i, dst.encode()), (dst, port))
        time.sleep(0.05)
    s.close()


def send6(dst: str, port: int) -> None:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, IFINDEX)
    for i in range(2):
        s.sendto(b"query %d" % i, (dst, port, 0, IFINDEX))
        time.sleep(0.05)
    s.close()


def igmp(dst: str, kind: int) -> None:
    """A bare IGMP message (0x22 v3 report, 0x11 query) from a raw socket."""
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IGMP)
    r.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(A["src4"]))
    body = struct.pack("!BBHI", kind, 0, 0, 0)
    csum = sum(struct.unpack("!4H", body))
    csum = ~((csum & 0xFFFF) + (csum >> 16)) & 0xFFFF
    r.sendto(body[:2] + struct.pack("!H", csum) + body[4:], (dst, 0))
    r.close()


igmp("224.0.0.22", 0x22)
igmp("224.0.0.1", 0x11)
for dst, port in GROUPS4:
    send4(dst, port)
for dst, port in GROUPS6:
    send6(dst, port)
for dst in A["bcast"]:
    send4(dst, 138, broadcast=True)
# one unicast flow, answered, so the capture is not only one-way traffic
for dst in (A["dst4"], A["dst6"]):
    u = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(1.0)
    u.sendto(b"unicast", (dst, A["port"]))
    with contextlib.suppress(OSError):
        u.recvfrom(100)
say("done")
