"""``sniffover check`` in namespaces: a passing host, and each failing check saying what to do."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sniffover.lab import netns

pytestmark = pytest.mark.requires("ip", "ping", "setpriv", "unshare")


def ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=10)


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    """Two namespaces joined by a veth: a (192.0.2.2/24 on c0) and b (192.0.2.3/24 on c1)."""
    stem = netns.base_name("snflab-") + "-check"
    a, b = netns.create(stem + "-a"), netns.create(stem + "-b")
    try:
        for ns in (a, b):  # no IPv6 chatter: "no frame" must mean no traffic
            subprocess.run(
                netns.exec_argv(
                    ns,
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ),
                check=True,
                timeout=10,
            )
        ip("link", "add", "c0", "netns", a, "type", "veth", "peer", "name", "c1", "netns", b)
        for ns, dev, addr in ((a, "c0", "192.0.2.2/24"), (b, "c1", "192.0.2.3/24")):
            ip("-n", ns, "addr", "add", addr, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        yield a, b
    finally:
        netns.delete(b)
        netns.delete(a)


def check(ns: str, *args: str, caps: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "sniffover.cli", "check", *args]
    if not caps:  # root without CAP_NET_ADMIN and CAP_NET_RAW (as a misconfigured unit)
        argv = ["setpriv", "--bounding-set=-net_admin,-net_raw", "--inh-caps=-all", *argv]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return subprocess.run(
        netns.exec_argv(ns, *argv), capture_output=True, text=True, timeout=60, env=env
    )


def lines(out: str) -> dict[str, str]:
    """check name -> its line."""
    return {ln.split(":", 1)[0][5:]: ln for ln in out.splitlines() if ln[:4] in ("ok  ", "FAIL")}


def test_passing_host_and_frames_seen(pair: tuple[str, str]) -> None:
    a, b = pair
    r = check(a, "--iface", "c0", "--max-flows", "1000")
    assert r.returncode == 0, r.stdout + r.stderr
    got = lines(r.stdout)
    assert got["ctnetlink"].startswith("ok") and got["iface c0"].startswith("ok")
    assert "info sysctls: mirrored by the tracker: tcp_loose=" in r.stdout
    # nothing on the wire: listening fails; pings from b: frames seen
    quiet = check(a, "--iface", "c0", "--listen-seconds", "1")
    assert quiet.returncode == 1 and "FAIL iface c0: no frame in 1 s" in quiet.stdout
    ping = subprocess.Popen(
        netns.exec_argv(b, "ping", "-q", "-i", "0.2", "-c", "25", "192.0.2.2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
        heard = check(a, "--iface", "c0", "--listen-seconds", "4")
    finally:
        ping.kill()
        ping.wait()
    assert heard.returncode == 0, heard.stdout
    assert "frames seen" in lines(heard.stdout)["iface c0"]


def test_each_failure_says_what_to_do(pair: tuple[str, str], tmp_path: Path) -> None:
    a, _ = pair
    ip("-n", a, "link", "set", "c0", "down")
    key = tmp_path / "key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    key.chmod(0o644)
    r = check(
        a,
        "--iface",
        "c0,nosuch9",
        "--max-flows",
        "100000000",
        "--key-file",
        str(key),
        "--prime-from",
        "192.0.2.99:7445",
        "--timeout",
        "2",
    )
    assert r.returncode == 1, r.stdout + r.stderr
    got = lines(r.stdout)
    assert got["iface c0"] == "FAIL iface c0: interface is down -> ip link set c0 up"
    assert got["iface nosuch9"].startswith("FAIL iface nosuch9: no such interface")
    assert got["hash"].startswith("FAIL hash:") and "hashsize" in got["hash"]
    assert got["key"].startswith("FAIL key:") and "chmod 600" in got["key"]
    assert (
        got["prime"].startswith("FAIL prime: 192.0.2.99:7445") and "sniffover serve" in got["prime"]
    )
    assert "Traceback" not in r.stderr


def test_without_capabilities_cannot_pass(pair: tuple[str, str]) -> None:
    a, _ = pair
    r = check(a, "--iface", "c0", caps=False)
    assert r.returncode == 1, r.stdout + r.stderr
    got = lines(r.stdout)
    assert got["ctnetlink"].startswith("FAIL ctnetlink:") and "CAP_NET_ADMIN" in got["ctnetlink"]
    assert got["iface c0"].startswith("FAIL iface c0:") and "CAP_NET_RAW" in got["iface c0"]
    assert "Traceback" not in r.stderr


def test_prime_peer_answers_and_authenticates(pair: tuple[str, str], tmp_path: Path) -> None:
    a, b = pair
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32).hex().encode())
    key.chmod(0o600)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    serve = subprocess.Popen(
        netns.exec_argv(
            b,
            sys.executable,
            "-m",
            "sniffover.cli",
            "serve",
            "--listen",
            "192.0.2.3:7445",
            "--key-file",
            str(key),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            r = check(a, "--key-file", str(key), "--prime-from", "192.0.2.3", "--timeout", "3")
            if r.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert r.returncode == 0, r.stdout + r.stderr
        got = lines(r.stdout)
        assert got["key"].startswith("ok") and got["prime"].startswith("ok   prime: 192.0.2.3 sent")
        wrong = tmp_path / "wrong"
        wrong.write_bytes(os.urandom(32).hex().encode())
        wrong.chmod(0o600)
        bad = check(a, "--key-file", str(wrong), "--prime-from", "192.0.2.3", "--timeout", "3")
        assert bad.returncode == 1 and lines(bad.stdout)["prime"].startswith("FAIL prime:")
        assert "authentication" in lines(bad.stdout)["prime"], bad.stdout
    finally:
        serve.terminate()
        serve.wait(10)


def test_missing_helper_module(pair: tuple[str, str]) -> None:
    """A host without nf_conntrack_tftp: modules cannot be unloaded here, so the check runs in a
    mount namespace whose /sys/module lists nf_conntrack_ftp only."""
    a, _ = pair
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    script = 'mount -t tmpfs tmpfs /sys/module && mkdir /sys/module/nf_conntrack_ftp && exec "$@"'
    r = subprocess.run(
        netns.exec_argv(
            a,
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            sys.executable,
            "-m",
            "sniffover.cli",
            "check",
            "--iface",
            "c0",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert lines(r.stdout)["helpers"] == (
        "FAIL helpers: not loaded: nf_conntrack_tftp -> modprobe nf_conntrack_tftp "
        "(and list them in /etc/modules-load.d/)"
    )
