"""Golden scenarios for the kernel's edge cases (issue 15 point 8): SCTP with a bad CRC32c,
TCP fragmented in flight, probes with TTL / hop limit 1.

Same lab and output as ``tools.golden.record`` (the router kernel's table is the expected
result); the scenarios register into ``recorder.SCENARIOS`` on import, so::

    python -m tools.golden.record_edges --out pcaps [--tag WORD] [--only NAME ...]

records them (all of this module's by default; ``--list`` shows every scenario).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from sniffover.lab import netns
from sniffover.lab.frames import (
    SC_COOKIE_ACK,
    sc_abort,
    sc_data,
    sc_heartbeat,
    sc_init,
    sc_init_ack,
    sc_sack,
    sc_shutdown,
)

from . import record as recorder
from .record import (
    CLIENT4,
    HOST_IF,
    INSIDE,
    OUTSIDE,
    ROUTER_IN4,
    ROUTER_IN6,
    ROUTER_OUT6,
    SERVER4,
    SERVER6,
    Lab,
    RecorderError,
    Scenario,
    SctpAssoc,
    sctp_run,
)
from .record_cooked import _any

# --------------------------------------------------------------------------------------
# SCTP with a bad CRC32c
# --------------------------------------------------------------------------------------


def _bad(step: tuple[str, str, bytes]) -> tuple[str, str, bytes]:
    """The same packet with its CRC32c (bytes 8-11 of the common header) inverted."""
    side, dst, pkt = step
    return side, dst, pkt[:8] + bytes(b ^ 0xFF for b in pkt[8:12]) + pkt[12:]


def sc_sctp_bad_crc(lab: Lab) -> None:
    a = SctpAssoc(40051, 5000, 0x51515151, 0x52525252)
    b = SctpAssoc(40052, 5000, 0x53535353, 0x54545454)
    c = SctpAssoc(40053, 5000, 0x55555555, 0x56565656, v6=True)
    d = SctpAssoc(40054, 5000, 0x57575757, 0x58585858)
    steps: list[tuple[str, str, bytes] | float] = [
        _bad(b.c(sc_init(b.tag_c), vtag=0)),  # b: only a bad INIT: no entry
        *a.handshake(),
        *c.handshake(),
        d.c(sc_init(d.tag_c), vtag=0),  # d: INIT, then a bad INIT_ACK: stays CLOSED
        _bad(d.s(sc_init_ack(d.tag_s))),
        2.5,  # so a refresh by a bad packet would show in the timeouts
        _bad(a.c(sc_shutdown(5000))),  # would be SHUTDOWN_SENT
        _bad(a.s(sc_abort())),  # would close it
        _bad(a.c(sc_data(1001))),  # would refresh ESTABLISHED
        _bad(c.c(sc_abort())),  # IPv6: would close it
        _bad(c.s(sc_heartbeat())),  # would refresh
        a.c(sc_data(1002)),  # good ones among the bad: a is refreshed, c is not
        a.s(sc_sack(1002)),
        _bad(a.c(SC_COOKIE_ACK)),
    ]
    sctp_run(lab, steps)


# --------------------------------------------------------------------------------------
# TCP fragmented in flight
# --------------------------------------------------------------------------------------

FAR4, FAR_GW4, FAR_NET4 = "203.0.113.1", "203.0.113.254", "203.0.113.0/24"
CLIENT_NET6 = "2001:db8:1::/64"
SMALL_MTU = 1280  # the client <-> router link; IPv6's minimum, so IPv6 still works on it


def _far_client(lab: Lab) -> str:
    """A host behind the client namespace, which becomes a router with a small MTU towards
    the real one: the far host's full-size segments (DF cleared) are fragmented there, in
    flight, before the capture point."""
    far = lab.client[:-2] + "-f"
    try:
        lab.created.append(netns.create(far))
    except netns.NetnsError as exc:
        raise RecorderError(str(exc)) from exc
    lab.sh(None, "ip", "-n", lab.client, "link", "add", "far", "type", "veth", "peer", "name",
           HOST_IF, "netns", far)  # fmt: skip
    lab.sh(None, "ip", "-n", far, "addr", "add", f"{FAR4}/24", "dev", HOST_IF)
    lab.sh(None, "ip", "-n", lab.client, "addr", "add", f"{FAR_GW4}/24", "dev", "far")
    for ns, dev in ((far, HOST_IF), (lab.client, "far")):
        lab.sh(None, "ip", "-n", ns, "link", "set", dev, "up")
    lab.sh(None, "ip", "-n", far, "route", "add", "default", "via", FAR_GW4)
    lab.sh(None, "ip", "-n", lab.router, "route", "add", FAR_NET4, "via", CLIENT4)
    # IPv6 routers never fragment: the server fragments its IPv6 replies for the small link
    lab.sh(None, "ip", "-n", lab.server, "-6", "route", "add", CLIENT_NET6, "via", ROUTER_OUT6,
           "mtu", str(SMALL_MTU))  # fmt: skip
    lab.sysctl(lab.client, "net.ipv4.ip_forward", 1)
    for ns, dev in ((lab.client, HOST_IF), (lab.router, INSIDE)):
        lab.sh(None, "ip", "-n", ns, "link", "set", dev, "mtu", str(SMALL_MTU))
    return far


def sc_tcp_fragmented(lab: Lab) -> None:
    far = _far_client(lab)
    lab.echo_server(udp=[(SERVER4, 5300), (SERVER6, 5300)])
    # 2896 bytes = two full 1448-byte segments: each round ends with a fragmented segment
    # and its ACK, which only fits the window if the whole segment was counted
    n = 2896
    server = lab.spawn(
        lab.server, "frag_server", {"host": SERVER4, "port": 8085, "n": n}, label="server"
    )
    server.expect("ready")
    lab.run_py(far, "frag_client", {"tcp": [SERVER4], "port": 8085, "n": n})
    lab.run_py(lab.client, "frag_client", {"udp": [SERVER4, SERVER6], "udp_n": 3000})


# --------------------------------------------------------------------------------------
# TTL / hop limit 1
# --------------------------------------------------------------------------------------


def sc_ttl_probes(lab: Lab) -> None:
    lab.echo_server(udp=[(SERVER4, 5300)])
    lab.run_py(
        lab.client,
        "ttl_probe_client",
        {"dst": SERVER4, "dst6": SERVER6, "router": ROUTER_IN4, "router6": ROUTER_IN6},
        timeout=20,
    )
    lab.ping("-6", "-c", "2", "-i", "0.2", "-W", "1", "-t", "1", SERVER6)


def sc_ttl_forwarded(lab: Lab, pcap: Path) -> None:
    # Captured on the router's OUTSIDE: the client's TTL-2 traffic leaves the router with
    # TTL 1 (forwarded, confirmed), its TTL-1 probes never show; the server's own TTL-1
    # probes towards the client die at the router, whose time-exceeded goes out here.
    lab.start_capture(pcap, iface=OUTSIDE)
    lab.echo_server(tcp=[(SERVER4, 8080), (SERVER6, 8080)], udp=[(SERVER4, 5300), (SERVER6, 5300)])
    args = {"echo": [SERVER4, SERVER6], "ttl": 2, "dst": SERVER4, "burst": 3}
    lab.run_py(lab.client, "ttl_hops_client", args)
    lab.run_py(lab.server, "ttl_hops_client", {"ttl": 1, "dst": CLIENT4, "burst": 10})


EDGES: tuple[Scenario, ...] = (
    Scenario(
        "sctp_bad_crc",
        "SCTP with bad CRC32c among good packets: a lone bad INIT, bad SHUTDOWN/ABORT/DATA/"
        "COOKIE_ACK on an established association (IPv4 and IPv6), a bad INIT_ACK.",
        sc_sctp_bad_crc,
    ),
    Scenario(
        "tcp_fragmented",
        "IPv4 TCP with DF cleared through a 1280-byte link before the router: 2 x 2896 bytes "
        "each way fragmented in flight (both directions), left open; UDP 3000-byte "
        "datagrams fragmented by the sender, IPv4 and IPv6.",
        sc_tcp_fragmented,
    ),
    Scenario(
        "ttl_probes",
        "TCP SYNs with TTL / hop limit 1 (IPv4, IPv6), a burst of TTL-1 UDP probes beyond "
        "the router's ICMP rate limit (IPv4, IPv6), TTL 1 to the router's own addresses, "
        "IPv6 echo with hop limit 1, one plain UDP exchange.",
        sc_ttl_probes,
    ),
    Scenario(
        "any_fragmented",
        "tcp_fragmented captured with tcpdump -i any on the router: each datagram in "
        "fragments on the inside and whole on the outside (or the other way).",
        _any(sc_tcp_fragmented, nat=False),
        precapture=True,
    ),
    Scenario(
        "any_fragmented_snat",
        "any_fragmented through a router that source-NATs IPv4 to its outside address.",
        _any(sc_tcp_fragmented, nat=True),
        precapture=True,
    ),
    Scenario(
        "ttl_forwarded",
        "Captured on the router's outside link: UDP and TCP with TTL / hop limit 2 from the "
        "client (they leave the router with 1; v4, v6), the client's TTL-1 probes (never "
        "seen there), 10 TTL-1 UDP probes from the server (time exceeded for the first).",
        sc_ttl_forwarded,
        precapture=True,
    ),
)

for _sc in EDGES:
    recorder.SCENARIOS.setdefault(_sc.name, _sc)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--only" not in argv and "--list" not in argv:
        argv += ["--only", *(sc.name for sc in EDGES)]
    return recorder.main(argv)


if __name__ == "__main__":
    sys.exit(main())
