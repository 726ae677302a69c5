"""NAT reconstructed from the two segments: after the failover fw2 keeps translating the
existing connections exactly as fw1 did. The kernel tables are the judges (fw1's own
entries, reply tuples included), and a control run without sniffover loses them."""

from __future__ import annotations

import json
import re
import sys
import time

import pytest

from sniffover.lab.hub import OUTSIDE_VIP, Lab, client_ip, server_ip, stop_process
from tests.lab.test_agent_lab import agent_log, sniffover_ctl, start_agent

pytestmark = pytest.mark.requires("ip", "nft", "conntrack", "ping")

TUPLE = r"src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)"
LINE = re.compile(rf"^(\w+)\s+\d+\s+\d+\s+(?:([A-Z_]+)\s+)?{TUPLE}.*? {TUPLE}")
ICMP = r"src=(\S+) dst=(\S+) type=(\d+) code=(\d+) id=(\d+)"
ICMP_LINE = re.compile(rf"^icmp\s+1\s+\d+\s+{ICMP} .*?{ICMP}")


def nat_table(lab: Lab, node: str) -> dict[tuple, tuple]:
    """orig tuple -> (reply tuple, state) from ``conntrack -L``."""
    out = {}
    for line in lab.conntrack(node).splitlines():
        m = LINE.match(line)
        if m:
            g = m.groups()
            orig = (g[0], g[2], g[3], int(g[4]), int(g[5]))
            reply = (g[6], g[7], int(g[8]), int(g[9]))
            out[orig] = (reply, g[1] or "")
    return out


def icmp_table(lab: Lab, node: str) -> dict[tuple, tuple]:
    """ICMP entries from ``conntrack -L``: orig (src, dst, type, code, id) -> reply."""
    out = {}
    for line in lab.conntrack(node, "-p", "icmp").splitlines():
        m = ICMP_LINE.match(line)
        if m:
            g = m.groups()
            out[g[:5]] = g[5:]
    return out


def run_nat(kind: str, with_agent: bool) -> dict:
    r: dict = {}
    with Lab(nat=kind) as lab:
        if kind in ("snat", "masquerade"):
            lab.start_server("s1", duration=90)
            node, kw = "c1", {}
        else:  # port forward on the outside VIP to a server on the inside host c1
            lab.start_server("c1", duration=90)
            node, kw = "s1", {"server": OUTSIDE_VIP, "tcp_port": 8080, "udp_port": 9090}
        agent = start_agent(lab, "--iface", "outside0") if with_agent else None
        cl = lab.traffic_client(node, tcp=20, udp=5, duration=90, **kw)
        try:
            assert cl.initial["tcp_ok"] == 20 and cl.initial["udp_ok"] == 5, cl.initial
            if agent is not None:
                # the master's MAC on each segment is learned from the first routed traffic;
                # flows that spoke only before that are paired by their next packets
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    status = json.loads(sniffover_ctl(lab, "status", "--json").stdout)
                    if len(status["confirm"]["master_macs"]) == 2:
                        break
                    cl.probe()
                assert len(status["confirm"]["master_macs"]) == 2, status["confirm"]
                cl.probe()  # every flow speaks once more with both MACs known
            assert cl.probe()["tcp_ok"] == 20
            if kind != "dnat":  # echoes through the source NAT (issue 15 point 1)
                assert lab.ping(node, server_ip(1), count=1, wait=1.0)
                lab.run(node, "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", server_ip(1))
            time.sleep(0.3)
            if agent is not None:
                assert sniffover_ctl(lab, "ctl", "promote").returncode == 0
            r["fw1"], r["fw2"] = nat_table(lab, "fw1"), nat_table(lab, "fw2")
            r["icmp1"], r["icmp2"] = icmp_table(lab, "fw1"), icmp_table(lab, "fw2")
            lab.failover()
            r["after"] = cl.probe()
        finally:
            cl.stop()
            if agent is not None:
                stop_process(agent)
                r["log"] = agent_log(agent)
    return r


@pytest.mark.parametrize("kind", ["snat", "masquerade", "dnat"])
def test_nat_connections_survive_failover(kind: str) -> None:
    r = run_nat(kind, with_agent=True)
    fw1, fw2 = r["fw1"], r["fw2"]
    ours = {k: v for k, v in fw1.items() if k[4] in (8000, 9000, 8080, 9090)}
    assert len(ours) == 25, fw1
    translated = [k for k, (reply, _) in ours.items() if reply[1] != k[1] or reply[0] != k[2]]
    assert len(translated) == 25  # fw1 really translated every one of them
    # fw2 holds the same entries with the same translation (reply tuple) and TCP state
    assert {k: fw2.get(k) for k in ours} == ours, r.get("log", "")[-3000:]
    if kind != "dnat":
        # the echoes' entries: fw1 translated them, fw2 holds the same reply, echo id included
        icmp1 = {k: v for k, v in r["icmp1"].items() if k[1] == server_ip(1)}
        assert len(icmp1) == 2 and all(reply[1] == OUTSIDE_VIP for reply in icmp1.values()), icmp1
        assert all(k[4] == reply[4] != "0" for k, reply in icmp1.items()), icmp1
        assert {k: r["icmp2"].get(k) for k in icmp1} == icmp1, r["icmp2"]
    assert r["after"]["tcp_ok"] == 20 and r["after"]["udp_ok"] == 5, r["after"]


def test_nat_control_without_sniffover_loses_tcp() -> None:
    r = run_nat("snat", with_agent=False)
    assert r["after"]["tcp_ok"] == 0, r["after"]
    assert client_ip(1) and server_ip(1) and sys.executable


def test_icmp_through_snat_primed(tmp_path) -> None:
    """Echoes answered before the agent started, idle since: only the prime (fw1's dump)
    knows them; fw2 must hold them with fw1's reply tuple, echo id included."""
    from tests.lab.test_prime_agent_lab import MASTER, key_file, start_serve

    with Lab(nat="snat") as lab:
        key = key_file(tmp_path)
        serve = start_serve(lab, key)
        agent = None
        try:
            for _ in range(2):  # two echo ids, one echo each, before the agent exists
                assert lab.ping("c1", server_ip(1), count=1, wait=1.0)
            args = ("--iface", "outside0", "--prime-from", MASTER, "--key-file", key)
            agent = start_agent(lab, *args, "--prime-required")
            time.sleep(0.3)
            icmp1 = {k: v for k, v in icmp_table(lab, "fw1").items() if k[1] == server_ip(1)}
            icmp2 = icmp_table(lab, "fw2")
        finally:
            if agent is not None:
                stop_process(agent)
            stop_process(serve)
    assert len(icmp1) == 2 and all(v[1] == OUTSIDE_VIP and v[4] == k[4] for k, v in icmp1.items())
    assert {k: icmp2.get(k) for k in icmp1} == icmp1, icmp2
