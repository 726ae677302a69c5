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
