"""Golden tests: replay each recorded capture and compare with the kernel's own table.

Every ``pcaps/<name>.pcap`` was recorded on a router namespace running
nf_conntrack (``python -m tools.golden.record``); beside it ``<name>.conntrack``
is that kernel's ``conntrack -L -o extended`` and ``<name>.json`` the dump time
and the router's sysctls; ``<name>.seqadj``, where the router had NAT sequence
adjustments (FTP through NAT), its CTA_SEQ_ADJ_* read from a ctnetlink dump. The
expected result is only ever the kernel's output.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sniffover.conntrack.listing import parse_listing
from sniffover.conntrack.snapshot import format_seqadj, tuple_key
from sniffover.conntrack.timeouts import Timeouts
from sniffover.conntrack.zones import ZoneMap
from sniffover.replay import replay
from tests.golden.compare import compare_tables

PCAPS = Path(__file__).resolve().parents[2] / "pcaps"
SCENARIOS = sorted(p.stem for p in PCAPS.glob("*.json") if (PCAPS / f"{p.stem}.pcap").exists())


def load_scenario(name: str) -> tuple[dict, list, Timeouts]:
    meta = json.loads((PCAPS / f"{name}.json").read_text())
    kernel = parse_listing((PCAPS / f"{name}.conntrack").read_text())
    return meta, kernel, Timeouts.from_sysctl(meta.get("router_sysctls", {}))


def test_there_are_golden_captures() -> None:
    assert len(SCENARIOS) >= 10, f"expected the recorded scenarios in {PCAPS}"


@pytest.mark.parametrize("name", SCENARIOS)
def test_capture_is_complete(name: str) -> None:
    """A capture that lost packets is no oracle: the kernel saw what the pcap does not."""
    meta = json.loads((PCAPS / f"{name}.json").read_text())
    assert meta.get("tcpdump", {}).get("dropped_by_kernel", 0) == 0, meta.get("tcpdump")


@pytest.mark.parametrize("name", SCENARIOS)
def test_replay_matches_kernel_table(name: str) -> None:
    meta, kernel, timeouts = load_scenario(name)
    at = float(meta["dump_time"])
    # the router's configuration the tracker is told about (tools/golden/record.py Scenario)
    options = meta.get("replay", {})
    zones = ZoneMap.parse(meta.get("zone_map", []))  # recorded with the router's zone rules
    result = replay([str(PCAPS / f"{name}.pcap")], at=at, timeouts=timeouts, zones=zones, **options)
    cmp = compare_tables(kernel, result.entries(), at)
    assert cmp.equal, f"{name}: {meta.get('description', '')}\n{cmp.report(at)}"


SEQADJ = [n for n in SCENARIOS if (PCAPS / f"{n}.seqadj").exists()]


def test_there_are_seqadj_captures() -> None:
    assert len(SEQADJ) >= 2, f"expected the FTP-through-NAT captures in {PCAPS}"


@pytest.mark.parametrize("name", SEQADJ)
def test_replay_matches_kernel_seqadj(name: str) -> None:
    """The router's sequence adjustments (both directions) reconstructed exactly."""
    meta, _kernel, timeouts = load_scenario(name)
    at = float(meta["dump_time"])
    result = replay([str(PCAPS / f"{name}.pcap")], at=at, timeouts=timeouts)
    ours = sorted(
        [tuple_key(c.orig), format_seqadj(c.seqadj.values())]
        for c in result.entries()
        if c.seqadj is not None
    )
    kernel = json.loads((PCAPS / f"{name}.seqadj").read_text())
    assert kernel and ours == kernel
