"""Lab test of the golden-capture recorder: one quick scenario in real namespaces."""

from __future__ import annotations

import json
import subprocess
import time

import dpkt
import pytest

from sniffover.conntrack.listing import parse_listing

# ping: the icmp_echo scenario recorded here pings from the client namespace
pytestmark = pytest.mark.requires("ip", "nft", "conntrack", "ping", "tcpdump")


def _snfrec_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.startswith("snfrec-")]


def test_record_icmp_echo(tmp_path) -> None:
    from tools.golden.record import record

    before = set(_snfrec_namespaces())
    t0 = time.monotonic()
    pcap = record("icmp_echo", tmp_path)
    assert time.monotonic() - t0 < 20

    assert pcap == tmp_path / "icmp_echo.pcap"
    with pcap.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        frames = list(reader)
    echoes = 0
    for _ts, buf in frames:
        ip = dpkt.ethernet.Ethernet(buf).data
        if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.icmp.ICMP):
            echoes += ip.data.type in (0, 8)
    assert echoes == 12  # two pings of three echoes, request and reply each

    entries = parse_listing((tmp_path / "icmp_echo.conntrack").read_text())
    assert len(entries) == 2
    assert {e.proto for e in entries} == {1}
    assert all(not e.unreplied for e in entries)

    meta = json.loads((tmp_path / "icmp_echo.json").read_text())
    assert meta["scenario"] == "icmp_echo"
    assert isinstance(meta["dump_time"], float)
    assert abs(meta["dump_time"] - time.time()) < 60
    assert meta["router_sysctls"]["nf_conntrack_tcp_loose"] == "1"
    assert "nf_conntrack_icmp_timeout" in meta["router_sysctls"]

    assert set(_snfrec_namespaces()) <= before  # ours are gone
