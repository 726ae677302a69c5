"""Issue 13 point 5: every option typed and range-checked by one step shared by the command
line and the TOML file; a bad value is one line on stderr and exit 2, never a traceback."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sniffover.agent.config import (
    CONFIG_KEYS,
    agent_config,
    check_value,
    load_config,
    merged_options,
    option_type,
)
from sniffover.cli import build_parser, main
from sniffover.conntrack.timeouts import Timeouts
from sniffover.errors import CliError, UsageError


def usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """``main(argv)``: exit 2 and one line on stderr (returned), nothing on stdout."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    assert code == 2, (argv, err)
    assert err.count("\n") == 1 and err.endswith("\n"), (argv, err)
    assert "Traceback" not in err and not out, (argv, err)
    return err


BAD_CLI = [
    (["--zone", "70000"], "--zone"),
    (["--zone", "-1"], "--zone"),
    (["--zone", "99999999999"], "--zone"),
    (["--zone", "x"], "--zone"),
    (["--mark", "zz"], "--mark"),
    (["--mark", "0x1ffffffff"], "--mark"),
    (["--mark", "-1"], "--mark"),
    (["--flush-interval", "-1"], "--flush-interval"),
    (["--flush-interval", "0"], "--flush-interval"),
    (["--flush-interval", "nan"], "--flush-interval"),
    (["--flush-interval", "inf"], "--flush-interval"),
    (["--snaplen", "0"], "--snaplen"),
    (["--snaplen", "-1"], "--snaplen"),
    (["--snaplen", "70000"], "--snaplen"),
    (["--ring-mb", "-1"], "--ring-mb"),
    (["--ring-mb", "100000000"], "--ring-mb"),
    (["--max-flows", "-5"], "--max-flows"),
    (["--max-flows", "0"], "--max-flows"),
    (["--prime-timeout", "nan"], "--prime-timeout"),
    (["--prime-timeout", "0"], "--prime-timeout"),
    (["--pickup-sample", "0"], "--pickup-sample"),
    (["--pickup-sample", "10"], "--pickup-sample"),
    (["--pickup-sample", "512"], "--pickup-sample"),
    (["--stats-interval", "0"], "--stats-interval"),
    (["--warmup", "-1"], "--warmup"),
    (["--sysctl-dir", "/nonexistent"], "--sysctl-dir"),
    (["--master-mac", "zz"], "--master-mac"),
    (["--master-mac", "1:2:3"], "--master-mac"),
    (["--master-mac", "100:0:0:0:0:1"], "--master-mac"),
    (["--metrics", ":http"], "--metrics"),
    (["--metrics", "192.0.2.1"], "--metrics"),
    (["--metrics", ":0"], "--metrics"),
    (["--iface", "a/b"], "--iface"),
    (["--iface", ""], "--iface"),
    (["--iface", "sixteen-chars-xx"], "--iface"),
    (["--user", "a b"], "--user"),
    (["--control", "a\nb"], "--control"),
    (["--log-level", "loud"], "--log-level"),
    (["--confirm", "maybe"], "--confirm"),
    (["--prefilter", "some"], "--prefilter"),
    (["--prime-from", "203.0.113.1"], "--key-file"),  # a serve source without its key
    (["--prime-from", "fw1:7445"], "--key-file"),
    (["--prime-from", "203.0.113.1:99999", "--key-file", "k"], "--prime-from"),
    (["--prime-from", "ssh://-oProxyCommand=touch x"], "--prime-from"),
    (["--prime-from", "ssh://-lroot@fw1"], "--prime-from"),
    (["--prime-from", "ssh://root@-fw1"], "--prime-from"),
    (["--prime-from", "ssh://ro ot@fw1"], "--prime-from"),
    (["--prime-from", "ssh://fw1\tx"], "--prime-from"),
    (["--prime-from", "ssh://root@"], "--prime-from"),
]


@pytest.mark.parametrize("argv,needle", BAD_CLI, ids=[" ".join(a) for a, _ in BAD_CLI])
def test_bad_command_line_values_are_one_line_exit_2(capsys, argv, needle):
    err = usage_error(capsys, ["--iface", "eth0", *argv])
    assert needle in err


BAD_TOML = [
    ("master_mac = [1]", "master_mac"),
    ('master_mac = ["zz"]', "master_mac"),
    ('mark = "zz"', "mark"),
    ("mark = 4294967296", "mark"),
    ("ring_mb = 100000000", "ring_mb"),
    ("zone = 70000", "zone"),
    ("zone = 99999999999", "zone"),
    ("zone = true", "zone"),
    ("zone = 1.5", "zone"),
    ("flush_interval = -1", "flush_interval"),
    ("flush-interval = nan", "flush-interval"),
    ("prime_timeout = inf", "prime_timeout"),
    ("pickup_sample = 0", "pickup_sample"),
    ("stats_interval = 0", "stats_interval"),
    ("snaplen = 0", "snaplen"),
    ("max_flows = -5", "max_flows"),
    ('log_level = "loud"', "log_level"),
    ('log_format = "xml"', "log_format"),
    ('confirm = "x"', "confirm"),
    ('prefilter = "x"', "prefilter"),
    ("no_install = 1", "no_install"),
    ("iface = [1]", "iface"),
    ("iface = [[]]", "iface"),
    ('iface = ["a b"]', "iface"),
    ("iface = {a = 1}", "iface"),
    ('metrics = ":http"', "metrics"),
    ('sysctl_dir = "/nonexistent"', "sysctl_dir"),
    ('prime_from = "203.0.113.1"', "--key-file"),
    ('prime_from = "ssh://-oProxyCommand=x"', "prime_from"),
    ("[zone]\nx = 1", "zone"),
    ("zone = ", "config"),
]


@pytest.mark.parametrize("text,needle", BAD_TOML, ids=[t for t, _ in BAD_TOML])
def test_bad_toml_values_are_one_line_exit_2(capsys, tmp_path, text, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(("" if text.startswith("iface") else 'iface = "eth0"\n') + text + "\n")
    err = usage_error(capsys, ["--config", str(cfg)])
    assert needle in err and str(cfg) in err or needle == "--key-file" and needle in err


def test_non_utf8_config_is_one_line_exit_2(capsys, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_bytes(b'iface = "\xff\xfe"\n')
    assert "UTF-8" in usage_error(capsys, ["--config", str(cfg)])


def test_a_missing_config_file_stays_exit_1(tmp_path):
    with pytest.raises(CliError) as exc:
        load_config(str(tmp_path / "missing.toml"))
    assert exc.value.code == 1 and not isinstance(exc.value, UsageError)


def test_good_values_at_the_bounds_are_accepted(tmp_path):
    cfg = tmp_path / "ok.toml"
    cfg.write_text(
        'iface = "eth0"\nzone = 65535\nmark = "0xffffffff"\nflush_interval = 1\n'
        "pickup_sample = 256\nsnaplen = 128\nring_mb = 2048\nwarmup = 0\n"
        'master_mac = "02-00-5E-00-53-01"\nmetrics = "[::]:9477"\nlog_level = "debug"\n'
        'prime_from = "ssh://root@fw1:2222"\n'
    )
    opts = merged_options(build_parser().parse_args(["--config", str(cfg), "--zone", "0"]))
    cfg_ = agent_config(opts, Timeouts())
    assert cfg_.zone == 0 and cfg_.mark == 0xFFFFFFFF and cfg_.flush_interval == 1.0
    assert cfg_.pickup_sample == 256 and cfg_.metrics_listen == "[::]:9477"
    for source, extra in [
        ("203.0.113.1", ["--key-file", "/etc/sniffover/key"]),
        ("[2001:db8::1]:7445", ["--key-file", "k"]),
        ("/var/lib/sniffover/dump", []),
        ("file:dump", []),
        ("ssh://fw1", []),
    ]:
        args = build_parser().parse_args(["-i", "eth0", "--prime-from", source, *extra])
        assert merged_options(args)["prime_from"] == source


def test_one_check_for_both_sources():
    """The argparse type and the TOML loader are the same step: same verdicts."""
    for name, text, value in [
        ("zone", "70000", 70000),
        ("mark", "0x100000000", "0x100000000"),
        ("pickup_sample", "3", 3),
        ("flush_interval", "-0.5", -0.5),
    ]:
        with pytest.raises(ValueError) as from_toml:
            check_value(name, value)
        with pytest.raises(Exception) as from_cli:
            option_type(name)(text)
        assert str(from_toml.value) in str(from_cli.value)


def test_errors_through_the_console_script(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("master_mac = [1]\n")
    for argv in (["--config", str(cfg)], ["--iface", "eth0", "--zone", "70000"]):
        proc = subprocess.run(
            [sys.executable, "-m", "sniffover.cli", *argv],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "Traceback" not in proc.stderr


# --- property: nothing but the one-line error, whatever the input --------------------

KEYS = st.sampled_from(sorted(CONFIG_KEYS) + ["iface", "zone", "nosuch", "master-mac"])
SCALARS = (
    st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.text(max_size=30)
    | st.sampled_from(["0x10", "zz", "eth0", ":9477", "ssh://-x", "02:00:00:00:00:01", "1e400"])
)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=3)
)


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        out = "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in v)
        return f'"{out}"'  # a surrogate makes it invalid TOML: the loader must say so too
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    assert isinstance(v, dict)
    return "{" + ", ".join(f'"{k}" = {toml_value(x)}' for k, x in v.items()) + "}"


def check_outcome(path: str, argv: list[str]) -> None:
    try:
        opts = merged_options(build_parser().parse_args(["--config", path, *argv]))
    except UsageError as exc:
        assert "\n" not in str(exc) and str(exc), exc
        return
    if not opts.get("iface"):
        return  # run_agent stops there: "give --iface"
    cfg = agent_config(opts, Timeouts())  # what was accepted builds a config
    assert 0 <= cfg.zone <= 65535 and 0 < cfg.flush_interval <= 60
    assert cfg.mark is None or 0 <= cfg.mark <= 0xFFFFFFFF
    assert math.isfinite(cfg.prime_timeout) and 1 <= cfg.pickup_sample <= 256
    assert 1 <= cfg.ring_mb <= 2048 and all(isinstance(i, str) for i in cfg.ifaces)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.dictionaries(KEYS, VALUES, max_size=6))
def test_random_toml_documents_end_in_the_one_line_error(doc):
    text = "\n".join(f'"{k}" = {toml_value(v)}' for k, v in doc.items()) + "\n"
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.toml")
        Path(path).write_text(text, errors="surrogatepass")
        check_outcome(path, [])


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_as_config_end_in_the_one_line_error(data):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.toml")
        Path(path).write_bytes(data)
        check_outcome(path, [])


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(sorted(CONFIG_KEYS)), text=st.text(max_size=40) | SCALARS.map(str))
def test_random_option_text_is_accepted_or_one_argparse_error(name, text):
    from argparse import ArgumentTypeError

    try:
        option_type(name)(text)
    except ArgumentTypeError as exc:
        assert "\n" not in str(exc)


# --- ssh:// and --metrics ----------------------------------------------------------


def ssh_argv(monkeypatch, source: str) -> list[str] | None:
    """The argv ``_fetch_ssh`` would run for ``source`` (None: refused before ssh runs)."""
    import subprocess as sp

    from sniffover.errors import PrimeError
    from sniffover.prime import client

    seen: list[list[str]] = []

    def fake_run(cmd, **kw):
        seen.append(list(cmd))
        return sp.CompletedProcess(cmd, 0, b"", b"")

    monkeypatch.setattr(client.shutil, "which", lambda name: "/usr/bin/ssh")
    monkeypatch.setattr(client.subprocess, "run", fake_run)
    try:
        client._fetch_ssh(source, 3.0, ["-o", "StrictHostKeyChecking=yes"])
    except PrimeError:
        return seen[0] if seen else None
    return seen[0]


def test_ssh_destination_comes_after_double_dash(monkeypatch):
    argv = ssh_argv(monkeypatch, "ssh://root@fw1:2222")
    assert argv is not None
    i = argv.index("--")
    assert argv[i + 1] == "root@fw1" and argv[-1].startswith("conntrack -L")
    assert argv[argv.index("-p") + 1] == "2222" and i == len(argv) - 3
    assert ssh_argv(monkeypatch, "ssh://[2001:db8::1]")[-2] == "2001:db8::1"  # type: ignore[index]


@pytest.mark.parametrize(
    "source",
    [
        "ssh://-oProxyCommand=touch /tmp/pwned",
        "ssh://-E/tmp/log",
        "ssh://-lroot@fw1",
        "ssh://root@-fw1",
        "ssh://ro ot@fw1",
        "ssh://root@fw1\n",
        "ssh://root\x00@fw1",
        "ssh://@fw1",
        "ssh://fw1;reboot",
        "ssh://",
    ],
)
def test_unsafe_ssh_user_or_host_never_reaches_ssh(monkeypatch, source):
    assert ssh_argv(monkeypatch, source) is None


def test_metrics_colon_port_listens_on_loopback_only(monkeypatch):
    import prometheus_client

    from sniffover.agent.metrics import Metrics

    bound: list[tuple[int, str]] = []
    monkeypatch.setattr(
        prometheus_client,
        "start_http_server",
        lambda port, addr, registry: bound.append((port, addr)),
    )
    for listen in (":9477", "0.0.0.0:9478", "[::]:9479", "192.0.2.3:9480"):
        Metrics(listen)
    assert bound == [(9477, "127.0.0.1"), (9478, "0.0.0.0"), (9479, "::"), (9480, "192.0.2.3")]
