"""The decoded-packet record the conntrack core consumes, and TCP option helpers.

This module owns the contract between decoders (adapters that turn frames into
packets) and the tracker. It imports only the standard library. The decoder in
``sniffover.capture.decode`` fills these records; the tracker only reads them.

Field conventions follow the kernel's tuple (``nf_conntrack_tuple``):

* ``src``/``dst`` are raw network-order address bytes (4 bytes IPv4, 16 IPv6).
* ``sport``/``dport`` are the tuple's "u" fields: TCP/UDP/UDP-Lite/SCTP ports;
  for ICMP/ICMPv6 ``sport`` is the echo identifier and ``dport`` is
  ``type << 8 | code``; for GRE the keys (0/0 for version 0); 0/0 for generic.
* ``l4len`` is the L4 payload length as the kernel computes it (from the IP
  length fields, not from the captured length, so snaplen does not matter).
"""

from __future__ import annotations

from typing import Final

FAMILY_IPV4: Final = 2  # AF_INET
FAMILY_IPV6: Final = 10  # AF_INET6

PROTO_ICMP: Final = 1
PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
PROTO_GRE: Final = 47
PROTO_ICMPV6: Final = 58
PROTO_SCTP: Final = 132
PROTO_UDPLITE: Final = 136

# Packet.hw: what the Ethernet addresses say about the master firewall (when it is known).
HW_FROM_MASTER: Final = 1  # source MAC is the master's: the master forwarded (or sent) this frame
HW_TO_MASTER: Final = 2  # destination MAC is the master's: on its way into the master

# TCP header flag bits (byte 13 of the header).
TH_FIN: Final = 0x01
TH_SYN: Final = 0x02
TH_RST: Final = 0x04
TH_PSH: Final = 0x08
TH_ACK: Final = 0x10
TH_URG: Final = 0x20
TH_ECE: Final = 0x40
TH_CWR: Final = 0x80


class Packet:
    """One decoded IP packet as seen on the wire, with its capture timestamp.

    ``inner`` is set on ICMP/ICMPv6 error messages: a Packet describing the
    embedded (quoted) header, with at least family/proto/src/dst/sport/dport.
    """

    __slots__ = (
        "ts",
        "family",
        "proto",
        "src",
        "dst",
        "sport",
        "dport",
        "l4len",
        "tcp_flags",
        "seq",
        "ack",
        "win",
        "tcp_opts",
        "inner",
        "vlan",
        "ttl",
        "hw",
        "ipid",
        "digest",
        "payload",
        "zone",
        "zone_dir",
        # SCTP only (set by the decoder for protocol 132, never for others: read them with
        # getattr and a default): the common header's verification tag, the chunk types and
        # chunk flags in order, the initiate tag of a leading INIT/INIT_ACK (-1 if none),
        # and whether the CRC32c was verified wrong (False if right or not all captured)
        "sctp_vtag",
        "sctp_chunks",
        "sctp_flags",
        "sctp_init_tag",
        "sctp_bad_crc",
    )
    sctp_vtag: int
    sctp_chunks: bytes
    sctp_flags: bytes
    sctp_init_tag: int
    sctp_bad_crc: bool

    def __init__(
        self,
        ts: float,
        family: int,
        proto: int,
        src: bytes,
        dst: bytes,
        sport: int = 0,
        dport: int = 0,
        l4len: int = 0,
        tcp_flags: int = 0,
        seq: int = 0,
        ack: int = 0,
        win: int = 0,
        tcp_opts: bytes = b"",
        inner: Packet | None = None,
        vlan: int = 0,
        ttl: int = 0,
        hw: int = 0,
        ipid: int = 0,
        payload: bytes = b"",
        digest: int = 0,
    ) -> None:
        self.ts = ts
        self.family = family
        self.proto = proto
        self.src = src
        self.dst = dst
        self.sport = sport
        self.dport = dport
        self.l4len = l4len  # L4 payload bytes (TCP: after the TCP header incl. options)
        self.tcp_flags = tcp_flags  # raw flag byte (FIN..CWR)
        self.seq = seq
        self.ack = ack
        self.win = win  # raw, unscaled window field
        self.tcp_opts = tcp_opts  # raw TCP option bytes (doff*4 - 20 of them)
        self.inner = inner  # embedded tuple of an ICMP error
        self.vlan = vlan  # innermost VLAN id, 0 if untagged
        self.ttl = ttl  # IPv4 TTL / IPv6 hop limit
        self.hw = hw  # HW_FROM_MASTER | HW_TO_MASTER: the frame's MACs against the master's
        # What NAT leaves alone and pairs a packet's inside and outside copies
        # (``conntrack.confirm``): the IPv4 identification, or the IPv6 flow label; and for
        # UDP/UDP-Lite and echo, which have no sequence numbers, a CRC32 of the first
        # payload bytes (echo: from the sequence number on; 0 when not computed)
        self.ipid = ipid
        self.digest = digest
        # L4 payload as captured (up to the snap length), only to or from a helper's port
        # (``conntrack.helpers``: FTP control lines, TFTP requests); for UDP-Lite the whole
        # segment from its header (``protocols.udplite_error``); empty otherwise
        self.payload = payload
        # The conntrack zone the master's ruleset gives this packet (conntrack.zones): set
        # after decoding from the capture interface and VLAN tag; 0 = the default zone
        self.zone = 0
        self.zone_dir = 3  # NF_CT_DEFAULT_ZONE_DIR: both tuples in the zone

    def __repr__(self) -> str:
        return (
            f"Packet(ts={self.ts!r}, family={self.family}, proto={self.proto}, "
            f"src={self.src.hex()}, dst={self.dst.hex()}, sport={self.sport}, "
            f"dport={self.dport}, l4len={self.l4len}, tcp_flags={self.tcp_flags:#x}, "
            f"seq={self.seq}, ack={self.ack}, win={self.win}, inner={self.inner!r})"
        )


# --- TCP options, parsed the way the kernel's tcp_options()/tcp_sack() do -------------

TCPOPT_EOL: Final = 0
TCPOPT_NOP: Final = 1
TCPOPT_MSS: Final = 2
TCPOPT_WINDOW: Final = 3
TCPOPT_SACK_PERM: Final = 4
TCPOPT_SACK: Final = 5
TCPOPT_TIMESTAMP: Final = 8
TCP_MAX_WSCALE: Final = 14


def tcp_syn_options(opts: bytes) -> tuple[int | None, bool]:
    """Return (window scale or None, SACK-permitted) as the kernel reads them.

    Mirrors ``tcp_options()``: stops at EOL, at a "silly" length (< 2) or at a
    partial option; the scale is clamped to 14.
    """
    wscale: int | None = None
    sack_perm = False
    i = 0
    n = len(opts)
    while i < n:
        kind = opts[i]
        if kind == TCPOPT_EOL:
            break
        if kind == TCPOPT_NOP:
            i += 1
            continue
        if n - i < 2:
            break
        size = opts[i + 1]
        if size < 2 or size > n - i:
            break
        if kind == TCPOPT_SACK_PERM and size == 2:
            sack_perm = True
        elif kind == TCPOPT_WINDOW and size == 3:
            wscale = min(opts[i + 2], TCP_MAX_WSCALE)
        i += size
    return wscale, sack_perm


def tcp_sack_edge(opts: bytes, ack: int) -> int:
    """Highest right edge of the SACK blocks in ``opts`` ("after" ack), else ``ack``.

    Mirrors ``tcp_sack()``: only the first SACK option is read.
    """
    n = len(opts)
    if n == 0 or (n == 12 and opts[:4] == b"\x01\x01\x08\x0a"):
        return ack
    sack = ack
    i = 0
    while i < n:
        kind = opts[i]
        if kind == TCPOPT_EOL:
            break
        if kind == TCPOPT_NOP:
            i += 1
            continue
        if n - i < 2:
            break
        size = opts[i + 1]
        if size < 2 or size > n - i:
            break
        if kind == TCPOPT_SACK and size >= 10 and (size - 2) % 8 == 0:
            j = i + 2
            while j < i + size:
                edge = int.from_bytes(opts[j + 4 : j + 8], "big")
                if (edge - sack) & 0xFFFFFFFF and ((edge - sack) & 0xFFFFFFFF) < 0x80000000:
                    sack = edge
                j += 8
            return sack
        i += size
    return sack
