"""A switch mirror that delivers every frame twice (its way in mirrored on one port, its
way out on another): the golden captures with each frame doubled, replayed with the
deduplication, give the kernel's own table. The control: without it, a doubled FIN moves
the tracker on (FIN_WAIT -> LAST_ACK, as the kernel does for a retransmitted FIN) and the
half-closed connection ends in TIME_WAIT where the kernel has CLOSE_WAIT."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from sniffover.conntrack.zones import ZoneMap
from sniffover.replay import replay
from tests.golden.compare import compare_tables
from tests.golden.test_golden import PCAPS, SCENARIOS, load_scenario

# one of a kind each: plain Ethernet TCP/UDP/ICMP, cooked captures paired by the confirmer
# (NAT, IPv6), helpers, SCTP, fragments, VLAN, and the one doubling breaks
DOUBLED = [
    "tcp_half_close",
    "tcp_retransmissions",
    "mixed_many",
    "any_snat",
    "any_masq46",
    "ftp_snat",
    "tftp_snat",
    "sctp_shutdown",
    "tcp_fragmented",
    "vlan_tagged",
]


def doubled(src: Path, dst: Path) -> int:
    """``src`` (a classic pcap) with every record written twice; returns the frames."""
    data = src.read_bytes()
    magic = data[:4]
    assert magic in (
        b"\xd4\xc3\xb2\xa1",
        b"\xa1\xb2\xc3\xd4",
        b"\x4d\x3c\xb2\xa1",
        b"\xa1\xb2\x3c\x4d",
    )
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    out = [data[:24]]
    off, n = 24, 0
    while off + 16 <= len(data):
        incl = struct.unpack_from(endian + "I", data, off + 8)[0]
        rec = data[off : off + 16 + incl]
        out += (rec, rec)
        off += 16 + incl
        n += 1
    dst.write_bytes(b"".join(out))
    return n


def replay_doubled(name: str, tmp_path: Path, dedup: bool):
    meta, kernel, timeouts = load_scenario(name)
    path = tmp_path / f"{name}.pcap"
    frames = doubled(PCAPS / f"{name}.pcap", path)
    at = float(meta["dump_time"])
    zones = ZoneMap.parse(meta.get("zone_map", []))
    options = meta.get("replay", {})
    result = replay([str(path)], at=at, timeouts=timeouts, zones=zones, dedup=dedup, **options)
    return meta, compare_tables(kernel, result.entries(), at), result, frames


def test_the_doubled_scenarios_exist() -> None:
    assert set(DOUBLED) <= set(SCENARIOS)


@pytest.mark.parametrize("name", DOUBLED)
def test_doubled_capture_deduplicated_matches_kernel_table(name: str, tmp_path: Path) -> None:
    meta, cmp, result, frames = replay_doubled(name, tmp_path, dedup=True)
    assert cmp.equal, f"{name}: {meta.get('description', '')}\n{cmp.report(result.at)}"
    assert result.skipped["duplicate"] == frames, result.skipped  # every copy recognised


def test_control_doubled_capture_without_dedup_differs(tmp_path: Path) -> None:
    meta, cmp, result, _ = replay_doubled("tcp_half_close", tmp_path, dedup=False)
    assert not cmp.equal
    assert any("TIME_WAIT != kernel CLOSE_WAIT" in d for d in cmp.different), cmp.report(result.at)


def test_undoubled_captures_are_unchanged_by_dedup() -> None:
    """Nothing in a real router's capture is a repeated frame (retransmissions included)."""
    for name in DOUBLED:
        meta, kernel, timeouts = load_scenario(name)
        at = float(meta["dump_time"])
        zones = ZoneMap.parse(meta.get("zone_map", []))
        path = str(PCAPS / f"{name}.pcap")
        result = replay(
            [path], at=at, timeouts=timeouts, zones=zones, dedup=True, **meta.get("replay", {})
        )
        assert result.skipped["duplicate"] == 0, name
        assert compare_tables(kernel, result.entries(), at).equal, name
