"""``sniffover serve`` hardened, in namespaces (issue 13 point 3 and serve's part of 4).

Two scratch namespaces ``snfprime-<pid>-hm`` / ``-hs`` joined by a veth (203.0.113.1/.2);
the master's kernel table holds 20 TCP entries between 203.0.113.10 and 198.51.100.20.
The real ``sniffover serve`` (the CLI, started as root) runs in the master; tcpdump
records the sync link. Checked: serve has dropped to an unprivileged user with only
CAP_NET_ADMIN once bound (and still dumps), 64 parallel unauthenticated connections do
not keep an authenticated pull from finishing within its timeout, and the capture of the
sync link holds none of the table's addresses. Everything made here is deleted in the
fixture's finally.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sniffover.lab import netns
from tests.lab.test_prime_lab import CREATE, FETCH, M_IP, REPO, S_IP, _wait_port

pytestmark = pytest.mark.requires("ip", "conntrack", "tcpdump")

A_BYTES = bytes([203, 0, 113, 10])  # the master's entries (test_prime_lab.CREATE)
B_BYTES = bytes([198, 51, 100, 20])
CAP_NET_ADMIN = 1 << 12

CROWD = """
import socket, sys, threading, time
host, port, n, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
end = time.monotonic() + seconds
connects = [0]
def one():
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=1) as c:
                connects[0] += 1
                c.settimeout(max(0.05, end - time.monotonic()))
                while c.recv(64):  # the greeting, then nothing: never authenticates
                    pass
        except OSError:
            time.sleep(0.01)
ts = [threading.Thread(target=one, daemon=True) for _ in range(n)]
for t in ts:
    t.start()
print("up", flush=True)
for t in ts:
    t.join(seconds + 5)
print(connects[0], flush=True)
"""


class Hard:
    def __init__(self, tmp: Path, master: str, standby: str) -> None:
        self.tmp, self.master, self.standby = tmp, master, standby
        self.key = tmp / "key"
        self.key.write_bytes(os.urandom(32).hex().encode())
        self.key.chmod(0o600)
        self.pcap = tmp / "sync.pcap"
        self.serve: subprocess.Popen[bytes] | None = None
        self.dump: subprocess.Popen[bytes] | None = None

    def py(self, ns: str, code: str, *args: str, timeout: float = 60) -> str:
        return subprocess.run(
            netns.exec_argv(ns, sys.executable, "-c", code, *args),
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": REPO},
        ).stdout

    def fetch(self, timeout: float) -> dict:  # type: ignore[type-arg]
        spec = json.dumps({"args": [M_IP, str(self.key)], "kw": {"timeout": timeout, "retries": 0}})
        return json.loads(self.py(self.standby, FETCH, spec))


@pytest.fixture(scope="module")
def hard() -> Iterator[Hard]:
    tmp = Path(tempfile.mkdtemp(prefix="snfprime-"))
    base = netns.base_name("snfprime-")
    made: list[str] = []
    h = Hard(tmp, f"{base}-hm", f"{base}-hs")
    try:
        for ns in (h.master, h.standby):
            made.append(netns.create(ns))
        run = lambda *a: subprocess.run(a, check=True, capture_output=True, timeout=30)  # noqa: E731
        run(
            "ip",
            "-n",
            h.master,
            "link",
            "add",
            "v0",
            "type",
            "veth",
            "peer",
            "v1",
            "netns",
            h.standby,
        )
        run("ip", "-n", h.master, "addr", "add", f"{M_IP}/24", "dev", "v0")
        run("ip", "-n", h.standby, "addr", "add", f"{S_IP}/24", "dev", "v1")
        for ns, dev in ((h.master, "v0"), (h.standby, "v1")):
            run("ip", "-n", ns, "link", "set", dev, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
        h.py(h.master, CREATE)
        h.dump = subprocess.Popen(
            netns.exec_argv(h.master, "tcpdump", "-i", "v0", "-U", "-s", "0", "-w", str(h.pcap))
            + ["tcp", "port", "7445"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        h.serve = subprocess.Popen(
            netns.exec_argv(h.master, sys.executable, "-m", "sniffover.cli", "serve")
            + ["--listen", f"{M_IP}:7445", "--key-file", str(h.key)],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "serve.log", "wb"),  # noqa: SIM115
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": REPO},
        )
        _wait_port(h.standby, M_IP, 7445)
        time.sleep(0.5)  # tcpdump is attached by now
        yield h
    finally:
        for proc in (h.serve, h.dump):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        for ns in made:
            netns.delete(ns)


def status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_serve_runs_without_its_capabilities_after_bind(hard: Hard) -> None:
    assert hard.serve is not None and hard.serve.poll() is None, (
        hard.tmp / "serve.log"
    ).read_text()
    st = status(hard.serve.pid)
    known = {p.pw_name for p in pwd.getpwall()}
    want = pwd.getpwnam("sniffover" if "sniffover" in known else "nobody").pw_uid
    assert st["Uid"].split() == [str(want)] * 4, st["Uid"]
    assert st["Groups"].strip() == ""
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert int(st[field], 16) == CAP_NET_ADMIN, (field, st[field])
    assert int(st["CapInh"], 16) == 0 and int(st["CapAmb"], 16) == 0
    assert st["NoNewPrivs"].strip() == "1"
    got = hard.fetch(timeout=5)  # and it still dumps the kernel's table
    assert "error" not in got, got
    assert len(got["entries"]) == 31


def test_64_unauthenticated_connections_do_not_starve_a_pull(hard: Hard) -> None:
    crowd = subprocess.Popen(
        netns.exec_argv(hard.standby, sys.executable, "-c", CROWD, M_IP, "7445", "64", "8"),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert crowd.stdout is not None and crowd.stdout.readline().strip() == "up"
        time.sleep(1.0)  # every slot taken, the crowd reconnecting as it is evicted
        t0 = time.monotonic()
        got = hard.fetch(timeout=3)
        assert "error" not in got, got
        assert len(got["entries"]) == 31 and time.monotonic() - t0 < 3
        out, _ = crowd.communicate(timeout=20)
        assert int(out.split()[-1]) >= 64  # the crowd was there all along
    finally:
        if crowd.poll() is None:
            crowd.kill()
            crowd.wait(5)


def test_capture_of_the_sync_link_has_no_plaintext_tuple(hard: Hard) -> None:
    got = hard.fetch(timeout=5)
    assert "error" not in got, got
    # the pull carried the table: both addresses in what the standby decrypted
    assert {e["orig"][1] for e in got["entries"]} >= {A_BYTES.hex()}
    assert {e["orig"][2] for e in got["entries"]} >= {B_BYTES.hex()}
    time.sleep(0.5)  # tcpdump -U has written the last packets
    data = hard.pcap.read_bytes()
    assert len(data) > 31 * 40, len(data)  # the stream is in the capture
    for needle in (A_BYTES, B_BYTES, (40007).to_bytes(2, "big") + (443).to_bytes(2, "big")):
        assert needle not in data, needle.hex()
