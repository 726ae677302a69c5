"""``sniffover bench``: the metric computations (no root)."""

from __future__ import annotations

import argparse

import pytest

from sniffover.bench import suite as benchsuite
from sniffover.bench.driver import _icmp_checksum, icmp_echo
from sniffover.bench.measure import coverage, parse_ct
from sniffover.bench.report import _summarize, format_markdown
from sniffover.bench.suite import BenchConfig

MASTER = """\
tcp      6 431999 ESTABLISHED src=192.0.2.10 dst=198.51.100.10 sport=40001 dport=8000 \
src=198.51.100.10 dst=192.0.2.10 sport=8000 dport=40001 [ASSURED] mark=0 use=1
tcp      6 431999 ESTABLISHED src=192.0.2.10 dst=198.51.100.10 sport=40002 dport=8000 \
src=198.51.100.10 dst=192.0.2.10 sport=8000 dport=40002 [ASSURED] mark=0 use=1
tcp      6 119 TIME_WAIT src=192.0.2.10 dst=198.51.100.10 sport=40003 dport=8000 \
src=198.51.100.10 dst=192.0.2.10 sport=8000 dport=40003 [ASSURED] mark=0 use=1
udp      17 29 src=192.0.2.10 dst=198.51.100.10 sport=50000 dport=9000 \
src=198.51.100.10 dst=192.0.2.10 sport=9000 dport=50000 mark=0 use=1
icmp     1 29 src=192.0.2.10 dst=198.51.100.10 type=8 code=0 id=20481 \
src=198.51.100.10 dst=192.0.2.10 type=0 code=0 id=20481 mark=0 use=1
tcp      6 431999 ESTABLISHED src=203.0.113.2 dst=203.0.113.1 sport=41000 dport=7445 \
src=203.0.113.1 dst=203.0.113.2 sport=7445 dport=41000 [ASSURED] mark=0 use=1
"""

# the standby: one ESTABLISHED in the same state, one in another state, TIME_WAIT missing,
# UDP and ICMP present, one entry the master does not have (-o extended, for the parser)
STANDBY = """\
ipv4     2 tcp      6 300 ESTABLISHED src=192.0.2.10 dst=198.51.100.10 sport=40001 \
dport=8000 src=198.51.100.10 dst=192.0.2.10 sport=8000 dport=40001 [ASSURED] mark=0 use=1
ipv4     2 tcp      6 120 FIN_WAIT src=192.0.2.10 dst=198.51.100.10 sport=40002 dport=8000 \
src=198.51.100.10 dst=192.0.2.10 sport=8000 dport=40002 [ASSURED] mark=0 use=1
ipv4     2 udp      17 29 src=192.0.2.10 dst=198.51.100.10 sport=50000 dport=9000 \
src=198.51.100.10 dst=192.0.2.10 sport=9000 dport=50000 mark=0 use=1
ipv4     2 icmp     1 29 src=192.0.2.10 dst=198.51.100.10 type=8 code=0 id=20481 \
src=198.51.100.10 dst=192.0.2.10 type=0 code=0 id=20481 mark=0 use=1
ipv4     2 tcp      6 300 ESTABLISHED src=192.0.2.11 dst=198.51.100.10 sport=40009 \
dport=8000 src=198.51.100.10 dst=192.0.2.11 sport=8000 dport=40009 [ASSURED] mark=0 use=1
conntrack v1.4.7 (conntrack-tools): 5 flow entries have been shown.
"""


def test_parse_ct_keys_and_states() -> None:
    t = parse_ct(MASTER)
    assert t[("tcp", "192.0.2.10", "198.51.100.10", 40003, 8000)] == "TIME_WAIT"
    assert t[("udp", "192.0.2.10", "198.51.100.10", 50000, 9000)] == ""
    assert t[("icmp", "192.0.2.10", "198.51.100.10", 20481, 8)] == ""
    assert len(t) == 6
    s = parse_ct(STANDBY)
    assert len(s) == 5 and s[("tcp", "192.0.2.10", "198.51.100.10", 40002, 8000)] == "FIN_WAIT"


def test_coverage_from_two_listings() -> None:
    c = coverage(MASTER, STANDBY)
    # the sync-link connection (a firewall address) is not forwarded traffic: 5 entries
    assert c["master"] == 5 and c["standby"] == 5
    assert c["coverage"] == pytest.approx(3 / 5)  # ESTABLISHED 40001, UDP, ICMP
    assert c["present"] == pytest.approx(4 / 5)  # + 40002 in the wrong state
    assert c["open_coverage"] == pytest.approx(3 / 4)  # without the TIME_WAIT entry
    assert c["established"] == 2 and c["established_coverage"] == pytest.approx(0.5)
    assert c["wrong_state"] == 1 and c["extra"] == 1
    assert c["by_proto"]["tcp"] == {"same": 1, "total": 3}
    assert coverage(MASTER, MASTER)["coverage"] == 1.0
    empty = coverage(MASTER, "")
    assert empty["coverage"] == 0.0 and empty["extra"] == 0
    assert coverage("", "")["coverage"] == 1.0


def test_icmp_echo_checksum_and_markdown() -> None:
    pkt = icmp_echo(0x5001, 7)
    assert _icmp_checksum(pkt) == 0  # a valid checksum sums to zero
    results = {
        "config": {"long": 1, "old_active": 1, "old_idle": 1, "udp": 1, "icmp": 1},
        "subjects": [
            {"subject": "cold", "error": "boom"},
            _summarize(
                {
                    "subject": "sniffover",
                    "probe": {
                        "probe": {
                            "long": {"ok": 3, "total": 4},
                            "old-idle": {"ok": 0, "total": 2},
                            "udp": {"ok": 1, "total": 1},
                        }
                    },
                    "coverage": coverage(MASTER, STANDBY),
                }
            ),
        ],
    }
    s = results["subjects"][1]["summary"]  # type: ignore[index]
    assert s["tcp"] == [3, 6] and s["old"] == [0, 2] and s["udp"] == [1, 1]
    md = format_markdown(results)
    assert "| cold | failed: boom |" in md and "| sniffover | — | 60.0% of 5 |" in md


def test_config_flags() -> None:
    p = argparse.ArgumentParser()
    benchsuite._add_arguments(p)
    cfg = benchsuite.config_from_args(
        p.parse_args(["--quick", "--long", "7", "--subjects", "cold,sniffover"])
    )
    assert cfg.long == 7 and cfg.subjects == ("cold", "sniffover")
    assert cfg.duration == BenchConfig.quick().duration
    with pytest.raises(ValueError):
        benchsuite.config_from_args(p.parse_args(["--subjects", "nope"]))
    assert p.parse_args(["micro"]).what == "micro"


def test_plots_without_matplotlib_are_svg(tmp_path) -> None:
    """A default install (no [bench] extra) still draws both plots, as SVG."""
    import xml.etree.ElementTree as ET

    from sniffover.bench.svgplots import svg_results

    curve = [
        {"t": 0.0, "coverage": 0.0, "established_coverage": 0.0},
        {"t": 0.5, "coverage": 0.8, "established_coverage": 1.0},
    ]
    summary = {"tcp": [3, 4], "old": [1, 2], "old_idle": [0, 1], "udp": [1, 1], "icmp": [1, 1]}
    results = {
        "subjects": [
            {"subject": "cold", "summary": dict(summary, tcp=[0, 4])},
            {"subject": "sniffover", "summary": summary, "cold_start_curve": curve},
        ]
    }
    written = svg_results(results, tmp_path)
    assert [p.name for p in written] == ["survival.svg", "coldstart.svg"]
    survival = ET.parse(written[0]).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r for r in survival.iter(f"{ns}rect") if r.find(f"{ns}title") is not None]
    assert len(bars) == 2 * 5  # subjects x kinds
    tcp_cold, tcp_sniffover = float(bars[0].get("height")), float(bars[5].get("height"))
    assert tcp_cold == 0.0 and tcp_sniffover > 0
    assert "sniffover tcp: 75%" in ET.tostring(survival, encoding="unicode")
    lines = list(ET.parse(written[1]).getroot().iter(f"{ns}polyline"))
    assert len(lines) == 2 and len(lines[0].get("points").split()) == 2
