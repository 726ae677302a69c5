"""Packets that arrive with TTL / hop limit 1 die in the router's ip_forward(): the entry the
kernel made for them in PRE_ROUTING is never confirmed. The router's own "time exceeded in
transit" error is the tracker's evidence (golden capture: pcaps/icmp_ttl_exceeded)."""

from __future__ import annotations

import pytest

from sniffover.conntrack.packet import Packet
from sniffover.conntrack.table import ConntrackTable
from sniffover.conntrack.verdict import INVALID, RELATED
from tests.helpers import A6, B6, A, B, icmp, udp

ROUTER = bytes([192, 0, 2, 254])
ROUTER6 = bytes.fromhex("20010db80001000000000000000000fe")


def _udp(ts: float, ttl: int, src: bytes = A, dst: bytes = B) -> Packet:
    pkt = udp(ts, src=src, dst=dst, sport=40000, dport=33434)
    pkt.ttl = ttl
    return pkt


def _time_exceeded(ts: float, src: bytes = A, dst: bytes = B) -> Packet:
    quoted = Packet(ts, 2 if len(src) == 4 else 10, 17, src, dst, 40000, 33434)
    if len(src) == 4:
        return icmp(ts, 11, src=ROUTER, dst=src, ident=0, inner=quoted)
    return icmp(ts, 3, src=ROUTER6, dst=src, ident=0, inner=quoted, proto=58)


@pytest.mark.parametrize(("src", "dst"), [(A, B), (A6, B6)])
def test_ttl1_probe_answered_by_time_exceeded_leaves_no_entry(src: bytes, dst: bytes) -> None:
    t = ConntrackTable()
    t.process(_udp(0.0, 1, src, dst))
    assert len(t) == 1
    assert t.process(_time_exceeded(0.001, src, dst)) == INVALID
    assert len(t) == 0


def test_time_exceeded_from_a_later_hop_keeps_the_entry() -> None:
    # TTL 2 here: this router forwarded it (entry confirmed); a later hop dropped it
    t = ConntrackTable()
    t.process(_udp(0.0, 2))
    assert t.process(_time_exceeded(0.001)) == RELATED
    assert len(t) == 1


def test_a_later_packet_with_a_live_ttl_keeps_the_entry() -> None:
    t = ConntrackTable()
    t.process(_udp(0.0, 1))
    t.process(_udp(0.1, 64))  # this one was forwarded: the kernel has the entry
    assert t.process(_time_exceeded(0.2)) == RELATED
    assert len(t) == 1


def test_unknown_ttl_is_not_a_probe() -> None:
    t = ConntrackTable()
    t.process(_udp(0.0, 0))  # crafted packet, TTL not known
    assert t.process(_time_exceeded(0.001)) == RELATED
    assert len(t) == 1
