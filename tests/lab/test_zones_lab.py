"""Zones (issue 15 point 7): two inside segments reuse the same addresses, the master puts
each segment's connections in its own conntrack zone, and the standby's installed entries
must carry the same zones to survive a failover.

The hub lab gets a second inside segment (``inside1`` on both firewalls) whose client
``z1`` has the address of ``c1``; both open the same TCP and UDP flows from the same
source ports to ``s1``, so the two segments' original tuples are identical. Both firewalls
run the VRF-style ruleset of a shared outside: ``ct original zone set`` by input
interface (zone 1 for inside0, 2 for inside1; the reply tuples stay in zone 0), SNAT to a
per-zone address (198.51.100.1 / .5), and the reply routed back to the right segment by
the entry's zone (``meta mark set ct zone`` + ``ip rule fwmark``). The standby runs
sniffover with ``--zone-map iface:inside0=1/orig --zone-map iface:inside1=2/orig``.
fw1's table is the judge: fw2 must hold the same entries, zones and reply tuples included,
and every connection of both segments must answer after the failover. The control (no
--zone-map) folds the two segments' flows into one entry each in zone 0, which the
zone-1/2 lookups of fw2 after the takeover never find: the connections die.

FTP in the zones (``test_ftp_expectations_in_zones``): both firewalls attach the FTP helper
and admit new TCP from either inside segment to port 21 only; ``c1`` (zone 1) and ``z1``
(zone 2), same address, each announce a passive port through fw1. fw2 must hold both
expectations, each in its master's zone (asked with CTA_EXPECT_ZONE: the kernel's dump
and ``conntrack -L expect`` do not show it), equal to fw1's, NAT part included, and after
the failover both data connections pass fw2 as RELATED.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from sniffover.lab.hub import (
    FW_INSIDE,
    INSIDE_IF,
    INSIDE_VIP,
    OUTSIDE_IF,
    OUTSIDE_VIP,
    Lab,
    client_ip,
    lab_env,
    stop_process,
)
from tests.lab.test_agent_lab import agent_log, sniffover_ctl, start_agent

pytestmark = pytest.mark.requires("ip", "nft", "conntrack")

ZONE_IF = "inside1"
VIP2 = "198.51.100.5"  # zone 2's SNAT address; moves with a failover like the VIP
TCP, UDP, SPORT = 8, 3, 42000
ZONE_RULES = f"""\
table inet snfzon {{
    chain pre_zone {{
        type filter hook prerouting priority raw; policy accept;
        iifname "{INSIDE_IF}" ct original zone set 1
        iifname "{ZONE_IF}" ct original zone set 2
    }}
    chain pre_mark {{
        type filter hook prerouting priority mangle; policy accept;
        meta mark set ct zone
    }}
}}
table ip snfzonnat {{
    chain postrouting_nat {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{OUTSIDE_IF}" ct zone 1 snat to {OUTSIDE_VIP}
        oifname "{OUTSIDE_IF}" ct zone 2 snat to {VIP2}
    }}
}}
"""
ENTRY = re.compile(
    r"^(tcp|udp)\s+\d+\s+\d+\s+(?:([A-Z_]+)\s+)?src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+) "
    r"(?:zone-orig=(\d+) )?(?:\[UNREPLIED\] )?src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)"
)


class ZoneLab(Lab):
    """The hub lab plus a second inside segment (hub bridge ``brin2``) with client ``z1``."""

    def __init__(self, ftp: bool = False) -> None:
        super().__init__(prefix=f"snfzon-{time.monotonic_ns() % 10**6}", ftp=ftp)
        self.nodes.append("z1")

    def ip(self, node: str) -> str:
        return client_ip(1) if node == "z1" else super().ip(node)

    def _create(self) -> None:
        super()._create()
        self._ip("hub", "link", "add", "brin2", "type", "bridge", "ageing_time", "0",
                 "stp_state", "0")  # fmt: skip
        self._ip("hub", "link", "set", "brin2", "up")
        self._hub_port("z1", "z1", "eth0", "brin2")
        self._ip("z1", "addr", "add", f"{client_ip(1)}/24", "dev", "eth0")
        self._ip("z1", "link", "set", "eth0", "up")
        self._ip("z1", "route", "add", "default", "via", INSIDE_VIP)
        for fw in ("fw1", "fw2"):
            self._hub_port(f"{fw}-in2", fw, ZONE_IF, "brin2")
            # same addresses as on inside0: replies find their segment by zone, not address
            self._ip(fw, "addr", "add", f"{FW_INSIDE[fw]}/24", "dev", ZONE_IF, "noprefixroute")
            self._ip(fw, "link", "set", ZONE_IF, "up")
            for zone, dev in ((1, INSIDE_IF), (2, ZONE_IF)):
                self._ip(fw, "route", "add", "192.0.2.0/24", "dev", dev, "table", str(100 + zone))
                self._ip(fw, "rule", "add", "fwmark", str(zone), "table", str(100 + zone))
            for key in ("all", "default", INSIDE_IF, ZONE_IF):
                self.sysctl(fw, f"net.ipv4.conf.{key}.rp_filter", 0)
            # new connections from inside1 too (as from inside0), then the zone rules
            syn = "tcp flags & (fin|syn|rst|ack) == syn" + (" tcp dport 21" if self.ftp else "")
            for rule in ("meta l4proto udp", syn):
                self.run(fw, "nft", f'insert rule inet snflab forward_filter iifname "{ZONE_IF}" '
                         f"{rule} ct state new accept")  # fmt: skip
            self.run(fw, "nft", "-f", "-", input=ZONE_RULES)
        self._ip("fw1", "addr", "add", f"{INSIDE_VIP}/24", "dev", ZONE_IF, "noprefixroute")
        self._ip("fw1", "addr", "add", f"{VIP2}/24", "dev", OUTSIDE_IF)

    def _take_over(self, old: str, new: str) -> float:
        self._ip(old, "link", "set", ZONE_IF, "down")
        took = super()._take_over(old, new)
        self._ip(new, "addr", "replace", f"{INSIDE_VIP}/24", "dev", ZONE_IF, "noprefixroute")
        self._ip(new, "addr", "replace", f"{VIP2}/24", "dev", OUTSIDE_IF)
        self.garp(new, ZONE_IF, INSIDE_VIP)
        self.garp(new, OUTSIDE_IF, VIP2)
        return took


def entries(lab: Lab, node: str) -> dict[tuple, tuple]:
    """(orig tuple, zone-orig) -> (reply tuple, state) of our flows, from ``conntrack -L``."""
    out = {}
    for line in lab.conntrack(node).splitlines():
        m = ENTRY.match(line)
        if m and int(m.group(6)) in (8000, 9000):
            g = m.groups()
            out[(g[0], g[2], g[3], int(g[4]), int(g[5]), int(g[6] or 0))] = (
                (g[7], g[8], int(g[9]), int(g[10])),
                g[1] or "",
            )
    return out


def run_zones(zone_map: bool) -> dict:
    r: dict = {}
    with ZoneLab() as lab:
        lab.start_server("s1", duration=60)
        extra = ["--iface", ZONE_IF, "--iface", OUTSIDE_IF]
        if zone_map:
            extra += ["--zone-map", f"iface:{INSIDE_IF}=1/orig"]
            extra += ["--zone-map", f"iface:{ZONE_IF}=2/orig"]
        agent = start_agent(lab, *extra)
        clients = [
            lab.traffic_client(n, tcp=TCP, udp=UDP, duration=60, sport_base=SPORT)
            for n in ("c1", "z1")
        ]
        try:
            r["initial"] = [c.initial for c in clients]
            deadline = time.monotonic() + 10  # the master's MAC on all three segments
            while time.monotonic() < deadline:
                status = json.loads(sniffover_ctl(lab, "status", "--json").stdout)
                if len(status["confirm"]["master_macs"]) == 3:
                    break
                for c in clients:
                    c.probe()
            r["macs"] = status["confirm"]["master_macs"]
            r["before"] = [c.probe() for c in clients]  # every flow speaks with MACs known
            time.sleep(0.3)
            r["promote"] = sniffover_ctl(lab, "ctl", "promote").returncode
            r["fw1"], r["fw2"] = entries(lab, "fw1"), entries(lab, "fw2")
            lab.failover()
            r["after"] = [c.probe() for c in clients]
        finally:
            for c in clients:
                c.stop()
            stop_process(agent)
            r["log"] = agent_log(agent)
    return r


def test_zones_survive_failover() -> None:
    r = run_zones(zone_map=True)
    assert all(i["tcp_ok"] == TCP and i["udp_ok"] == UDP for i in r["initial"]), r["initial"]
    assert len(r["macs"]) == 3, r["macs"]
    fw1, fw2 = r["fw1"], r["fw2"]
    # the master: every flow twice, once per zone, with the same original tuple
    assert len(fw1) == 2 * (TCP + UDP), fw1
    assert {k[5] for k in fw1} == {1, 2}
    assert len({k[:5] for k in fw1}) == TCP + UDP
    assert {v[0][1] for v in fw1.values()} == {OUTSIDE_VIP, "198.51.100.5"}  # per-zone SNAT
    assert r["promote"] == 0
    # the standby holds the same entries: zones, translations and TCP states
    assert {k: fw2.get(k) for k in fw1} == fw1, r["log"][-3000:]
    assert all(a["tcp_ok"] == TCP and a["udp_ok"] == UDP for a in r["after"]), r["after"]


def test_zones_control_without_zone_map_loses_them() -> None:
    r = run_zones(zone_map=False)
    assert all(i["tcp_ok"] == TCP for i in r["initial"]), r["initial"]
    fw1, fw2 = r["fw1"], r["fw2"]
    assert len(fw1) == 2 * (TCP + UDP)
    # the segments' identical flows fold together: nothing lands in the master's zones
    assert not any(k in fw2 for k in fw1), fw2
    assert all(a["tcp_ok"] == 0 for a in r["after"]), r["after"]


def test_prime_reads_directional_zones() -> None:
    """A prime keeps an entry's zone and its direction: the ctnetlink dump
    (CTA_TUPLE_ZONE inside a tuple) and the ``conntrack -L`` text (zone-orig=/zone-reply=)
    of a real table give the same seeded entries."""
    from sniffover.lab import netns

    name = netns.create(f"{netns.base_name('snflab-snfzon-dump-')}")
    try:
        base = ["conntrack", "-I", "-p", "udp", "-s", "192.0.2.1", "-d", "198.51.100.1",
                "-t", "100"]  # fmt: skip
        for sport, zone in ((1001, ["--orig-zone", "7"]), (1002, ["--reply-zone", "8"]),
                            (1003, ["--zone", "9"]), (1004, [])):  # fmt: skip
            argv = [*base, "--sport", str(sport), "--dport", "53", *zone]
            subprocess.run(netns.exec_argv(name, *argv), check=True, capture_output=True)
        code = (
            "import json\n"
            "from sniffover.kernel.dump import dump_table\n"
            "from sniffover.prime.client import listing_entries\n"
            "from sniffover.conntrack.snapshot import seed\n"
            "import subprocess\n"
            "text = subprocess.run(['conntrack', '-L'], capture_output=True, text=True).stdout\n"
            "for src in (dump_table(), listing_entries(text)):\n"
            "    print(json.dumps(sorted((e.orig[3], seed(e, 0).zone, seed(e, 0).zone_dir)"
            " for e in src)))\n"
        )
        res = subprocess.run(
            netns.exec_argv(name, sys.executable, "-c", code),
            capture_output=True, text=True, env=lab_env(), timeout=30,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        want = [[1001, 7, 1], [1002, 8, 2], [1003, 9, 3], [1004, 0, 3]]
        assert [json.loads(line) for line in res.stdout.splitlines()] == [want, want]
    finally:
        netns.delete(name)


# fw's expectations, each with the zones (0, 1, 2) a GET with CTA_EXPECT_ZONE finds it in
EXPECT_ZONES = """
import ipaddress, json
from sniffover.kernel.ctnetlink import CtnlSocket
from sniffover.kernel.dump import dump_expectations
from sniffover.kernel.expect import expectation_in_zone
with CtnlSocket() as s:
    print(json.dumps(sorted(
        [x.tuple[4], str(ipaddress.ip_address(x.tuple[1])), x.nat_dir,
         x.nat_tuple[3] if x.nat_tuple else -1, x.fn, x.helper,
         [z for z in (0, 1, 2) if expectation_in_zone(s, x.tuple, z)]]
        for x in dump_expectations())))
"""


def expect_zones(lab: Lab, node: str) -> list:  # type: ignore[type-arg]
    got = lab.run(node, sys.executable, "-c", EXPECT_ZONES, check=False)
    return json.loads(got.stdout) if got.returncode == 0 else [got.stderr]


def expect_listing(lab: Lab, node: str) -> list[str]:
    """``conntrack -L expect`` without the timeout column."""
    out = lab.run(node, "conntrack", "-L", "expect", check=False).stdout
    return sorted(ln.split(" ", 1)[1] for ln in out.splitlines() if " proto=" in ln)


@pytest.mark.requires("vsftpd")
def test_ftp_expectations_in_zones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.lab.test_ftp_lab import CLIENT, FILES, Client, start_vsftpd, stop_sessions

    class NodeClient(Client):
        def __init__(self, lab: Lab, node: str) -> None:
            from sniffover.lab.hub import server_ip

            pipe = subprocess.PIPE
            self.proc = lab.python(node, "-u", "-c", CLIENT, server_ip(1),
                                   stdin=pipe, stdout=pipe, text=True)  # fmt: skip
            assert self._read(15).get("ready")

    r: dict = {}  # type: ignore[type-arg]
    with ZoneLab(ftp=True) as lab:
        agent = None
        clients: list[Client] = []
        try:
            start_vsftpd(lab, tmp_path)
            agent = start_agent(lab, "--iface", ZONE_IF, "--iface", OUTSIDE_IF,
                                "--zone-map", f"iface:{INSIDE_IF}=1/orig",
                                "--zone-map", f"iface:{ZONE_IF}=2/orig")  # fmt: skip
            clients = [NodeClient(lab, n) for n in ("c1", "z1")]
            deadline = time.monotonic() + 10  # the master's MAC on all three segments
            while time.monotonic() < deadline:
                status = json.loads(sniffover_ctl(lab, "status", "--json").stdout)
                if len(status["confirm"]["master_macs"]) == 3:
                    break
                for node in ("c1", "z1"):
                    lab.ping(node, "198.51.100.10")
            r["connect"] = [c("connect", 1) for c in clients]
            r["announce"] = [c("pasv_announce", 1) for c in clients]
            r["fw1"] = expect_zones(lab, "fw1")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                r["fw2"] = expect_zones(lab, "fw2")
                if r["fw2"] == r["fw1"]:
                    break
                time.sleep(0.3)
            r["fw1_listing"], r["fw2_listing"] = (
                expect_listing(lab, "fw1"),
                expect_listing(lab, "fw2"),
            )
            r["promote"] = sniffover_ctl(lab, "ctl", "promote").returncode
            lab.failover()
            r["after"] = [
                c("pasv_finish", 1, f"f{i}.bin") for i, c in ((2, clients[0]), (3, clients[1]))
            ]
        finally:
            for c in clients:
                stop_process(c.proc)
            if agent is not None:
                stop_process(agent)
                r["log"] = agent_log(agent)[-3000:]
            stop_sessions(lab)
    info = json.dumps(r, indent=1)
    ports = [a.get("port") for a in r["announce"]]
    # fw1: one expectation per zone's session, the client's (untranslated) address as the
    # source, translated by the NAT helper in the ORIGINAL direction
    assert r["fw1"] == sorted(
        [p, client_ip(1), 0, p, "nat-follow-master", "ftp", [z]]
        for p, z in zip(ports, (1, 2), strict=True)
    ), info
    assert r["fw2"] == r["fw1"], info  # fw2: the same, each in its master's zone
    assert r["fw2_listing"] == r["fw1_listing"] and len(r["fw1_listing"]) == 2, info
    assert r["promote"] == 0, info
    assert r["after"] == [{"ok": True, "size": len(FILES[f"f{i}.bin"])} for i in (2, 3)], info
