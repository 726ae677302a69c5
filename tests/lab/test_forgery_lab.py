"""A hostile host on the hub forges traffic; the standby installs none of it and no real
connection dies of it. The kernels are the judges: fw1's table (what the master really
forwarded) and, after the failover, whether the real connections still work through fw2.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from sniffover.lab.hub import INSIDE_IF, OUTSIDE_IF, Lab, client_ip, server_ip, stop_process
from tests.lab.test_agent_lab import agent_log, sniffover_ctl, start_agent, table

pytestmark = pytest.mark.requires("ip", "nft", "conntrack", "ping", "tcpdump")

NOBODY = "02:00:00:00:00:99"  # a MAC no host has: the hub floods it, nobody takes it
OUTSIDER = "198.51.100.66"


def forge(lab: Lab, kind: str, **kw: object) -> dict:
    argv = [sys.executable, "-m", "sniffover.lab.forge", kind]
    for k, v in kw.items():
        argv += [f"--{k}", str(v)]
    r = lab.run("h1", *argv, timeout=120)
    return json.loads(r.stdout)


def next_seqs(lab: Lab, ports: list[int], cl) -> dict[int, tuple[int, int]]:
    """Client->server (seq after the last byte, ack) per port, read off the wire by h1."""
    cap = lab.popen(
        "h1",
        "tcpdump",
        "-l",
        "-nn",
        "-S",
        "-i",
        "in0",
        "-c",
        str(8 * len(ports)),
        f"tcp and dst port 8000 and src host {client_ip(1)}",
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    time.sleep(0.5)
    cl.probe()
    time.sleep(0.5)
    stop_process(cap)
    out = cap.stdout.read() if cap.stdout else ""
    seqs: dict[int, tuple[int, int]] = {}
    for line in out.splitlines():
        m = re.search(
            r"\.(\d+) > [\d.]+\.8000: Flags \[[^\]]*\], (?:seq (\d+)(?::(\d+))?, )?ack (\d+)", line
        )
        if m and int(m[1]) in ports:
            end = int(m[3] or m[2] or 0)
            if end:
                seqs[int(m[1])] = (end, int(m[4]))
    return seqs


@pytest.mark.parametrize("mode", ["mac", "both"])
def test_forgeries_are_not_installed_and_kill_nothing(mode: str) -> None:
    c, s = client_ip(1), server_ip(1)
    with Lab(hostile=True) as lab:
        fw1_in = lab.mac("fw1", INSIDE_IF)
        fw1_out = lab.mac("fw1", OUTSIDE_IF)
        h1_in = lab.mac("h1", "in0")
        lab.start_server("s1", duration=120)
        ifaces = ["--iface", OUTSIDE_IF] if mode == "both" else []
        agent = start_agent(lab, *ifaces, "--confirm", mode)
        cl = lab.traffic_client("c1", tcp=20, udp=5, duration=120)
        try:
            assert cl.probe()["tcp_ok"] == 20
            status = json.loads(sniffover_ctl(lab, "status", "--json").stdout)
            assert fw1_in in status["confirm"]["master_macs"], status["confirm"]
            ports = cl.info()["tcp_sports"]
            seqs = next_seqs(lab, ports[:5], cl)
            assert len(seqs) >= 3, seqs

            # 1. a whole forged connection between an outsider and the client, not via fw1
            forge(
                lab,
                "handshake",
                iface="in0",
                smac=h1_in,
                dmac=NOBODY,
                src=OUTSIDER,
                dst=c,
                sport=4444,
                dport=22,
                count=50,
            )
            if mode == "both":
                # 2. the same wearing fw1's MAC: only the missing ingress copy betrays it
                forge(
                    lab,
                    "handshake",
                    iface="in0",
                    smac=fw1_in,
                    dmac=NOBODY,
                    src=OUTSIDER,
                    dst=c,
                    sport=5555,
                    dport=22,
                    count=50,
                )
            # 3. in-window RST/FIN for real connections, sent to nobody: fw1 never sees them
            for port, (seq, ack) in seqs.items():
                forge(
                    lab,
                    "teardown",
                    iface="in0",
                    smac=h1_in,
                    dmac=NOBODY,
                    src=c,
                    dst=s,
                    sport=port,
                    dport=8000,
                    seq=seq,
                    ack=ack,
                    count=2,
                )
            # 4. out-of-window RST/FIN and data to fw1 itself: its conntrack drops them
            for port, (seq, ack) in seqs.items():
                forge(
                    lab,
                    "teardown",
                    iface="in0",
                    smac=h1_in,
                    dmac=fw1_in,
                    src=c,
                    dst=s,
                    sport=port,
                    dport=8000,
                    seq=(seq + 0x50000000) & 0xFFFFFFFF,
                    ack=ack,
                    count=2,
                )
                forge(
                    lab,
                    "oow",
                    iface="in0",
                    smac=h1_in,
                    dmac=fw1_in,
                    src=c,
                    dst=s,
                    sport=port,
                    dport=8000,
                    seq=seq,
                    ack=ack,
                    count=5,
                )
            # 5. a SYN flood of spoofed inside sources through fw1 to a closed port
            flood = forge(
                lab,
                "synflood",
                iface="in0",
                smac=h1_in,
                dmac=fw1_in,
                src="192.0.2.100",
                dst=s,
                dport=9,
                count=20000,
            )
            assert flood["sent"] == 20000
            time.sleep(1.0)
            status = json.loads(sniffover_ctl(lab, "status", "--json").stdout)
            assert cl.probe()["tcp_ok"] == 20  # the forgeries killed nothing for real
            assert sniffover_ctl(lab, "ctl", "promote").returncode == 0
            fw1, fw2 = table(lab, "fw1"), table(lab, "fw2")
            lab.failover()
            after = cl.probe()
        finally:
            cl.stop()
            stop_process(agent)
            log = agent_log(agent)
        forged = [k for k in fw2 if OUTSIDER in (k[1], k[2])]
        assert forged == [], forged
        flood_entries = [k for k in fw2 if k[4] == 9]
        assert flood_entries == [], flood_entries[:5]
        live = {k: v for k, v in fw1.items() if k[0] == "tcp" and k[4] == 8000}
        assert {k: fw2.get(k) for k in live} == live  # no real connection torn down
        assert after["tcp_ok"] == 20 and after["udp_ok"] == 5, (after, log)
        assert status["flows"] < 25_000
        assert fw1_out  # both MACs exist; with two segments the agent learns both
        if mode == "both":
            assert fw1_out in status["confirm"]["master_macs"], status["confirm"]
