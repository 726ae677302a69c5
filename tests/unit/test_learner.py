"""Learning the master firewall's MAC from what a segment carries (no root)."""

from __future__ import annotations

import ipaddress
import struct

from sniffover.agent.learning import MasterLearner

CLIENT_MAC, FW_MAC, OTHER_MAC = (bytes([2, 0, 0, 0, 0, i]) for i in (1, 2, 3))
CLIENT, SERVER, VIP = (
    ipaddress.ip_address(a).packed for a in ("192.0.2.10", "198.51.100.10", "192.0.2.1")
)


def ip_frame(
    dmac: bytes, smac: bytes, src: bytes, dst: bytes, ipid: int = 0, ttl: int = 64
) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, ipid, 0, ttl, 17, 0, src, dst)
    return dmac + smac + b"\x08\x00" + ip + struct.pack("!HHHH", 40000, 53, 8, 0)


def arp_frame(smac: bytes, sender: bytes, target: bytes) -> bytes:
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, smac, sender, bytes(6), target)
    return b"\xff" * 6 + smac + b"\x08\x06" + arp


def batch(frames: list[bytes]) -> tuple[bytes, bytes]:
    data, meta, off = b"", b"", 0
    for f in frames:
        meta += struct.pack("=IIII", 0, 0, off, len(f))
        data += f
        off += len(f)
    return data, meta


def conversation(n: int = 10) -> list[bytes]:
    """One client talking to one server through the firewall: the ambiguous case."""
    out = []
    for _ in range(n):
        out.append(ip_frame(FW_MAC, CLIENT_MAC, CLIENT, SERVER))
        out.append(ip_frame(CLIENT_MAC, FW_MAC, SERVER, CLIENT))
    return out


def test_with_our_subnet_the_router_is_found():
    ln = MasterLearner([ipaddress.ip_network("192.0.2.0/24")])
    assert ln.feed(*batch(conversation())) == FW_MAC


def test_bare_mirror_port_waits_for_arp_then_finds_the_router():
    ln = MasterLearner([])
    assert ln.feed(*batch(conversation())) is None  # client and router look alike
    frames = [arp_frame(FW_MAC, VIP, CLIENT), arp_frame(CLIENT_MAC, CLIENT, VIP)]
    assert ln.feed(*batch(frames + conversation())) == FW_MAC


def test_host_to_host_traffic_names_no_one():
    ln = MasterLearner([ipaddress.ip_network("192.0.2.0/24")])
    peer = ipaddress.ip_address("192.0.2.20").packed
    frames = [ip_frame(OTHER_MAC, CLIENT_MAC, CLIENT, peer) for _ in range(30)]
    assert ln.feed(*batch(frames)) is None


def test_behind_source_nat_copies_name_the_router():
    ln = MasterLearner([ipaddress.ip_network("198.51.100.0/24")])
    vip_out = ipaddress.ip_address("198.51.100.1").packed
    # every address looks local here: nothing to go on but the copies
    frames = [ip_frame(OTHER_MAC, FW_MAC, vip_out, SERVER, ipid=i) for i in (1, 2)]
    assert ln.feed(*batch(frames), ingress=set()) is None
    assert ln.match([(17, 1, 0, 0, 0), (17, 2, 0, 0, 0)]) == FW_MAC  # they entered it elsewhere


def test_bare_mirror_port_without_arp_finds_the_router_by_ttl():
    ln = MasterLearner([])
    frames = []
    for _ in range(10):
        frames.append(ip_frame(FW_MAC, CLIENT_MAC, CLIENT, SERVER, ttl=64))
        frames.append(ip_frame(CLIENT_MAC, FW_MAC, SERVER, CLIENT, ttl=63))  # routed by fw1
    assert ln.feed(*batch(frames)) == FW_MAC
