"""`sniffover demo`: a failover in the hub lab, with and without sniffover.

Builds the lab (client, server, fw1, fw2 and a hub, in network namespaces named
``snflab-...``), opens live TCP connections and UDP flows through fw1, runs the
agent on fw2 (sniffing the inside segment), fails over, and counts how many
connections still work through fw2. Then the same without the agent, as the
control. Both firewalls drop anything they hold no state for, like a strict
production ruleset. The lab is torn down at the end, also on errors.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from ..errors import CliError
from .hub import FW_INSIDE, Lab, LabError, stop_process


@dataclass
class Outcome:
    label: str
    tcp_ok: int
    tcp_total: int
    udp_ok: int
    udp_total: int
    installed: int | None
    seconds: float


def _agent(lab: Lab, log_path: str) -> subprocess.Popen[str]:
    with open(log_path, "w") as log:
        proc = lab.popen(
            "fw2",
            sys.executable,
            "-m",
            "sniffover.cli",
            "--iface",
            "inside0",
            "--master-addr",  # the trust anchor: fw1's own address (its MAC answers ARP)
            FW_INSIDE["fw1"],
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        r = lab.run("fw2", sys.executable, "-m", "sniffover.cli", "status", check=False)
        if r.returncode == 0:
            return proc
        time.sleep(0.2)
    stop_process(proc)
    with open(log_path) as f:
        raise CliError(f"demo: the agent did not start on fw2: {f.read().strip()[-500:]}")


def run_once(with_agent: bool, tcp: int, udp: int, say: bool = True) -> Outcome:
    label = "with sniffover" if with_agent else "without sniffover (control)"
    start = time.monotonic()
    fd, log_path = tempfile.mkstemp(prefix="sniffover-demo-", suffix=".log")
    os.close(fd)
    installed = None
    try:
        with Lab(clients=1, servers=1) as lab:
            lab.start_server("s1", duration=120)
            agent = _agent(lab, log_path) if with_agent else None
            client = lab.traffic_client("c1", tcp=tcp, udp=udp, duration=120)
            try:
                before = client.probe()
                if say:
                    print(
                        f"  [{label}] through fw1: {before['tcp_ok']}/{tcp} TCP connections, "
                        f"{before['udp_ok']}/{udp} UDP flows answer"
                    )
                if agent is not None:
                    r = lab.run(
                        "fw2",
                        sys.executable,
                        "-m",
                        "sniffover.cli",
                        "ctl",
                        "promote",
                        check=False,
                        timeout=60,
                    )
                    if r.returncode != 0:
                        raise CliError(f"demo: promote failed: {r.stderr.strip()}")
                    if say:
                        print(f"  [{label}] fw2: sniffover ctl promote -> {r.stdout.strip()}")
                    installed = sum(1 for line in lab.conntrack("fw2").splitlines() if line)
                took = lab.failover()
                if say:
                    print(f"  [{label}] failover: fw1 unplugged, fw2 took the VIPs in {took:.2f} s")
                after = client.probe()
            finally:
                client.stop()
                if agent is not None:
                    stop_process(agent)
    except LabError as exc:
        raise CliError(f"demo: lab failed: {exc}") from None
    finally:
        os.unlink(log_path)
    return Outcome(
        label,
        after["tcp_ok"],
        after["tcp_total"],
        after["udp_ok"],
        after["udp_total"],
        installed,
        time.monotonic() - start,
    )


def run_demo(tcp: int = 50, udp: int = 10) -> int:
    if os.geteuid() != 0:
        raise CliError("demo: needs root (it creates network namespaces)")
    print(
        f"sniffover demo: {tcp} TCP connections and {udp} UDP flows from a client through "
        "fw1 to a server;\nfw2 sees the segments through a hub; fw1 fails, fw2 takes over.\n"
    )
    results = []
    for with_agent in (True, False):
        results.append(run_once(with_agent, tcp, udp))
        print()
    print("after the failover, answering through fw2:")
    for r in results:
        print(
            f"  {r.label:<30} TCP {r.tcp_ok:>4}/{r.tcp_total:<4} "
            f"UDP {r.udp_ok:>3}/{r.udp_total:<3}  ({r.seconds:.1f} s)"
        )
    print(
        "\nWithout state, fw2's 'ct state established' rule drops every old TCP segment; UDP\n"
        "flows whose client speaks first are simply re-created as new ones from the inside."
    )
    ours, control = results
    ok = ours.tcp_ok == ours.tcp_total and ours.udp_ok == ours.udp_total
    return 0 if ok and control.tcp_ok < control.tcp_total else 1
