"""Resource bounds of the tracker: ``ConntrackTable(max_entries=N)`` and early drop.

A hostile segment can carry a SYN flood from spoofed sources; the tracker must stay within
``max_entries`` like the kernel's ``nf_conntrack_max``, dropping unassured entries (closing
TCP ones first) and never an ASSURED, established one. ``python -m tests.unit.test_bounds [N]``
measures the full 1,000,000-source flood (time and tracemalloc peak).
"""

from __future__ import annotations

import resource
import sys
import time
import tracemalloc

from sniffover.conntrack.entry import IPS_ASSURED, Conn
from sniffover.conntrack.packet import Packet
from sniffover.conntrack.states import TCP_ESTABLISHED, TCP_TIME_WAIT
from sniffover.conntrack.table import ConntrackTable
from sniffover.conntrack.verdict import ACCEPT, INVALID
from tests.helpers import ACK, FIN, PSH, SYN, A, B, syn_opts, tcp, udp

FLOOD_SRC = 198  # spoofed sources: 198.51.100.0/24 x ports
SERVER = bytes([203, 0, 113, 80])


def establish(table: ConntrackTable, ts: float, sport: int, src: bytes = A) -> Conn:
    """A full handshake plus one data exchange: an ESTABLISHED, ASSURED entry."""
    kw = {"src": src, "dst": B, "sport": sport, "dport": 80}
    rkw = {"src": B, "dst": src, "sport": 80, "dport": sport}
    assert table.process(tcp(ts, SYN, 1000, opts=syn_opts(), **kw)) == ACCEPT
    assert table.process(tcp(ts, SYN | ACK, 5000, 1001, opts=syn_opts(), **rkw)) == ACCEPT
    assert table.process(tcp(ts, ACK, 1001, 5001, **kw)) == ACCEPT
    got = table.get((6, src, B, sport, 80))
    assert got is not None
    conn = got[0]
    assert conn.status & IPS_ASSURED and conn.tcp is not None
    assert conn.tcp.state == TCP_ESTABLISHED
    return conn


def flood_packet(i: int, ts: float) -> Packet:
    src = bytes([198, 51, 100, i & 0xFF])
    return Packet(
        ts, 2, 6, src, SERVER, 1024 + (i >> 8), 80, 0, SYN, i * 7919 & 0xFFFFFFFF, 0, 64240, b""
    )


def syn_flood(table: ConntrackTable, n: int, t0: float, limit: int) -> None:
    """``n`` SYNs from distinct spoofed sources, 10 us apart (no timeout passes)."""
    process = table.process
    for i in range(n):
        process(flood_packet(i, t0 + i * 1e-5))
        if len(table) > limit:
            raise AssertionError(f"table grew to {len(table)} > {limit} at packet {i}")


def test_syn_flood_stays_bounded_and_established_survive() -> None:
    limit = 10_000
    destroyed = {"n": 0, "assured": 0}

    def listener(ev: str, conn: Conn) -> None:
        if ev == "destroy":
            destroyed["n"] += 1
            destroyed["assured"] += bool(conn.status & IPS_ASSURED)

    table = ConntrackTable(max_entries=limit)
    keep = [establish(table, 1.0, 40000 + k) for k in range(500)]
    table.listener = listener
    n, traced = 200_000, 40_000
    t = time.perf_counter()
    syn_flood(table, n - traced, 2.0, limit)
    elapsed = time.perf_counter() - t
    # steady state, table full: memory does not grow with the flood (tracemalloc is slow,
    # so only the tail is traced)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    process = table.process
    for i in range(n - traced, n):
        process(flood_packet(i, 2.0 + i * 1e-5))
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    assert len(table) == limit
    assert table.counters["destroyed-early-drop"] == n + len(keep) - limit
    assert destroyed["n"] == table.counters["destroyed-early-drop"]
    assert destroyed["assured"] == 0
    assert table.counters["table-full"] == 0
    for conn in keep:
        assert table.get(conn.orig) == (conn, 0)
    # still tracked: data flows on an established connection
    sport = keep[0].orig[3]
    assert table.process(tcp(5.0, ACK | PSH, 1001, 5001, sport=sport, data=10)) == ACCEPT
    # the candidate queue does not grow with the flood
    assert table._early is not None and len(table._early) <= 2 * limit + 64
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert elapsed < 30, elapsed


def test_full_of_assured_refuses_new_entries() -> None:
    table = ConntrackTable(max_entries=50)
    keep = [establish(table, 1.0, 41000 + k) for k in range(50)]
    t = time.perf_counter()
    for i in range(20_000):
        assert table.process(flood_packet(i, 2.0 + i * 1e-5)) == INVALID
    assert time.perf_counter() - t < 5  # bounded work per refused entry
    assert table.counters["table-full"] == 20_000
    assert len(table) == 50
    assert all(table.get(c.orig) == (c, 0) for c in keep)
    assert table.counters["destroyed-early-drop"] == 0


def test_closing_tcp_preferred_and_destroy_event() -> None:
    events: list[tuple[str, Conn]] = []
    table = ConntrackTable(max_entries=3, listener=lambda ev, c: events.append((ev, c)))
    table.process(udp(1.0, sport=5000))  # unassured, oldest
    closing = establish(table, 1.1, 42000)
    # client closes, server acks and closes, client acks: TIME_WAIT, still ASSURED
    kw = {"sport": 42000, "dport": 80}
    rkw = {"src": B, "dst": A, "sport": 80, "dport": 42000}
    assert table.process(tcp(1.2, FIN | ACK, 1001, 5001, **kw)) == ACCEPT
    assert table.process(tcp(1.2, FIN | ACK, 5001, 1002, **rkw)) == ACCEPT
    assert table.process(tcp(1.2, ACK, 1002, 5002, **kw)) == ACCEPT
    assert closing.tcp is not None and closing.tcp.state == TCP_TIME_WAIT
    assert closing.status & IPS_ASSURED
    table.process(udp(1.3, sport=5001))
    assert len(table) == 3
    events.clear()
    assert table.process(udp(1.4, sport=5002)) == ACCEPT
    assert len(table) == 3
    assert ("destroy", closing) in events
    assert table.counters["destroyed-early-drop"] == 1
    # next: no closing entry left, the oldest unassured (UDP 5000) goes
    assert table.process(udp(1.5, sport=5003)) == ACCEPT
    assert table.get((17, A, B, 5000, 53)) is None
    assert table.get((17, A, B, 5001, 53)) is not None


def test_expired_entries_make_room_first() -> None:
    table = ConntrackTable(max_entries=2)
    table.process(udp(1.0, sport=6000))  # expires at 31
    establish(table, 1.0, 43000)
    assert table.process(udp(40.0, sport=6001)) == ACCEPT
    assert table.counters["destroyed-timeout"] == 1
    assert table.counters["destroyed-early-drop"] == 0
    assert len(table) == 2


def test_adopt_respects_the_bound() -> None:
    table = ConntrackTable(max_entries=1)
    establish(table, 1.0, 44000)
    primed = Conn((6, A, B, 44001, 80), (6, B, A, 80, 44001), 2.0)
    primed.status = IPS_ASSURED
    primed.expires = 100.0
    assert table.adopt(primed) is False
    assert table.counters["table-full"] == 1
    assert len(table) == 1


def test_churn_keeps_candidate_queue_compact() -> None:
    table = ConntrackTable(max_entries=1_000_000)
    for i in range(20_000):
        # SYN then RST from the server: the kernel deletes the entry at once
        table.process(tcp(1.0 + i * 1e-4, SYN, 1000, sport=20000 + i % 40000))
        table.process(
            tcp(1.0 + i * 1e-4, 0x14, 0, 1001, src=B, dst=A, sport=80, dport=20000 + i % 40000)
        )
    assert len(table) == 0
    assert table._early is not None and len(table._early) <= 64


def test_unbounded_by_default() -> None:
    table = ConntrackTable()
    assert table.max_entries is None
    syn_flood(table, 5_000, 1.0, 5_000)
    assert len(table) == 5_000


def main(n: int) -> None:
    limit = 10_000
    table = ConntrackTable(max_entries=limit)
    keep = [establish(table, 1.0, 40000 + k) for k in range(500)]
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t = time.perf_counter()
    syn_flood(table, n, 2.0, limit)
    elapsed = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    survivors = sum(table.get(c.orig) == (c, 0) for c in keep)
    print(
        f"{n} SYNs, max_entries={limit}: {elapsed:.1f} s (under tracemalloc), "
        f"table {len(table)}, established survivors {survivors}/{len(keep)}, "
        f"early drops {table.counters['destroyed-early-drop']}, "
        f"tracemalloc peak above baseline {peak / 2**20:.1f} MiB"
    )
    del table, keep
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    table2 = ConntrackTable(max_entries=limit)
    syn_flood(table2, n, 2.0, limit)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"without tracemalloc: {time.perf_counter() - t:.1f} s, "
        f"max RSS {rss1 / 1024:.0f} MiB (+{(rss1 - rss0) / 1024:.0f} MiB)"
    )
    t = time.perf_counter()
    syn_flood(ConntrackTable(), n, 2.0, n)
    print(f"unbounded table, same flood: {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
