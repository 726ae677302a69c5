"""The README's first command on a fresh Debian 12: a debootstrap chroot made here.

Nothing of this machine's Python, venvs or build reaches the chroot: it gets a minimal
bookworm from the Debian mirror, the checkout's tracked files and the network settings (DNS
and the CA file a sandbox proxy may need), and runs ``./install.sh && sniffover demo`` with
Debian's own python3 (PEP 668 refuses pip there). The demo's failover must keep every
connection. Mounts and the chroot are removed afterwards, also on failure; the demo's own
namespaces are deleted by the demo (they carry the snflab- prefix and its pid).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.requires("debootstrap", "chroot", "mount", "umount", "git")

ROOT = Path(__file__).resolve().parents[2]
MIRROR = "http://deb.debian.org/debian"


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


@pytest.fixture
def chroot(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "bookworm"
    subprocess.run(
        ["debootstrap", "--variant=minbase", "bookworm", str(target), MIRROR],
        check=True,
        capture_output=True,
        timeout=600,
    )
    try:
        # ip netns needs the root to be a mount point; the rest is what a booted system has
        subprocess.run(["mount", "--bind", str(target), str(target)], check=True, timeout=10)
        for fs in ("proc", "sys", "dev"):
            subprocess.run(["mount", "--rbind", f"/{fs}", str(target / fs)], check=True, timeout=10)
            subprocess.run(["mount", "--make-rslave", str(target / fs)], check=True, timeout=10)
        shutil.copy("/etc/resolv.conf", target / "etc/resolv.conf")
        # a chroot must not start services on the host (Debian's convention)
        rc = target / "usr/sbin/policy-rc.d"
        rc.write_text("#!/bin/sh\nexit 101\n")
        rc.chmod(0o755)
        yield target
    finally:
        for point in sorted(_mounts_under(target), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)
        if not _mounts_under(target):  # never remove through a mount still in place
            shutil.rmtree(target, ignore_errors=True)


def test_readme_first_command_on_fresh_debian(chroot: Path) -> None:
    src = chroot / "root/sniffover"
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, timeout=30
    ).stdout.split(b"\0")
    for name in filter(None, files):
        path = ROOT / os.fsdecode(name)
        if path.is_file():
            (src / path.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / path.relative_to(ROOT))
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
    ca = os.environ.get("PIP_CERT")
    if ca and os.path.isfile(ca):  # a sandbox's TLS proxy; a real fresh host needs none
        shutil.copy(ca, chroot / "root/proxy-ca.pem")
        env["PIP_CERT"] = "/root/proxy-ca.pem"
    assert not (chroot / "usr/bin/python3").exists(), "the chroot is not minimal"
    started = time.monotonic()
    run = subprocess.run(
        ["chroot", str(chroot), "/bin/sh", "-c", "cd /root/sniffover && ./install.sh"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    installed = time.monotonic() - started
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "WARNING" not in run.stderr, run.stderr  # compiled, not the pure fallback
    demo = subprocess.run(
        ["chroot", str(chroot), "/bin/sh", "-c", "cd / && sniffover demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    size = subprocess.run(
        ["du", "-sm", str(chroot / "opt/sniffover")], capture_output=True, text=True, timeout=60
    ).stdout.split()[0]
    print(f"fresh bookworm: install.sh {installed:.0f} s, /opt/sniffover {size} MB")
