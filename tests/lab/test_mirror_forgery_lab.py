"""A hostile host on a remote mirror's underlay forges mirror traffic (issue 16, point 2).

The lab's switch mirrors fw1's ports into VXLAN (VNI 4242, from 203.0.113.129) to fw2's
collector port; h1 sits on the same underlay and sends VXLAN-encapsulated copies of complete
forwarded-looking handshakes (both copies of each packet, from fw1's own MACs: what a mirror
of a real connection shows) from its own address with the right VNI, and from the switch's
address (spoofed) with a wrong VNI. With ``--mirror-from`` and ``--mirror-session`` none of
them installs anything and the real flows survive the failover. The control: the same
forgeries with neither selector are installed, so the selectors are what stopped them.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

from sniffover.lab.hub import (
    COLLECTOR_IF,
    COLLECTOR_IP,
    INSIDE_IF,
    MIRROR_VNI,
    MIRROR_VTEP,
    OUTSIDE_IF,
    UNDERLAY_H1,
    Lab,
    stop_process,
)
from tests.lab.test_agent_lab import agent_log, sniffover_ctl, start_agent, table

pytestmark = pytest.mark.requires("ip", "nft", "conntrack", "ping", "tc")

FORGED_CLIENT = "192.0.2.200"
OUTSIDER = "198.51.100.66"


def forge_mirror(lab: Lab, outer_src: str, vni: int, sport: int, count: int = 10) -> int:
    """``count`` forged mirrored handshakes from h1's underlay port; frames sent."""
    r = lab.run(
        "h1",
        sys.executable,
        *("-m", "sniffover.lab.forge", "vxlan-mirror", "--iface", "und0"),
        *("--smac", lab.mac("h1", "und0"), "--dmac", lab.mac("fw2", COLLECTOR_IF)),
        *("--outer-src", outer_src, "--outer-dst", COLLECTOR_IP, "--vni", str(vni)),
        *("--master-in", lab.mac("fw1", INSIDE_IF), "--master-out", lab.mac("fw1", OUTSIDE_IF)),
        *("--src", FORGED_CLIENT, "--dst", OUTSIDER, "--sport", str(sport)),
        *("--count", str(count)),
        timeout=60,
    )
    return int(json.loads(r.stdout)["sent"])


def forged(lab: Lab) -> list[tuple]:
    return [k for k in table(lab, "fw2") if OUTSIDER in (k[1], k[2])]


def test_forged_vxlan_mirror_traffic_installs_nothing() -> None:
    with Lab(mirror="vxlan", hostile=True) as lab:
        lab.start_server("s1", duration=90)
        cl = lab.traffic_client("c1", tcp=20, udp=5, duration=90)
        agent = start_agent(lab)  # --mirror-session 4242 --mirror-from 203.0.113.129
        try:
            assert cl.probe()["tcp_ok"] == 20
            # the wrong source with the right VNI; the switch's address with a wrong VNI
            sent = forge_mirror(lab, UNDERLAY_H1, MIRROR_VNI, 5000)
            sent += forge_mirror(lab, MIRROR_VTEP, MIRROR_VNI + 1, 6000)
            assert sent == 160
            cl.probe()
            time.sleep(1.5)
            status = json.loads(sniffover_ctl(lab, "status", "--json").stdout)
            selected = forged(lab)
            stop_process(agent)
            # the control: the same forgeries, neither selector set
            capture = ("--iface", COLLECTOR_IF, "--decap", "vxlan", "--confirm", "both")
            control = start_agent(lab, capture=capture)
            forge_mirror(lab, UNDERLAY_H1, MIRROR_VNI, 7000)
            deadline = time.monotonic() + 5
            while len(unselected := forged(lab)) < 10 and time.monotonic() < deadline:
                time.sleep(0.3)
            stop_process(control)
            lab.failover()
            after = cl.probe()
        finally:
            cl.stop()
            stop_process(agent)
    log = agent_log(agent)
    print(json.dumps({"skipped": status["skipped"], "unselected": len(unselected)}))
    assert status["ok"] and status["installed"] >= 25, (status, log[-3000:])
    assert selected == [], selected
    # each forger's 80 frames counted and dropped by the selector that stops them
    skipped = status["skipped"]
    assert skipped.get("mirror-foreign-source") == 80, skipped
    assert skipped.get("mirror-foreign-session") == 80, skipped
    # the control: all 10 forgeries convince an agent that selects nothing
    assert len(unselected) == 10, (unselected, agent_log(control)[-3000:])
    assert after["tcp_ok"] == 20 and after["udp_ok"] == 5, after
