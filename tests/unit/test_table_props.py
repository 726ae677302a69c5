"""Property tests: random packet streams never break the table's invariants."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sniffover.conntrack.entry import IPS_ASSURED, IPS_CONFIRMED, IPS_SEEN_REPLY
from sniffover.conntrack.packet import Packet
from sniffover.conntrack.table import ConntrackTable
from sniffover.conntrack.timeouts import Timeouts
from sniffover.conntrack.tuple import invert
from sniffover.conntrack.verdict import ACCEPT, IGNORE, INVALID, RELATED, UNTRACKED

HOSTS = [bytes([192, 0, 2, 1]), bytes([198, 51, 100, 1]), bytes([203, 0, 113, 9])]
PORTS = [80, 443, 40000, 40001, 53]
MAX_TIMEOUT = max(Timeouts().tcp + [600.0, 180.0, 120.0])

packets = st.builds(
    Packet,
    ts=st.floats(min_value=0, max_value=1000, allow_nan=False),
    family=st.just(2),
    proto=st.sampled_from([6, 6, 6, 17, 1, 47, 50, 132, 136]),
    src=st.sampled_from(HOSTS),
    dst=st.sampled_from(HOSTS),
    sport=st.sampled_from(PORTS),
    dport=st.one_of(st.sampled_from(PORTS), st.sampled_from([8 << 8, 0, 3 << 8 | 3, 13 << 8])),
    l4len=st.integers(0, 3000),
    tcp_flags=st.integers(0, 255),
    seq=st.integers(0, 2**32 - 1),
    ack=st.integers(0, 2**32 - 1),
    win=st.integers(0, 65535),
    tcp_opts=st.binary(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(packets, max_size=60))
def test_random_streams_keep_invariants(stream: list[Packet]) -> None:
    table = ConntrackTable()
    stream.sort(key=lambda p: p.ts)
    for pkt in stream:
        verdict = table.process(pkt)
        assert verdict in (ACCEPT, IGNORE, INVALID, RELATED, UNTRACKED)
        now = pkt.ts
        for conn in table.conns():
            if conn.orig != conn.reply:
                assert table.get(conn.orig) == (conn, 0)
            assert table.get(conn.reply) == (conn, 1)
            assert conn.reply == invert(conn.orig)
            assert conn.status & IPS_CONFIRMED
            assert not (conn.status & IPS_ASSURED and not conn.status & IPS_SEEN_REPLY)
            assert conn.expires - now <= MAX_TIMEOUT
            if conn.tcp is not None:
                assert 0 <= conn.tcp.state <= 9
                for side in conn.tcp.seen:
                    assert 0 <= side.td_end < 2**32 and 0 <= side.td_maxend < 2**32
                    assert 0 <= side.td_scale <= 14
        assert len(table) == sum(1 for _ in table.conns())


@settings(max_examples=100, deadline=None)
@given(st.lists(packets, max_size=40), st.floats(min_value=0, max_value=2000))
def test_listing_never_shows_expired_entries(stream: list[Packet], at: float) -> None:
    table = ConntrackTable()
    for pkt in sorted(stream, key=lambda p: p.ts):
        table.process(pkt)
    assert all(c.expires > at for c in table.entries(at))
    table.expire(at)
    assert all(c.expires > at for c in table.conns())
