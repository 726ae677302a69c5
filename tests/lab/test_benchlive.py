"""Smoke tests of the live benchmark's plumbing (tiny sizes; speed is not judged here)."""

from __future__ import annotations

import pytest

from sniffover.bench import live as benchlive
from sniffover.lab.hub import list_netns

pytestmark = pytest.mark.requires("ip", "conntrack", "tcpreplay")


@pytest.fixture(autouse=True)
def no_leftover_namespaces():
    yield
    assert not [n for n in list_netns() if n.startswith(benchlive.PREFIX)]


def test_install_puts_entries_in_the_kernel():
    r = benchlive.bench_install(entries=300, runs=2)
    assert r["kernel_counts"] == [300, 300]
    assert r["installer_counters"].get("created") == 300
    assert len(r["rates"]) == 2 and all(rate > 0 for rate in r["rates"])


def test_capture_receives_and_tracks_every_frame(tmp_path):
    r = benchlive.bench_capture(rates=[20_000], packets=3_000, flows=200, directory=str(tmp_path))
    (step,) = r["steps"]
    assert step["tcpreplay_sent"] == 3_000
    assert step["received"] == 3_000
    assert step["flows_tracked"] == 200
    assert step["verdicts"][0] == 3_000  # all ACCEPT: tracked, not skipped
    assert step["pcap_dropped"] == 0 and step["lossless"]
    assert r["max_lossless_pps"] == 20_000


def test_lag_collects_a_sample_per_handshake():
    r = benchlive.bench_lag(flows=40, rate=200)
    assert r["samples"] == 40 and r["missing"] == 0
    assert r["kernel_count"] == 40
    assert 0 < r["median_ms"] <= r["p99_ms"] < 5_000


def test_percentile():
    values = [float(i) for i in range(1, 101)]
    assert benchlive.percentile(values, 50) == 50.0
    assert benchlive.percentile(values, 99) == 99.0
    assert benchlive.percentile([7.0], 99) == 7.0


def test_capture_vxlan_tracks_the_same_frames_through_decapsulation(tmp_path):
    """The VXLAN sweep's receiver reads the tunnel as ``--decap vxlan`` does: every inner
    frame tracked, the same flows as the bare mix, nothing dropped by the decapsulator."""
    # enough frames for the receiver's CPU time to be measurable (getrusage counts in
    # scheduler ticks: a compiled receiver reads 3,000 frames in about one)
    r = benchlive.bench_capture_vxlan(rates=[40_000], packets=20_000, directory=str(tmp_path))
    (bare,), (vxlan,) = r["bare"]["steps"], r["vxlan"]["steps"]
    assert bare["tcpreplay_sent"] == vxlan["tcpreplay_sent"] == 20_000
    assert vxlan["received"] == bare["received"] > 19_500, (bare, vxlan)
    assert vxlan["flows_tracked"] == bare["flows_tracked"] > 0
    assert vxlan["verdicts"] == bare["verdicts"]
    assert not [k for k in vxlan["skipped"] if "decap" in k], vxlan["skipped"]
    assert bare["lossless"] and vxlan["lossless"] and r["lossless_up_to_ratio"] == 1.0
    assert r["vxlan"]["capacity_pps"] > 0 and r["bare"]["lossless_sent_pps"] > 0
