"""A hostile local user against the control socket (root only, in lab namespaces).

An agent sniffs a veth in namespace A (``--no-install --confirm off``); a sender in
namespace B puts UDP frames on the other end. The hostile user is ``nobody``
(``setpriv --reuid=65534 --regid=65534 --clear-groups``) inside A. On main (the abstract
``@sniffover``, no peer check) every one of these commands worked, a squatter on the name
kept the agent from starting, and a dribbling client stalled the loop for the whole dribble.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sniffover.lab import netns
from sniffover.lab.hub import lab_env, stop_process

pytestmark = pytest.mark.requires("ip", "setpriv")

NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
CLI = (sys.executable, "-m", "sniffover.cli")
FRAMES = 20000


class Pair:
    def __init__(self) -> None:
        base = netns.base_name("snflab-") + "-ctl"
        self.a, self.b = netns.create(base + "a"), netns.create(base + "b")
        subprocess.run(
            ["ip", "link", "add", "snc0", "netns", self.a, "type", "veth", "peer", "snc1",
             "netns", self.b],
            check=True, timeout=10,
        )  # fmt: skip
        for ns, dev, ip in ((self.a, "snc0", "192.0.2.1/24"), (self.b, "snc1", "192.0.2.2/24")):
            self.run(ns, "ip", "addr", "add", ip, "dev", dev)
            self.run(ns, "ip", "link", "set", dev, "up")

    def run(self, ns: str, *argv: str, check: bool = True, timeout: float = 30) -> Any:
        return subprocess.run(
            netns.exec_argv(ns, *argv), capture_output=True, text=True, check=check,
            timeout=timeout, env=lab_env(), cwd="/",
        )  # fmt: skip

    def popen(self, ns: str, *argv: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            netns.exec_argv(ns, *argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=lab_env(), cwd="/",
        )  # fmt: skip

    def status(self, *extra: str) -> dict[str, Any]:
        doc = json.loads(self.run(self.a, *CLI, "status", "--json", *extra).stdout)
        assert isinstance(doc, dict)
        return doc

    def close(self) -> None:
        netns.delete(self.a)
        netns.delete(self.b)


@pytest.fixture
def pair() -> Iterator[Pair]:
    p = Pair()
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def shared_dir() -> Iterator[str]:
    """A directory under /tmp that nobody can reach (pytest's tmp_path is root's 0700)."""
    d = tempfile.mkdtemp(prefix="snflab-ctl-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def start_agent(p: Pair, *extra: str) -> subprocess.Popen[str]:
    proc = p.popen(p.a, *CLI, "--iface", "snc0", "--no-install", "--confirm", "off", *extra)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"agent exited: {proc.communicate()[1]}")
        r = p.run(p.a, *CLI, "status", *extra[:2] if extra[:1] == ("--control",) else (),
                  check=False)  # fmt: skip
        if r.returncode == 0:
            return proc
        time.sleep(0.2)
    stop_process(proc)
    raise AssertionError("agent did not become ready")


SQUAT = textwrap.dedent(
    """
    import json, socket, sys, time
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sys.argv[1] if sys.argv[1] != "@" else b"\\0sniffover")
    s.listen(4)
    s.settimeout(8)
    print("bound", flush=True)
    end = time.monotonic() + 8
    while time.monotonic() < end:
        try:
            c, _ = s.accept()
        except OSError:
            break
        try:
            c.recv(100)
            c.sendall(json.dumps({"ok": True, "state": "standby", "pid": 1}).encode() + b"\\n")
        except OSError:
            pass
        c.close()
    """
)


def test_nobody_cannot_drive_the_agent(pair: Pair) -> None:
    # the old abstract name squatted first: ignored, the agent starts
    squat = pair.popen(pair.a, *NOBODY, sys.executable, "-c", SQUAT, "@")
    try:
        assert squat.stdout is not None and squat.stdout.readline().strip() == "bound"
        agent = start_agent(pair)
    finally:
        stop_process(squat)
    try:
        for argv in (("ctl", "promote"), ("ctl", "demote"), ("ctl", "prime"), ("ctl", "table"),
                     ("status",)):  # fmt: skip
            r = pair.run(pair.a, *NOBODY, *CLI, *argv, check=False)
            assert r.returncode != 0, (argv, r.stdout)
            assert "Permission denied" in r.stderr and "Traceback" not in r.stderr, r.stderr
        # nobody cannot put anything at the default path either
        mk = pair.run(pair.a, *NOBODY, "mkdir", "-p", "/run/sniffover/x", check=False)
        assert mk.returncode != 0
        s = pair.status()
        assert s["state"] == "standby" and s["capturing"] and s["ok"]
        assert s["promoted_by"] is None
        # root still drives it
        assert pair.run(pair.a, *CLI, "ctl", "table").returncode == 0
    finally:
        stop_process(agent)


def test_peer_credentials_refuse_nobody_even_on_an_open_socket(pair: Pair, shared_dir: str) -> None:
    path = os.path.join(shared_dir, "ctl.sock")
    agent = start_agent(pair, "--control", path)
    try:
        os.chmod(path, 0o666)  # a careless mode: the peer check still refuses
        r = pair.run(pair.a, *NOBODY, *CLI, "ctl", "promote", "--control", path, check=False)
        assert r.returncode == 1 and "permission denied" in r.stderr, r.stderr
        assert "uid 65534" in r.stderr
        s = pair.status("--control", path)
        assert s["state"] == "standby" and s["agent"]["control-refused"] == 1
    finally:
        stop_process(agent)
    log = agent.communicate()[1]
    assert "control socket: refused pid" in log and "uid 65534" in log, log


def test_a_squatted_path_is_not_believed_and_not_deleted(pair: Pair, shared_dir: str) -> None:
    os.chmod(shared_dir, 0o1777)
    path = os.path.join(shared_dir, "ctl.sock")
    squat = pair.popen(pair.a, *NOBODY, sys.executable, "-c", SQUAT, path)
    try:
        assert squat.stdout is not None and squat.stdout.readline().strip() == "bound"
        r = pair.run(pair.a, *CLI, "status", "--control", path, check=False)
        assert r.returncode == 1 and "served by uid 65534" in r.stderr, r.stderr
        r = pair.run(pair.a, *CLI, "ctl", "promote", "--control", path, check=False)
        assert r.returncode == 1 and "not believing" in r.stderr, r.stderr
    finally:
        stop_process(squat)
    # a regular file planted at the path is refused, never deleted
    os.unlink(path)
    with open(path, "w") as f:
        f.write("keep")
    r = pair.run(
        pair.a,
        *CLI,
        "--iface",
        "snc0",
        "--no-install",
        "--confirm",
        "off",
        "--control",
        path,
        check=False,
    )
    assert r.returncode == 1 and "not a socket" in r.stderr, r.stderr
    with open(path) as f:
        assert f.read() == "keep"


SEND = textwrap.dedent(
    """
    import socket, struct, sys, time
    n, rate = int(sys.argv[1]), float(sys.argv[2])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("snc1", 0))
    src = s.getsockname()[4]
    def frame(i):
        udp = struct.pack("!HHHH", 1024 + i % 50000, 53, 8 + 4, 0) + b"ping"
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                         socket.inet_aton("198.51.100.%d" % (1 + i % 200)),
                         socket.inet_aton("203.0.113.%d" % (1 + i % 200)))
        return b"\\x02\\x00\\x00\\x00\\x00\\x99" + src + b"\\x08\\x00" + ip + udp
    start = time.monotonic()
    for i in range(n):
        due = start + i / rate
        while time.monotonic() < due:
            time.sleep(0.0005)
        s.send(frame(i))
        if time.monotonic() - start > 30:
            break
    print(i + 1, flush=True)
    """
)

DRIBBLE_SECONDS = 4.0


def test_a_dribbling_client_does_not_delay_frame_processing(pair: Pair) -> None:
    agent = start_agent(pair)
    try:
        before = pair.status()["capture"]["snc0"]
        sender = pair.popen(pair.b, sys.executable, "-c", SEND, str(FRAMES), "5000")
        # root dribbles one byte every 0.2 s, never a newline, reconnecting when cut off
        code = "import sniffover.agent.control as c; print(c.default_path())"
        path = pair.run(pair.a, sys.executable, "-c", code).stdout.strip()
        dribble = pair.popen(pair.a, sys.executable, "-c", textwrap.dedent(f"""
            import socket, time
            end = time.monotonic() + {DRIBBLE_SECONDS}
            cut = 0
            while time.monotonic() < end:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect({path!r})
                try:
                    while time.monotonic() < end:
                        s.send(b"x")
                        time.sleep(0.2)
                except OSError:
                    cut += 1
                s.close()
            print(cut, flush=True)
        """))  # fmt: skip
        time.sleep(0.5)
        t0 = time.monotonic()
        mid = pair.status()
        status_seconds = time.monotonic() - t0
        out, _ = dribble.communicate(timeout=DRIBBLE_SECONDS + 10)
        sent = int(sender.communicate(timeout=40)[0].strip())
        time.sleep(0.5)
        after = pair.status()["capture"]["snc0"]
    finally:
        stop_process(agent)
    assert mid["ok"] and status_seconds < 1.0, status_seconds  # main: the whole dribble
    assert int(out.strip()) >= 2  # cut off at each 1 s deadline
    dropped = after["dropped"] + after["ifdropped"] - before["dropped"] - before["ifdropped"]
    print(f"sent {sent}, captured {after['frames'] - before['frames']}, dropped {dropped}, "
          f"status answered in {status_seconds:.3f} s during the dribble")  # fmt: skip
    assert sent == FRAMES and dropped == 0
    assert after["frames"] - before["frames"] >= FRAMES
