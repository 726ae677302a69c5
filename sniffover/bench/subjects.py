"""The compared subjects: no sync (cold), sniffover, sniffover with a prime, conntrackd (FTFW)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..lab.hub import (
    FW_INSIDE,
    FW_SYNC,
    SYNC_IF,
    Lab,
    LabError,
    stop_process,
)
from .measure import FW_ADDRS

CONNTRACKD_PORT = 3780


def conntrackd_config(node: str, tmp: Path) -> str:
    """conntrackd.conf for ``node`` (fw1/fw2): FTFW over unicast UDP on sync0, external cache.

    As the FTFW example of conntrack-tools, with everything that is per-instance (lock file,
    unix socket, log) in ``tmp`` and TCP, UDP and ICMP accepted; the firewalls' own addresses
    are ignored (their own traffic, the sync link).
    """
    peer = "fw2" if node == "fw1" else "fw1"
    ignore = "\n".join(f"            IPv4_address {a}" for a in sorted(FW_ADDRS))
    return f"""\
Sync {{
    Mode FTFW {{
        ResendQueueSize 131072
        StartupResync on
    }}
    UDP {{
        IPv4_address {FW_SYNC[node]}
        IPv4_Destination_Address {FW_SYNC[peer]}
        Port {CONNTRACKD_PORT}
        Interface {SYNC_IF}
        SndSocketBuffer 1249280
        RcvSocketBuffer 1249280
        Checksum on
    }}
}}
General {{
    Systemd off
    HashSize 32768
    HashLimit 131072
    LogFile {tmp}/conntrackd-{node}.log
    Syslog off
    LockFile {tmp}/conntrackd-{node}.lock
    UNIX {{
        Path {tmp}/conntrackd-{node}.ctl
    }}
    NetlinkBufferSize 2097152
    NetlinkBufferSizeMaxGrowth 8388608
    NetlinkOverrunResync on
    NetlinkEventsReliable off
    Filter From Userspace {{
        Protocol Accept {{
            TCP
            UDP
            ICMP
        }}
        Address Ignore {{
{ignore}
        }}
    }}
}}
"""


def _python_sniffover(*args: str) -> list[str]:
    return [sys.executable, "-m", "sniffover.cli", *args]


class Subject:
    """What runs on the firewalls for one bench subject."""

    name = "?"
    description = ""

    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab = lab
        self.tmp = tmp
        self.master: subprocess.Popen[Any] | None = None
        self.standby: subprocess.Popen[Any] | None = None
        self.started_at = 0.0
        self.ready_after: float | None = None

    def start_master(self) -> None:
        """The master-side sync process on fw1 (if any), before any traffic."""

    def start_standby(self) -> None:
        """The standby's agent/daemon on fw2 (may return before it is ready)."""

    def wait_ready(self, timeout: float) -> bool:
        return True

    def standby_state(self) -> str:
        """The standby's view of the connections, in ``conntrack -L`` format."""
        return self.lab.conntrack("fw2")

    def commit(self) -> dict[str, float]:
        """Take over the state before the failover; seconds per step."""
        return {}

    def extra_stats(self) -> dict[str, Any]:
        return {}

    def stop(self) -> None:
        for p in (self.standby, self.master):
            if p is not None:
                stop_process(p)

    def _log(self, name: str) -> Any:
        return open(self.tmp / name, "w")  # noqa: SIM115 - closed in the child's hands

    def log_tail(self) -> str:
        out = []
        for f in sorted(self.tmp.glob("*.log")):
            with contextlib.suppress(OSError):
                out.append(f"== {f.name}\n" + "\n".join(f.read_text().splitlines()[-8:]))
        return "\n".join(out)


class Cold(Subject):
    name = "cold"
    description = "nothing on the standby: fw2 takes over with an empty table (control)"


class Sniffover(Subject):
    name = "sniffover"
    description = "fw2: sniffover --iface inside0 (sniffing only, mid-stream pickup)"
    # the trust anchor for forwarding confirmation: fw1's own address on the segment
    prime = False

    def _agent_args(self) -> list[str]:
        return ["--iface", "inside0", "--master-addr", FW_INSIDE["fw1"], "--stats-interval", "60"]

    def start_standby(self) -> None:
        log = self._log("agent.log")
        self.started_at = time.monotonic()
        self.standby = self.lab.popen(
            "fw2",
            *_python_sniffover(*self._agent_args()),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.standby is None or self.standby.poll() is not None:
                return False
            r = self.lab.run("fw2", *_python_sniffover("status"), check=False)
            if r.returncode == 0:
                if self.ready_after is None:
                    self.ready_after = round(time.monotonic() - self.started_at, 3)
                return True
            time.sleep(0.2)
        return False

    def commit(self) -> dict[str, float]:
        t0 = time.monotonic()
        r = self.lab.run("fw2", *_python_sniffover("ctl", "promote"), check=False, timeout=90)
        if r.returncode != 0:
            raise LabError(f"sniffover ctl promote failed: {r.stderr.strip()}")
        return {"promote": time.monotonic() - t0}

    def extra_stats(self) -> dict[str, Any]:
        r = self.lab.run("fw2", *_python_sniffover("status", "--json"), check=False)
        try:
            doc = json.loads(r.stdout)
        except json.JSONDecodeError:
            return {}
        keep = ("state", "flows", "installed", "pending", "primed", "packets", "capture")
        return {"status": {k: doc[k] for k in keep if k in doc}}


class SniffoverPrime(Sniffover):
    name = "sniffover+prime"
    description = (
        f"fw1: sniffover serve --listen {FW_SYNC['fw1']}; "
        f"fw2: sniffover --iface inside0 --prime-from {FW_SYNC['fw1']} --key-file K"
    )

    def start_master(self) -> None:
        self.key = self.tmp / "key"
        self.key.write_bytes(os.urandom(32).hex().encode())
        self.key.chmod(0o600)
        log = self._log("serve.log")
        self.master = self.lab.popen(
            "fw1",
            *_python_sniffover("serve", "--listen", FW_SYNC["fw1"], "--key-file", str(self.key)),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            r = self.lab.run(
                "fw2", "bash", "-c", f"exec 3<>/dev/tcp/{FW_SYNC['fw1']}/7445", check=False
            )
            if r.returncode == 0:
                return
            time.sleep(0.2)
        raise LabError("sniffover serve did not come up on fw1")

    def _agent_args(self) -> list[str]:
        return [*super()._agent_args(), "--prime-from", FW_SYNC["fw1"], "--key-file", str(self.key)]


class Conntrackd(Subject):
    name = "conntrackd"
    description = (
        "conntrackd FTFW over unicast UDP on sync0 (port 3780) on fw1 and fw2, external "
        "cache; fw2 after start: conntrackd -n (resync request, as primary-backup.sh backup); "
        "takeover: conntrackd -c (commit), -f (flush caches), -R (resync internal cache), "
        "-B (bulk send), as primary-backup.sh primary"
    )

    def _conf(self, node: str) -> Path:
        path = self.tmp / f"conntrackd-{node}.conf"
        if not path.exists():
            path.write_text(conntrackd_config(node, self.tmp))
        return path

    def _start(self, node: str) -> subprocess.Popen[Any]:
        log = self._log(f"conntrackd-{node}.out.log")
        proc = self.lab.popen(
            node, "conntrackd", "-C", str(self._conf(node)), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LabError(f"conntrackd in {node} exited: {self.log_tail()}")
            if self.ctl(node, "-s", check=False).returncode == 0:
                return proc
            time.sleep(0.1)
        raise LabError(f"conntrackd in {node} did not answer on its unix socket")

    def ctl(self, node: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.lab.run(
            node, "conntrackd", "-C", str(self._conf(node)), *args, check=check, timeout=60
        )

    def start_master(self) -> None:
        self.master = self._start("fw1")

    def start_standby(self) -> None:
        self.started_at = time.monotonic()
        self.standby = self._start("fw2")
        self.ctl("fw2", "-n", check=False)  # request a resync (primary-backup.sh: backup)
        self.ready_after = round(time.monotonic() - self.started_at, 3)

    def standby_state(self) -> str:
        return self.ctl("fw2", "-e", check=False).stdout  # the external cache

    def commit(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for flag, label in (("-c", "commit"), ("-f", "flush"), ("-R", "resync"), ("-B", "bulk")):
            t0 = time.monotonic()
            self.ctl("fw2", flag, check=False)
            out[label] = time.monotonic() - t0
        return out
