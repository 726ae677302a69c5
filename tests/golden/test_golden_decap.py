"""Golden captures as remote mirrors: each recorded capture wrapped (in tmp_path) in ERSPAN
I/II/III, GRE-TEB, VXLAN (IPv4 and IPv6 underlay) and TZSP must replay to the table of
the bare capture, which is the router kernel's own (tests/golden/test_golden.py). A
forged mirror (wrong source, session or VNI) installs nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from sniffover.conntrack.zones import ZoneMap
from sniffover.replay import replay
from tests.golden.compare import compare_tables
from tests.golden.test_golden import PCAPS, load_scenario
from tests.tunnels import MIRROR_SRC, cooked_to_ethernet, encapsulate, read_pcap, write_pcap

# mixed_many: TCP/UDP/ICMP over IPv4 and IPv6; vlan_tagged: 802.1Q tags inside the tunnel
# (with its zone rules); tcp_fragmented: IP fragments inside the tunnel
SCENARIOS = ["mixed_many", "vlan_tagged", "tcp_fragmented"]
KINDS = {
    "vxlan": "vxlan",
    "erspan1": "erspan",
    "erspan2": "erspan",
    "erspan3": "erspan",
    "erspan3o": "erspan",
    "gre": "gre",
    "tzsp": "tzsp",
}
SESSION = 300  # a VNI, an ERSPAN session id (10 bits) and a GRE key alike
FORGER = bytes([192, 0, 2, 99])


def _replay(name: str, path: Path, decap: dict | None):  # type: ignore[no-untyped-def]
    meta, kernel, timeouts = load_scenario(name)
    at = float(meta["dump_time"])
    zones = ZoneMap.parse(meta.get("zone_map", []))
    options = meta.get("replay", {})
    result = replay([str(path)], at=at, timeouts=timeouts, zones=zones, decap=decap, **options)
    return result, kernel, at


def _rows(result) -> list:  # type: ignore[no-untyped-def]
    return sorted((c.orig, c.reply, c.status, c.zone, c.tcp.state if c.tcp else -1)
                  for c in result.entries())  # fmt: skip


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_mirrored_capture_replays_to_the_kernel_table(name: str, kind: str, tmp_path: Path):
    path = tmp_path / f"{name}.{kind}.pcap"
    frames = encapsulate(PCAPS / f"{name}.pcap", path, kind, session=SESSION)
    bare, kernel, at = _replay(name, PCAPS / f"{name}.pcap", None)
    with_session = KINDS[kind] in ("vxlan", "gre") or kind in ("erspan2", "erspan3", "erspan3o")
    decap = {
        "mode": KINDS[kind],
        "sessions": [SESSION] if with_session else [],
        "sources": [MIRROR_SRC],
    }
    got, _, _ = _replay(name, path, decap)
    cmp = compare_tables(kernel, got.entries(), at)
    assert cmp.equal, f"{name} in {kind}:\n{cmp.report(at)}"
    assert _rows(got) == _rows(bare) and got.entries()
    # every frame was a mirrored one: the inner frames' skips are the bare capture's
    assert got.skipped == bare.skipped and got.packets == bare.packets == frames
    assert got.tunnel_dropped == 0


@pytest.mark.parametrize("kind", ["vxlan", "erspan3"])
def test_ipv6_underlay_and_auto(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "m.pcap"
    encapsulate(PCAPS / "mixed_many.pcap", path, kind, session=SESSION, v6=True)
    got, kernel, at = _replay("mixed_many", path, {"mode": "auto"})
    assert compare_tables(kernel, got.entries(), at).equal


def test_tunnel_loss_is_counted(tmp_path: Path) -> None:
    """Every 10th mirrored frame lost in an ERSPAN II tunnel: the sequence numbers tell."""
    src = tmp_path / "all.pcap"
    n = encapsulate(PCAPS / "mixed_many.pcap", src, "erspan2", session=SESSION)

    lossy = tmp_path / "lossy.pcap"
    kept = [f for i, f in enumerate(read_pcap(src)) if i % 10 != 5]
    write_pcap(lossy, kept)
    got, _, _ = _replay("mixed_many", lossy, {"mode": "erspan"})
    assert got.tunnel_dropped == n - len(kept) > 0


@pytest.mark.parametrize(
    "kind, decap, reason",
    [
        ("vxlan", {"mode": "vxlan", "sessions": [SESSION + 1]}, "mirror-foreign-session"),
        ("erspan2", {"mode": "erspan", "sessions": [SESSION + 1]}, "mirror-foreign-session"),
        ("erspan3", {"mode": "erspan", "sources": [FORGER]}, "mirror-foreign-source"),
        ("tzsp", {"mode": "tzsp", "sources": [FORGER]}, "mirror-foreign-source"),
        ("gre", {"mode": "vxlan"}, "not-mirrored"),  # another tunnel than the one configured
    ],
)  # fmt: skip
def test_forged_mirror_installs_nothing(kind: str, decap: dict, reason: str, tmp_path: Path):
    """A sender of fake mirror traffic (wrong source, session or VNI) puts nothing in the
    table: every frame is counted under its reason and dropped."""
    path = tmp_path / "forged.pcap"
    n = encapsulate(PCAPS / "mixed_many.pcap", path, kind, session=SESSION)
    got, _, _ = _replay("mixed_many", path, decap)
    assert got.entries() == [] and got.table.counters.get("created", 0) == 0
    assert dict(got.skipped) == {reason: n}


def test_bare_capture_with_decap_tracks_nothing() -> None:
    """--decap on a capture with no tunnel in it: the outer (here: all) traffic never
    creates a flow; without --decap the same file gives the kernel's table."""
    got, _, _ = _replay("mixed_many", PCAPS / "mixed_many.pcap", {"mode": "auto"})
    assert got.entries() == [] and set(got.skipped) == {"not-mirrored"}


# --- NAT through a mirror of the router's ports ---------------------------------------------
# The NAT goldens were captured on the router (tcpdump -i any, LINUX_SLL2): as a switch
# mirror of its ports would carry them, each frame gets its Ethernet header back
# (tests/tunnels.py: cooked_to_ethernet), then the tunnel. One mirror session carries both
# sides; the router's MACs pair each packet's copies before and after NAT.
NAT_SCENARIOS = {
    "any_snat": sorted(KINDS),  # every tunnel
    "any_masq46": ["vxlan", "erspan2"],  # IPv4 and IPv6 masquerade
    "any_fullnat46": ["erspan3o"],
    "ftp_snat": ["gre", "tzsp"],  # a helper's expectation, sequence adjustment
    "any_fragmented_snat": ["vxlan"],  # fragments before and after NAT
}


def _mirror_of_router(name: str, kind: str, tmp_path: Path) -> tuple[Path, list[bytes]]:
    frames, macs = cooked_to_ethernet(PCAPS / f"{name}.pcap")
    bare = tmp_path / f"{name}.eth.pcap"
    write_pcap(bare, frames)
    path = tmp_path / f"{name}.{kind}.pcap"
    encapsulate(bare, path, kind, session=SESSION)
    return path, sorted(macs)


@pytest.mark.parametrize(
    "name, kind", [(n, k) for n, kinds in NAT_SCENARIOS.items() for k in kinds]
)
def test_nat_router_mirror_replays_to_the_kernel_table(name: str, kind: str, tmp_path: Path):
    path, macs = _mirror_of_router(name, kind, tmp_path)
    meta, kernel, timeouts = load_scenario(name)
    at = float(meta["dump_time"])
    decap = {"mode": KINDS[kind], "sources": [MIRROR_SRC]}
    got = replay([str(path)], at=at, timeouts=timeouts, decap=decap, master_macs=macs)
    cmp = compare_tables(kernel, got.entries(), at)
    assert cmp.equal, f"{name} in {kind}:\n{cmp.report(at)}"


def test_nat_router_mirror_needs_the_pairing(tmp_path: Path) -> None:
    """Control: the same mirror without the router's MACs tracks every copy on its own and
    does not give the kernel's table (both sides of the NAT become flows)."""
    path, _ = _mirror_of_router("any_snat", "vxlan", tmp_path)
    meta, kernel, timeouts = load_scenario("any_snat")
    at = float(meta["dump_time"])
    got = replay([str(path)], at=at, timeouts=timeouts, decap={"mode": "vxlan"})
    assert not compare_tables(kernel, got.entries(), at).equal


def test_replay_cli_decap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sniffover.cli import main

    path, macs = _mirror_of_router("any_snat", "erspan2", tmp_path)
    opts = ["--sysctl-dir", str(tmp_path), "--stats", "--json"]
    assert main(["replay", *opts, str(PCAPS / "any_snat.pcap")]) == 0
    bare = capsys.readouterr().out
    mac_opts = [a for m in macs for a in ("--master-mac", m.hex(":"))]
    argv = ["replay", *opts, "--decap", "erspan", "--mirror-session", str(SESSION), *mac_opts]
    assert main([*argv, str(path)]) == 0
    import json

    got, want = json.loads(capsys.readouterr().out), json.loads(bare)
    assert got["entries"] == want["entries"] and got["stats"]["tunnel_dropped"] == 0
