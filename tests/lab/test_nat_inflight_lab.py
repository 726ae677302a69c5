"""The agent started in the middle of short SNATed connections (no prime) never installs a
mapping the master does not hold.

A connection whose handshake happened before the agent started is picked up mid-stream,
often only from its closing FIN/ACK segments, and its two copies (inside and outside) can
arrive in either order. Installing it with a guessed identity mapping (reply to the inside
client instead of the NAT address) is worse than not installing it: the client's next
connection from that port meets the wrong entry after a takeover. The judge is fw1's own
table: every entry fw2's kernel holds for the lab's traffic must be one fw1 holds, with
the same reply tuple (``conntrack -L`` in both namespaces).

The agent is started ``STARTS`` times at random moments while a bounded client loop keeps
opening connections that live 0.3-2.5 s (half closed by the client first, half by the
server); every other start has ``--master-mac`` (no learning phase). The counts are
printed on every run (``-s``). Control: this test against ``confirm.py`` before the rule
(issue 15 point 2) failed 3 of 3 runs with 470-497 wrong entries each: 0-6 per start
with ``--master-mac`` (untranslated ESTABLISHED entries where fw1 holds TIME_WAIT
translated, as in the issue), about 120 per start while the MACs were learned.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import Counter

import pytest

from sniffover.lab.hub import FW_INSIDE, FW_OUTSIDE, Lab, server_ip, stop_process
from tests.lab.test_agent_lab import HOLDER, sniffover_ctl, start_agent
from tests.lab.test_nat_lab import nat_table

pytestmark = pytest.mark.requires("ip", "nft", "conntrack")

STARTS = 8
WATCH = 3.0  # seconds the agent runs: every connection in flight at its start has closed
PORT = 8000
QUIET_ARP = f"""\
table arp snfquiet {{
    chain out {{
        type filter hook output priority 0; policy accept;
        arp saddr ip {{ {FW_INSIDE["fw1"]}, {FW_OUTSIDE["fw1"]} }} drop
    }}
}}
"""


def wrong_entries(fw1: dict[tuple, tuple], fw2: dict[tuple, tuple]) -> tuple[list, int]:
    """fw2's entries of the lab's TCP traffic whose (orig, reply) fw1 does not hold, and how
    many fw2 entries were judged."""
    wrong, judged = [], 0
    for orig, (reply, state) in fw2.items():
        if orig[0] != "tcp" or PORT not in (orig[4], reply[2]):
            continue
        judged += 1
        master = fw1.get(orig)
        if master is None or master[0] != reply:
            wrong.append((orig, reply, state, master))
    return wrong, judged


def run_starts(starts: int, seed: int) -> dict:
    rng = random.Random(seed)
    out: dict = {
        "wrong": [],
        "judged": 0,
        "master": 0,
        "picked": 0,
        "starts": [],
        "confirm": Counter(),
    }
    with Lab(nat="snat") as lab:
        lab.start_server("s1", duration=120)
        churn = lab.python(
            "c1",
            "-m",
            "sniffover.lab.traffic",
            "churn",
            "--server",
            server_ip(1),
            "--rate",
            "30",
            "--life",
            "0.3",
            "2.5",
            "--duration",
            "90",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            time.sleep(1.5)  # connections of every age in flight
            macs = [
                a for dev in ("inside0", "outside0") for a in ("--master-mac", lab.mac("fw1", dev))
            ]
            for i in range(starts):
                lab.conntrack_flush("fw2")
                time.sleep(rng.uniform(0.0, 0.5))
                # connections past their handshake when the agent starts
                before = {k for k, v in nat_table(lab, "fw1").items() if v[1] == "ESTABLISHED"}
                # every other start: the master's MACs given (no learning phase at all)
                mode = "mac" if i % 2 else "arp"
                agent = start_agent(lab, "--iface", "outside0", *(macs if i % 2 else ()))
                try:
                    time.sleep(WATCH)
                    status = json.loads(sniffover_ctl(lab, "status", "--json").stdout)
                    out["confirm"].update(
                        {k: v for k, v in status["confirm"].items() if isinstance(v, int)}
                    )
                    fw2 = nat_table(lab, "fw2")
                    fw1 = nat_table(lab, "fw1")
                finally:
                    stop_process(agent)
                wrong, judged = wrong_entries(fw1, fw2)
                picked = sum(1 for k in before if k in fw2 and fw2[k][0] == fw1[k][0])
                out["wrong"] += [(mode, *w) for w in wrong]
                out["judged"] += judged
                out["picked"] += picked
                out["starts"].append((mode, len(wrong), judged, picked))
            out["master"] = sum(1 for k in fw1 if k[0] == "tcp" and k[4] == PORT)
        finally:
            stop_process(churn)
    return out


def test_agent_started_amid_snat_connections_installs_no_wrong_mapping() -> None:
    r = run_starts(STARTS, seed=time.time_ns())
    print(
        f"\n{STARTS} starts: {len(r['wrong'])} wrong of {r['judged']} installed entries, "
        f"{r['picked']} of them picked up mid-stream (master holds {r['master']}); "
        f"per start (MACs, wrong, installed, picked up): {r['starts']}; "
        f"confirmer counters: {dict(r['confirm'])}"
    )
    assert r["judged"] >= STARTS * 10, r  # the agent did install the flows it confirmed
    assert r["picked"] >= STARTS, r  # ... among them connections in flight at its start
    assert r["wrong"] == [], r["wrong"][:10]


def test_snat_handshakes_while_the_master_mac_is_learned_get_the_masters_mapping() -> None:
    """Handshakes only, the moment the agent is up (before it knows fw1's MACs: both copies
    of every packet are tracked as two entries), then silence. Once the master is known
    the copies read meanwhile are paired after the fact: fw2 holds each connection once,
    with fw1's translation (before: both copies' entries, identity mappings)."""
    with Lab(nat="snat") as lab:
        lab.start_server("s1", duration=60)
        assert lab.ping("c1", server_ip(1))  # neighbours resolved before fw1 goes quiet
        # fw1 answers no ARP for its own addresses (the agent's trust anchor) for a while:
        # the agent cannot know its MACs while the handshakes happen
        lab.run("fw1", "nft", "-f", "-", input=QUIET_ARP)
        agent = start_agent(lab, "--iface", "outside0", wait_ready=False)  # still learning
        holder = lab.popen(
            "c1",
            sys.executable,
            "-c",
            HOLDER,
            "12",
            server_ip(1),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "ready"
            learning = json.loads(sniffover_ctl(lab, "status", "--json").stdout)["confirm"]
            assert learning["master_macs"] == [], learning
            lab.run("fw1", "nft", "delete", "table", "arp", "snfquiet")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                status = json.loads(sniffover_ctl(lab, "status", "--json").stdout)
                if len(status["confirm"]["master_macs"]) == 2:
                    break
                time.sleep(0.3)
            assert len(status["confirm"]["master_macs"]) == 2, status["confirm"]
            time.sleep(2.2)  # the tuples fw1 sent confirmed (at learning and the next tick)
            fw1, fw2 = nat_table(lab, "fw1"), nat_table(lab, "fw2")
        finally:
            stop_process(holder)
            stop_process(agent)
    ours = {k: v[0] for k, v in fw1.items() if k[0] == "tcp" and k[4] == PORT}
    assert len(ours) == 12, fw1
    theirs = {k: v[0] for k, v in fw2.items() if k[0] == "tcp" and PORT in (k[4], v[0][2])}
    assert theirs == ours, (theirs, status["confirm"])
