"""A bystander on the sniffed segment tries to become "the master" (issue 13, point 2).

The hostile node h1 sends routed-looking UDP (off-subnet source, TTL 63) from its own MAC,
500 frames per second, from 2 s before the agent starts until after the failover, then
forges handshakes from its own MAC. The agent is anchored on fw1's own addresses (ARP).
Judges: the agent's status (who is the master), fw2's kernel table (no forged entry) and
the connections through fw2 after the failover (every one answers).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from sniffover.lab.hub import Lab, client_ip, stop_process
from tests.lab.test_agent_lab import agent_log, sniffover_ctl, start_agent, table

pytestmark = pytest.mark.requires("ip", "nft", "conntrack", "ping")

OUTSIDER = "198.51.100.66"
RATE = 500
# A MAC no host has: the review's poison, both directions of the handshake from h1's own MAC
# (what an elected h1 would confirm), never through fw1. Frames sent *to* fw1 that it
# really forwards are the master's decisions (README: what is not defended).
NOBODY = "02:00:00:00:00:99"


def flood(lab: Lab, dev: str, src: str, dst: str, smac: str, seconds: float):
    return lab.popen(
        "h1",
        sys.executable,
        "-m",
        "sniffover.lab.forge",
        "routed",
        "--iface",
        dev,
        "--smac",
        smac,
        "--dmac",
        "ff:ff:ff:ff:ff:ff",
        "--src",
        src,
        "--dst",
        dst,
        "--rate",
        str(RATE),
        "--count",
        str(int(RATE * seconds)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


@pytest.mark.parametrize("segments", ["one", "two"])
def test_bystander_flooding_routed_traffic_is_never_the_master(segments: str) -> None:
    with Lab(clients=1, servers=1, hostile=True) as lab:
        h1_in, h1_out = lab.mac("h1", "in0"), lab.mac("h1", "out0")
        fw1_in, fw1_out = lab.mac("fw1", "inside0"), lab.mac("fw1", "outside0")
        lab.start_server("s1", duration=120)
        early = lab.traffic_client("c1", tcp=20, udp=5, duration=120)
        floods = [flood(lab, "in0", "198.51.100.200", client_ip(1), h1_in, 40)]
        if segments == "two":
            floods.append(flood(lab, "out0", "192.0.2.200", "198.51.100.10", h1_out, 40))
        agent = None
        try:
            time.sleep(2)  # the flood runs before the agent starts ...
            t0 = time.monotonic()
            ifaces = ("--iface", "outside0") if segments == "two" else ()
            agent = start_agent(lab, *ifaces)  # ready = every segment's master known
            ready_after = time.monotonic() - t0
            status = json.loads(sniffover_ctl(lab, "status", "--json").stdout)
            masters = status["confirm"]["master_macs"]
            want = [fw1_in, fw1_out] if segments == "two" else [fw1_in]
            assert sorted(masters) == sorted(want), status["confirm"]
            late = lab.traffic_client("c1", tcp=20, udp=5, duration=120)
            assert late.initial["tcp_ok"] == 20, late.initial
            # the early ones, opened before the agent, are picked up from their next packet
            assert early.probe()["tcp_ok"] == 20
            # ... and while it runs, forged handshakes from h1's own MAC (the review's poison)
            r = lab.run(
                "h1",
                sys.executable,
                "-m",
                "sniffover.lab.forge",
                "handshake",
                "--iface",
                "in0",
                "--smac",
                h1_in,
                "--dmac",
                NOBODY,
                "--src",
                client_ip(1),
                "--dst",
                OUTSIDER,
                "--sport",
                "5555",
                "--count",
                "20",
                timeout=60,
            )
            assert json.loads(r.stdout)["sent"] == 80
            time.sleep(1.5)
            status = json.loads(sniffover_ctl(lab, "status", "--json").stdout)
            assert h1_in not in status["confirm"]["master_macs"], status["confirm"]
            assert status["ok"] and status["installed"] > 0, status
            forged = [k for k in table(lab, "fw2") if OUTSIDER in (k[1], k[2])]
            assert forged == [], forged
            want_tcp = {p for p in early.info()["tcp_sports"] + late.info()["tcp_sports"]}
            lab.failover()
            got_early, got_late = early.probe(), late.probe()
            assert got_early["tcp_ok"] == 20 and got_late["tcp_ok"] == 20, (got_early, got_late)
            assert got_early["udp_ok"] == 5 and got_late["udp_ok"] == 5, (got_early, got_late)
            print(
                f"{segments} segment(s): ready {ready_after:.1f} s after start under a "
                f"{RATE}/s routed flood; {len(want_tcp)} TCP connections survived; "
                f"anchors {status['confirm'].get('anchors')}"
            )
        except AssertionError:
            if agent is not None:
                print(agent_log(agent)[-3000:])
            raise
        finally:
            for f in floods:
                stop_process(f)
            if agent is not None:
                stop_process(agent)
            early.stop()
