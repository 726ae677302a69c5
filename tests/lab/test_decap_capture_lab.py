"""Remote mirrors through a real capture handle: tunnel frames put on a veth in a namespace
(the kernel here has no gretap/erspan devices, so ERSPAN, GRE-TEB and TZSP frames are
built by tests/tunnels.py and sent from a packet socket), read by ``LiveCapture`` with the
agent's kernel filter, snap length and decapsulation. The VXLAN lab with real vxlan devices
and the agent is tests/lab (VXLAN lab). Control: the same frames without ``--decap``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.requires("ip")

ROOT = Path(__file__).resolve().parents[2]
NS = f"snfdec-cap{os.getpid() % 100000}"

# Run inside the namespace: send the frames on one end, capture on the other, print counts.
SCRIPT = r"""
import json, select, socket, sys, time
from sniffover.capture.decap import HEADROOM, Decapsulator, outer_bpf
from sniffover.capture.live import LiveCapture
from tests.tunnels import MIRROR_SRC, outer
from tests.unit.test_decap import tcp_frame

decap = sys.argv[1] == "decap"
bpf = outer_bpf("auto", (4789,)) if decap else ""
cap = LiveCapture("snfdec-b", snaplen=256 + HEADROOM, bpf=bpf)
if decap:
    cap.set_decap(Decapsulator("auto", linktype=cap.decoder.linktype, sources=[MIRROR_SRC]))
tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
tx.bind(("snfdec-a", 0))
kinds = ["vxlan", "erspan1", "erspan2", "erspan3", "erspan3o", "gre", "tzsp"]
frames = [outer(k, tcp_frame(1000 * (j + 1) + i, vlan=j), seq=2 * i + 1, session=5 + j)
          for j, k in enumerate(kinds) for i in range(20)]
frames += [tcp_frame(9000)] * 10  # bare traffic on the mirror port
frames += [outer("vxlan", tcp_frame(9100), src=bytes([192, 0, 2, 99]))] * 10  # a forger
for f in frames:
    tx.send(f)
got = []
deadline = time.time() + 5
while time.time() < deadline and len(got) < 140 + (0 if decap else 20):
    if select.select([cap.fileno()], [], [], 0.2)[0]:
        got += cap.read()
print(json.dumps({
    "inner": sorted({(p.sport // 1000, p.vlan) for p in got if p.proto == 6}),
    "outer": sum(1 for p in got if p.proto in (17, 47)),
    "frames": cap.frames,
    "tunnel_dropped": cap.decap.tunnel_dropped if cap.decap else 0,
    "skipped": dict(cap.decoder.skipped),
}))
"""


@pytest.fixture
def veth():
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        ip = ["ip", "-n", NS, "link"]
        subprocess.run([*ip, "add", "snfdec-a", "type", "veth", "peer", "name", "snfdec-b"],
                       check=True)  # fmt: skip
        for dev in ("snfdec-a", "snfdec-b"):
            subprocess.run([*ip, "set", dev, "up"], check=True)
        yield NS
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)


def _run(mode: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        ["ip", "netns", "exec", NS, sys.executable, "-c", SCRIPT, mode],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT, check=True,
    ).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def test_every_tunnel_through_a_live_capture(veth: str) -> None:
    got = _run("decap")
    # every kind's inner segments, with their inner VLAN tags; nothing of the outer headers
    assert got["inner"] == [[j + 1, j] for j in range(7)]
    assert got["outer"] == 0
    # the kernel filter kept the bare frames away from Python; the forger's are counted
    assert got["frames"] == 150 and got["skipped"] == {"mirror-foreign-source": 10}
    # ERSPAN II/III numbered 1, 3, 5 ...: one frame lost per step, per session and kind
    # (three ERSPAN II/III streams of 20 frames: 19 gaps each; GRE-TEB has no S bit here)
    assert got["tunnel_dropped"] == 3 * 19


def test_control_without_decap_sees_only_the_outer_headers(veth: str) -> None:
    got = _run("none")
    assert got["outer"] == 150 and got["inner"] == [[9, 0]]  # tunnels as UDP/GRE, bare TCP
