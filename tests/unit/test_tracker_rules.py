"""Tracker behaviour on crafted packet sequences.

Each expectation is a row that was verified on the Linux 6.18 kernel this project targets
(conntrack-semantics reference, sections 1.4-1.10, 3.1-3.7: crafted packets through a router
namespace, table read back with ctnetlink). Timeouts are asserted as the kernel lists them
(whole seconds remaining) one second after the packet.
"""

from __future__ import annotations

import pytest

from sniffover.conntrack.entry import (
    IPS_ASSURED,
    IPS_CONFIRMED,
    IPS_SEEN_REPLY,
    TCP_FLAG_BE_LIBERAL,
    TCP_FLAG_CLOSE_INIT,
    TCP_FLAG_SACK_PERM,
    TCP_FLAG_WINDOW_SCALE,
)
from sniffover.conntrack.listing import remaining_seconds
from sniffover.conntrack.packet import Packet
from sniffover.conntrack.states import TCP_STATE_NAMES
from sniffover.conntrack.table import ConntrackTable
from sniffover.conntrack.timeouts import Timeouts
from sniffover.conntrack.verdict import ACCEPT, IGNORE, INVALID, RELATED, UNTRACKED
from tests.helpers import ACK, FIN, PSH, RST, SYN, A, B, icmp, syn_opts, tcp, udp

KEY = (6, A, B, 40000, 80)
ISN_C, ISN_S = 1000, 5000


def only(table: ConntrackTable):
    conns = list(table.conns())
    assert len(conns) == 1, conns
    return conns[0]


def state(table: ConntrackTable) -> str:
    conn = only(table)
    assert conn.tcp is not None
    return TCP_STATE_NAMES[conn.tcp.state]


def listed_timeout(table: ConntrackTable, at: float) -> int:
    return remaining_seconds(only(table), at)


def handshake(t: ConntrackTable, ws_c: int | None = 7, ws_s: int | None = 9) -> float:
    assert t.process(tcp(0.0, SYN, ISN_C, opts=syn_opts(ws_c))) == ACCEPT
    assert (
        t.process(
            tcp(
                0.1,
                SYN | ACK,
                ISN_S,
                ISN_C + 1,
                src=B,
                dst=A,
                sport=80,
                dport=40000,
                opts=syn_opts(ws_s),
            )
        )
        == ACCEPT
    )
    assert t.process(tcp(0.2, ACK, ISN_C + 1, ISN_S + 1, win=502)) == ACCEPT
    return 0.2


def test_handshake_states_status_and_window_scale() -> None:
    t = ConntrackTable()
    t.process(tcp(0.0, SYN, ISN_C, opts=syn_opts(7)))
    c = only(t)
    assert state(t) == "SYN_SENT" and c.status == IPS_CONFIRMED
    assert listed_timeout(t, 1.0) == 119
    assert c.tcp.seen[0].flags == TCP_FLAG_WINDOW_SCALE | TCP_FLAG_SACK_PERM
    t.process(
        tcp(1.0, SYN | ACK, ISN_S, ISN_C + 1, src=B, dst=A, sport=80, dport=40000, opts=syn_opts(9))
    )
    assert state(t) == "SYN_RECV" and c.status & IPS_SEEN_REPLY and not c.status & IPS_ASSURED
    assert listed_timeout(t, 2.0) == 59
    assert (c.tcp.seen[0].td_scale, c.tcp.seen[1].td_scale) == (7, 9)
    t.process(tcp(2.0, ACK, ISN_C + 1, ISN_S + 1, win=502))
    assert state(t) == "ESTABLISHED" and c.status & IPS_ASSURED
    assert listed_timeout(t, 3.0) == 431999


def test_data_unacknowledged_then_acked_and_fin_close_sequence() -> None:
    t = ConntrackTable()
    handshake(t)
    t.process(tcp(1.0, ACK | PSH, ISN_C + 1, ISN_S + 1, win=502, data=100))
    assert listed_timeout(t, 2.0) == 299
    assert only(t).tcp.seen[0].flags & 0x10  # DATA_UNACKNOWLEDGED
    t.process(tcp(2.0, ACK, ISN_S + 1, ISN_C + 101, src=B, dst=A, sport=80, dport=40000, win=502))
    assert listed_timeout(t, 3.0) == 431999
    t.process(tcp(3.0, FIN | ACK, ISN_C + 101, ISN_S + 1, win=502))
    assert state(t) == "FIN_WAIT" and listed_timeout(t, 4.0) == 119
    assert only(t).tcp.seen[0].flags & TCP_FLAG_CLOSE_INIT
    t.process(tcp(4.0, ACK, ISN_S + 1, ISN_C + 102, src=B, dst=A, sport=80, dport=40000, win=502))
    assert state(t) == "CLOSE_WAIT" and listed_timeout(t, 5.0) == 59
    t.process(
        tcp(5.0, FIN | ACK, ISN_S + 1, ISN_C + 102, src=B, dst=A, sport=80, dport=40000, win=502)
    )
    assert state(t) == "LAST_ACK" and listed_timeout(t, 6.0) == 29
    t.process(tcp(6.0, ACK, ISN_C + 102, ISN_S + 2, win=502))
    assert state(t) == "TIME_WAIT" and listed_timeout(t, 7.0) == 119


def closed_to_time_wait(t: ConntrackTable) -> None:
    handshake(t)
    t.process(tcp(1.0, FIN | ACK, ISN_C + 1, ISN_S + 1, win=502))
    t.process(
        tcp(1.1, FIN | ACK, ISN_S + 1, ISN_C + 2, src=B, dst=A, sport=80, dport=40000, win=502)
    )
    t.process(tcp(1.2, ACK, ISN_C + 2, ISN_S + 2, win=502))
    assert state(t) == "TIME_WAIT"


def test_new_syn_in_time_wait_reopens_a_fresh_entry() -> None:
    t = ConntrackTable()
    closed_to_time_wait(t)
    old = only(t)
    assert t.process(tcp(5.0, SYN, 90000, opts=syn_opts())) == ACCEPT
    new = only(t)
    assert new is not old and state(t) == "SYN_SENT" and new.status == IPS_CONFIRMED


def test_reply_syn_in_time_wait_swaps_roles() -> None:
    t = ConntrackTable()
    closed_to_time_wait(t)
    t.process(tcp(5.0, SYN, 90000, src=B, dst=A, sport=80, dport=40000, opts=syn_opts()))
    assert only(t).orig == (6, B, A, 80, 40000) and state(t) == "SYN_SENT"


def test_retransmitted_syn_does_not_refresh_the_timer() -> None:
    t = ConntrackTable()
    t.process(tcp(0.0, SYN, ISN_C, opts=syn_opts()))
    t.process(tcp(3.0, SYN, ISN_C, opts=syn_opts()))
    assert listed_timeout(t, 3.0) == 117  # 120 - 3 (the kernel listed 116 after jiffies)


def test_rst_answering_syn_deletes_the_entry() -> None:
    t = ConntrackTable()
    t.process(tcp(0.0, SYN, ISN_C, opts=syn_opts()))
    assert (
        t.process(tcp(0.1, RST | ACK, 0, ISN_C + 1, src=B, dst=A, sport=80, dport=40000, win=0))
        == ACCEPT
    )
    assert len(t) == 0


def test_rst_with_exact_seq_closes() -> None:
    t = ConntrackTable()
    handshake(t)
    t.process(tcp(1.0, RST | ACK, ISN_S + 1, ISN_C + 1, src=B, dst=A, sport=80, dport=40000, win=0))
    assert state(t) == "CLOSE" and listed_timeout(t, 2.0) == 9


def test_rst_in_window_but_inexact_keeps_state_with_close_timeout() -> None:
    t = ConntrackTable()
    handshake(t)
    # Server has sent nothing yet; client acked ISN_S+1 (peer's td_maxack). An in-window,
    # inexact RST from the server keeps ESTABLISHED but gets 10 s.
    t.process(tcp(1.0, RST, ISN_S + 1000, 0, src=B, dst=A, sport=80, dport=40000, win=0))
    assert state(t) == "ESTABLISHED" and listed_timeout(t, 2.0) == 9


def test_rst_below_peers_max_ack_is_invalid() -> None:
    t = ConntrackTable()
    handshake(t)
    assert (
        t.process(tcp(1.0, RST, ISN_S - 10, 0, src=B, dst=A, sport=80, dport=40000, win=0))
        == INVALID
    )
    assert state(t) == "ESTABLISHED" and listed_timeout(t, 1.0) == 431999


def test_simultaneous_open() -> None:
    t = ConntrackTable()
    t.process(tcp(0.0, SYN, ISN_C, opts=syn_opts()))
    t.process(tcp(0.1, SYN, ISN_S, src=B, dst=A, sport=80, dport=40000, opts=syn_opts()))
    assert state(t) == "SYN_SENT2" and only(t).status & IPS_SEEN_REPLY
    t.process(tcp(0.2, SYN | ACK, ISN_C, ISN_S + 1, opts=syn_opts()))
    assert state(t) == "SYN_RECV"
    t.process(
        tcp(0.3, SYN | ACK, ISN_S, ISN_C + 1, src=B, dst=A, sport=80, dport=40000, opts=syn_opts())
    )
    t.process(tcp(0.4, ACK, ISN_S + 1, ISN_C + 1, src=B, dst=A, sport=80, dport=40000))
    assert state(t) == "ESTABLISHED" and only(t).status & IPS_ASSURED
    assert listed_timeout(t, 1.4) == 431999


def test_syn_with_new_isn_in_established_is_ignored_then_resynced_by_synack() -> None:
    t = ConntrackTable()
    handshake(t)
    assert t.process(tcp(1.0, SYN, 777777, opts=syn_opts())) == IGNORE
    assert state(t) == "ESTABLISHED"
    t.process(
        tcp(1.1, SYN | ACK, 888888, 777778, src=B, dst=A, sport=80, dport=40000, opts=syn_opts())
    )
    assert state(t) == "SYN_RECV" and listed_timeout(t, 2.1) == 59
    t.process(tcp(1.2, ACK, 777778, 888889))
    assert state(t) == "ESTABLISHED"


def test_data_far_beyond_the_window_and_acks_of_unseen_data_are_invalid() -> None:
    t = ConntrackTable()
    handshake(t)
    assert t.process(tcp(1.0, ACK, ISN_C + 1 + 200_000 * 128, ISN_S + 1, data=1000)) == INVALID
    assert t.process(tcp(1.1, ACK, ISN_C + 1, ISN_S + 100_000)) == INVALID
    assert state(t) == "ESTABLISHED"


def test_three_retransmissions_shorten_to_max_retrans() -> None:
    t = ConntrackTable(Timeouts(tcp_timeout_max_retrans=77))
    handshake(t)
    got = []
    for i in range(4):
        t.process(tcp(1.0 + i, ACK | PSH, ISN_C + 1, ISN_S + 1, win=502, data=100))
        got.append(listed_timeout(t, 2.0 + i))
    assert got == [299, 299, 299, 76]


def test_mid_stream_pickup_like_loose_mode() -> None:
    t = ConntrackTable()
    t.process(tcp(0.0, ACK | PSH, 10_000, 20_000, win=502, data=50))
    c = only(t)
    assert state(t) == "ESTABLISHED" and c.status == IPS_CONFIRMED
    assert listed_timeout(t, 1.0) == 299
    assert c.tcp.seen[0].flags & TCP_FLAG_BE_LIBERAL and c.tcp.seen[1].flags & TCP_FLAG_BE_LIBERAL
    t.process(tcp(1.0, ACK, 20_000, 10_050, src=B, dst=A, sport=80, dport=40000, win=502))
    assert c.status & IPS_SEEN_REPLY and not c.status & IPS_ASSURED
    assert listed_timeout(t, 2.0) == 299
    t.process(tcp(2.0, ACK | PSH, 10_050, 20_000, win=502, data=10))
    assert c.status & IPS_ASSURED and listed_timeout(t, 3.0) == 299
    t.process(tcp(3.0, ACK, 20_000, 10_060, src=B, dst=A, sport=80, dport=40000, win=502))
    assert listed_timeout(t, 4.0) == 431999


def test_mid_stream_first_packet_from_server_is_oriented_client_to_server() -> None:
    t = ConntrackTable()
    t.process(tcp(0.0, ACK | PSH, 20_000, 10_000, src=B, dst=A, sport=80, dport=40000, data=50))
    assert only(t).orig == KEY
    t2 = ConntrackTable(infer_direction=False)
    t2.process(tcp(0.0, ACK | PSH, 20_000, 10_000, src=B, dst=A, sport=80, dport=40000, data=50))
    assert only(t2).orig == (6, B, A, 80, 40000)  # the kernel's rule: first packet seen


@pytest.mark.parametrize("flags", [SYN | ACK, FIN | ACK, RST, 0x00, SYN | FIN, FIN])
def test_segments_that_cannot_create_an_entry(flags: int) -> None:
    t = ConntrackTable()
    assert t.process(tcp(0.0, flags, 1, 1)) == INVALID
    assert len(t) == 0


def test_no_pickup_without_tcp_loose() -> None:
    t = ConntrackTable(Timeouts(tcp_loose=0))
    assert t.process(tcp(0.0, ACK, 1, 1)) == INVALID
    assert t.process(tcp(0.1, SYN, 1)) == ACCEPT


def test_udp_timeouts_and_the_two_second_rule() -> None:
    t = ConntrackTable()
    t.process(udp(0.0))
    c = only(t)
    assert c.status == IPS_CONFIRMED and listed_timeout(t, 1.0) == 29
    t.process(udp(0.5, src=B, dst=A, sport=53, dport=40000))
    assert c.status & IPS_SEEN_REPLY and listed_timeout(t, 1.5) == 29
    t.process(udp(1.0))
    assert not c.status & IPS_ASSURED and listed_timeout(t, 2.0) == 29
    t.process(udp(2.5))
    assert c.status & IPS_ASSURED and listed_timeout(t, 3.5) == 119


def test_udp_first_reply_late_is_not_assured_until_the_next_packet() -> None:
    t = ConntrackTable()
    t.process(udp(0.0))
    t.process(udp(2.2, src=B, dst=A, sport=53, dport=40000))
    c = only(t)
    assert c.status & IPS_SEEN_REPLY and not c.status & IPS_ASSURED
    t.process(udp(2.3, src=B, dst=A, sport=53, dport=40000))
    assert c.status & IPS_ASSURED and listed_timeout(t, 3.3) == 119


def test_icmp_echo_entry_reply_and_code_in_tuple() -> None:
    t = ConntrackTable()
    t.process(icmp(0.0, 8))
    t.process(icmp(0.1, 0, src=B, dst=A))
    c = only(t)
    assert c.status & IPS_SEEN_REPLY and not c.status & IPS_ASSURED
    assert listed_timeout(t, 1.1) == 29
    t.process(icmp(0.2, 8, code=5))
    assert len(t) == 2


def test_icmp_reply_alone_and_types_without_inverse_are_invalid() -> None:
    t = ConntrackTable()
    assert t.process(icmp(0.0, 0)) == INVALID
    assert t.process(icmp(0.0, 9)) == INVALID
    assert len(t) == 0


def test_icmp_port_unreachable_is_related_and_creates_nothing() -> None:
    t = ConntrackTable()
    t.process(udp(0.0, dport=9))
    quoted = Packet(0.0, 2, 17, A, B, 40000, 9)
    assert t.process(icmp(0.1, 3, code=3, ident=0, src=B, dst=A, inner=quoted)) == RELATED
    c = only(t)
    assert not c.status & IPS_SEEN_REPLY and listed_timeout(t, 1.0) == 29
    # Same error about an untracked flow, or sent to someone else: INVALID.
    other = Packet(0.0, 2, 17, A, B, 40001, 9)
    assert t.process(icmp(0.2, 3, code=3, ident=0, src=B, dst=A, inner=other)) == INVALID
    elsewhere = bytes([192, 0, 2, 77])
    assert t.process(icmp(0.3, 3, code=3, ident=0, src=B, dst=elsewhere, inner=quoted)) == INVALID


def test_icmpv6_neighbour_discovery_is_untracked() -> None:
    t = ConntrackTable()
    a6 = bytes(16)
    assert t.process(icmp(0.0, 135, ident=0, src=a6, dst=a6, proto=58)) == UNTRACKED
    assert len(t) == 0


def test_generic_protocol_one_entry_per_address_pair_never_assured() -> None:
    t = ConntrackTable()
    t.process(Packet(0.0, 2, 50, A, B))
    t.process(Packet(1.0, 2, 50, B, A))
    t.process(Packet(2.0, 2, 50, A, B))
    c = only(t)
    assert c.status & IPS_SEEN_REPLY and not c.status & IPS_ASSURED
    assert listed_timeout(t, 3.0) == 599


def test_expired_entries_are_not_listed_and_are_replaced() -> None:
    t = ConntrackTable()
    t.process(udp(0.0))
    assert t.entries(29.9) and not t.entries(30.0)
    t.process(udp(31.0))
    assert only(t).created == 31.0


def test_events_new_update_destroy() -> None:
    events: list[tuple[str, str]] = []

    def listen(kind: str, conn) -> None:
        st = TCP_STATE_NAMES[conn.tcp.state] if conn.tcp else "-"
        events.append((kind, st))

    t = ConntrackTable(listener=listen)
    handshake(t)
    t.process(tcp(1.0, ACK | PSH, ISN_C + 1, ISN_S + 1, win=502, data=10))  # no change: no event
    t.process(tcp(2.0, RST | ACK, ISN_C + 11, ISN_S + 1, win=0))
    t.expire(100.0)
    assert events == [
        ("new", "SYN_SENT"),
        ("update", "SYN_RECV"),
        ("update", "ESTABLISHED"),
        ("update", "CLOSE"),
        ("destroy", "CLOSE"),
    ]
