"""Smoke tests of the prime benchmarks' plumbing (tiny sizes; speed is not judged here)."""

from __future__ import annotations

import os

import pytest

from sniffover.bench import prime
from sniffover.lab.hub import list_netns

pytestmark = pytest.mark.requires("ip", "conntrack")


@pytest.fixture(autouse=True)
def no_leftover_namespaces():
    yield
    mine = (f"snfprime-{os.getpid()}-", f"snfprime-snfaud-{os.getpid()}-")  # the audit's tag
    assert not [n for n in list_netns() if n.startswith(mine)]


def test_agent_bench_primes_the_standby_kernel():
    (row,) = prime.bench_agent([600])
    assert row["entries"] == 600 and row["installed"] == 600  # the standby kernel's count
    assert row["start_to_primed_s"] > 0 and row["agent_rss_mb"].get("peak", 0) > 0
    assert "600 entries" in row["agent_log"][0] and "600 entries" in row["master_log"][0]


def test_install_load_bench_commits_every_step():
    rows = prime.bench_install_load(size=400, fillers=1)
    assert [r["others"] for r in rows] == [0, 400]
    assert all(r["committed"] == 400 and r["seconds"] > 0 for r in rows)


def test_audit_bench_measures_both_sides():
    (row,) = prime.bench([500], audit=True, tag="snfaud-")
    assert row["entries"] == 500 and row["audit_differences"] == 0  # a table against itself
    assert row["audit_server_cpu_s"] > 0 and row["audit_compare_s"] >= 0
