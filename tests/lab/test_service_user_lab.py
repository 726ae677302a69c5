"""The example unit's way of running (issue 13 point 4): a system user, not root, started
with only CAP_NET_ADMIN and CAP_NET_RAW as ambient capabilities. The agent comes up, captures,
opens ctnetlink, and drops what it can: ambient and inheritable sets empty, no_new_privs."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sniffover.lab import netns

pytestmark = pytest.mark.requires("ip", "setpriv", "unshare", "nsenter")

ROOT = Path(__file__).resolve().parents[2]
AS_SERVICE = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all,+net_admin,+net_raw",
    "--ambient-caps=-all,+net_admin,+net_raw",
]


def python_for_nobody(tmp: Path) -> tuple[str, dict[str, str]]:
    """An interpreter uid 65534 can run, with the agent's imports (a venv under a private
    home is not readable by it: then the system's python3 with copies of the two binary
    dependencies)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    probe = [*AS_SERVICE, sys.executable, "-c", "import sniffover.agent.daemon, pcapy, pyroute2"]
    if subprocess.run(probe, env=env, capture_output=True, cwd="/", timeout=30).returncode == 0:
        return sys.executable, env
    deps = tmp / "deps"
    deps.mkdir()
    for mod in ("pcapy", "prometheus_client", "pyroute2"):
        spec = importlib.util.find_spec(mod)
        assert spec is not None and spec.origin is not None
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            shutil.copytree(origin.parent, deps / mod)
        else:
            shutil.copy(origin, deps)
            libs = origin.parent / "pcapy_ng.libs"
            if libs.is_dir():
                shutil.copytree(libs, deps / libs.name)
    subprocess.run(["chmod", "-R", "a+rX", str(tmp)], check=True)
    env["PYTHONPATH"] = f"{ROOT}:{deps}"
    system = shutil.which("python3", path="/usr/bin")
    if (
        system is None
        or subprocess.run(
            [*AS_SERVICE, system, "-c", "import sniffover.agent.daemon, pcapy, pyroute2"],
            env=env,
            capture_output=True,
            cwd="/",
            timeout=30,
        ).returncode
    ):
        pytest.skip("no python interpreter uid 65534 can run with the agent's dependencies")
    return system, env


def caps(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_agent_runs_as_a_service_user_with_ambient_capabilities():
    tmp = Path(tempfile.mkdtemp(prefix="snfsvc-"))
    os.chmod(tmp, 0o755)
    os.makedirs("/run/sniffover", exist_ok=True)  # the mount point (as any agent makes it)
    ns = netns.create(netns.base_name("snflab-") + "-svc")
    proc = None
    try:
        subprocess.run(
            ["ip", "-n", ns, "link", "add", "in0", "type", "veth", "peer", "name", "in1"],
            check=True,
        )
        subprocess.run(["ip", "-n", ns, "link", "set", "in0", "up"], check=True)
        python, env = python_for_nobody(tmp)
        log = tmp / "agent.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                # systemd's RuntimeDirectory=sniffover, in a mount namespace of the agent's:
                # /run/sniffover owned by the service user, 0750
                netns.exec_argv(
                    ns,
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    "mount -t tmpfs -o mode=0750,uid=65534,gid=65534 tmpfs /run/sniffover"
                    ' && exec "$@"',
                    "sh",
                    *AS_SERVICE,
                    python,
                    "-m",
                    "sniffover.cli",
                    "-i",
                    "in0",
                    "--master-mac",
                    "02:00:00:00:00:01",
                ),
                env=env,
                cwd="/",
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        deadline = time.monotonic() + 20
        while "standby agent up" not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert proc.poll() is None, log.read_text()
        text = log.read_text()
        assert "installing into this namespace's conntrack table" in text, text
        assert "privileges dropped" in text and "no_new_privs set" in text, text
        # the agent's own pid: ip netns exec and setpriv exec, so it is proc.pid
        st = caps(proc.pid)
        assert st["Uid"].split()[0] == "65534", st["Uid"]
        assert int(st["CapEff"], 16) == int(st["CapPrm"], 16) == 0x3000, st  # net_admin+raw
        assert int(st["CapAmb"], 16) == 0 and int(st["CapInh"], 16) == 0, st
        assert st["NoNewPrivs"] == "1", st
        # root's status, in the agent's mount namespace: it believes the socket's server
        # because that user owns /run/sniffover (only root could have made it so)
        status = subprocess.run(
            netns.exec_argv(
                ns,
                "nsenter",
                "--mount",
                f"--target={proc.pid}",
                "--",
                sys.executable,
                "-m",
                "sniffover.cli",
                "status",
            ),
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert "capturing in0" in status.stdout, (status.stdout, status.stderr)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        netns.delete(ns)
        shutil.rmtree(tmp, ignore_errors=True)
