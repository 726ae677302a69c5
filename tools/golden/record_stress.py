"""Stress scenarios for the golden captures: where a conntrack re-implementation goes wrong.

Same lab and the same output as ``tools.golden.record`` (client, router, server
namespaces; tcpdump on the router's inside interface; the router kernel's
``conntrack -L -o extended`` as the expected table). These scenarios are
registered into ``recorder.SCENARIOS`` when this module is imported, so::

    python -m tools.golden.record_stress --out pcaps --only tcp_bulk_wscale ...

records them (``--list`` shows them). Each scenario is bounded (< ~15 s of traffic).
Losses are made with nft ``numgen random`` drops in the client's or the server's own
input chain, never on the router: the router's capture must see what its conntrack sees.
Where a timeout rule is under test the router's own (per-namespace) sysctls give the
pseudo-states distinct values (max_retrans 77 s, unacknowledged 250 s) so the golden
comparison can tell which rule picked the timeout.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import record as recorder
from .record import CLIENT4, SERVER4, SERVER6, Lab, Scenario


def _start_capture(lab: Lab, pcap: Path) -> None:
    """``Lab.start_capture`` with snaplen 256: bulk TCP through veth comes as 64 KiB GSO
    frames (the tracker reads lengths from the IP headers, so the cut payload does not
    matter; the recorder's 64 MiB capture buffer keeps tcpdump from dropping them)."""
    lab.start_capture(pcap, snaplen=256)


def _captured(run: Callable[[Lab], None]) -> Callable[[Lab, Path], None]:
    """A scenario that starts the capture itself (``precapture``) with ``_start_capture``."""

    def wrapped(lab: Lab, pcap: Path) -> None:
        _start_capture(lab, pcap)
        run(lab)

    wrapped.__name__ = run.__name__
    return wrapped


def _distinct_pseudo_timeouts(lab: Lab) -> None:
    """RETRANS and UNACK timeouts that differ from each other and from every state's."""
    lab.sysctl(lab.router, "net.netfilter.nf_conntrack_tcp_timeout_max_retrans", 77)
    lab.sysctl(lab.router, "net.netfilter.nf_conntrack_tcp_timeout_unacknowledged", 250)


def _client_rule(lab: Lab, rule: str) -> None:
    """A rule in the client's own input chain (its drops are invisible to the router)."""
    if not getattr(lab, "_stress_client_nft", False):
        lab.sh(
            lab.client,
            "nft",
            "-f",
            "-",
            stdin=(
                "table inet snfcli {\n chain input_filter {\n"
                "  type filter hook input priority 0; policy accept;\n }\n}\n"
            ),
        )
        lab._stress_client_nft = True  # type: ignore[attr-defined]
    lab.sh(lab.client, "nft", f"add rule inet snfcli input_filter {rule}")


def _client_rules_flush(lab: Lab) -> None:
    if getattr(lab, "_stress_client_nft", False):
        lab.sh(lab.client, "nft", "flush chain inet snfcli input_filter")


# --------------------------------------------------------------------------------------
# TCP
# --------------------------------------------------------------------------------------


def _bulk(lab: Lab, dst: str, up: int, down: int) -> None:
    # Different receive-buffer ceilings on both ends: different window scales each way
    lab.sysctl(lab.client, "net.ipv4.tcp_rmem", "4096 131072 33554432")
    lab.sysctl(lab.server, "net.ipv4.tcp_rmem", "4096 65536 1048576")
    # MTU-sized segments (no TSO/GSO super-frames): thousands of window updates to check
    for ns in (lab.client, lab.server):
        lab.sh(ns, "ethtool", "-K", recorder.HOST_IF, "tso", "off", "gso", "off", check=False)
    server = lab.spawn(
        lab.server,
        "bulk_server",
        {"host": SERVER6 if ":" in dst else SERVER4, "port": 8080, "up": up, "down": down},
        label="server",
    )
    server.expect("ready")
    client = lab.spawn(
        lab.client,
        "bulk_client",
        {"dst": dst, "port": 8080, "up": up, "down": down, "rcvbuf": 8 << 20},
        label="client",
    )
    client.expect("done", 15)
    server.expect("done", 5)
    time.sleep(0.5)  # last ACKs, then an idle, fully acknowledged connection


def sc_tcp_bulk_wscale(lab: Lab) -> None:
    _bulk(lab, SERVER4, 1 << 20, 3 << 20)


def sc_ipv6_tcp_bulk(lab: Lab) -> None:
    _bulk(lab, SERVER6, 1 << 20, 2 << 20)


def sc_tcp_retransmissions(lab: Lab) -> None:
    _distinct_pseudo_timeouts(lab)
    lab.echo_server(tcp=[(SERVER4, 8080)])
    # 20% random loss both ways (fast retransmits, SACK), then everything from the
    # client dropped: its last segment is retransmitted by RTO (0.2, 0.4, 0.8, 1.6 s ...)
    lab.server_rule(f"ip saddr {CLIENT4} tcp dport 8080 numgen random mod 100 < 20 drop")
    _client_rule(lab, f"ip saddr {SERVER4} tcp sport 8080 numgen random mod 100 < 20 drop")
    t_block = time.time() + 3.0
    client = lab.spawn(
        lab.client,
        "retrans_client",
        {"dst": SERVER4, "rounds": 30, "t_block": t_block},
        label="client",
    )
    client.expect("lossy", 12)
    lab.server_rules_flush()
    _client_rules_flush(lab)
    lab.server_rule(f"ip saddr {CLIENT4} tcp dport 8080 drop")
    client.expect("done", 8)
    time.sleep(max(0.0, t_block + 3.5 - time.time()))  # 0.2+0.4+0.8+1.6: 4 retransmissions


def sc_tcp_zero_window(lab: Lab) -> None:
    _distinct_pseudo_timeouts(lab)
    server = lab.spawn(lab.server, "zerowin_server", {"host": SERVER4, "secs": 6.0}, label="server")
    server.expect("ready")
    client = lab.spawn(lab.client, "zerowin_client", {"dst": SERVER4}, label="client")
    client.expect("done")
    server.expect("done", 10)


def sc_tcp_keepalive(lab: Lab) -> None:
    _distinct_pseudo_timeouts(lab)
    lab.echo_server(tcp=[(SERVER4, 8080)])
    lab.run_py(lab.client, "keepalive_client", {"dst": SERVER4, "idle": 5.5}, timeout=12)


def sc_tcp_rst_after_fin(lab: Lab) -> None:
    # a) client FIN, the server answers with an RST (abortive close, SO_LINGER 0)
    # b) server FIN, the client (with unread data) closes: RST instead of its FIN
    # c) client FIN acked, server sends more data, the closed client answers with RST
    server = lab.spawn(
        lab.server,
        "tcp_rst_after_fin_server",
        {"host": SERVER4},
        label="server",
    )
    server.expect("ready")
    lab.run_py(
        lab.client,
        "tcp_rst_after_fin_client",
        {"dst": SERVER4},
        timeout=12,
    )
    server.expect("done", 5)


def sc_tcp_close_while_data_in_flight(lab: Lab) -> None:
    # The server streams; the client closes mid-stream with unread data (RST), another
    # client half-closes while the server keeps streaming, a third shuts down both ways.
    server = lab.spawn(
        lab.server,
        "tcp_close_while_data_in_flight_server",
        {"host": SERVER4},
        label="server",
    )
    server.expect("ready")
    lab.run_py(
        lab.client,
        "tcp_close_while_data_in_flight_client",
        {"dst": SERVER4},
        timeout=12,
    )
    server.expect("done", 6)


def sc_tcp_many_short(lab: Lab) -> None:
    lab.echo_server(tcp=[(SERVER4, 8080)])
    lab.run_py(
        lab.client,
        "tcp_many_short_client",
        {"dst": SERVER4},
        timeout=14,
    )


def sc_tcp_reuse_after_rst(lab: Lab) -> None:
    # a) client aborts (RST) and reconnects at once from the same port
    # b) the server aborts (RST) and the client reconnects from the same port: the old
    #    entry has no CLOSE_INIT and the RST came the other way, so the new SYN is ignored
    #    and the SYN/ACK resynchronises the old entry
    server = lab.spawn(
        lab.server,
        "tcp_reuse_after_rst_server",
        {"host": SERVER4},
        label="server",
    )
    server.expect("ready")
    lab.run_py(
        lab.client,
        "tcp_reuse_after_rst_client",
        {"dst": SERVER4, "src": CLIENT4},
        timeout=12,
    )
    server.expect("done", 5)


def sc_tcp_syn_on_established(lab: Lab) -> None:
    # The client's abort RST is dropped in its own output chain, so the server still holds
    # the connection when the client reconnects from the same port: new ISN on an
    # ESTABLISHED entry (ignored SYN), the server's RFC 5961 challenge ACK, the client's
    # RST to it, then the SYN retransmission that reopens the entry.
    lab.echo_server(tcp=[(SERVER4, 8080)])
    lab.sh(
        lab.client,
        "nft",
        "-f",
        "-",
        stdin=(
            "table inet snfcliout {\n chain output_filter {\n"
            "  type filter hook output priority 0; policy accept;\n"
            "  tcp sport 40800 tcp flags & rst == rst drop\n }\n}\n"
        ),
    )
    client = lab.spawn(
        lab.client,
        "tcp_syn_on_established_client",
        {"dst": SERVER4, "src": CLIENT4, "t": time.time() + 1.5},
        label="client",
    )
    client.expect("aborted", 5)
    lab.sh(lab.client, "nft", "delete table inet snfcliout")
    client.expect("done", 8)
    time.sleep(0.3)


# --------------------------------------------------------------------------------------
# UDP / ICMP
# --------------------------------------------------------------------------------------


def sc_udp_many_flows(lab: Lab) -> None:
    lab.server_rule("udp dport 9998 drop")
    lab.echo_server(udp=[(SERVER4, 5300), (SERVER6, 5300)])
    lab.run_py(
        lab.client,
        "udp_many_flows_client",
        {"dst4": SERVER4, "dst6": SERVER6, "t0": time.time()},
        timeout=14,
    )


def sc_icmp_ttl_exceeded(lab: Lab) -> None:
    # Traceroute-like: UDP and echo requests with TTL 1 die at the router, which answers
    # with time-exceeded itself; then the same with TTL 2 (reaching the server), and
    # pings to the router's own inside address.
    lab.echo_server(udp=[(SERVER4, 5300)])
    lab.run_py(
        lab.client,
        "icmp_ttl_exceeded_client",
        {"dst": SERVER4, "dst6": SERVER6},
    )
    lab.ping("-c", "2", "-i", "0.2", "-W", "1", "-t", "1", SERVER4)
    lab.ping("-c", "2", "-i", "0.2", "-W", "1", recorder.ROUTER_IN4)


def sc_icmpv6_echo_many(lab: Lab) -> None:
    procs = [
        lab.spawn_cmd(
            lab.client,
            "ping",
            "-n",
            "-6",
            "-c",
            "5",
            "-i",
            "0.2",
            "-W",
            "1",
            SERVER6,
            label=f"ping{i}",
        )
        for i in range(6)
    ]
    procs.append(
        lab.spawn_cmd(
            lab.client,
            "ping",
            "-n",
            "-6",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            recorder.ROUTER_IN6,
            label="ping-router",
        )
    )
    procs.append(
        lab.spawn_cmd(
            lab.client,
            "ping",
            "-n",
            "-6",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "1",
            "-s",
            "3000",
            SERVER6,
            label="ping-frag",
        )
    )
    procs.append(
        lab.spawn_cmd(
            lab.client,
            "ping",
            "-n",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            "-s",
            "3000",
            SERVER4,
            label="ping-frag4",
        )
    )
    for p in procs:
        p.wait(10)


STRESS: tuple[Scenario, ...] = (
    Scenario(
        "tcp_bulk_wscale",
        "IPv4 TCP, 1 MiB up and 3 MiB down with window scaling "
        "both ways (different rmem ceilings), then idle.",
        sc_tcp_bulk_wscale,
    ),
    Scenario(
        "ipv6_tcp_bulk",
        "IPv6 TCP, 1 MiB up and 2 MiB down with window scaling, then idle.",
        sc_ipv6_tcp_bulk,
    ),
    Scenario(
        "tcp_retransmissions",
        "IPv4 TCP echo with 20% random loss both ways, then "
        "every client segment dropped at the server: RTO retransmissions; dumped with "
        "the loss on (router max_retrans 77 s, unacknowledged 250 s).",
        sc_tcp_retransmissions,
    ),
    Scenario(
        "tcp_zero_window",
        "IPv4 TCP: the client never reads (4 KiB rcvbuf), the "
        "server's sends fill the window: zero window and window probes.",
        sc_tcp_zero_window,
    ),
    Scenario(
        "tcp_keepalive",
        "IPv4 TCP idle for 5.5 s with keepalives every second (TCP_KEEPIDLE/INTVL 1).",
        sc_tcp_keepalive,
    ),
    Scenario(
        "tcp_rst_after_fin",
        "IPv4 TCP closes ending in RSTs: FIN answered by RST, "
        "RST from a close with unread data, RST to data after FIN.",
        sc_tcp_rst_after_fin,
    ),
    Scenario(
        "tcp_close_while_data_in_flight",
        "IPv4 TCP: server streams to three clients; "
        "one closes with unread data (RST), one half-closes, one shuts down both ways.",
        sc_tcp_close_while_data_in_flight,
    ),
    Scenario(
        "tcp_many_short",
        "200 short IPv4 TCP connections in a few seconds (every "
        "10th aborted with RST): TIME_WAIT and CLOSE entries.",
        sc_tcp_many_short,
    ),
    Scenario(
        "tcp_reuse_after_rst",
        "IPv4 TCP from fixed ports: client RST then reconnect; "
        "server RST then reconnect (resynchronised through the ignored SYN).",
        sc_tcp_reuse_after_rst,
    ),
    Scenario(
        "tcp_syn_on_established",
        "IPv4 TCP: the client's abort RST is lost, it reconnects from the same port: SYN "
        "with a new ISN on the ESTABLISHED entry, challenge ACK, RST, SYN retransmission.",
        sc_tcp_syn_on_established,
    ),
    Scenario(
        "udp_many_flows",
        "300 UDP flows (IPv4, every 7th IPv6), a fifth dropped at the "
        "server, a third sending again after 2.6 s (streams).",
        sc_udp_many_flows,
    ),
    Scenario(
        "icmp_ttl_exceeded",
        "UDP and echo with TTL 1 (time-exceeded from the router), "
        "TTL 2, an IPv6 hop limit 1 probe, pings to the router itself.",
        sc_icmp_ttl_exceeded,
    ),
    Scenario(
        "icmpv6_echo_many",
        "Six concurrent IPv6 pings, one to the router, fragmented IPv6 and IPv4 echoes.",
        sc_icmpv6_echo_many,
    ),
)

for _sc in STRESS:
    assert _sc.run is not None
    recorder.SCENARIOS.setdefault(
        _sc.name,
        Scenario(_sc.name, _sc.description, _captured(_sc.run), precapture=True),
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--only" not in argv and "--list" not in argv:
        argv += ["--only", *(sc.name for sc in STRESS)]
    return recorder.main(argv)


if __name__ == "__main__":
    sys.exit(main())
