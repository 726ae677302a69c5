"""UDP, UDP-Lite, ICMP/ICMPv6, GRE and generic tracking (the protocols without a state table).

Each handler is the kernel's ``nf_conntrack_*_packet`` for that protocol: it
refreshes the timeout and sets ASSURED when the kernel would. SEEN_REPLY is
set by the table afterwards, as the core does, so while a handler runs the
entry shows the status it had *before* this packet.
"""

from __future__ import annotations

from .entry import IPS_ASSURED, IPS_FIXED_TIMEOUT, IPS_SEEN_REPLY, Conn
from .packet import PROTO_ICMP, PROTO_UDP, Packet
from .timeouts import Timeouts
from .tuple import ICMP_NEW, ICMPV6_NEW
from .verdict import ACCEPT, INVALID

UDP_STREAM_AFTER = 2.0  # seconds an entry must be old before replies make it a stream


def _refresh(conn: Conn, now: float, timeout: float) -> None:
    if not conn.status & IPS_FIXED_TIMEOUT:
        conn.expires = now + timeout


def udp_packet(conn: Conn, direction: int, pkt: Packet, t: Timeouts) -> int:
    """UDP: 30 s until replied and older than 2 s, then 120 s and ASSURED."""
    now = pkt.ts
    status = conn.status
    if status & IPS_SEEN_REPLY:
        if now > conn.created + UDP_STREAM_AFTER:
            _refresh(conn, now, t.udp_timeout_stream)
            if not status & IPS_ASSURED:
                conn.status = status | IPS_ASSURED
        else:
            _refresh(conn, now, t.udp_timeout)
    else:
        _refresh(conn, now, t.udp_timeout)
    return ACCEPT


def udplite_error(pkt: Packet, checksum: int) -> bool:
    """The kernel's ``udplite_error()``: True when the packet is INVALID.

    ``pkt.payload`` holds the segment from its header (as captured). The coverage field
    (0 = the whole datagram) must be 8..length and the checksum non-zero. With
    ``nf_conntrack_checksum`` on, the covered bytes are checked at PRE_ROUTING, but with
    ``IPPROTO_UDP`` (17) in the pseudo-header where the sender used 136 (verified on 6.18
    in a router namespace: every datagram of two UDP-Lite sockets was INVALID and made
    no entry, whatever the coverage, IPv4 and IPv6; one checksummed with 17 made one).
    So a router with checksums on tracks no real UDP-Lite; a segment not captured up to
    its coverage cannot be checked and counts as a real sender's (bad).
    """
    seg = pkt.payload
    if len(seg) < 8:
        return True  # "short packet" (decoded without its segment)
    udplen = pkt.l4len + 8
    cscov = seg[4] << 8 | seg[5]
    if cscov == 0:
        cscov = udplen
    elif cscov < 8 or cscov > udplen:
        return True  # "invalid checksum coverage"
    if not (seg[6] or seg[7]):
        return True  # "checksum missing": UDP-Lite mandates it
    if not checksum:
        return False
    if len(seg) < cscov:
        return True
    if len(pkt.src) == 4:
        pseudo = pkt.src + pkt.dst + bytes((0, PROTO_UDP)) + udplen.to_bytes(2, "big")
    else:
        pseudo = pkt.src + pkt.dst + udplen.to_bytes(4, "big") + bytes((0, 0, 0, PROTO_UDP))
    data = pseudo + seg[:cscov]
    if cscov & 1:
        data += b"\0"
    # the one's complement sum of 16-bit words is the number modulo 0xFFFF: a correct
    # checksum makes it 0xFFFF (== 0)
    return int.from_bytes(data, "big") % 0xFFFF != 0


def udplite_packet(conn: Conn, direction: int, pkt: Packet, t: Timeouts) -> int:
    """UDP-Lite: like UDP but without the 2-second rule; ``udplite_error`` first."""
    if udplite_error(pkt, t.checksum):
        return INVALID
    now = pkt.ts
    if conn.status & IPS_SEEN_REPLY:
        _refresh(conn, now, t.udp_timeout_stream)
        conn.status |= IPS_ASSURED
    else:
        _refresh(conn, now, t.udp_timeout)
    return ACCEPT


def icmp_new(pkt: Packet) -> bool:
    """Only requests (echo, timestamp, info, address mask / echo, node info) create entries."""
    valid = ICMP_NEW if pkt.proto == PROTO_ICMP else ICMPV6_NEW
    return (pkt.dport >> 8) in valid


def icmp_packet(conn: Conn, direction: int, pkt: Packet, t: Timeouts) -> int:
    """ICMP/ICMPv6 query entries: every packet refreshes to 30 s; never ASSURED."""
    timeout = t.icmp_timeout if pkt.proto == PROTO_ICMP else t.icmpv6_timeout
    _refresh(conn, pkt.ts, timeout)
    return ACCEPT


def gre_packet(conn: Conn, direction: int, pkt: Packet, t: Timeouts) -> int:
    """GRE: 30 s until replied, then 180 s and ASSURED."""
    if conn.status & IPS_SEEN_REPLY:
        _refresh(conn, pkt.ts, t.gre_timeout_stream)
        conn.status |= IPS_ASSURED
    else:
        _refresh(conn, pkt.ts, t.gre_timeout)
    return ACCEPT


def generic_packet(conn: Conn, direction: int, pkt: Packet, t: Timeouts) -> int:
    """Protocols without a tracker: 600 s per packet, never ASSURED."""
    _refresh(conn, pkt.ts, t.generic_timeout)
    return ACCEPT


def invalid_packet(conn: Conn, direction: int, pkt: Packet, t: Timeouts) -> int:
    return INVALID
