"""Golden captures of two conntrack zones with overlapping addresses (issue 15 point 7).

Two VRF-like paths through one router namespace, every address used twice::

    c1 192.0.2.1 <-in1-> router <-out1-> s1 198.51.100.1     zone 1 (iif in1, out1)
    c2 192.0.2.1 <-in2-> router <-out2-> s2 198.51.100.1     zone 2 (iif in2, out2)

The router picks the path by policy routing (``ip rule iif ... table``) and its nft
ruleset gives every packet the zone of the interface it came in on (``ct zone set`` at
priority raw, before conntrack), as a firewall with one VRF per customer does. Each zone
carries the same flows from the same ports, so the kernel holds every tuple twice, once
per zone. tcpdump captures ``in1`` and ``in2``; the frames of ``in1`` are then tagged
VLAN 100 and those of ``in2`` VLAN 200 (this kernel has no 802.1Q module: the trunk a
sniffer would see is built afterwards) and merged in time order into one pcap. The
router's ``conntrack -L -o extended`` (zones included) is the expected table; the
replay needs ``--zone-map vlan:100=1 --zone-map vlan:200=2`` (kept in the json as
``zone_map``).

    python -m tools.golden.record_zones --out pcaps
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import dpkt

from sniffover.lab import netns

from .record import ROUTER_RULESET, Lab, RecorderError, _tcpdump_stats

NAME = "zones_vlan_overlap"
CLIENT, ROUTER_IN, ROUTER_OUT, SERVER = "192.0.2.1", "192.0.2.254", "198.51.100.254", "198.51.100.1"
ZONES = ((1, 100), (2, 200))  # (zone, VLAN tag of its inside segment)
ZONE_RULES = """table inet snfzon {
    chain pre {
        type filter hook prerouting priority raw; policy accept;
        iifname { "in1", "out1" } ct zone set 1
        iifname { "in2", "out2" } ct zone set 2
    }
}
"""


class ZoneLab(Lab):
    """Client, router and server namespaces per zone, one router."""

    def __init__(self) -> None:
        super().__init__(netns.base_name("snfrec-snfzon-"))  # recognisable beside others
        self.prefix = self.router[:-2]
        self.caps: list[tuple[object, Path]] = []

    def ns(self, role: str, z: int) -> str:
        return f"{self.prefix}-{role}{z}"

    def setup(self) -> None:  # type: ignore[override]
        existing = set(netns.list_netns())
        names = [self.router] + [self.ns(r, z) for z, _ in ZONES for r in ("c", "s")]
        for ns in names:
            self.created.append(netns.create(ns, existing))
        for z, _ in ZONES:
            t = str(100 + z)
            for side, peer, mine, theirs, net in (
                ("in", "c", ROUTER_IN, CLIENT, "192.0.2.0/24"),
                ("out", "s", ROUTER_OUT, SERVER, "198.51.100.0/24"),
            ):
                dev = f"{side}{z}"
                host = self.ns(peer, z)
                self.sh(None, "ip", "-n", self.router, "link", "add", dev, "type", "veth",
                        "peer", "name", "eth0", "netns", host)  # fmt: skip
                self.sh(None, "ip", "-n", self.router, "addr", "add", f"{mine}/32", "dev", dev)
                self.sh(None, "ip", "-n", self.router, "link", "set", dev, "up")
                self.sh(None, "ip", "-n", self.router, "route", "add", net, "dev", dev,
                        "table", t)  # fmt: skip
                self.sh(None, "ip", "-n", self.router, "rule", "add", "iif", dev, "table", t)
                self.sh(None, "ip", "-n", host, "addr", "add", f"{theirs}/24", "dev", "eth0")
                self.sh(None, "ip", "-n", host, "link", "set", "eth0", "up")
                self.sh(None, "ip", "-n", host, "link", "set", "lo", "up")
                self.sh(None, "ip", "-n", host, "route", "add", "default", "via", mine)
        self.sysctl(self.router, "net.ipv4.ip_forward", 1)
        for key in ("all", "default", "in1", "in2", "out1", "out2"):
            self.sysctl(self.router, f"net.ipv4.conf.{key}.rp_filter", 0)
        self.sh(self.router, "nft", "-f", "-", stdin=ROUTER_RULESET + ZONE_RULES)

    def capture(self, dev: str, pcap: Path) -> None:
        self.start_capture(pcap, iface=dev)
        self.caps.append((self.tcpdump, pcap))
        self.tcpdump, self.capturing = None, False

    def stop_all(self) -> dict[str, int]:
        stats: dict[str, int] = {}
        for proc, _ in self.caps:
            self.tcpdump = proc  # type: ignore[assignment]
            for k, v in _tcpdump_stats(self.stop_capture()).items():
                stats[k] = stats.get(k, 0) + v
        return stats


def tag_and_merge(parts: list[tuple[Path, int]], out: Path) -> int:
    """802.1Q-tag each part's Ethernet frames with its VLAN id; one pcap in time order."""
    frames: list[tuple[float, bytes]] = []
    for path, vlan in parts:
        with path.open("rb") as f:
            for ts, buf in dpkt.pcap.Reader(f):
                b = bytes(buf)
                frames.append((ts, b[:12] + struct.pack("!HH", 0x8100, vlan) + b[12:]))
    frames.sort(key=lambda x: x[0])
    with out.open("wb") as f:
        w = dpkt.pcap.Writer(f, snaplen=262144, linktype=1, nano=False)
        for ts, b in frames:
            w.writepkt(b, ts=ts)
    return len(frames)


def record(outdir: Path) -> Path:
    outdir = outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    lab = ZoneLab()
    parts: list[tuple[Path, int]] = []
    try:
        lab.setup()
        for z, vlan in ZONES:
            part = outdir / f".{NAME}.in{z}.pcap"
            lab.capture(f"in{z}", part)
            parts.append((part, vlan))
        for z, _ in ZONES:
            srv = lab.spawn(lab.ns("s", z), "echo_server",
                            {"tcp": [[SERVER, 8080]], "udp": [[SERVER, 5300]]})  # fmt: skip
            srv.expect("ready")
        for z, _ in ZONES:  # the same flows from the same ports: identical tuples
            lab.run_py(lab.ns("c", z), "zone_client", {"dst": SERVER, "base": 41000})
        time.sleep(0.5)
        stats = lab.stop_all()
        dump_time, table = lab.dump()
        sysctls = lab.router_sysctls()
        pcap = outdir / f"{NAME}.pcap"
        tag_and_merge(parts, pcap)
        meta = {
            "dump_time": dump_time,
            "description": "Two zones (ct zone set by input interface, one VRF-like path "
            "each) carrying the same TCP/UDP flows with the same addresses and ports; the "
            "inside captures tagged VLAN 100 (zone 1) and 200 (zone 2) and merged.",
            "router_sysctls": sysctls,
            "scenario": NAME,
            "tcpdump": stats,
            "zone_map": [f"vlan:{v}={z}" for z, v in ZONES],
        }
        (outdir / f"{NAME}.conntrack").write_text(table)
        (outdir / f"{NAME}.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    finally:
        lab.teardown()
        for part, _ in parts:
            part.unlink(missing_ok=True)
    return pcap


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.golden.record_zones", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--out", default="pcaps", help="output directory (default: pcaps)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces)")
    try:
        path = record(Path(args.out))
    except (RecorderError, OSError) as exc:
        print(f"[recorder] {NAME}: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"[recorder] {NAME}: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
