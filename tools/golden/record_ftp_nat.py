"""Golden captures of FTP (and TFTP) through NAT, taken with ``tcpdump -i any`` on the router.

The router attaches the kernel's FTP helper to port 21 (nft ``ct helper``) and translates;
its NAT helper (``nf_nat_ftp``) rewrites the address in PORT / 227 to another length, so
the router keeps sequence adjustments for the control connection. ``conntrack -L`` does
not show those: ``record`` saves them beside the table (``<name>.seqadj``, read with a
ctnetlink dump in the router) and the golden test compares them with the replay's.

* ``ftp_snat``: client inside, source NAT to the router's outside address. Active
  transfers (PORT 192,0,2,1 becomes 198,51,100,254: five bytes longer, twice) and a
  passive one whose 227 the server writes with zero-padded numbers (the NAT helper
  writes them plainly: shorter), so both directions are adjusted.
* ``ftp_snat6``: the same over IPv6 (EPRT |2|2001:db8:1::1| becomes |2|2001:db8:2::fe|:
  one byte longer; EPSV carries no address).
* ``tftp_snat``: TFTP read requests through source NAT with the router's TFTP helper
  (``nf_nat_tftp``): one answered from a new port of the server (RELATED, translated back
  to the client), one left unanswered.
* ``ftp_dnat``: the server inside behind a port forward of the router's outside address;
  the client outside uses passive mode (227 192,0,2,1 becomes 198,51,100,254) and active.

    python -m tools.golden.record_ftp_nat --out pcaps
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import record as recorder
from .record import CLIENT4, CLIENT6, ROUTER_OUT4, ROUTER_OUT6, SERVER4, SERVER6, Lab, Scenario
from .record_cooked import SNAT_RULES

FTP_HELPER = """\
table inet snfrecftp {
    ct helper ftp-std {
        type "ftp" protocol tcp;
        l3proto inet;
    }
    chain prerouting_helper {
        type filter hook prerouting priority filter; policy accept;
        tcp dport 21 ct helper set "ftp-std"
    }
}
"""
DNAT_RULES = f"""\
table ip snfrecdnat {{
    chain prerouting_nat {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "{recorder.OUTSIDE}" ip daddr {ROUTER_OUT4} tcp dport 21 dnat to {CLIENT4}
    }}
}}
"""

SNAT6_RULES = f"""\
table ip6 snfrecnat6 {{
    chain postrouting_nat {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{recorder.OUTSIDE}" meta l4proto tcp snat to {ROUTER_OUT6}
    }}
}}
"""
TFTP_HELPER = """\
table inet snfrectftp {
    ct helper tftp-std {
        type "tftp" protocol udp;
        l3proto inet;
    }
    chain prerouting_helper {
        type filter hook prerouting priority filter; policy accept;
        udp dport 69 ct helper set "tftp-std"
    }
}
"""


def _tftp(lab: Lab, pcap: Path) -> None:
    lab.sh(lab.router, "nft", "-f", "-", stdin=TFTP_HELPER)
    lab.sh(lab.router, "nft", "-f", "-", stdin=SNAT_RULES)
    lab.start_capture(pcap, iface="any")
    lab.spawn(lab.server, "tftp_server", {"host": SERVER4}).expect("ready")
    lab.spawn(lab.client, "tftp_client", {"dst": SERVER4, "src": CLIENT4}).expect("done", 10)


def _ftp(
    rules: str, server: tuple[str, str, bool], client: tuple[str, str, str, list[str]]
) -> Callable[[Lab, Path], None]:
    """server = (namespace attribute, address, pad 227); client = (namespace attribute,
    server address it dials, its own address, steps)."""

    def run(lab: Lab, pcap: Path) -> None:
        lab.sh(lab.router, "nft", "-f", "-", stdin=FTP_HELPER)
        lab.sh(lab.router, "nft", "-f", "-", stdin=rules)
        lab.start_capture(pcap, iface="any")
        srv = lab.spawn(
            getattr(lab, server[0]), "ftp_server", {"host": server[1], "pad": server[2]}
        )
        srv.expect("ready")
        cl = lab.spawn(
            getattr(lab, client[0]),
            "ftp_client",
            {"dst": client[1], "src": client[2], "steps": client[3]},
            label="client",
        )
        cl.expect("done", 20)

    return run


FTP: tuple[Scenario, ...] = (
    Scenario(
        "tftp_snat",
        "TFTP through source NAT with the router's TFTP helper, tcpdump -i any: a read "
        "request answered from a new port (RELATED, translated), one unanswered.",
        _tftp,
        precapture=True,
    ),
    Scenario(
        "ftp_snat",
        "FTP through source NAT with the router's FTP helper, tcpdump -i any: PORT rewritten "
        "5 bytes longer (twice), a zero-padded 227 rewritten shorter; seq adjustments in "
        "ftp_snat.seqadj.",
        _ftp(
            SNAT_RULES,
            ("server", SERVER4, True),
            ("client", SERVER4, CLIENT4, ["port", "noop", "pasv", "noop", "port", "noop"]),
        ),
        precapture=True,
    ),
    Scenario(
        "ftp_snat6",
        "FTP over IPv6 through source NAT with the router's FTP helper, tcpdump -i any: "
        "EPRT rewritten 1 byte longer (twice), EPSV unchanged; seq adjustments in "
        "ftp_snat6.seqadj.",
        _ftp(
            SNAT6_RULES,
            ("server", SERVER6, False),
            ("client", SERVER6, CLIENT6, ["port", "noop", "pasv", "noop", "port", "noop"]),
        ),
        precapture=True,
    ),
    Scenario(
        "ftp_dnat",
        "FTP to a server behind a port forward (DNAT) with the router's FTP helper, tcpdump "
        "-i any: 227 rewritten 5 bytes longer (twice), PORT unchanged; seq adjustments in "
        "ftp_dnat.seqadj.",
        _ftp(
            DNAT_RULES,
            ("client", CLIENT4, False),
            ("server", ROUTER_OUT4, SERVER4, ["pasv", "noop", "port", "noop", "pasv", "noop"]),
        ),
        precapture=True,
    ),
)

for _sc in FTP:
    recorder.SCENARIOS.setdefault(_sc.name, _sc)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--only" not in argv and "--list" not in argv:
        argv += ["--only", *(sc.name for sc in FTP)]
    return recorder.main(argv)


if __name__ == "__main__":
    sys.exit(main())
