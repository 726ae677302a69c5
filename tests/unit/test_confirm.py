"""Forwarding confirmation on crafted packets (no root): what the master did not forward
is never confirmed, and a teardown it did not forward never closes a connection."""

from __future__ import annotations

import pytest

from sniffover.conntrack.confirm import ForwardingConfirmer
from sniffover.conntrack.install_policy import desired
from sniffover.conntrack.packet import HW_FROM_MASTER, HW_TO_MASTER
from sniffover.conntrack.states import TCP_ESTABLISHED
from sniffover.conntrack.table import ConntrackTable
from tests.helpers import A6, ACK, B6, FIN, RST, SYN, A, B, syn_opts, tcp, udp

IN, OUT = HW_TO_MASTER, HW_FROM_MASTER


def handshake(feed, t=0.0, hw_c=IN, hw_s=IN, copies=False):
    """Client A -> server B through the master; with ``copies`` each packet also leaves it."""
    pkts = [
        tcp(t, SYN, 1000, opts=syn_opts()),
        tcp(t + 0.01, SYN | ACK, 5000, 1001, src=B, dst=A, sport=80, dport=40000, opts=syn_opts()),
        tcp(t + 0.02, ACK, 1001, 5001),
    ]
    for i, p in enumerate(pkts):
        p.hw = hw_c if i != 1 else hw_s
        p.ipid = 100 + i
        feed(p)
        if copies:
            c = tcp(
                p.ts + 0.0001,
                p.tcp_flags,
                p.seq,
                p.ack,
                src=p.src,
                dst=p.dst,
                sport=p.sport,
                dport=p.dport,
                opts=p.tcp_opts,
            )
            c.hw, c.ipid = OUT, p.ipid
            feed(c)


def conn_of(table):
    (conn,) = table.entries(1.0)
    return conn


def test_one_segment_needs_a_frame_from_the_master():
    t = ConntrackTable()
    f = ForwardingConfirmer(t, two_segments=False)
    handshake(f.feed)  # every frame goes *to* the master: nothing proves it forwarded any
    conn = conn_of(t)
    assert conn.tcp.state == TCP_ESTABLISHED and not conn.forwarded
    assert desired(conn, 1.0, False, require_forwarded=True) is None
    t2 = ConntrackTable()
    f2 = ForwardingConfirmer(t2, two_segments=False)
    handshake(f2.feed, hw_s=OUT)  # the SYN/ACK left the master (inside leg of the reply)
    conn = conn_of(t2)
    assert conn.forwarded and desired(conn, 1.0, False, require_forwarded=True) is not None


def test_two_segments_track_once_and_confirm_by_the_copy():
    events = []
    t = ConntrackTable(listener=lambda kind, c: events.append(kind))
    f = ForwardingConfirmer(t, two_segments=True)
    handshake(f.feed, copies=True)
    conn = conn_of(t)
    assert conn.forwarded and conn.tcp.state == TCP_ESTABLISHED
    assert f.counters["confirmed"] == 1 and f.counters["egress-unmatched"] == 0
    assert events.count("new") == 1  # the copies were not tracked a second time


def test_forged_handshake_never_forwarded_is_not_confirmed():
    t = ConntrackTable()
    f = ForwardingConfirmer(t, two_segments=True)
    handshake(f.feed, copies=False)  # into the master only: it dropped them
    assert not conn_of(t).forwarded


def test_teardown_the_master_dropped_does_not_close():
    t = ConntrackTable()
    f = ForwardingConfirmer(t, two_segments=True)
    handshake(f.feed, copies=True)
    forged = tcp(0.5, RST | ACK, 1001, 5001)
    forged.hw, forged.ipid = IN, 999
    f.feed(forged)  # never leaves the master
    f.expire(3.0)
    assert f.counters["teardown-not-forwarded"] == 1
    assert conn_of(t).tcp.state == TCP_ESTABLISHED
    # the same teardown forwarded by the master does close it
    fin = tcp(4.0, FIN | ACK, 1001, 5001)
    fin.hw, fin.ipid = IN, 7
    f.feed(fin)
    assert t.entries(4.0)[0].tcp.state == TCP_ESTABLISHED  # held
    out = tcp(4.0001, FIN | ACK, 1001, 5001)
    out.hw, out.ipid = OUT, 7
    f.feed(out)
    assert t.entries(4.1)[0].tcp.state != TCP_ESTABLISHED
    assert f.counters["teardown-confirmed"] == 1


def test_recent_copies_are_bounded():
    t = ConntrackTable()
    f = ForwardingConfirmer(t, two_segments=True, max_recent=100)
    for i in range(1000):
        p = tcp(i * 0.001, ACK, 1000 + i, 1, sport=1024 + i)
        p.hw, p.ipid = IN, i
        f.feed(p)
    assert len(f.recent) <= 101 and len(f.order) <= 101


@pytest.mark.parametrize("requests_paired", [True, False])
def test_shared_nat_key_pairs_nothing_instead_of_the_wrong_flow(requests_paired):
    """Five UDP flows through source NAT; the server answers from an unconnected socket
    (IP ID 0, same length): the answers' keys that survive NAT are all equal. Their
    ingress copies arrive in a burst before the first egress copy. Pairing by such a key
    bound one flow onto another's tuples and destroyed the other ("nat-duplicate": flows
    missing on the standby in the NAT lab); now no flow is lost or bound wrongly, whether
    the requests' copies were paired (the binding comes from them) or not (no binding yet)."""
    nat = bytes([198, 51, 100, 1])
    t = ConntrackTable()
    f = ForwardingConfirmer(t, two_segments=True)
    ports = [41000 + i for i in range(5)]
    ts = 0.0
    for i, p in enumerate(ports):  # requests: connected client sockets, distinct IP IDs
        q = udp(ts, sport=p, dport=9000)
        q.hw, q.ipid = IN, 500 + i
        f.feed(q)
        if requests_paired:
            out = udp(ts + 0.0001, src=nat, sport=p, dport=9000)
            out.hw, out.ipid = OUT, 500 + i
            f.feed(out)
        ts += 0.001
    for i, p in enumerate(ports):  # ingress (outside) copies of all five answers first
        a = udp(ts + 0.001 * i, src=B, dst=nat, sport=9000, dport=p)
        a.hw, a.ipid = IN, 0
        f.feed(a)
    for i, p in enumerate(ports):  # then their egress (inside) copies, de-NATed
        c = udp(ts + 0.01 + 0.001 * i, src=B, dst=A, sport=9000, dport=p)
        c.hw, c.ipid = OUT, 0
        f.feed(c)
    clients = {c.orig[3]: c for c in t.entries(ts + 1) if c.orig[1] == A}
    assert sorted(clients) == ports
    for port, c in clients.items():
        assert c.orig == (17, A, B, port, 9000)
        if requests_paired:  # its own binding, from its request
            assert c.reply == (17, B, nat, 9000, port) and c.forwarded
        else:
            assert c.reply == (17, B, A, 9000, port)
    assert f.counters["copy-ambiguous"] >= 4
    assert "destroyed-nat-duplicate" not in t.counters and "nat-clash" not in t.counters


def test_frames_decoded_before_the_master_was_known_are_still_tracked():
    """Frames read before the master's MACs were learned carry no MAC verdict (hw 0) and
    may still sit in the agent's reorder buffer when it learns them: they are tracked as
    before learning. Judging them "not via the master" dropped the request of a UDP flow
    whose answer then created it the wrong way round (NAT lab, under load)."""
    t = ConntrackTable()
    f = ForwardingConfirmer(t, two_segments=True)
    f.master_learned(10.0)
    f.feed(udp(9.99, sport=41000, dport=9000))  # read before: tracked
    late = udp(10.01, sport=41001, dport=9000)  # hw 0 after: neither to nor from the master
    f.feed(late)
    assert [c.orig[3] for c in t.entries(11.0)] == [41000]
    assert f.counters["not-via-master"] == 1


@pytest.mark.parametrize(
    "labelled,distinct", [(True, True), (False, True), (True, False), (False, False)]
)
def test_ipv6_udp_through_masquerade_pairs_on_flow_label_and_digest(labelled, distinct):
    """IPv6 has no IP ID. Five UDP flows from one client to one server port, equal lengths,
    masqueraded (address and port rewritten). With flow labels (Linux labels every flow)
    or distinct payloads (DNS query IDs) every datagram pairs with its own copy and each
    flow gets its own translation; with neither (label 0, equal payloads) the keys are
    ambiguous and pair nothing: no flow is bound onto another's tuples."""
    nat = bytes.fromhex("20010db80002000000000000000000fe")
    t = ConntrackTable()
    f = ForwardingConfirmer(t, two_segments=True)
    ports = [41000 + i for i in range(5)]
    mapped = {p: 20000 + 7 * i for i, p in enumerate(ports)}
    ts = 0.0

    def pkt(ts, src, dst, sport, dport, hw, i):
        p = udp(ts, src=src, dst=dst, sport=sport, dport=dport)
        p.hw = hw
        p.ipid = 0x10000 + i if labelled else 0
        p.digest = 777 + i if distinct else 42
        return p

    for i, p in enumerate(ports):  # requests all in, then all out (a burst)
        f.feed(pkt(ts + 0.001 * i, A6, B6, p, 53, IN, i))
    for i, p in enumerate(ports):
        f.feed(pkt(ts + 0.01 + 0.001 * i, nat, B6, mapped[p], 53, OUT, i))
    ts = 0.1
    for i, p in enumerate(ports):  # answers (the server's own label and payload)
        f.feed(pkt(ts + 0.001 * i, B6, nat, 53, mapped[p], IN, 10 + i))
    for i, p in enumerate(ports):
        f.feed(pkt(ts + 0.01 + 0.001 * i, B6, A6, 53, p, OUT, 10 + i))
    clients = {c.orig[3]: c for c in t.entries(ts + 1) if c.orig[1] == A6}
    assert sorted(clients) == ports
    for port, c in clients.items():
        if labelled or distinct:
            assert c.reply == (17, B6, nat, 53, mapped[port]) and c.forwarded
        else:
            assert c.reply == (17, B6, A6, 53, port)
    if labelled or distinct:
        assert f.counters["nat-bound"] == 5 and f.counters["copy-ambiguous"] == 0
        assert len(t.entries(ts + 1)) == 5  # no entry from an unpaired translated copy
    else:
        assert f.counters["copy-ambiguous"] >= 4 and f.counters["nat-bound"] == 0
    assert "destroyed-nat-duplicate" not in t.counters and "nat-clash" not in t.counters


@pytest.mark.parametrize("proto", ["tcp", "udp", "udp-nodigest"])
def test_both_sides_translated_pair_on_the_packet_alone(proto):
    """DNAT to the server and SNAT to the master's address on the same packets (a load
    balancer): the copies share no address or port. TCP pairs on its sequence numbers and a
    datagram on its payload digest; one with neither (digest 0) is not paired at all."""
    vip, nat = bytes([203, 0, 113, 10]), bytes([198, 51, 100, 254])
    t = ConntrackTable()
    f = ForwardingConfirmer(t, two_segments=True)

    def pkt(ts, src, dst, sport, dport, hw):
        if proto == "tcp":
            p = tcp(ts, ACK, 1000, 2000, src=src, dst=dst, sport=sport, dport=dport, data=10)
        else:
            p = udp(ts, src=src, dst=dst, sport=sport, dport=dport)
            p.digest = 0 if proto == "udp-nodigest" else 0x5EED
        p.hw, p.ipid = hw, 77
        return p

    f.feed(pkt(0.0, A, vip, 40000, 80, IN))  # client -> VIP on the inside
    f.feed(pkt(0.001, nat, B, 23456, 8080, OUT))  # master's address -> server outside
    entries = t.entries(1.0)
    if proto == "udp-nodigest":
        assert f.counters["nat-bound"] == 0 and f.counters["egress-unmatched"] == 1
        return
    (c,) = entries
    assert c.orig[1:] == (A, vip, 40000, 80)
    assert c.reply[1:] == (B, nat, 8080, 23456) and c.forwarded
