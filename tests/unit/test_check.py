"""``sniffover check``'s judgements on crafted sysfs/procfs trees and files (no root)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from sniffover.check import (
    HELPER_MODULES,
    Result,
    check_hash,
    check_helpers,
    check_iface,
    check_key,
    cmd_check,
)
from sniffover.errors import CliError


def test_missing_helper_fails_and_says_modprobe(tmp_path: Path) -> None:
    (tmp_path / HELPER_MODULES[0]).mkdir()
    r = check_helpers(str(tmp_path))
    assert r.ok is False and HELPER_MODULES[1] in r.detail
    assert r.advice.startswith("modprobe ") and HELPER_MODULES[1] in r.advice
    (tmp_path / HELPER_MODULES[1]).mkdir()
    assert check_helpers(str(tmp_path)).ok is True


def _sysctls(tmp_path: Path, buckets: int, cmax: int) -> str:
    (tmp_path / "nf_conntrack_buckets").write_text(f"{buckets}\n")
    (tmp_path / "nf_conntrack_max").write_text(f"{cmax}\n")
    return str(tmp_path)


def test_hash_sized_for_the_table(tmp_path: Path) -> None:
    d = _sysctls(tmp_path, 262144, 262144)
    assert check_hash(None, d).ok is True
    assert check_hash(2 * 262144, d).ok is True  # two per bucket: still fine
    small = check_hash(1_000_000, d)
    assert small.ok is False and "3.8 per bucket" in small.detail
    assert "500,000 buckets" in small.advice and "hashsize" in small.advice
    assert check_hash(None, _sysctls(tmp_path, 65536, 1 << 20)).ok is False


def test_iface_missing_or_down(tmp_path: Path) -> None:
    assert check_iface("eth9", net_dir=str(tmp_path)).detail.startswith("no such interface")
    (tmp_path / "eth0").mkdir()
    (tmp_path / "eth0" / "flags").write_text("0x1002\n")  # BROADCAST|MULTICAST, not UP
    r = check_iface("eth0", net_dir=str(tmp_path))
    assert r.ok is False and "down" in r.detail and r.advice == "ip link set eth0 up"


def test_key_file_mode(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    key.chmod(0o644)
    bad = check_key(str(key))
    assert bad.ok is False and "chmod 600" in bad.advice
    key.chmod(0o600)
    assert check_key(str(key)).ok is True
    assert check_key(str(tmp_path / "none")).ok is False


def test_lines_say_what_to_do() -> None:
    assert Result("x", False, "broken", "fix it").line() == "FAIL x: broken -> fix it"
    assert Result("x", True, "fine", "unused").line() == "ok   x: fine"
    assert Result("x", None, "shown").line() == "info x: shown"


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_flows", 0), ("listen_seconds", -1.0), ("timeout", 0.0), ("master_mac", "02:00:zz")],
)
def test_bad_arguments_are_one_line_errors(field: str, value: object) -> None:
    args = argparse.Namespace(
        iface=[],
        max_flows=None,
        key_file=None,
        prime_from=None,
        listen_seconds=0.0,
        master_mac=None,
        timeout=10.0,
        json=False,
    )
    setattr(args, field, value)
    with pytest.raises(CliError) as info:
        cmd_check(args)
    assert "\n" not in str(info.value)
