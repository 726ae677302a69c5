"""Link-layer and IP header constants and the small helpers both decoding paths share.

Kept apart from ``decode`` so the decoder module holds only the walk over a frame.
"""

from __future__ import annotations

import zlib
from typing import Final

# pcap link-layer header types (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL: Final = 0
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW_OLD: Final = 12  # DLT_RAW on most BSDs
LINKTYPE_RAW_OBSD: Final = 14
LINKTYPE_RAW: Final = 101
LINKTYPE_LOOP: Final = 108
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_IPV4: Final = 228
LINKTYPE_IPV6: Final = 229
LINKTYPE_LINUX_SLL2: Final = 276

LINKTYPES = {
    LINKTYPE_NULL: "NULL",
    LINKTYPE_ETHERNET: "EN10MB",
    LINKTYPE_RAW_OLD: "RAW",
    LINKTYPE_RAW_OBSD: "RAW",
    LINKTYPE_RAW: "RAW",
    LINKTYPE_LOOP: "LOOP",
    LINKTYPE_LINUX_SLL: "LINUX_SLL",
    LINKTYPE_IPV4: "IPV4",
    LINKTYPE_IPV6: "IPV6",
    LINKTYPE_LINUX_SLL2: "LINUX_SLL2",
}

PACKET_OUTGOING: Final = 4  # Linux sll_pkttype of a frame the host sent
ETH_P_IP: Final = 0x0800
ETH_P_IPV6: Final = 0x86DD
VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))  # 802.1Q, 802.1ad, pre-standard QinQ
MAX_VLAN_TAGS: Final = 8

# IPv6 extension headers conntrack skips (ipv6_ext_hdr() minus NONE).
IPV6_HOPOPTS: Final = 0
IPV6_ROUTING: Final = 43
IPV6_FRAGMENT: Final = 44
IPV6_AH: Final = 51
IPV6_DSTOPTS: Final = 60
IPV6_NONE: Final = 59
MAX_IPV6_EXTHDRS: Final = 16

# BSD loopback address families that mean IPv6 (Linux/BSD/macOS/FreeBSD values).
BSD_AF_INET6 = frozenset((10, 24, 28, 30))

# Payload bytes digested to pair the copies of a UDP datagram or an echo (Packet.digest):
# few enough that the shortest snap length (128) captures them in every copy, enough to
# tell apart the datagrams of flows with equal lengths (a DNS query's ID, a ping's time).
DIGEST_BYTES: Final = 32
_crc32: Final = zlib.crc32


def payload_digest(buf: bytes, start: int, stop: int) -> int:
    """CRC32 of ``buf[start:stop]``, of its first ``DIGEST_BYTES`` at most (``Packet.digest``).

    Both decoding paths call this, so the copies of a packet get the same digest whichever
    path each took (a tagged copy on one segment, an untagged one on the other). No min():
    compiled, a generic builtin call costs more than the CRC itself."""
    if stop > start + DIGEST_BYTES:
        stop = start + DIGEST_BYTES
    return _crc32(buf[start:stop]) if stop > start else 0


def skip_ipv6_ext(buf: bytes, nexthdr: int, l4: int, stop: int) -> tuple[int, int, int] | None:
    """Walk the extension-header chain like ``ipv6_skip_exthdr()``: (upper-layer protocol,
    its offset, the offset of a fragment header that is not an atomic fragment's, else
    -1: the walk stops there, after it); None if the chain runs past ``stop`` or is
    absurdly long."""
    hdrs = 0
    while nexthdr in (IPV6_HOPOPTS, IPV6_ROUTING, IPV6_FRAGMENT, IPV6_AH, IPV6_DSTOPTS):
        if stop - l4 < 8 or hdrs == MAX_IPV6_EXTHDRS:
            return None
        if nexthdr == IPV6_FRAGMENT:
            if (buf[l4 + 2] << 8 | buf[l4 + 3]) & 0xFFF9:  # offset or M: a real fragment
                return buf[l4], l4 + 8, l4
            hlen = 8
        elif nexthdr == IPV6_AH:
            hlen = (buf[l4 + 1] + 2) << 2
        else:
            hlen = (buf[l4 + 1] + 1) << 3
        nexthdr = buf[l4]
        l4 += hlen
        hdrs += 1
    return nexthdr, l4, -1
