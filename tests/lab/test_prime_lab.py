"""Priming across namespaces: ``sniffover.prime.server`` in a master, ``fetch`` from a standby.

Two scratch namespaces ``snfprime-<pid>-m`` / ``-s`` joined by a veth (203.0.113.1/.2);
the master gets TCP (ESTABLISHED, window scales), UDP and ICMP entries over ctnetlink.
Everything created here is deleted in the fixture's finally.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.requires("ip", "conntrack")

PREFIX = f"snfprime-{os.getpid()}-"
MASTER, STANDBY = PREFIX + "m", PREFIX + "s"
M_IP, S_IP = "203.0.113.1", "203.0.113.2"
REPO = str(Path(__file__).resolve().parents[2])

CREATE = """
from sniffover.kernel.ctnetlink import CtnlSocket, TcpInfo, encode_ct_new
A, B = bytes([203, 0, 113, 10]), bytes([198, 51, 100, 20])
with CtnlSocket() as c:
    msgs = []
    for i in range(20):
        msgs.append(encode_ct_new((6, A, B, 40000 + i, 443), (6, B, A, 443, 40000 + i),
            status=0x6, timeout=3600, tcp=TcpInfo(3, 7, 9, 3, 3, 3, 3), mark=i,
            seq=c.next_seq()))
    for i in range(10):
        msgs.append(encode_ct_new((17, A, B, 5000 + i, 53), (17, B, A, 53, 5000 + i),
            status=0x2, timeout=120, seq=c.next_seq()))
    msgs.append(encode_ct_new((1, A, B, 77, 8 << 8), (1, B, A, 77, 0), status=0, timeout=30,
        seq=c.next_seq()))
    errs = c.send_batch(msgs)
    assert not any(errs.values()), errs
"""

DUMP = """
import json, time
from sniffover.kernel.dump import dump_table
print(json.dumps({"at": time.time(), "entries": [
    {**e.as_dict(),
     "orig": [e.orig[0], e.orig[1].hex(), e.orig[2].hex(), *e.orig[3:]],
     "reply": [e.reply[0], e.reply[1].hex(), e.reply[2].hex(), *e.reply[3:]],
     "labels": e.labels.hex()} for e in dump_table()]}))
"""

FETCH = """
import json, sys, time
from sniffover.prime.client import PrimeError, fetch
args = json.loads(sys.argv[1])
t0 = time.monotonic()
try:
    s = fetch(*args["args"], **args.get("kw", {}))
except PrimeError as exc:
    print(json.dumps({"error": str(exc), "seconds": time.monotonic() - t0}))
    raise SystemExit(0)
print(json.dumps({"at": s.taken_at, "seconds": time.monotonic() - t0, "entries": [
    {**e.as_dict(),
     "orig": [e.orig[0], e.orig[1].hex(), e.orig[2].hex(), *e.orig[3:]],
     "reply": [e.reply[0], e.reply[1].hex(), e.reply[2].hex(), *e.reply[3:]],
     "labels": e.labels.hex()} for e in s.entries]}))
"""


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


def py_in(ns: str, code: str, *args: str, timeout: float = 60) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    return json.loads(out.stdout) if out.stdout.strip() else {}


def fetch_in(ns: str, *args: object, **kw: object) -> dict:  # type: ignore[type-arg]
    return py_in(ns, FETCH, json.dumps({"args": list(args), "kw": kw}))


class Lab:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.key = tmp / "key"
        self.key.write_bytes(os.urandom(32).hex().encode())
        self.key.chmod(0o600)
        self.wrong = tmp / "wrong"
        self.wrong.write_bytes(b"a wrong key, long enough")
        self.wrong.chmod(0o600)
        self.procs: list[subprocess.Popen[bytes]] = []


def _wait_port(ns: str, host: str, port: int, deadline: float = 10.0) -> None:
    code = (
        "import socket,sys,time\n"
        f"end = time.monotonic() + {deadline}\n"
        "while time.monotonic() < end:\n"
        "    try:\n"
        f"        socket.create_connection(('{host}', {port}), timeout=1).close(); sys.exit(0)\n"
        "    except OSError:\n"
        "        time.sleep(0.1)\n"
        "sys.exit(1)\n"
    )
    subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], check=True, timeout=30)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    tmp = Path(tempfile.mkdtemp(prefix="snfprime-"))
    made: list[str] = []
    lab = Lab(tmp)
    try:
        for ns in (MASTER, STANDBY):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", MASTER, "link", "add", "v0", "type", "veth", "peer", "v1", "netns", STANDBY)
        sh("ip", "-n", MASTER, "addr", "add", f"{M_IP}/24", "dev", "v0")
        sh("ip", "-n", STANDBY, "addr", "add", f"{S_IP}/24", "dev", "v1")
        sh("ip", "-n", MASTER, "link", "set", "v0", "up")
        sh("ip", "-n", STANDBY, "link", "set", "v1", "up")
        py_in(MASTER, CREATE)
        serve = subprocess.Popen(
            ["ip", "netns", "exec", MASTER, sys.executable, "-m", "sniffover.prime.server"]
            + ["--listen", f"{M_IP}:7445", "--key-file", str(lab.key)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": REPO},
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "serve.log", "wb"),  # noqa: SIM115
        )
        lab.procs.append(serve)
        _wait_port(STANDBY, M_IP, 7445)
        yield lab
    finally:
        for p in lab.procs:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def key_of(e: dict) -> tuple:  # type: ignore[type-arg]
    return tuple(e["orig"])


def assert_same(master: dict, got: dict, fields: tuple[str, ...]) -> None:  # type: ignore[type-arg]
    m = {key_of(e): e for e in master["entries"]}
    g = {key_of(e): e for e in got["entries"]}
    assert m.keys() == g.keys() and len(m) == 31
    for k, e in m.items():
        for f in fields:
            assert g[k][f] == e[f], (k, f)
        # both remaining lifetimes point at the same expiry (within 2 s)
        assert abs((got["at"] + g[k]["timeout"]) - (master["at"] + e["timeout"])) <= 2


def test_serve_pull_matches_master(lab: Lab) -> None:
    got = fetch_in(STANDBY, f"{M_IP}:7445", str(lab.key), 5.0, 0)
    assert "error" not in got, got
    master = py_in(MASTER, DUMP)
    assert_same(
        master,
        got,
        ("reply", "status", "mark", "zone", "tcp_state", "wscale_orig", "wscale_reply")
        + ("flags_orig", "flags_reply"),
    )
    tcp = [e for e in got["entries"] if e["orig"][0] == 6]
    assert all(e["tcp_state"] == 3 and e["wscale_orig"] == 7 for e in tcp)
    assert all(e["wscale_reply"] == 9 and e["flags_orig"] & 3 == 3 for e in tcp)
    log = (lab.tmp / "serve.log").read_text()
    assert f"pull from {S_IP}" in log and "31 entries" in log


def test_wrong_key_and_unreachable(lab: Lab) -> None:
    got = fetch_in(STANDBY, f"{M_IP}:7445", str(lab.wrong), 5.0, 3)
    assert "authentication failed" in got["error"] and got["seconds"] < 2
    got = fetch_in(STANDBY, f"{M_IP}:7446", str(lab.key), 2.0, 1, backoff=0.2)
    assert "refused" in got["error"] and got["seconds"] < 3
    got = fetch_in(STANDBY, "203.0.113.99:7445", str(lab.key), 1.0, 0)
    assert "unreachable" in got["error"] and got["seconds"] < 6


def _sshd() -> str | None:
    path = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    return path if path and shutil.which("ssh-keygen") and shutil.which("ssh") else None


@pytest.mark.skipif(_sshd() is None, reason="no sshd/ssh/ssh-keygen")
def test_ssh_source(lab: Lab) -> None:
    sshd = _sshd()
    assert sshd
    d = lab.tmp / "ssh"
    d.mkdir()
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host"))
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "client"))
    shutil.copy(d / "client.pub", d / "authorized_keys")
    (d / "authorized_keys").chmod(0o600)
    (d / "sshd_config").write_text(
        f"Port 2222\nListenAddress {M_IP}\nHostKey {d / 'host'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPermitRootLogin prohibit-password\n"
    )
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
    proc = subprocess.Popen(
        ["ip", "netns", "exec", MASTER, sshd, "-D", "-e", "-f", str(d / "sshd_config")],
        stdout=subprocess.DEVNULL,
        stderr=open(d / "sshd.log", "wb"),  # noqa: SIM115
    )
    lab.procs.append(proc)
    try:
        _wait_port(STANDBY, M_IP, 2222)
    except subprocess.CalledProcessError:
        pytest.skip("sshd did not come up: " + (d / "sshd.log").read_text()[-300:])
    opts = ["-i", str(d / "client"), "-o", "StrictHostKeyChecking=no"]
    opts += ["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    got = fetch_in(STANDBY, f"ssh://root@{M_IP}:2222", None, 5.0, 0, ssh_options=opts)
    assert "error" not in got, got
    master = py_in(MASTER, DUMP)
    assert_same(master, got, ("reply", "mark", "zone", "tcp_state"))
    m = {key_of(e): e for e in master["entries"]}
    for e in got["entries"]:
        assert e["status"] & 0x6 == m[key_of(e)]["status"] & 0x6  # SEEN_REPLY, ASSURED
    bad = ["-i", str(d / "host")] + opts[2:]  # a key sshd does not accept
    got = fetch_in(STANDBY, f"ssh://root@{M_IP}:2222", None, 5.0, 2, ssh_options=bad)
    assert "authentication failed" in got["error"] and got["seconds"] < 5
    proc.terminate()
    proc.wait(5)
    time.sleep(0.1)
