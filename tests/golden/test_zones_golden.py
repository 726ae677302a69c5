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


def test_directional_golden_needs_the_direction():
    """``ct original zone set`` with per-zone SNAT (``zones_directional_snat``): only the map
    with ``/orig`` gives the kernel's table; without a map the zones' flows fold together,
    and with zones for both tuples the untagged replies (zone 0) find nothing."""
    name = "zones_directional_snat"
    meta, kernel, timeouts = load_scenario(name)
    at = float(meta["dump_time"])
    assert {(k.zone, k.zone_dir) for k in kernel} == {(1, 1), (2, 1)} and len(kernel) == 6
    path = [str(PCAPS / f"{name}.pcap")]
    for rules in ([], ["vlan:100=1", "vlan:200=2"], meta["zone_map"]):
        got = replay(path, at=at, timeouts=timeouts, zones=ZoneMap.parse(rules))
        cmp = compare_tables(kernel, got.entries(), at)
        assert cmp.equal == (rules == meta["zone_map"]), (rules, cmp.report(at))
    assert meta["zone_map"] == ["vlan:100=1/orig", "vlan:200=2/orig"]
