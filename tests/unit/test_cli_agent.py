"""The agent's command line: options, config file, one-line errors (no root needed)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sniffover.agent.config import CONFIG_KEYS, load_config, merged_options
from sniffover.cli import build_parser, main
from sniffover.errors import CliError

EXAMPLES = Path(__file__).resolve().parents[2] / "sniffover" / "examples"


def test_help_explains_every_option():
    text = build_parser().format_help()
    for name in CONFIG_KEYS:
        assert "--" + name.replace("_", "-") in text, name
    for command in ("replay", "ctl", "status", "demo"):
        assert command in text


def test_example_config_loads_and_flags_override(tmp_path):
    assert load_config(str(EXAMPLES / "sniffover.toml")) == {
        "iface": ["inside0"],
        "master_addr": ["192.0.2.2"],
    }
    cfg = tmp_path / "s.toml"
    cfg.write_text('iface = "eth7"\nflush-interval = 1\nmark = "0x10"\nlog_format = "json"\n')
    args = build_parser().parse_args(["--config", str(cfg), "--log-format", "text"])
    opts = merged_options(args)
    assert opts["iface"] == ["eth7"] and opts["flush_interval"] == 1.0 and opts["mark"] == 16
    assert opts["log_format"] == "text"  # the command line wins


@pytest.mark.parametrize(
    "text,needle",
    [("nosuch = 1\n", "unknown option"), ("zone = 'a'\n", "zone must be int"), ("[x\n", "config")],
)
def test_bad_config_is_one_clear_error(tmp_path, text, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(CliError, match=needle):
        load_config(str(cfg))


def run(*argv):
    return subprocess.run(
        [sys.executable, "-m", "sniffover.cli", *argv], capture_output=True, text=True, timeout=60
    )


def test_errors_are_one_line_and_nonzero(tmp_path):
    cases = [
        (["--iface", "nosuch0", "--no-install"], 1, "nosuch0"),
        (["--config", str(tmp_path / "missing.toml")], 1, "missing.toml"),
        (["--control", str(tmp_path / "none.sock"), "status"], 1, "none.sock"),
        (["status", "--control", str(tmp_path / "none.sock")], 1, "no sniffover agent"),
        (["ctl", "promote", "--control", str(tmp_path / "none.sock")], 1, "no sniffover agent"),
        (["--bogus"], 2, ""),
        ([], 2, "give --iface"),
    ]
    for argv, code, needle in cases:
        proc = run(*argv)
        assert proc.returncode == code, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr
        if needle:
            assert needle in proc.stderr and proc.stderr.strip().count("\n") == 0 or code == 2
    assert main([]) == 2


def test_notify_script_is_valid_shell():
    script = EXAMPLES / "keepalived-notify.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["sh", "-n", str(script)], check=True)


def test_options_parse_types():
    args = build_parser().parse_args(["-i", "a", "-i", "b", "--mark", "0x2a", "--zone", "3"])
    assert isinstance(args, argparse.Namespace)
    assert args.iface == ["a", "b"] and args.mark == 42 and args.zone == 3
