"""The shipped systemd units pass `systemd-analyze verify` (no warning) and match the install."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sniffover.cli import build_parser
from sniffover.manpage import render

EXAMPLES = Path(__file__).resolve().parents[2] / "sniffover" / "examples"
INSTALLED = "/usr/local/sbin/sniffover"  # install.sh's link


def units() -> list[Path]:
    return sorted(EXAMPLES.glob("*.service"))


def test_units_exec_the_installed_command() -> None:
    install = (Path(__file__).resolve().parents[2] / "install.sh").read_text()
    assert f'ln -sf "$prefix/bin/sniffover" {INSTALLED}' in install
    assert len(units()) >= 2  # the standby agent and the master's serve
    for unit in units():
        execs = [ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")]
        assert execs and all(ln.startswith(f"ExecStart={INSTALLED} ") for ln in execs), unit


@pytest.mark.parametrize("unit", units(), ids=lambda p: p.name)
def test_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    # verify insists that the binary exists: point it at one that does, change nothing else
    text = unit.read_text().replace(INSTALLED, shutil.which("true") or "/bin/true")
    copy = tmp_path / unit.name
    copy.write_text(text)
    # Documentation=man:sniffover(8): verify runs man, which finds the generated page
    (tmp_path / "man" / "man8").mkdir(parents=True)
    (tmp_path / "man" / "man8" / "sniffover.8").write_text(render(build_parser()))
    env = dict(os.environ, MANPATH=str(tmp_path / "man"))
    r = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, env=env
    )
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stderr


def test_man_page_has_every_option_and_command() -> None:
    parser = build_parser()
    page = render(parser)
    assert page.startswith(".TH SNIFFOVER 8 ")
    for action in parser._actions:
        for opt in action.option_strings:
            assert f"\\fB{opt}\\fR" in page, opt
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                assert f".SS {name}\n" in page, name
                for a in sub._actions:
                    for opt in a.option_strings:
                        assert f"\\fB{opt}\\fR" in page, (name, opt)
    man = shutil.which("man")
    if man is not None:  # and groff renders it without a warning
        r = subprocess.run(
            [man, "--warnings", "-l", "-"], input=page, capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0 and "SNIFFOVER(8)" in r.stdout and not r.stderr.strip(), r.stderr


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["sniffover", "ct"], ["ctl"]),
        (["sniffover", "ctl", "pro"], ["promote"]),
        (["sniffover", "check", "--li"], ["--listen-seconds"]),
        (["sniffover", "--master"], ["--master-mac", "--master-addr"]),
        (["sniffover", "--iface", "eth0", "serve", "--k"], ["--key-file"]),
    ],
)
def test_bash_completion_from_the_parser(words: list[str], expected: list[str]) -> None:
    from sniffover.completion import render

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not installed")
    script = render(build_parser())
    line = " ".join(f"'{w}'" for w in words)
    probe = f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _sniffover; "
    probe += 'printf "%s\\n" "${COMPREPLY[@]}"'
    r = subprocess.run([bash, "-c", probe], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and not r.stderr, r.stderr
    assert r.stdout.split() == expected
