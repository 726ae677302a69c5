"""Zones golden (issue 15 point 7): the control. Without the zone map the two zones'
identical flows fold into one entry each, so the replay cannot equal the kernel's table;
with it (``test_golden``) it does, zones included."""

from __future__ import annotations

from sniffover.conntrack.zones import ZoneMap
from sniffover.replay import replay
from tests.golden.compare import compare_tables
from tests.golden.test_golden import PCAPS, load_scenario

NAME = "zones_vlan_overlap"


def test_zones_golden_needs_the_zone_map():
    meta, kernel, timeouts = load_scenario(NAME)
    at = float(meta["dump_time"])
    assert {k.zone for k in kernel} == {1, 2} and len(kernel) == 6
    path = [str(PCAPS / f"{NAME}.pcap")]
    without = replay(path, at=at, timeouts=timeouts)
    cmp = compare_tables(kernel, without.entries(), at)
    assert not cmp.equal and len(cmp.missing) == 6 and len(without.entries()) == 3
    zoned = replay(path, at=at, timeouts=timeouts, zones=ZoneMap.parse(meta["zone_map"]))
    assert compare_tables(kernel, zoned.entries(), at).equal
