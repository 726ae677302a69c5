"""The one root/tools skip of the lab tests.

Every test under tests/lab needs root (it creates network namespaces, loads nftables rulesets
and writes conntrack tables inside them). The programs a test drives are declared where the
test is, with ``pytest.mark.requires("ip", "nft", ...)`` (module ``pytestmark`` or per test;
marks add up); a test whose programs are not all on PATH is skipped and the reason names the
missing ones.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parent


def lab_skip_reason(item: pytest.Item) -> str | None:
    """Why this lab test cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "lab test: needs root (network namespaces)"
    tools = dict.fromkeys(t for mark in item.iter_markers("requires") for t in mark.args)
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        return f"lab test: needs {', '.join(missing)} (not found on PATH)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A skip mark, as the per-file skipif marks before: the skip happens before any fixture
    # runs, and -rs names the test. This hook sees the session's items; judge only ours.
    for item in items:
        if item.path.resolve().is_relative_to(LAB):
            reason = lab_skip_reason(item)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))
