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


DIRECTIONAL = "zones_directional_snat"
SNAT = {1: "198.51.100.201", 2: "198.51.100.202"}
# A shared outside: the inside interfaces put the original tuple in their zone, the reply
# tuple stays in zone 0 (made unique by a per-zone SNAT address), and replies find their
# inside segment by the entry's zone (mark from ct zone, ip rule fwmark).
DIRECTIONAL_RULES = f"""table inet snfzon {{
    chain pre {{
        type filter hook prerouting priority raw; policy accept;
        iifname "in1" ct original zone set 1
        iifname "in2" ct original zone set 2
    }}
    chain pre_mark {{
        type filter hook prerouting priority mangle; policy accept;
        meta mark set ct zone
    }}
}}
table ip snfzonnat {{
    chain post {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "out" ct zone 1 snat to {SNAT[1]}
        oifname "out" ct zone 2 snat to {SNAT[2]}
    }}
}}
"""


class ZoneLab(Lab):
    """A client namespace per zone and one router; a server per zone, or with
    ``shared_outside`` one server behind the router's interface ``out``."""

    def __init__(self, shared_outside: bool = False) -> None:
        super().__init__(netns.base_name("snfrec-snfzon-"))  # recognisable beside others
        self.prefix = self.router[:-2]
        self.shared = shared_outside
        self.caps: list[tuple[object, Path]] = []

    def ns(self, role: str, z: int) -> str:
        return f"{self.prefix}-{role}{z}"

    def _link(self, dev: str, host: str, mine: str, theirs: str, table: str, net: str) -> None:
        r = self.router
        self.sh(None, "ip", "-n", r, "link", "add", dev, "type", "veth",
                "peer", "name", "eth0", "netns", host)  # fmt: skip
        self.sh(None, "ip", "-n", r, "addr", "add", mine, "dev", dev)
        self.sh(None, "ip", "-n", r, "link", "set", dev, "up")
        if table:
            self.sh(None, "ip", "-n", r, "route", "add", net, "dev", dev, "table", table)
        self.sh(None, "ip", "-n", host, "addr", "add", f"{theirs}/24", "dev", "eth0")
        self.sh(None, "ip", "-n", host, "link", "set", "eth0", "up")
        self.sh(None, "ip", "-n", host, "route", "add", "default", "via", mine.split("/")[0])

    def setup(self) -> None:  # type: ignore[override]
        existing = set(netns.list_netns())
        servers = [self.ns("s", 0)] if self.shared else [self.ns("s", z) for z, _ in ZONES]
        for ns in [self.router, *(self.ns("c", z) for z, _ in ZONES), *servers]:
            self.created.append(netns.create(ns, existing))
        r = self.router
        for z, _ in ZONES:
            t = str(100 + z)
            self._link(f"in{z}", self.ns("c", z), f"{ROUTER_IN}/32", CLIENT, t, "192.0.2.0/24")
            if self.shared:  # replies go back by the mark their entry's zone gives them
                self.sh(None, "ip", "-n", r, "rule", "add", "fwmark", str(z), "table", t)
            else:
                self.sh(None, "ip", "-n", r, "rule", "add", "iif", f"in{z}", "table", t)
                self._link(f"out{z}", self.ns("s", z), f"{ROUTER_OUT}/32", SERVER, t,
                           "198.51.100.0/24")  # fmt: skip
                self.sh(None, "ip", "-n", r, "rule", "add", "iif", f"out{z}", "table", t)
        if self.shared:
            self._link("out", self.ns("s", 0), f"{ROUTER_OUT}/24", SERVER, "", "")
            for a in SNAT.values():
                self.sh(None, "ip", "-n", r, "addr", "add", f"{a}/24", "dev", "out")
        self.sysctl(r, "net.ipv4.ip_forward", 1)
        for key in ("all", "default", "in1", "in2"):
            self.sysctl(r, f"net.ipv4.conf.{key}.rp_filter", 0)
        rules = DIRECTIONAL_RULES if self.shared else ZONE_RULES
        self.sh(r, "nft", "-f", "-", stdin=ROUTER_RULESET + rules)

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

    def ifindex(self, dev: str) -> int:
        return int(self.sh(self.router, "cat", f"/sys/class/net/{dev}/ifindex"))


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


def tag_cooked(src: Path, out: Path, vlans: dict[int, int]) -> int:
    """A ``tcpdump -i any`` capture (SLL2) with each frame of interface index i tagged
    ``vlans[i]`` (802.1Q after the cooked header, as a capture that kept the tag has it)."""
    n = 0
    with src.open("rb") as f, out.open("wb") as g:
        r = dpkt.pcap.Reader(f)
        if r.datalink() != 276:
            raise RecorderError(f"{src}: expected a Linux cooked v2 capture")
        w = dpkt.pcap.Writer(g, snaplen=262144, linktype=276, nano=False)
        for ts, buf in r:
            b = bytes(buf)
            vlan = vlans.get(struct.unpack("!I", b[4:8])[0]) if len(b) >= 20 else None
            if vlan is not None:
                b = b"\x81\x00" + b[2:20] + struct.pack("!H", vlan) + b[0:2] + b[20:]
                n += 1
            w.writepkt(b, ts=ts)
    return n


def _traffic(lab: ZoneLab) -> None:
    servers = [lab.ns("s", 0)] if lab.shared else [lab.ns("s", z) for z, _ in ZONES]
    for ns in servers:
        srv = lab.spawn(ns, "echo_server", {"tcp": [[SERVER, 8080]], "udp": [[SERVER, 5300]]})
        srv.expect("ready")
    for z, _ in ZONES:  # the same flows from the same ports: identical original tuples
        lab.run_py(lab.ns("c", z), "zone_client", {"dst": SERVER, "base": 41000})
    time.sleep(0.5)


def record(outdir: Path, name: str = NAME) -> Path:
    outdir = outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    directional = name == DIRECTIONAL
    lab = ZoneLab(shared_outside=directional)
    parts: list[tuple[Path, int]] = []
    pcap = outdir / f"{name}.pcap"
    try:
        lab.setup()
        if directional:  # both copies of every packet: tcpdump -i any, tagged afterwards
            part = outdir / f".{name}.any.pcap"
            lab.capture("any", part)
            parts.append((part, 0))
        else:
            for z, vlan in ZONES:
                part = outdir / f".{name}.in{z}.pcap"
                lab.capture(f"in{z}", part)
                parts.append((part, vlan))
        _traffic(lab)
        stats = lab.stop_all()
        dump_time, table = lab.dump()
        sysctls = lab.router_sysctls()
        if directional:
            tag_cooked(parts[0][0], pcap, {lab.ifindex(f"in{z}"): v for z, v in ZONES})
            zone_map = [f"vlan:{v}={z}/orig" for z, v in ZONES]
            what = (
                "Two inside segments reuse one client address and ports towards one shared "
                "server; ct original zone set 1/2 by input interface, SNAT per zone, replies "
                "routed by ct zone; tcpdump -i any, the inside interfaces' frames tagged "
                "VLAN 100 (zone 1) and 200 (zone 2)."
            )
        else:
            tag_and_merge(parts, pcap)
            zone_map = [f"vlan:{v}={z}" for z, v in ZONES]
            what = (
                "Two zones (ct zone set by input interface, one VRF-like path each) carrying "
                "the same TCP/UDP flows with the same addresses and ports; the inside "
                "captures tagged VLAN 100 (zone 1) and 200 (zone 2) and merged."
            )
        meta = {
            "dump_time": dump_time,
            "description": what,
            "router_sysctls": sysctls,
            "scenario": name,
            "tcpdump": stats,
            "zone_map": zone_map,
        }
        (outdir / f"{name}.conntrack").write_text(table)
        (outdir / f"{name}.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    finally:
        lab.teardown()
        for part, _ in parts:
            part.unlink(missing_ok=True)
    return pcap


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.golden.record_zones", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--out", default="pcaps", help="output directory (default: pcaps)")
    ap.add_argument("--only", nargs="+", choices=[NAME, DIRECTIONAL], default=[NAME, DIRECTIONAL])
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces)")
    for name in args.only:
        try:
            path = record(Path(args.out), name)
        except (RecorderError, OSError) as exc:
            print(f"[recorder] {name}: FAILED: {exc}", file=sys.stderr)
            return 1
        print(f"[recorder] {name}: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
