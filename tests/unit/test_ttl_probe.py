"""Packets that arrive with TTL / hop limit 1 die in the router's ip_forward(): the entry the
kernel made for them in PRE_ROUTING is never confirmed. The router's own "time exceeded in
transit" error is the tracker's evidence (golden capture: pcaps/icmp_ttl_exceeded); once seen,
the same host's later TTL-1 packets die without it, since the router's ICMP rate limit lets
only a burst of errors out (golden: pcaps/ttl_probes)."""

from __future__ import annotations

import pytest

from sniffover.conntrack.packet import HW_FROM_MASTER, Packet
from sniffover.conntrack.table import TTL_PROBES_MAX, ConntrackTable
from sniffover.conntrack.verdict import INVALID, RELATED
from tests.helpers import A6, B6, A, B, icmp, udp

ROUTER = bytes([192, 0, 2, 254])
ROUTER6 = bytes.fromhex("20010db80001000000000000000000fe")


def _udp(ts: float, ttl: int, src: bytes = A, dst: bytes = B, sport: int = 40000) -> Packet:
    pkt = udp(ts, src=src, dst=dst, sport=sport, dport=33434)
    pkt.ttl = ttl
    return pkt


def _time_exceeded(ts: float, src: bytes = A, dst: bytes = B, sport: int = 40000) -> Packet:
    quoted = Packet(ts, 2 if len(src) == 4 else 10, 17, src, dst, sport, 33434)
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


@pytest.mark.parametrize(("src", "dst", "router"), [(A, B, ROUTER), (A6, B6, ROUTER6)])
def test_probes_past_the_icmp_rate_limit_die_too(src: bytes, dst: bytes, router: bytes) -> None:
    t = ConntrackTable()
    t.process(_udp(0.0, 1, src, dst))
    assert t.process(_time_exceeded(0.001, src, dst)) == INVALID  # learnt: src's first hop
    for port in range(40001, 40011):  # the router answers no more of them
        assert t.process(_udp(0.01, 1, src, dst, sport=port)) == INVALID
    assert len(t) == 0 and t.counters["ttl-expired"] == 10
    # TTL 1 to the router itself is delivered there: the kernel confirms it
    to_router = udp(0.02, src=src, dst=router, sport=40100, dport=33500)
    to_router.ttl = 1
    assert t.process(to_router) != INVALID and len(t) == 1
    # so is multicast with TTL 1 to a group the router is in (all-nodes): whether the router
    # takes a group is the multicast model's business, not this rule's
    group = bytes([224, 0, 0, 1]) if len(src) == 4 else bytes.fromhex("ff02" + "0" * 27 + "1")
    to_group = udp(0.025, src=src, dst=group, sport=40300, dport=5355)
    to_group.ttl = 1
    assert t.process(to_group) != INVALID and len(t) == 2
    # ordinary packets of the same host are tracked as ever
    assert t.process(_udp(0.03, 64, src, dst, sport=40200)) != INVALID and len(t) == 3


def test_parallel_probes_go_with_the_first_error() -> None:
    # traceroute sends its first-hop probes before any error is back; the rate limit
    # swallows some errors: the first one seen clears all unanswered probes of that host
    t = ConntrackTable()
    for port in (40000, 40001, 40002):
        t.process(_udp(0.0, 1, sport=port))
    other = _udp(0.0, 1, src=bytes([192, 0, 2, 9]))  # another host: no evidence yet
    t.process(other)
    answered = _udp(0.0, 1, sport=40003)
    t.process(answered)
    t.process(udp(0.0005, src=B, dst=A, sport=33434, dport=40003))  # a reply: it lived
    assert len(t) == 5
    assert t.process(_time_exceeded(0.001, sport=40001)) == INVALID
    assert len(t) == 2  # the other host's probe and the answered one
    assert t.counters["destroyed-ttl-expired"] == 3


def test_packets_the_master_sent_with_ttl_1_were_forwarded() -> None:
    t = ConntrackTable()
    t.process(_udp(0.0, 1))
    t.process(_time_exceeded(0.001))
    leaving = _udp(0.01, 1, sport=40050)
    leaving.hw = HW_FROM_MASTER  # e.g. a capture of both sides: it arrived with TTL 2
    assert t.process(leaving) != INVALID and len(t) == 1


def test_what_is_learnt_is_bounded() -> None:
    t = ConntrackTable()
    for i in range(TTL_PROBES_MAX + 100):
        host = bytes([10, 0, i >> 8, i & 0xFF])
        t.process(_udp(float(i), 1, src=host))
        t.process(_time_exceeded(i + 0.001, src=host))
    assert len(t._dying) <= TTL_PROBES_MAX and len(t._routers) <= TTL_PROBES_MAX
    assert len(t) == 0
