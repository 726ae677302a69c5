"""Conntrack tuples: how a packet is keyed and how the reply direction is derived.

A tuple is the kernel's ``nf_conntrack_tuple`` reduced to what identifies a
flow: ``(proto, src, dst, sport, dport)``. The address family is implied by the
address length (4 or 16 bytes). The "u" fields follow the kernel:

=========  ==================  =========================
protocol   sport               dport
=========  ==================  =========================
TCP/UDP    source port         destination port
ICMP(v6)   echo identifier     ``type << 8 | code``
GRE        source key          destination key
generic    0                   0
=========  ==================  =========================

Every entry owns two tuples: ORIGINAL (as its first packet looked) and REPLY
(what an answer must look like). Without NAT the reply is the plain inverse.
Plain Python tuples are used as dict keys: hashing them is what the hot path
pays per packet, and they need no allocation beyond the tuple itself.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Final

from .packet import PROTO_ICMP, PROTO_ICMPV6, Packet

# (proto, src, dst, sport, dport): typed as a variable-length tuple on purpose. The hot
# modules are compiled with mypyc, which stores a fixed-length tuple type unboxed in a C
# struct and builds a new tuple object on every read: the dict keys would then be copies
# of Conn.orig/reply (twice the memory, and ``key is conn.orig`` never true).
Tuple = tuple[Any, ...]

ORIGINAL: Final = 0
REPLY: Final = 1

# ICMP types that have an inverse (request <-> reply); kernel invmap in
# nf_conntrack_proto_icmp.c / icmpv6.c.
ICMP_INVERSE = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17}
ICMPV6_INVERSE = {128: 129, 129: 128, 139: 140, 140: 139}
# Only requests may create an entry ("valid_new").
ICMP_NEW = frozenset((8, 13, 15, 17))
ICMPV6_NEW = frozenset((128, 139))
# Errors carrying an embedded packet: RELATED to the flow they quote.
ICMP_ERRORS = frozenset((3, 4, 5, 11, 12))
# ICMPv6 neighbour discovery, MLD and MRD are never tracked (noct_valid_new).
ICMPV6_UNTRACKED = frozenset((130, 131, 132, 133, 134, 135, 136, 143, 151, 152, 153))


# Multicast: a datagram to a group is confirmed (gets an entry) only when the router
# delivers it (its interface joined the group) or routes it (multicast forwarding). A
# Linux router's interfaces join these groups unasked: IPv4 all-systems; IPv6 all-nodes and,
# forwarding on, all-routers (verified on 6.18: entries for exactly these, none for
# 224.0.0.2/.22/.251/.252, 239.255.255.250, ff02::fb, ff02::1:3, ff02::c, ff05::c). The
# interface-local ff01::/16 groups it joins too, but a frame to them from a wire is dropped
# by ip6_rcv_core() before conntrack. Not modelled: the solicited-node groups
# ff02::1:ffXX:XXXX of the router's own addresses.
JOINED_GROUPS: Final = frozenset(
    ipaddress.ip_address(a).packed for a in ("224.0.0.1", "ff02::1", "ff02::2", "ff05::2")
)
LIMITED_BROADCAST: Final = b"\xff\xff\xff\xff"
MULTICAST_MODES: Final = ("drop", "track")


def is_multicast(addr: bytes) -> bool:
    """224.0.0.0/4 or ff00::/8."""
    return addr[0] & 0xF0 == 0xE0 if len(addr) == 4 else addr[0] == 0xFF


def is_group_destination(addr: bytes) -> bool:
    """A multicast group or the limited broadcast: never one flow through the master."""
    return is_multicast(addr) or addr == LIMITED_BROADCAST


def packet_tuple(pkt: Packet) -> Tuple:
    """The tuple of a packet as it travels (its own direction)."""
    return (pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport)


def invert(t: Tuple) -> Tuple | None:
    """The reply tuple of ``t`` without NAT, or None when no inverse exists."""
    proto, src, dst, sport, dport = t
    if proto in (PROTO_ICMP, PROTO_ICMPV6):
        inverse = ICMP_INVERSE if proto == PROTO_ICMP else ICMPV6_INVERSE
        rtype = inverse.get(dport >> 8)
        if rtype is None:
            return None
        return (proto, dst, src, sport, (rtype << 8) | (dport & 0xFF))
    return (proto, dst, src, dport, sport)


def addr_text(addr: bytes) -> str:
    """Address as ``conntrack -L`` prints it (compressed IPv6)."""
    if len(addr) == 4:
        return f"{addr[0]}.{addr[1]}.{addr[2]}.{addr[3]}"
    return str(ipaddress.IPv6Address(addr))


def addr_bytes(text: str) -> bytes:
    """Parse an IPv4/IPv6 address (any textual form) into network-order bytes."""
    return ipaddress.ip_address(text).packed


def family_of(t: Tuple) -> int:
    """AF_INET (2) or AF_INET6 (10) from the address length."""
    return 2 if len(t[1]) == 4 else 10
