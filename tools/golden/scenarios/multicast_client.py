"""The client of the ``multicast_broadcast`` scenario (record): the datagrams a LAN is full
of, to groups a router does not join (IGMPv3 reports, LLMNR, SSDP, mDNS) and to those it
joins unasked (224.0.0.1, ff02::1, ff02::2), broadcasts, and one unicast flow.

Run by the golden recorder inside a namespace:
``python3 -m tools.golden.scenarios.multicast_client JSON-ARGS`` with ``src4``/``src6``
(the client's addresses), ``bcast`` (the broadcast addresses to send to), ``dst4``/``dst6``
and ``port`` (an echo server); ``groups`` ([group, port] pairs) sends to those alone.
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
    ("ff05::2", 9),  # site-local all-routers: joined by a forwarding router
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


def node_local(src: str, dst: str = "ff01::1", port: int = 9) -> None:
    """A frame to an interface-local group, which no host sends on a wire (the router's
    ip6_rcv_core drops it before conntrack sees it): AF_PACKET, built here."""
    iface = A.get("iface", "eth0")
    with open(f"/sys/class/net/{iface}/address") as f:
        mac = bytes.fromhex(f.read().strip().replace(":", ""))
    a, b = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    data = b"node-local"
    udp = struct.pack("!HHHH", 40000, port, 8 + len(data), 0) + data
    pseudo = a + b + struct.pack("!IBBBB", len(udp), 0, 0, 0, 17)
    words = pseudo + udp + (b"\0" if len(udp) & 1 else b"")
    total = sum(struct.unpack(f"!{len(words) // 2}H", words))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    udp = udp[:6] + struct.pack("!H", (~total & 0xFFFF) or 0xFFFF) + data
    ip6 = struct.pack("!IHBB", 6 << 28, len(udp), 17, 1) + a + b
    frame = b"\x33\x33" + b[-4:] + mac + b"\x86\xdd" + ip6 + udp
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    s.send(frame)
    s.close()


def dhcp_discover() -> None:
    """A DHCP DISCOVER-like datagram from 0.0.0.0:68 to 255.255.255.255:67 (AF_PACKET:
    a socket cannot send from 0.0.0.0)."""
    iface = A.get("iface", "eth0")
    with open(f"/sys/class/net/{iface}/address") as f:
        mac = bytes.fromhex(f.read().strip().replace(":", ""))
    data = b"\x01\x01\x06\x00" + bytes(232) + b"\x63\x82\x53\x63\x35\x01\x01\xff"
    udp = struct.pack("!HHHH", 68, 67, 8 + len(data), 0) + data  # checksum 0: none
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                      bytes(4), b"\xff" * 4)  # fmt: skip
    words = struct.unpack("!10H", hdr)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    hdr = hdr[:10] + struct.pack("!H", ~total & 0xFFFF) + hdr[12:]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    s.send(b"\xff" * 6 + mac + b"\x08\x00" + hdr + udp)
    s.close()


if A.get("vrrp"):  # a VRRP-like advertisement (protocol 112) to 224.0.0.18
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
    r.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(A["src4"]))
    r.sendto(struct.pack("!BBBBBBH4s", 0x21, 1, 100, 1, 0, 1, 0, socket.inet_aton(A["src4"])),
             ("224.0.0.18", 0))  # fmt: skip
    r.close()
if "groups" in A:  # only these (multicast_joined), else everything above
    for dst, port in A["groups"]:
        (send6 if ":" in dst else send4)(dst, port)
else:
    igmp("224.0.0.22", 0x22)
    igmp("224.0.0.1", 0x11)
    for dst, port in GROUPS4:
        send4(dst, port)
    for dst, port in GROUPS6:
        send6(dst, port)
    node_local(A["src6"])
    dhcp_discover()
for dst in A.get("bcast", []):
    send4(dst, 138, broadcast=True)
# one unicast flow, answered, so the capture is not only one-way traffic
for dst in (A["dst4"], A["dst6"]) if "dst4" in A else ():
    u = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(1.0)
    u.sendto(b"unicast", (dst, A["port"]))
    with contextlib.suppress(OSError):
        u.recvfrom(100)
say("done")
