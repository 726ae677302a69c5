"""Connections in flight when the agent starts, through source NAT (issue 15 point 2).

The agent sees a connection from some segment on (its handshake long past), sometimes
only its closing FIN/ACK sequence, each packet twice (into the master on one segment, out
of it translated on the other), in either order, and maybe while the master's MACs are
still unknown. Whatever it sees, an entry it confirms (= installs) must have the master's
mapping: orig client -> server, reply server -> NAT address. Not installing is allowed;
a guessed identity mapping is not.
"""

from __future__ import annotations

import random

import pytest

from sniffover.conntrack.confirm import ForwardingConfirmer
from sniffover.conntrack.install_policy import desired
from sniffover.conntrack.packet import HW_FROM_MASTER, HW_TO_MASTER, Packet
from sniffover.conntrack.table import ConntrackTable
from tests.helpers import ACK, FIN, PSH, tcp, udp

IN, OUT = HW_TO_MASTER, HW_FROM_MASTER
C = bytes([192, 0, 2, 10])  # inside client
S = bytes([198, 51, 100, 10])  # outside server
N = bytes([198, 51, 100, 1])  # the master's SNAT address
CPORT, SPORT = 40000, 8000
MASTER = ((6, C, S, CPORT, SPORT), (6, S, N, SPORT, CPORT))  # fw1's orig, reply


def segments(server_first: bool, data: int) -> list[tuple[int, int, int]]:
    """(direction 0 = client's / 1 = server's, flags, payload) of a connection's tail:
    ``data`` ping/pong exchanges, then the close (the closer's FIN, the other's ACK and
    FIN, the closer's last ACK)."""
    out = []
    for _ in range(data):
        out += [(0, PSH | ACK, 7), (1, PSH | ACK, 7), (0, ACK, 0)]
    a, b = (1, 0) if server_first else (0, 1)
    return out + [(a, FIN | ACK, 0), (b, ACK, 0), (b, FIN | ACK, 0), (a, ACK, 0)]


def copies(segs: list[tuple[int, int, int]], swap: float, rng: random.Random) -> list[Packet]:
    """Both copies of every segment, in capture-timestamp order: ingress (into the master)
    then egress (translated), or the other way round with probability ``swap``."""
    seq, ipid = [1000, 5000], [100, 900]
    out, ts = [], 0.0
    for d, flags, n in segs:
        ts += 0.01
        if d == 0:
            pre, post = (C, S, CPORT, SPORT), (N, S, CPORT, SPORT)
        else:
            pre, post = (S, N, SPORT, CPORT), (S, C, SPORT, CPORT)
        pair = []
        for hw, (src, dst, sp, dp) in ((IN, pre), (OUT, post)):
            p = tcp(ts, flags, seq[d], seq[1 - d], src=src, dst=dst, sport=sp, dport=dp, data=n)
            p.hw, p.ipid = hw, ipid[d]
            pair.append(p)
        if rng.random() < swap:
            pair[1].ts, pair[0].ts = ts, ts + 0.00005
            pair.reverse()
        else:
            pair[1].ts = ts + 0.00005
        out += pair
        seq[d] += n + (1 if flags & FIN else 0)
        ipid[d] += 1
    return out


def run_case(rng: random.Random, learning: bool) -> tuple[list, int]:
    """One connection picked up at a random packet; returns the confirmed entries whose
    mapping is not the master's, and how many confirmed entries there are."""
    pkts = copies(segments(rng.random() < 0.5, rng.randrange(3)), rng.choice((0.0, 0.3)), rng)
    start = rng.randrange(len(pkts))
    table = ConntrackTable()
    f = ForwardingConfirmer(table, two_segments=True)
    unknown = rng.randrange(start, len(pkts) + 1) if learning else start
    if not learning:
        f.master_learned(0.0)
    sent = []  # what the master sent while unknown (the anchors' confirmed_before)
    for i, p in enumerate(pkts[start:], start):
        if i < unknown:
            if p.hw & OUT:
                sent.append((p.proto, p.src, p.dst, p.sport, p.dport))
            p.hw = 0  # decoded before the MACs were known
        elif learning and i == unknown:
            f.master_learned(p.ts)
            for t in sent:
                f.confirm(t)
        f.feed(p)
    if learning and unknown == len(pkts):
        for t in sent:
            f.confirm(t)
    f.expire(pkts[-1].ts + 2)
    now = pkts[-1].ts + 0.1
    confirmed = [c for c in table.entries(now) if c.forwarded]
    wrong = [(c.orig, c.reply) for c in confirmed if (c.orig, c.reply) != MASTER]
    return wrong, len(confirmed)


@pytest.mark.parametrize("learning", [False, True], ids=["macs-known", "macs-learned"])
def test_a_flow_picked_up_mid_stream_is_installed_only_with_the_masters_mapping(learning):
    rng = random.Random(15_2)
    wrong, confirmed = [], 0
    for _ in range(3000):
        w, n = run_case(rng, learning)
        wrong += w
        confirmed += n
    assert wrong == []
    assert confirmed > 1000  # most cases do pair copies and install the right mapping


@pytest.mark.parametrize("server_first", [False, True])
def test_closing_segments_only_egress_copy_first(server_first):
    """Only the close is seen, every egress copy before its ingress copy (capture
    timestamps of two segments inverted): each egress copy is tracked unmatched and waits
    a window for its ingress copy, which then pairs with it. One entry with the master's
    mapping, in the state the copies in wire order give (the held FINs applied)."""
    entries = []
    for swap in (0.0, 1.0):
        pkts = copies(segments(server_first, 0), swap, random.Random(0))
        table = ConntrackTable()
        f = ForwardingConfirmer(table, two_segments=True)
        f.master_learned(0.0)
        for p in pkts:
            f.feed(p)
        (conn,) = table.entries(pkts[-1].ts + 0.1)
        assert (conn.orig, conn.reply) == MASTER and conn.forwarded
        entries.append((conn.tcp.state, conn.status))
    assert f.counters["egress-first"] == 4
    assert entries[0] == entries[1]


def test_egress_copy_first_without_nat_is_tracked_once():
    """Identical copies, the egress one first: the packet was tracked as it (one entry);
    its ingress copy confirms the entry and is not tracked a second time."""
    table = ConntrackTable()
    f = ForwardingConfirmer(table, two_segments=True)
    f.master_learned(0.0)
    ping = tcp(0.0, PSH | ACK, 1000, 5000, src=C, dst=S, sport=CPORT, dport=SPORT, data=7)
    ping.hw, ping.ipid = OUT, 7
    f.feed(ping)
    twin = tcp(0.0001, PSH | ACK, 1000, 5000, src=C, dst=S, sport=CPORT, dport=SPORT, data=7)
    twin.hw, twin.ipid = IN, 7
    f.feed(twin)
    (conn,) = table.entries(1.0)
    assert conn.forwarded and conn.reply == (6, S, C, SPORT, CPORT)
    assert sum(table.verdicts) == 1


def test_copies_read_before_the_master_was_known_are_paired_afterwards():
    """Before the MACs were known both copies were tracked as two entries (identity
    mappings each). Once the master is known to have sent the outside tuple, its packets
    are paired with the one other tuple sharing their NAT-surviving key: the inside
    entry gets the master's mapping, its outside twin goes."""
    table = ConntrackTable()
    f = ForwardingConfirmer(table, two_segments=True)
    for p in copies(segments(False, 1)[:3], 0.0, random.Random(0)):
        p.hw = 0
        f.feed(p)
    assert len(table.entries(1.0)) == 2
    f.master_learned(1.0)
    f.confirm((6, N, S, CPORT, SPORT))  # outside: the client's request, NATed
    (conn,) = table.entries(1.0)
    assert (conn.orig, conn.reply) == MASTER and conn.forwarded
    assert f.counters["blind-paired"] == 1
    f.expire(1.0 + 6)  # forgotten a few seconds after the master is known
    assert not f.blind and not f.blind_sent


def test_learning_one_direction_sent_proves_no_mapping():
    """Only the master's output was read while it was unknown (the copies going in were
    not: nothing to pair with): the master was seen sending the inside entry's reply
    tuple and the outside entry's original tuple. Neither entry had both of its tuples
    leave the master unchanged: neither is confirmed (each was, with an identity
    mapping). Without NAT, the master sends both tuples of the one entry: confirmed."""
    table = ConntrackTable()
    f = ForwardingConfirmer(table, two_segments=True)
    for p in copies(segments(False, 1)[:3], 0.0, random.Random(0)):
        if p.hw & OUT:
            p.hw = 0
            f.feed(p)
    assert len(table.entries(1.0)) == 2
    f.master_learned(1.0)
    f.confirm((6, S, C, SPORT, CPORT))  # inside: the server's answer, de-NATed
    f.confirm((6, N, S, CPORT, SPORT))  # outside: the client's request, NATed
    assert not any(c.forwarded for c in table.entries(1.0))
    assert all(desired(c, 1.0, False, require_forwarded=True) is None for c in table.entries(1.0))
    plain = ConntrackTable()
    g = ForwardingConfirmer(plain, two_segments=True)
    ping = tcp(0.0, PSH | ACK, 1000, 5000, src=C, dst=S, sport=CPORT, dport=SPORT, data=7)
    pong = tcp(0.01, PSH | ACK, 5000, 1007, src=S, dst=C, sport=SPORT, dport=CPORT, data=7)
    for p in (ping, pong):
        g.feed(p)
    g.master_learned(1.0)
    g.confirm((6, C, S, CPORT, SPORT))
    assert not plain.entries(1.0)[0].forwarded  # one direction: not yet
    g.confirm((6, S, C, SPORT, CPORT))
    (conn,) = plain.entries(1.0)
    assert conn.forwarded and conn.reply == (6, S, C, SPORT, CPORT)
    assert g.counters["identity-confirmed"] == 1


def test_blind_pairing_on_a_shared_key_pairs_nothing():
    """Two UDP flows through the NAT, answered from an unconnected socket (IP ID 0, same
    length), all read before the master was known: the answers' NAT-surviving key is
    shared by several tuples, so confirming an answer's tuple pairs nothing (and binds
    neither flow onto the other's tuples)."""
    table = ConntrackTable()
    f = ForwardingConfirmer(table, two_segments=True)
    ts = 0.0
    for port in (41000, 41001):
        for src, dst, sp, dp, ipid in (
            (C, S, port, 9000, port),  # the request going in (inside)
            (N, S, port, 9000, port),  # ... and out (outside), NATed
            (S, N, 9000, port, 0),  # the answer going in (outside)
            (S, C, 9000, port, 0),  # ... and out (inside), de-NATed
        ):
            ts += 0.001
            p = udp(ts, src=src, dst=dst, sport=sp, dport=dp)
            p.ipid = ipid
            f.feed(p)
    f.master_learned(ts)
    for port in (41000, 41001):
        f.confirm((17, S, C, 9000, port))
    assert f.counters["blind-paired"] == 0
    assert not any(c.forwarded for c in table.entries(ts))
    f.confirm((17, N, S, 41000, 9000))  # the first request's outside copy: its own key
    bound = [c for c in table.entries(ts) if c.forwarded]
    assert [(c.orig, c.reply) for c in bound] == [
        ((17, C, S, 41000, 9000), (17, S, N, 9000, 41000))
    ]


def test_blind_copy_pairs_with_an_ingress_copy_of_a_segment_already_known():
    """The inside segment's master is known first: the request's inside copy is tracked as
    going in; its outside copy, read before that segment's master was known, is paired
    with it once the master is known to have sent it."""
    table = ConntrackTable()
    f = ForwardingConfirmer(table, two_segments=True)
    ping = tcp(0.0, PSH | ACK, 1000, 5000, src=C, dst=S, sport=CPORT, dport=SPORT, data=7)
    ping.hw, ping.ipid = IN, 7
    out = tcp(0.0001, PSH | ACK, 1000, 5000, src=N, dst=S, sport=CPORT, dport=SPORT, data=7)
    out.ipid = 7  # no MAC verdict yet on the outside
    f.feed(ping)
    f.feed(out)
    assert len(table.entries(1.0)) == 2
    f.master_learned(0.5)
    f.confirm((6, N, S, CPORT, SPORT))
    (conn,) = table.entries(1.0)
    assert (conn.orig, conn.reply) == MASTER and conn.forwarded


def test_a_pair_that_cannot_be_bound_confirms_nothing():
    """The translated copy says the reply is server -> NAT address, but a confirmed entry
    holds that tuple already (another client's connection on that NAT port): the
    rebind fails and the entry keeps its guessed identity mapping, unconfirmed (it was
    confirmed all the same, and installed with the identity mapping)."""
    table = ConntrackTable()
    f = ForwardingConfirmer(table, two_segments=True)
    f.master_learned(0.0)
    for p in copies(segments(False, 1)[:2], 0.0, random.Random(0)):
        f.feed(p)  # the first client's connection, paired: (C -> S, S -> N)
    other = bytes([192, 0, 2, 11])
    t = 1.0
    for src, hw in ((other, IN), (N, OUT)):  # a second client, same port, same NAT port
        p = tcp(t, PSH | ACK, 7000, 9000, src=src, dst=S, sport=CPORT, dport=SPORT, data=7)
        p.hw, p.ipid = hw, 55
        f.feed(p)
        t += 0.0001
    second = table.get((6, other, S, CPORT, SPORT))
    assert second is not None
    conn = second[0]
    assert conn.reply == (6, S, other, SPORT, CPORT) and not conn.forwarded
    assert f.counters["nat-unbound"] == 1 and table.counters["nat-clash"] == 1
