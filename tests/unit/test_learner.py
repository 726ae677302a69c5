"""The master's MAC on a segment: anchored by ARP for its own addresses, never elected by
routed-looking traffic (no root; crafted frames)."""

from __future__ import annotations

import ipaddress
import os
import struct
import tracemalloc

import pytest

from sniffover.agent.anchors import (
    CONFLICT_WINDOW,
    MAX_CLAIMS,
    SETTLE,
    RoutedWatch,
    SegmentAnchor,
    parse_addrs,
    prime_host,
)
from sniffover.agent.learning import MasterLearning

CLIENT_MAC, FW_MAC, BYSTANDER_MAC = (bytes([2, 0, 0, 0, 0, i]) for i in (1, 2, 3))
CLIENT, SERVER, FW_ADDR, OFFNET = (
    ipaddress.ip_address(a).packed
    for a in ("192.0.2.10", "198.51.100.10", "192.0.2.2", "198.51.100.200")
)
NETS = [ipaddress.ip_network("192.0.2.0/24")]


def ip_frame(dmac: bytes, smac: bytes, src: bytes, dst: bytes, ttl: int = 64) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, ttl, 17, 0, src, dst)
    return dmac + smac + b"\x08\x00" + ip + struct.pack("!HHHH", 40000, 53, 8, 0)


def arp_frame(smac: bytes, sender: bytes, target: bytes, op: int = 2, sha: bytes = b"") -> bytes:
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sha or smac, sender, bytes(6), target)
    return b"\xff" * 6 + smac + b"\x08\x06" + arp


def batch(frames: list[bytes], ts: float = 1000.0) -> tuple[bytes, bytes]:
    data, meta, off = b"", b"", 0
    for f in frames:
        meta += struct.pack("=IIII", int(ts), int(ts % 1 * 1e6), off, len(f))
        data += f
        off += len(f)
    return data, meta


def routed_from(mac: bytes, n: int) -> list[bytes]:
    """What the review's poison.py sends: routed-looking UDP from the sender's own MAC."""
    return [ip_frame(CLIENT_MAC, mac, OFFNET, CLIENT, ttl=63) for _ in range(n)]


def anchor() -> SegmentAnchor:
    return SegmentAnchor("in0", [FW_ADDR], NETS)


def test_bystander_routing_first_is_never_elected_the_master_answering_arp_is():
    a = anchor()
    # before the master says anything: 12 frames (the review), then a flood
    assert a.feed(*batch(routed_from(BYSTANDER_MAC, 12))) is None
    for _ in range(50):
        assert a.feed(*batch(routed_from(BYSTANDER_MAC, 256))) is None
    assert a.master is None
    # the master answers ARP for its own address (each request, 1 s apart): that, and only
    # that, names it
    assert a.feed(*batch([arp_frame(FW_MAC, FW_ADDR, CLIENT)])) is None
    assert a.feed(*batch([arp_frame(FW_MAC, FW_ADDR, CLIENT)], ts=1001.0)) == FW_MAC
    assert a.events[0] == ("resolved", FW_MAC)


def test_converges_while_a_bystander_floods_and_the_move_is_reported():
    a = anchor()
    flood = routed_from(BYSTANDER_MAC, 250)
    real = [ip_frame(CLIENT_MAC, FW_MAC, SERVER, CLIENT, ttl=63) for _ in range(5)]
    assert a.feed(*batch(flood + real)) is None
    answer = [arp_frame(FW_MAC, FW_ADDR, CLIENT)]
    assert a.feed(*batch(flood + answer + real)) is None
    assert a.feed(*batch(flood + answer + real, ts=1001.0)) == FW_MAC
    for _ in range(4 * 32):  # resolved: one batch in 32 is looked at
        a.feed(*batch(flood + real))
    assert a.master == FW_MAC  # still: routed traffic never outvotes the anchor
    assert ("routed-moved", BYSTANDER_MAC) in a.events  # but the move is logged and counted
    assert a.moved_to == BYSTANDER_MAC


def test_flows_the_master_sent_before_it_was_known_are_confirmed_after():
    a = anchor()
    a.feed(*batch([ip_frame(CLIENT_MAC, FW_MAC, SERVER, CLIENT)] + routed_from(BYSTANDER_MAC, 3)))
    a.feed(*batch([arp_frame(FW_MAC, FW_ADDR, CLIENT)]))
    a.feed(*batch([arp_frame(FW_MAC, FW_ADDR, CLIENT)], ts=1001.0))
    assert a.confirmed_before() == [(17, SERVER, CLIENT, 40000, 53)]


def test_arp_spoofing_the_masters_address_resolves_nothing():
    a = anchor()
    spoof = arp_frame(BYSTANDER_MAC, FW_ADDR, CLIENT)
    master = arp_frame(FW_MAC, FW_ADDR, CLIENT)
    assert a.feed(*batch([spoof])) is None  # the spoofer answers first: not believed yet
    assert a.feed(*batch([master], ts=1000.2)) is None  # the master answers too: conflict
    assert a.conflict and a.master is None and a.events == [("conflict", None)]
    # the spoofer goes quiet; the master keeps answering: resolved after the window
    later = 1000.0 + CONFLICT_WINDOW + 1
    assert a.feed(*batch([master], ts=later)) is None
    assert a.feed(*batch([master], ts=later + SETTLE)) == FW_MAC
    # spoofing again once known (heard by the ARP prober's socket): reported, the master stays
    a.arp(spoof, 0, len(spoof), later + 2)
    assert a.master == FW_MAC and a.conflict


def test_arp_whose_sender_is_not_the_frames_source_is_ignored():
    a = anchor()
    forged = arp_frame(BYSTANDER_MAC, FW_ADDR, CLIENT, sha=FW_MAC)
    assert a.feed(*batch([forged])) is None and not a.claims
    other = arp_frame(BYSTANDER_MAC, CLIENT, FW_ADDR)  # about another address
    assert a.feed(*batch([other])) is None and not a.claims


def test_random_mac_flood_keeps_the_learner_bounded():
    """The review: +109 MiB and 27 ms per batch at 512,000 random MACs. Now every per-MAC
    structure is capped: past the caps, a flood adds nothing that lasts (``-s`` prints it)."""
    a = anchor()
    rnd = os.urandom

    def flood(batches: int, start: int) -> None:
        for i in range(start, start + batches):  # 256 frames a batch, each from a new MAC
            frames = [ip_frame(CLIENT_MAC, b"\x02" + rnd(5), OFFNET, CLIENT) for _ in range(255)]
            frames.append(arp_frame(b"\x02" + rnd(5), FW_ADDR, CLIENT))
            a.feed(*batch(frames, ts=1000.0 + i * CONFLICT_WINDOW))

    # 204,800 frames from as many MACs fill every cap, the flows to confirm later included
    flood(800, 0)
    assert len(a.sources) == a.MAX_SOURCES
    # tracing only the steady state keeps the test fast (tracemalloc slows a flood tenfold)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    flood(100, 800)  # 25,600 more MACs: a per-MAC structure would grow by ~10 MiB
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(f"learner memory for 25,600 more random MACs past the caps: {grown / 1024:.0f} KiB")
    assert len(a.routed.votes) <= RoutedWatch.MAX_MACS
    assert len(a.claims) <= MAX_CLAIMS
    assert len(a.sources) == a.MAX_SOURCES
    assert a.routed.total == sum(a.routed.votes.values())
    assert grown < 256 << 10


def test_routed_watch_running_total_stays_exact():
    w = RoutedWatch()
    for i in range(10_000):
        w.add(bytes([2, 0, 0, 0, i >> 8 & 0xFF, i & 0xFF]) if i % 3 else FW_MAC)
    assert w.total == sum(w.votes.values())
    assert w.top()[0] == FW_MAC


class _Cap:
    def __init__(self, iface: str) -> None:
        self.iface = iface
        self.learner = None
        self.decoder = type("D", (), {"master": frozenset()})()


class _Prober:
    def __init__(self, iface: str, addrs: list[bytes], sender: bytes | None) -> None:
        self.asked = 0

    def poll(self, anchor: SegmentAnchor, now: float) -> None:
        self.asked += 1

    def close(self) -> None:
        pass


def test_a_segment_whose_master_is_unknown_keeps_the_agent_unready():
    ln = MasterLearning([], True, [FW_ADDR])
    ln.open_prober = _Prober  # type: ignore[assignment]
    caps = [_Cap("in0"), _Cap("out0")]
    for c in caps:
        ln.attach(c, lambda iface: NETS)  # type: ignore[arg-type]
    assert ln.unknown(caps) and ln.learning(caps) == ["in0", "out0"]  # type: ignore[arg-type]
    for ts in (1000.0, 1001.0):
        caps[0].learner.feed(*batch([arp_frame(FW_MAC, FW_ADDR, CLIENT)], ts))  # type: ignore
    ln.learned(caps, None, 1000.0)  # type: ignore[arg-type]
    assert ln.unknown(caps) and ln.learning(caps) == ["out0"]  # type: ignore[arg-type]
    assert caps[1].decoder.master == frozenset({FW_MAC})
    assert ln.counters["master-resolved"] == 1
    assert not MasterLearning(["02:00:00:00:00:02"], True).unknown([])
    assert not MasterLearning([], False).unknown(caps)  # type: ignore[arg-type]


def test_master_addresses_and_the_prime_peer():
    assert parse_addrs(["192.0.2.2, 203.0.113.1", "192.0.2.2"]) == [
        FW_ADDR,
        ipaddress.ip_address("203.0.113.1").packed,
    ]
    with pytest.raises(ValueError, match="not an IP address"):
        parse_addrs(["fw1"])
    with pytest.raises(ValueError, match="IPv6"):
        parse_addrs(["2001:db8::1"])
    sync = [ipaddress.ip_address("203.0.113.1").packed]
    assert prime_host("203.0.113.1") == sync
    assert prime_host("203.0.113.1:7445") == sync
    assert prime_host("ssh://root@203.0.113.1") == sync
    assert prime_host("/var/lib/dump.txt") == prime_host("master.example") == []
    assert prime_host(None) == []
