"""Golden captures taken with ``tcpdump -i any`` on the router (Linux cooked, SLL2).

A capture on every interface of a router holds each forwarded packet twice: coming in
on one interface (SLL packet type "to us") and going out of another ("outgoing"),
translated if the router does NAT. These scenarios check that a replay of such a
capture still equals the router kernel's table: the copies are paired, tracked once,
and a translated pair gives the entry its NAT reply tuple (see ``conntrack.confirm``).

    python -m tools.golden.record_cooked --out pcaps
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import record as recorder
from .record import ROUTER_OUT4, Lab, Scenario

SNAT_RULES = f"""\
table ip snfrecnat {{
    chain postrouting_nat {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{recorder.OUTSIDE}" ip protocol {{ tcp, udp, icmp }} snat to {ROUTER_OUT4}
    }}
}}
"""


# Both families through one inet table: masquerade (SNAT to the outgoing interface's
# address) for everything leaving by the outside, IPv6 included; TCP and UDP ports and
# echo identifiers are remapped at random too, so the reply tuples differ in them as well.
MASQ46_RULES = f"""\
table inet snfrecnat {{
    chain postrouting_nat {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{recorder.OUTSIDE}" meta l4proto {{ tcp, udp, icmp, ipv6-icmp }} masquerade random
    }}
}}
"""

# Destination NAT: the client talks to addresses nobody has (VIP4/VIP6); the router
# rewrites them to the server's before routing.
VIP4, VIP6 = "203.0.113.10", "2001:db8:3::10"
DNAT46_RULES = f"""\
table inet snfrecnat {{
    chain prerouting_nat {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "{recorder.INSIDE}" ip daddr {VIP4} dnat ip to {recorder.SERVER4}
        iifname "{recorder.INSIDE}" ip6 daddr {VIP6} dnat ip6 to {recorder.SERVER6}
    }}
}}
"""


# with DNAT46_RULES: both addresses (and the client's port) rewritten on every packet
FULLNAT_SNAT = MASQ46_RULES.replace("table inet snfrecnat ", "table inet snfrecnat2 ")


def _mixed46(dst4: str, dst6: str) -> Callable[[Lab], None]:
    """mixed_many with a third of the TCP connections and half the UDP flows over IPv6
    (echo pings of both families included), aimed at ``dst4``/``dst6``."""

    def run(lab: Lab) -> None:
        lab.server_rule("udp dport 9998 drop")
        lab.echo_server(
            tcp=[(recorder.SERVER4, 8080), (recorder.SERVER6, 8080)],
            udp=[(recorder.SERVER4, 5300), (recorder.SERVER6, 5300)],
        )
        client = lab.spawn(
            lab.client,
            "mixed_many_client",
            {"dst4": dst4, "dst6": dst6, "v6_every": 3, "udp_v6_every": 2},
            label="client",
        )
        pings = [
            lab.spawn_cmd(lab.client, "ping", "-n", "-c", "6", "-i", "0.3", "-W", "1", dst4),
            lab.spawn_cmd(lab.client, "ping", "-n", "-6", "-c", "6", "-i", "0.3", "-W", "1", dst6),
        ]
        client.expect("done", 20)
        for p in pings:
            p.wait(10)

    return run


def _busy46(s4: str, s6: str) -> Callable[[Lab], None]:
    """Everything at once, both families, aimed at ``s4``/``s6``: the any_masq46 mix, 300
    UDP flows (every 7th over IPv6, a third of them streams), 200 short TCP connections to
    each address (every 10th aborted) and 8 concurrent pings (6 over IPv6)."""
    return lambda lab: _busy46_run(lab, s4, s6)


def _busy46_run(lab: Lab, s4: str, s6: str) -> None:
    server4, server6 = recorder.SERVER4, recorder.SERVER6
    lab.server_rule("udp dport 9998 drop")
    lab.echo_server(tcp=[(server4, 8080), (server6, 8080)], udp=[(server4, 5300), (server6, 5300)])
    args = {"dst4": s4, "dst6": s6, "v6_every": 3, "udp_v6_every": 2}
    procs = [
        lab.spawn(lab.client, "mixed_many_client", args, label="mixed"),
        lab.spawn(lab.client, "udp_many_flows_client", {**args, "t0": time.time()}, label="udp"),
        lab.spawn(lab.client, "tcp_many_short_client", {"dst": s4}, label="short4"),
        lab.spawn(lab.client, "tcp_many_short_client", {"dst": s6}, label="short6"),
    ]
    pings = [
        lab.spawn_cmd(lab.client, "ping", "-n", *fam, "-c", "8", "-i", "0.25", "-W", "1", dst)
        for fam, dst in [((), s4), ((), s4)] + [(("-6",), s6)] * 6
    ]
    for proc in procs:
        proc.expect("done", 25)
    for p in pings:
        p.wait(10)


def _any_rules(run: Callable[[Lab], None], rules: str) -> Callable[[Lab, Path], None]:
    def wrapped(lab: Lab, pcap: Path) -> None:
        lab.sh(lab.router, "nft", "-f", "-", stdin=rules)
        lab.start_capture(pcap, iface="any")
        run(lab)

    return wrapped


def _any(run: Callable[[Lab], None], nat: bool) -> Callable[[Lab, Path], None]:
    def wrapped(lab: Lab, pcap: Path) -> None:
        if nat:
            lab.sh(lab.router, "nft", "-f", "-", stdin=SNAT_RULES)
        lab.start_capture(pcap, iface="any")
        run(lab)

    return wrapped


ANY: tuple[Scenario, ...] = (
    Scenario(
        "any_multicast",
        "multicast_broadcast captured with tcpdump -i any on the router, plus the router's "
        "own multicast (VRRP-like advertisement, mDNS, SSDP, IPv4 and IPv6): its own goes "
        "out through OUTPUT and gets an entry, what arrives for groups it did not join not.",
        _any(recorder.sc_multicast_router_own, nat=False),
        precapture=True,
    ),
    Scenario(
        "any_mixed",
        "mixed_many captured with tcpdump -i any on the router: every forwarded packet twice "
        "(in and out), Linux cooked capture.",
        _any(recorder.sc_mixed_many, nat=False),
        precapture=True,
    ),
    Scenario(
        "any_snat",
        "mixed_many through a router that source-NATs everything leaving by the outside to "
        "its own address, captured with tcpdump -i any: each packet before and after NAT.",
        _any(recorder.sc_mixed_many, nat=True),
        precapture=True,
    ),
    Scenario(
        "any_masq46",
        "TCP (kept, closed, reset, refused), UDP (answered, dropped, port unreachable) and "
        "echo over IPv4 and IPv6 through a router that masquerades both families leaving by "
        "the outside (inet table; ports and echo ids remapped at random), captured with "
        "tcpdump -i any: each packet before and after NAT.",
        _any_rules(_mixed46(recorder.SERVER4, recorder.SERVER6), MASQ46_RULES),
        precapture=True,
    ),
    Scenario(
        "any_dnat46",
        f"The any_masq46 mix aimed at {VIP4} and {VIP6}, which the router destination-NATs "
        "to the server (inet table, prerouting), captured with tcpdump -i any.",
        _any_rules(_mixed46(VIP4, VIP6), DNAT46_RULES),
        precapture=True,
    ),
    Scenario(
        "any_fullnat46",
        f"The any_masq46 mix aimed at {VIP4} and {VIP6}, translated on both sides: DNAT to "
        "the server, then masquerade (random ports and ids) leaving by the outside, as a "
        "load balancer does; captured with tcpdump -i any.",
        _any_rules(_mixed46(VIP4, VIP6), DNAT46_RULES + FULLNAT_SNAT),
        precapture=True,
    ),
    Scenario(
        "any_masq46_busy",
        "A busy mix of both families through the any_masq46 router (masquerade, random "
        "ports and ids): its TCP/UDP/echo mix, 300 UDP flows, 400 short TCP connections and 8 "
        "pings at once, captured with tcpdump -i any (the NAT pairing accuracy figure).",
        _any_rules(_busy46(recorder.SERVER4, recorder.SERVER6), MASQ46_RULES),
        precapture=True,
    ),
    Scenario(
        "any_dnat46_busy",
        f"The any_masq46_busy mix aimed at {VIP4} and {VIP6}, which the router "
        "destination-NATs to the server, captured with tcpdump -i any.",
        _any_rules(_busy46(VIP4, VIP6), DNAT46_RULES),
        precapture=True,
    ),
)

for _sc in ANY:
    recorder.SCENARIOS.setdefault(_sc.name, _sc)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--only" not in argv and "--list" not in argv:
        argv += ["--only", *(sc.name for sc in ANY)]
    return recorder.main(argv)


if __name__ == "__main__":
    sys.exit(main())
