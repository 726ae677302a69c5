"""Remote mirror tunnels built byte by byte from their specifications, for the tests.

Each ``wrap_*`` returns the tunnel's header bytes (what goes between the outer L4/IP header
and the mirrored frame); ``outer_*`` put them in an Ethernet + IPv4/IPv6 frame (built
with dpkt, whose checksums and lengths are a reference of their own). ``ref_inner`` is a
second, independent reading of the same layouts (word by word from the specs), which the
tests compare with ``capture.decap`` and with dpkt's GRE parser.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import dpkt

MIRROR_SRC = bytes([192, 0, 2, 10])  # the switch sending the mirror
STANDBY = bytes([192, 0, 2, 20])  # the standby's capture interface
MIRROR_SRC6 = bytes.fromhex("20010db8000000000000000000000010")
STANDBY6 = bytes.fromhex("20010db8000000000000000000000020")
MAC_SWITCH = bytes.fromhex("020000000a0a")
MAC_STANDBY = bytes.fromhex("020000000a14")
KINDS = ("vxlan", "erspan1", "erspan2", "erspan3", "erspan3o", "gre", "tzsp")


def vxlan(vni: int) -> bytes:
    """RFC 7348: flags (I), 24 reserved bits, VNI, 8 reserved bits."""
    return struct.pack("!II", 0x08 << 24, vni << 8)


def tzsp(tags: bytes = b"") -> bytes:
    """TZSP version 1, type 0 (received), encapsulation 1 (Ethernet), tags, END."""
    return struct.pack("!BBH", 1, 0, 1) + tags + b"\x01"


def gre(proto: int, seq: int | None = None, key: int | None = None, csum: bool = False) -> bytes:
    """RFC 2784/2890: C, K, S bits, version 0; the optional words in that order."""
    flags = (0x8000 if csum else 0) | (0x2000 if key is not None else 0)
    flags |= 0x1000 if seq is not None else 0
    out = struct.pack("!HH", flags, proto)
    if csum:
        out += b"\x00\x00\x00\x00"  # checksum + reserved (not checked by a receiver here)
    if key is not None:
        out += struct.pack("!I", key)
    if seq is not None:
        out += struct.pack("!I", seq)
    return out


def erspan2(session: int, vlan: int = 0, index: int = 0) -> bytes:
    """ERSPAN type II (draft-foschiano-erspan): Ver=1 | VLAN | COS, En=3 (tag in frame),
    T, Session ID | Reserved | Index."""
    w0 = 1 << 28 | vlan << 16 | 0b011 << 13 | 0b11 << 11 | session
    return struct.pack("!II", w0, index & 0xFFFFF)


def erspan3(session: int, sub: bool = False, ft: int = 0) -> bytes:
    """ERSPAN type III: Ver=2 | VLAN | COS, BSO, T, Session | Timestamp | SGT | P, FT,
    HW ID, D, Gra, O; then the 8-byte platform-specific subheader when O."""
    w0 = 2 << 28 | 0 << 16 | 0b101 << 13 | session
    w2 = 0x1234 << 16 | ft << 10 | 0x2A << 4 | 1 << 3 | 0b01 << 1 | (1 if sub else 0)
    out = struct.pack("!III", w0, 0xDEADBEEF, w2)
    return out + (struct.pack("!II", 3 << 26, 0xCAFEF00D) if sub else b"")


def tunnel(kind: str, frame: bytes, seq: int, session: int) -> tuple[int, int, bytes]:
    """(IP protocol, UDP destination port or 0, tunnel header + frame) of one mirrored frame."""
    if kind == "vxlan":
        return 17, 4789, vxlan(session) + frame
    if kind == "tzsp":  # a received-signal tag (type 10, length 1) and padding, as MikroTik
        return 17, 37008, tzsp(b"\x0a\x01\xd0\x00") + frame
    if kind == "gre":
        return 47, 0, gre(0x6558, key=session) + frame
    if kind == "erspan1":
        return 47, 0, gre(0x88BE) + frame
    if kind == "erspan2":
        return 47, 0, gre(0x88BE, seq=seq) + erspan2(session, index=seq) + frame
    if kind in ("erspan3", "erspan3o"):
        return 47, 0, gre(0x22EB, seq=seq) + erspan3(session, sub=kind == "erspan3o") + frame
    raise ValueError(kind)


def outer(
    kind: str, frame: bytes, seq: int = 0, session: int = 1, src: bytes = MIRROR_SRC, v6=False
) -> bytes:
    """The whole tunnel frame as the standby's capture sees it (Ethernet, IPv4 or IPv6)."""
    proto, dport, body = tunnel(kind, frame, seq, session)
    l4: bytes | dpkt.Packet = body
    if proto == 17:
        l4 = dpkt.udp.UDP(sport=50000 + seq % 1000, dport=dport, data=body)
        l4.ulen = 8 + len(body)
    if v6:
        ip: dpkt.Packet = dpkt.ip6.IP6(
            src=src if len(src) == 16 else MIRROR_SRC6, dst=STANDBY6, nxt=proto, hlim=64,
            data=l4, plen=len(bytes(l4)),
        )  # fmt: skip
        etype = dpkt.ethernet.ETH_TYPE_IP6
    else:
        ip = dpkt.ip.IP(src=src, dst=STANDBY, p=proto, ttl=64, data=l4, id=seq & 0xFFFF)
        etype = dpkt.ethernet.ETH_TYPE_IP
    return bytes(dpkt.ethernet.Ethernet(src=MAC_SWITCH, dst=MAC_STANDBY, type=etype, data=ip))


def ref_inner(frame: bytes) -> tuple[str, int, int] | None:
    """The spec's reading of a tunnel frame: (kind, session, offset of the inner frame);
    dpkt parses Ethernet/IP/UDP/GRE, the tunnel headers are read word by word here."""
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    hdr = 14 + (40 if isinstance(ip, dpkt.ip6.IP6) else ip.hl * 4)
    proto = ip.nxt if isinstance(ip, dpkt.ip6.IP6) else ip.p
    raw = bytes(ip.data) if not isinstance(ip.data, bytes) else ip.data
    if proto == 17:
        (dport,) = struct.unpack_from("!H", raw, 2)
        body = raw[8:]
        if dport == 4789:
            flags, vni = struct.unpack_from("!II", body)
            assert flags >> 24 == 0x08
            return "vxlan", vni >> 8, hdr + 8 + 8
        if dport == 37008:
            ver, typ, enc = struct.unpack_from("!BBH", body)
            assert (ver, typ, enc) == (1, 0, 1)
            i = 4
            while body[i] != 1:
                i += 1 if body[i] == 0 else 2 + body[i + 1]
            return "tzsp", -1, hdr + 8 + i + 1
        return None
    g = dpkt.gre.GRE(raw)  # dpkt's reading of the GRE header and its optional words
    glen = len(raw) - len(bytes(g.data))  # dpkt sets key / seq only when K / S say so
    (w0,) = struct.unpack_from("!I", raw, glen) if len(raw) >= glen + 4 else (0,)
    if g.p == 0x6558:
        return "gre", getattr(g, "key", -1), hdr + glen
    if g.p == 0x88BE and not hasattr(g, "seq"):
        return "erspan1", -1, hdr + glen
    if g.p == 0x88BE:
        assert w0 >> 28 == 1
        return "erspan2", w0 & 0x3FF, hdr + glen + 8
    if g.p == 0x22EB:
        assert w0 >> 28 == 2
        (w2,) = struct.unpack_from("!I", raw, glen + 8)
        return "erspan3", w0 & 0x3FF, hdr + glen + 12 + (8 if w2 & 1 else 0)
    return None


def read_pcap(path: Path) -> Iterator[tuple[float, bytes]]:
    with open(path, "rb") as f:
        yield from dpkt.pcap.Reader(f)


def write_pcap(path: Path, frames: Iterable[tuple[float, bytes]]) -> None:
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, frame in frames:
            w.writepkt(frame, ts=ts)


def encapsulate(src: Path, dst: Path, kind: str, session: int = 1, **kw: object) -> int:
    """``src`` (Ethernet) as a remote mirror: every frame in a ``kind`` tunnel; returns
    the number of frames."""
    frames = [(ts, outer(kind, f, seq=i + 1, session=session, **kw))  # type: ignore[arg-type]
              for i, (ts, f) in enumerate(read_pcap(src))]  # fmt: skip
    write_pcap(dst, frames)
    return len(frames)


def cooked_to_ethernet(src: Path) -> tuple[list[tuple[float, bytes]], set[bytes]]:
    """A router's ``tcpdump -i any`` (LINUX_SLL2) as a switch mirror of its ports would
    show it: Ethernet frames, the router's MAC (the link address of the frames it sent
    out of an interface) as source of those and destination of the unicast ones it
    received there, broadcast and multicast frames to their group addresses. Returns
    the frames and the router's MACs."""
    frames = list(read_pcap(src))
    router: dict[int, bytes] = {}
    for _, f in frames:
        if f[10] == 4:  # PACKET_OUTGOING: addr is the router's own on that ifindex
            router.setdefault(struct.unpack_from("!i", f, 4)[0], f[12:18])
    out = []
    for ts, f in frames:
        etype, ifindex, pkttype, addr = f[0:2], struct.unpack_from("!i", f, 4)[0], f[10], f[12:18]
        body = f[20:]
        if pkttype == 4:
            dst = bytes.fromhex("020000000000")[:5] + bytes([ifindex & 0xFF])  # next hop
            if etype == b"\x86\xdd" and body[24] == 0xFF:
                dst = b"\x33\x33" + body[36:40]
            src_mac = addr
        else:
            src_mac = addr
            dst = router[ifindex]
            if pkttype == 1:  # broadcast
                dst = b"\xff" * 6
            elif pkttype == 2:  # multicast
                dst = (
                    b"\x33\x33" + body[36:40]
                    if etype == b"\x86\xdd"
                    else b"\x01\x00\x5e" + body[17:20]
                )
        out.append((ts, dst + src_mac + etype + body))
    return out, set(router.values())
