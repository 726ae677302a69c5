"""Test kinds by directory: tests/{unit,golden,lab} mark their tests ``unit``, ``golden``, ``lab``.

The directory is the one place a test's kind is declared, so ``-m unit``, ``-m golden`` and
``-m lab`` partition the suite. A test marked with another directory's kind, or a test file
outside the three directories, fails collection (it would be selected twice, or by no run);
marking the directory's own kind again is harmless. The root/tools skip of lab tests is in
tests/lab/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
KINDS = ("unit", "golden", "lab")


def kind_of(path: Path) -> str | None:
    """The kind of a test file by its first directory under tests/ ("" when not in one of the
    three; None outside tests/, which this conftest does not judge)."""
    try:
        parts = path.resolve().relative_to(TESTS).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 and parts[0] in KINDS else ""


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by these marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = []
    for item in items:
        kind = kind_of(item.path)
        if kind is None:
            continue
        if not kind:
            wrong.append(f"{item.nodeid}: not under tests/unit, tests/golden or tests/lab")
            continue
        others = sorted({m.name for m in item.iter_markers() if m.name in KINDS} - {kind})
        if others:
            wrong.append(f"{item.nodeid}: marked {', '.join(others)} but lives in tests/{kind}")
        item.add_marker(getattr(pytest.mark, kind))
    if wrong:
        raise pytest.UsageError("test kind comes from the directory:\n  " + "\n  ".join(wrong))
