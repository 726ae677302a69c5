"""``sniffover bench``: a tiny lab run (root)."""

from __future__ import annotations

import shutil

import pytest

from sniffover.bench import suite as benchsuite
from sniffover.bench.report import write_results
from sniffover.bench.suite import BenchConfig

# conntrackd is optional: without it the suite runs without that subject
pytestmark = pytest.mark.requires("ip", "nft", "conntrack")


def test_tiny_suite_cold_loses_sniffover_keeps(tmp_path) -> None:
    subjects = ["cold", "sniffover"]
    if shutil.which("conntrackd"):
        subjects.append("conntrackd")
    cfg = BenchConfig(
        subjects=tuple(subjects),
        long=8,
        old_active=3,
        old_idle=3,
        udp=2,
        icmp=1,
        churn=4.0,
        duration=2.0,
        cold_window=1.0,
        probe_timeout=4.0,
    )
    lines: list[str] = []
    results = benchsuite.run_suite(cfg, lines.append)
    by = {r["subject"]: r for r in results["subjects"]}
    assert all("summary" in r for r in by.values()), [r.get("error") for r in by.values()]
    cold, sniff = by["cold"]["summary"], by["sniffover"]["summary"]
    # the control: an empty standby loses every long-lived TCP connection
    assert cold["tcp"][1] == 14 and cold["tcp"][0] == 0, by["cold"]["probe"]
    assert cold["udp"] == [2, 2]
    # sniffover keeps every connection it saw traffic of (the idle old ones it cannot know)
    assert sniff["tcp"] == [11, 14], by["sniffover"]["probe"]
    assert sniff["established_coverage"] == pytest.approx(11 / 14, abs=1e-3)
    assert sniff["wrong_state"] == 0
    if "conntrackd" in by:
        assert by["conntrackd"]["summary"]["tcp"] == [14, 14], by["conntrackd"]["probe"]
    assert any("standby up" in line for line in lines)
    written = write_results(results, tmp_path, lines.append)
    assert (tmp_path / "results.json").exists() and (tmp_path / "results.md") in written
    assert {p.stem for p in written if p.suffix in (".png", ".svg")} == {"survival", "coldstart"}
