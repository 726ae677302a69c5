"""The one root/tools skip of the lab tests.

Every test under tests/lab needs root (it creates network namespaces, loads nftables rulesets
and writes conntrack tables inside them). The programs a test drives are declared where the
test is, with ``pytest.mark.requires("ip", "nft", ...)`` (module ``pytestmark`` or per test;
marks add up); a test whose programs are not all on PATH is skipped and the reason names the
missing ones. The skip runs before any fixture, so no namespace is made for a skipped test.
"""

from __future__ import annotations

import os
import shutil

import pytest


def lab_skip_reason(item: pytest.Item) -> str | None:
    """Why this lab test cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "lab test: needs root (network namespaces)"
    tools = dict.fromkeys(t for mark in item.iter_markers("requires") for t in mark.args)
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        return f"lab test: needs {', '.join(missing)} (not found on PATH)"
    return None


@pytest.hookimpl(tryfirst=True)  # before fixtures are set up
def pytest_runtest_setup(item: pytest.Item) -> None:
    reason = lab_skip_reason(item)
    if reason is not None:
        pytest.skip(reason)
