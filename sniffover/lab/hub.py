"""A failover lab in network namespaces: two firewalls on a shared hub, clients and servers.

::

    c1..cN --eth0--[brin  ]--inside0--  fw1 (VIPs)  --outside0--[brout ]--eth0-- s1..sM
                   [ hub  ]--inside0--  fw2         --outside0--[ hub  ]
                                 fw1 --sync0-- fw2  (203.0.113.0/24, direct veth)

The hub namespace holds two bridges with learning off and ageing time 0, so every frame is
flooded to every port like on a hub: the standby firewall (fw2) sees all traffic that the
active one (fw1) forwards.  ``segment="mirror"`` makes them learning switches instead
(default ageing time: known unicast goes to its port only) and gives fw2 a sniffing port
per segment (``span-in0``, ``span-out0``, not bridged) that receives a mirror (SPAN) of
fw1's port, both directions (tc ``mirred``); ``"mirror-dup"`` also mirrors the hosts' ports,
so every frame between a host and fw1 arrives twice; ``"switch"`` is the learning switch
without any mirror (the control: fw2's ordinary port sees none of fw1's unicast).

Both firewalls run the same strict ruleset (policy drop, ``ct state invalid`` dropped, new
connections only from inside, ``nf_conntrack_tcp_loose=0``), so a TCP connection survives a
failover only if its conntrack entry exists on fw2.

Every namespace is named ``snflab-<pid>-<n>-<node>`` (``snflab-<tag><pid>-...`` with
``SNFLAB_TAG=<tag>``, to tell parallel sessions' labs apart); ``Lab.destroy`` (also run by
the context manager, on failure and at interpreter exit) ends the processes the lab started,
by pid, and deletes exactly the namespaces it created (through ``lab.netns``, the project's
one namespace helper).

``mirror="vxlan"``: a remote mirror instead of a hub. The two segments are learning bridges
(a switch: known unicast goes to its port only), and the switch mirrors both of fw1's ports
(``tc`` clsact + a match-all u32 filter, ``mirred egress mirror``, both directions) into a
VXLAN tunnel (VNI ``MIRROR_VNI``, UDP 4789) to fw2's collector port ``col0`` on an underlay
of its own::

    hub: brin/brout --fw1-in/fw1-out (mirrored)--> vxmir (VTEP 203.0.113.129)
         brund (underlay, 203.0.113.128/25) --fw2-col--> fw2 col0 (203.0.113.130)
                                            --h1-und --> h1 und0 (hostile=True, .131)

fw2 keeps its inside0/outside0 ports for the takeover, but they see only what a switch
floods; the agent sniffs ``col0`` (the underlay, encapsulated frames) with ``--decap vxlan``
(``Lab.agent_capture_args``). fw2 does not track the tunnel's datagrams (``notrack``) and
drops them in input: AF_PACKET sees them first, and no port-unreachable goes back.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from . import netns
from .netns import list_netns

INSIDE_NET = "192.0.2.0/24"
OUTSIDE_NET = "198.51.100.0/24"
SYNC_NET = "203.0.113.0/24"
INSIDE_VIP = "192.0.2.1"
OUTSIDE_VIP = "198.51.100.1"
FW_INSIDE = {"fw1": "192.0.2.2", "fw2": "192.0.2.3"}
FW_OUTSIDE = {"fw1": "198.51.100.2", "fw2": "198.51.100.3"}
FW_SYNC = {"fw1": "203.0.113.1", "fw2": "203.0.113.2"}
INSIDE_IF = "inside0"
OUTSIDE_IF = "outside0"
SYNC_IF = "sync0"
# mirror="vxlan": the remote mirror's underlay (the upper half of the sync net, a more
# specific route than the sync link's /24), the tunnel and fw2's collector port
UNDERLAY_NET = "203.0.113.128/25"
MIRROR_VTEP = "203.0.113.129"  # the switch (hub namespace), the tunnel's source
COLLECTOR_IP = "203.0.113.130"  # fw2's col0
UNDERLAY_H1 = "203.0.113.131"  # the hostile node's underlay port (hostile=True)
COLLECTOR_IF = "col0"
MIRROR_VNI = 4242
VXLAN_PORT = 4789
MIRRORS = ("vxlan",)
HOST_IF = "eth0"
FIREWALLS = ("fw1", "fw2")
SEGMENTS = ("hub", "mirror", "mirror-dup", "switch", "vxlan")  # vxlan: mirror="vxlan"
# segment="mirror"/"mirror-dup": fw2's sniffing ports (SPAN destinations) per segment
SPAN_IF = {INSIDE_IF: "span-in0", OUTSIDE_IF: "span-out0"}
# ipv6=True: the segments are dual-stack. The firewalls hold no global IPv6 address of
# their own, only the VIPs (which move with a failover): the standby needs none, and
# IPv6 masquerade then has exactly one address to pick.
INSIDE_NET6 = "2001:db8:1::/64"
OUTSIDE_NET6 = "2001:db8:2::/64"
INSIDE_VIP6 = "2001:db8:1::1"
OUTSIDE_VIP6 = "2001:db8:2::1"

NFT_TABLE = "snflab"
RULESET = f"""\
table inet {NFT_TABLE} {{
    counter invalid_drop {{ }}
    counter other_drop {{ }}
    counter new_accept {{ }}
    chain forward_filter {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ct state invalid counter name "invalid_drop" drop
        iifname "{INSIDE_IF}" tcp flags & (fin|syn|rst|ack) == syn ct state new \
counter name "new_accept" accept
        iifname "{INSIDE_IF}" meta l4proto udp ct state new counter name "new_accept" accept
        iifname "{INSIDE_IF}" icmp type echo-request ct state new \
counter name "new_accept" accept
        counter name "other_drop" drop
    }}
}}
"""

# NAT variants (both firewalls get the same rules, as an HA pair must):
# "snat": everything leaving by the outside is source-NATed to the outside VIP (which moves
#         with a failover, so the mapping stays valid on the new master);
# "masquerade": the same with masquerade, fw1's outside VIP made the primary address
#         (with ipv6=True an inet table: IPv6 is masqueraded to the outside VIP6 too);
# "dnat": port forwards on the outside VIP to the first client: tcp 8080 -> :8000,
#         udp 9090 -> :9000 (and the forward chain admits new DNATed connections).
NAT_RULES = {
    "masquerade": f"""\
table ip {NFT_TABLE}nat {{
    chain postrouting_nat {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{OUTSIDE_IF}" masquerade
    }}
}}
""",
    "snat": f"""\
table ip {NFT_TABLE}nat {{
    chain postrouting_nat {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{OUTSIDE_IF}" snat to {OUTSIDE_VIP}
    }}
}}
""",
    "dnat": f"""\
table ip {NFT_TABLE}nat {{
    chain prerouting_nat {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "{OUTSIDE_IF}" ip daddr {OUTSIDE_VIP} tcp dport 8080 dnat to 192.0.2.10:8000
        iifname "{OUTSIDE_IF}" ip daddr {OUTSIDE_VIP} udp dport 9090 dnat to 192.0.2.10:9000
    }}
}}
""",
}

# ftp=True: both firewalls attach the kernel's FTP helper to control connections (helper
# assignment is explicit only since 6.0; prerouting, after conntrack) and new TCP from the
# inside is limited to port 21, so FTP data connections pass only as RELATED.
FTP_HELPER = """\
    ct helper ftp-std {
        type "ftp" protocol tcp;
        l3proto inet;
    }
    chain prerouting_helper {
        type filter hook prerouting priority filter; policy accept;
        tcp dport 21 ct helper set "ftp-std"
    }
"""

# tftp=True: both firewalls attach the kernel's TFTP helper to UDP flows to port 69. The
# server answers a request from a new port: a new flow from the outside, which the strict
# ruleset admits only as RELATED (the helper's expectation).
TFTP_HELPER = """\
    ct helper tftp-std {
        type "tftp" protocol udp;
        l3proto inet;
    }
    chain prerouting_tftp_helper {
        type filter hook prerouting priority filter; policy accept;
        udp dport 69 ct helper set "tftp-std"
    }
"""

_PKG_PARENT = str(Path(__file__).resolve().parents[2])
_counter = itertools.count(1)
_live: weakref.WeakSet[Lab] = weakref.WeakSet()


class LabError(RuntimeError):
    pass


def client_ip(i: int) -> str:
    """Address of client ``c<i>`` (1-based)."""
    return f"192.0.2.{9 + i}"


def server_ip(i: int) -> str:
    """Address of server ``s<i>`` (1-based)."""
    return f"198.51.100.{9 + i}"


def client_ip6(i: int) -> str:
    """IPv6 address of client ``c<i>`` (labs with ``ipv6=True``)."""
    return f"2001:db8:1::{9 + i:x}"


def server_ip6(i: int) -> str:
    """IPv6 address of server ``s<i>`` (labs with ``ipv6=True``)."""
    return f"2001:db8:2::{9 + i:x}"


def lab_env() -> dict[str, str]:
    """Environment for python processes in the lab: this ``sniffover`` package importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PKG_PARENT, env.get("PYTHONPATH")) if p)
    return env


def stop_process(proc: subprocess.Popen[Any], timeout: float = 3.0) -> None:
    """SIGTERM, then SIGKILL, the process by its pid; reaps it."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue


class Lab:
    """The lab's namespaces and processes.  Use as ``with Lab(clients=2) as lab: ...``."""

    def __init__(
        self,
        clients: int = 1,
        servers: int = 1,
        prefix: str | None = None,
        ipv6: bool = False,
        hostile: bool = False,
        nat: str | None = None,
        ftp: bool = False,
        tftp: bool = False,
        segment: str = "hub",
        mirror: str | None = None,
    ) -> None:
        if segment not in SEGMENTS:
            raise ValueError(f"segment must be one of {', '.join(SEGMENTS)}")
        self.segment = segment
        if not 1 <= clients <= 200 or not 1 <= servers <= 200:
            raise ValueError("clients and servers must be between 1 and 200")
        if prefix is None:
            # SNFLAB_TAG: a tag after ``snflab-`` (labs of parallel sessions told apart)
            tag = os.environ.get("SNFLAB_TAG", "")
            prefix = f"{netns.base_name('snflab-' + tag)}-{next(_counter)}"
        elif not prefix.startswith("snflab-"):
            prefix = f"snflab-{prefix}"
        self.prefix = prefix
        self.clients = [f"c{i}" for i in range(1, clients + 1)]
        self.servers = [f"s{i}" for i in range(1, servers + 1)]
        self.nodes = ["hub", *FIREWALLS, *self.clients, *self.servers]
        # "h1": an attacker with a port on each hub segment (in0, out0), no addresses
        self.hostile = hostile
        if nat is not None and nat not in NAT_RULES:
            raise ValueError(f"nat must be one of {sorted(NAT_RULES)}")
        self.nat = nat
        self.ftp = ftp
        self.tftp = tftp
        if segment == "vxlan":  # the tests' one parameter for every way fw2 is fed
            segment, mirror = "hub", "vxlan"
            self.segment = segment
        if mirror is not None and mirror not in MIRRORS:
            raise ValueError(f"mirror must be one of {MIRRORS}")
        self.mirror = mirror
        if hostile:
            self.nodes.append("h1")
        self.ipv6 = ipv6
        self.active = "fw1"
        self.created: list[str] = []
        self.procs: list[subprocess.Popen[Any]] = []
        self._atexit_registered = False

    # --- naming ---------------------------------------------------------------------------
    def ns(self, node: str) -> str:
        """Full namespace name of ``node`` (``hub``, ``fw1``, ``fw2``, ``c<i>``, ``s<i>``)."""
        if node not in self.nodes:
            raise KeyError(f"no lab node {node!r}")
        return f"{self.prefix}-{node}"

    def sniff_if(self, dev: str) -> str:
        """fw2's capture interface for the segment of its port ``dev`` (its SPAN port in
        the mirror labs, else the port itself)."""
        return SPAN_IF[dev] if self.segment.startswith("mirror") else dev

    def mac(self, node: str, dev: str) -> str:
        """The MAC address of ``dev`` in ``node``."""
        return self.run(node, "cat", f"/sys/class/net/{dev}/address").stdout.strip()

    def ip(self, node: str) -> str:
        """The node's main address (inside address for firewalls)."""
        if node in FW_INSIDE:
            return FW_INSIDE[node]
        if node.startswith("c"):
            return client_ip(int(node[1:]))
        if node.startswith("s"):
            return server_ip(int(node[1:]))
        raise KeyError(f"{node!r} has no address")

    def ip6(self, node: str) -> str:
        """The IPv6 address of host ``node`` (``c<i>``, ``s<i>``; labs with ``ipv6=True``)."""
        if node.startswith("c"):
            return client_ip6(int(node[1:]))
        if node.startswith("s"):
            return server_ip6(int(node[1:]))
        raise KeyError(f"{node!r} has no IPv6 address")

    def summary(self) -> str:
        """A few lines describing the lab (for ``sniffover demo`` and logs)."""
        hosts = ", ".join(f"{n}={self.ip(n)}" for n in self.clients + self.servers)
        return "\n".join(
            [
                f"lab {self.prefix}: namespaces {', '.join(self.ns(n) for n in self.nodes)}",
                f"inside {INSIDE_NET} (VIP {INSIDE_VIP}), outside {OUTSIDE_NET} "
                f"(VIP {OUTSIDE_VIP}), sync {SYNC_NET}; active firewall {self.active}",
                f"hosts: {hosts}",
            ]
        )

    # --- running things -------------------------------------------------------------------
    def run(
        self,
        node: str | None,
        *argv: str,
        check: bool = True,
        timeout: float = 30.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``node``'s namespace (root namespace if ``node`` is None)."""
        cmd = netns.exec_argv(self.ns(node), *argv) if node else list(argv)
        res = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env=lab_env(),
            check=False,
        )
        if check and res.returncode != 0:
            raise LabError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    def popen(self, node: str, *argv: str, **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in ``node``'s namespace; the lab stops it (by pid) on destroy."""
        kw.setdefault("env", lab_env())
        proc: subprocess.Popen[Any] = subprocess.Popen(netns.exec_argv(self.ns(node), *argv), **kw)
        self.procs.append(proc)
        return proc

    def python(self, node: str, *argv: str, **kw: Any) -> subprocess.Popen[Any]:
        """``popen`` of this interpreter (``python3 -m ...`` etc.) in ``node``."""
        return self.popen(node, sys.executable, *argv, **kw)

    def _ip(self, node: str, *argv: str) -> None:
        self.run(None, "ip", "-n", self.ns(node), *argv)

    def sysctl(self, node: str, key: str, value: str | int) -> None:
        self.run(node, "sysctl", "-q", "-w", f"{key}={value}")

    def read_sysctl(self, node: str, key: str) -> str:
        return self.run(node, "sysctl", "-n", key).stdout.strip()

    # --- life cycle -----------------------------------------------------------------------
    def __enter__(self) -> Lab:
        try:
            self.create()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def create(self) -> Lab:
        if not self._atexit_registered:
            _live.add(self)
            self._atexit_registered = True
        t0 = time.monotonic()
        try:
            self._create()
        except BaseException:
            self.destroy()
            raise
        self.create_seconds = time.monotonic() - t0
        return self

    def _create(self) -> None:
        existing = set(list_netns())
        for node in self.nodes:
            name = self.ns(node)
            try:
                netns.create(name, existing)
            except netns.NetnsError as exc:
                raise LabError(str(exc)) from exc
            self.created.append(name)
            if not self.ipv6:
                self.sysctl(node, "net.ipv6.conf.all.disable_ipv6", 1)
                self.sysctl(node, "net.ipv6.conf.default.disable_ipv6", 1)
            else:  # addresses usable at once (a VIP too, after a takeover); no RS chatter
                for scope in ("all", "default"):
                    self.sysctl(node, f"net.ipv6.conf.{scope}.accept_dad", 0)
                    self.sysctl(node, f"net.ipv6.conf.{scope}.router_solicitations", 0)
        # the hub: two flooding bridges (or two learning switches, default ageing time:
        # the mirror segments and the remote mirror)
        ageing = ("ageing_time", "0") if self.segment == "hub" and not self.mirror else ()
        for br in ("brin", "brout"):
            self._ip("hub", "link", "add", br, "type", "bridge", *ageing, "stp_state", "0")
            self._ip("hub", "link", "set", br, "up")
        # hosts: hub port <node> <-> eth0
        for node in self.clients + self.servers:
            br = "brin" if node.startswith("c") else "brout"
            self._hub_port(node, node, HOST_IF, br)
            plen = 24
            self._ip(node, "addr", "add", f"{self.ip(node)}/{plen}", "dev", HOST_IF)
            self._ip(node, "link", "set", HOST_IF, "up")
            gw = INSIDE_VIP if node.startswith("c") else OUTSIDE_VIP
            self._ip(node, "route", "add", "default", "via", gw)
            if self.ipv6:
                self._ip(node, "-6", "addr", "add", f"{self.ip6(node)}/64", "dev", HOST_IF)
                gw = INSIDE_VIP6 if node.startswith("c") else OUTSIDE_VIP6
                self._ip(node, "-6", "route", "add", "default", "via", gw)
        if self.hostile:
            self._hub_port("h1-in", "h1", "in0", "brin")
            self._hub_port("h1-out", "h1", "out0", "brout")
            for dev in ("in0", "out0"):
                self._ip("h1", "link", "set", dev, "up")
        # firewalls
        for fw in FIREWALLS:
            self._hub_port(f"{fw}-in", fw, INSIDE_IF, "brin")
            self._hub_port(f"{fw}-out", fw, OUTSIDE_IF, "brout")
            self._ip(fw, "addr", "add", f"{FW_INSIDE[fw]}/24", "dev", INSIDE_IF)
            self._ip(fw, "addr", "add", f"{FW_OUTSIDE[fw]}/24", "dev", OUTSIDE_IF)
        if self.segment.startswith("mirror"):
            self._mirror()
        self._ip(
            "fw1",
            "link",
            "add",
            SYNC_IF,
            "type",
            "veth",
            "peer",
            "name",
            SYNC_IF,
            "netns",
            self.ns("fw2"),
        )
        for fw in FIREWALLS:
            self._ip(fw, "addr", "add", f"{FW_SYNC[fw]}/24", "dev", SYNC_IF)
        self._ip("fw1", "addr", "add", f"{INSIDE_VIP}/24", "dev", INSIDE_IF)
        self._ip("fw1", "addr", "add", f"{OUTSIDE_VIP}/24", "dev", OUTSIDE_IF)
        if self.ipv6:
            for vip, dev in ((INSIDE_VIP6, INSIDE_IF), (OUTSIDE_VIP6, OUTSIDE_IF)):
                self._ip("fw1", "-6", "addr", "add", f"{vip}/64", "dev", dev, "nodad")
        if self.nat == "masquerade":
            # masquerade takes the interface's primary address: make it the VIP (which
            # moves with a failover) by re-adding fw1's own address behind it
            self.sysctl("fw1", f"net.ipv4.conf.{OUTSIDE_IF}.promote_secondaries", 1)
            self._ip("fw1", "addr", "del", f"{FW_OUTSIDE['fw1']}/24", "dev", OUTSIDE_IF)
            self._ip("fw1", "addr", "add", f"{FW_OUTSIDE['fw1']}/24", "dev", OUTSIDE_IF)
        for fw in FIREWALLS:
            for dev in (INSIDE_IF, OUTSIDE_IF, SYNC_IF):
                self._ip(fw, "link", "set", dev, "up")
            self.sysctl(fw, "net.ipv4.ip_forward", 1)
            if self.ipv6:
                self.sysctl(fw, "net.ipv6.conf.all.forwarding", 1)
            ruleset = RULESET
            if self.nat == "dnat":
                # the DNAT rule must come before the catch-all drop: insert it at the top
                ruleset = ruleset.replace(
                    "        ct state established,related accept\n",
                    "        ct state established,related accept\n"
                    "        ct status dnat ct state new accept\n",
                )
            if self.ftp:
                ruleset = ruleset.replace(
                    "== syn ct state new", "== syn tcp dport 21 ct state new"
                ).replace(
                    "    counter new_accept { }\n", "    counter new_accept { }\n" + FTP_HELPER
                )
            if self.tftp:
                ruleset = ruleset.replace(
                    "    counter new_accept { }\n", "    counter new_accept { }\n" + TFTP_HELPER
                )
            self.run(fw, "nft", "-f", "-", input=ruleset)
            if self.nat:
                nat_rules = NAT_RULES[self.nat]
                if self.ipv6 and self.nat == "masquerade":
                    nat_rules = nat_rules.replace("table ip ", "table inet ")
                self.run(fw, "nft", "-f", "-", input=nat_rules)
            # the conntrack sysctls exist in the namespace once the ruleset uses conntrack
            self.sysctl(fw, "net.netfilter.nf_conntrack_tcp_loose", 0)
            loose = self.read_sysctl(fw, "net.netfilter.nf_conntrack_tcp_loose")
            if loose != "0":
                raise LabError(f"{fw}: nf_conntrack_tcp_loose is {loose}, expected 0")
        if self.mirror == "vxlan":
            self._vxlan_mirror()
        self.active = "fw1"

    def _vxlan_mirror(self) -> None:
        """The switch mirrors fw1's two ports into a VXLAN tunnel to fw2's col0."""
        self._ip("hub", "link", "add", "brund", "type", "bridge", "stp_state", "0")
        self._ip("hub", "link", "set", "brund", "mtu", "9000", "up")
        self._ip("hub", "addr", "add", f"{MIRROR_VTEP}/25", "dev", "brund")
        ports = [("fw2-col", "fw2", COLLECTOR_IF, COLLECTOR_IP)]
        if self.hostile:
            ports.append(("h1-und", "h1", "und0", UNDERLAY_H1))
        for port, node, dev, addr in ports:
            self._hub_port(port, node, dev, "brund")
            for n, d in (("hub", port), (node, dev)):  # jumbo: a mirrored 1514 + 50 fits
                self._ip(n, "link", "set", d, "mtu", "9000")
            self._ip(node, "addr", "add", f"{addr}/25", "dev", dev)
            self._ip(node, "link", "set", dev, "up")
        self._ip(
            "hub",
            *("link", "add", "vxmir", "type", "vxlan", "id", str(MIRROR_VNI)),
            *("local", MIRROR_VTEP, "remote", COLLECTOR_IP, "dstport", str(VXLAN_PORT)),
            "nolearning",
        )
        self._ip("hub", "link", "set", "vxmir", "mtu", "8950", "up")
        for port in ("fw1-in", "fw1-out"):
            self.run("hub", "tc", "qdisc", "add", "dev", port, "clsact")
            for hook in ("ingress", "egress"):  # from fw1 and to fw1
                self.run(
                    "hub",
                    # u32 matching everything: this kernel has no cls_matchall
                    *("tc", "filter", "add", "dev", port, hook, "protocol", "all"),
                    *("u32", "match", "u32", "0", "0"),
                    *("action", "mirred", "egress", "mirror", "dev", "vxmir"),
                )
        # the collector only captures: the tunnel's datagrams are not tracked nor answered
        self.run(
            "fw2",
            "nft",
            "-f",
            "-",
            input=f"""\
table inet {NFT_TABLE}_collector {{
    chain raw {{
        type filter hook prerouting priority raw; policy accept;
        iifname "{COLLECTOR_IF}" udp dport {VXLAN_PORT} notrack
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "{COLLECTOR_IF}" udp dport {VXLAN_PORT} drop
    }}
}}
""",
        )

    def agent_capture_args(self) -> tuple[str, ...]:
        """The agent's capture options on fw2 for this lab: the hub's inside segment, or
        the remote mirror's underlay (both segments in one tunnel: confirmation ``both``)."""
        if self.mirror == "vxlan":
            return (
                *("--iface", COLLECTOR_IF, "--decap", "vxlan", "--confirm", "both"),
                *("--mirror-session", str(MIRROR_VNI), "--mirror-from", MIRROR_VTEP),
            )
        return ("--iface", self.sniff_if(INSIDE_IF))

    def _hub_port(self, port: str, node: str, dev: str, bridge: str) -> None:
        """veth ``port`` in the hub (on ``bridge``, learning off on a hub) <-> ``dev`` in
        ``node``."""
        self._ip(
            "hub", "link", "add", port, "type", "veth", "peer", "name", dev, "netns", self.ns(node)
        )
        self._ip("hub", "link", "set", port, "master", bridge)
        if self.segment == "hub" and not self.mirror:  # a hub learns nothing; a switch does
            self._ip("hub", "link", "set", "dev", port, "type", "bridge_slave", "learning", "off")
        self._ip("hub", "link", "set", port, "up")

    def _mirror(self) -> None:
        """fw2's SPAN ports: a veth per segment, not bridged, fed by tc ``mirred`` with a
        copy of every frame in and out of fw1's port (and the hosts' ports: mirror-dup).
        u32 ``match u32 0 0`` matches all (this kernel has no cls_matchall)."""
        for dev, br, hub_port in (
            (INSIDE_IF, "brin", "fw2-spanin"),
            (OUTSIDE_IF, "brout", "fw2-spanout"),
        ):
            span = SPAN_IF[dev]
            self._ip(
                "hub",
                "link",
                "add",
                hub_port,
                "type",
                "veth",
                "peer",
                "name",
                span,
                "netns",
                self.ns("fw2"),
            )
            self._ip("hub", "link", "set", hub_port, "up")
            self._ip("fw2", "link", "set", span, "up")
            hosts = self.clients if br == "brin" else self.servers
            sources = [f"fw1-{br[2:]}"] + (hosts if self.segment == "mirror-dup" else [])
            for port in sources:
                self.run("hub", "tc", "qdisc", "add", "dev", port, "clsact")
                for hook in ("ingress", "egress"):
                    self.run(
                        "hub",
                        "tc",
                        "filter",
                        "add",
                        "dev",
                        port,
                        hook,
                        "u32",
                        "match",
                        "u32",
                        "0",
                        "0",
                        "action",
                        "mirred",
                        "egress",
                        "mirror",
                        "dev",
                        hub_port,
                    )

    def destroy(self) -> None:
        """Stop the lab's processes (by pid) and delete the namespaces it created."""
        for proc in reversed(self.procs):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                stop_process(proc)
        self.procs.clear()
        for name in reversed(self.created):
            netns.delete(name)
        self.created.clear()

    # --- failover -------------------------------------------------------------------------
    def garp(self, node: str, iface: str, ip: str, count: int = 3) -> None:
        """Gratuitous ARP for ``ip`` from ``node``'s ``iface`` (its MAC); for an IPv6
        address an unsolicited neighbour advertisement (override set)."""
        self.run(
            node,
            sys.executable,
            "-m",
            "sniffover.lab.traffic",
            "garp",
            "--iface",
            iface,
            "--ip",
            ip,
            "--count",
            str(count),
        )

    def _take_over(self, old: str, new: str) -> float:
        t0 = time.monotonic()
        for dev in (INSIDE_IF, OUTSIDE_IF):
            self._ip(old, "link", "set", dev, "down")
        self.run(
            None, "ip", "-n", self.ns(new), "addr", "replace", f"{INSIDE_VIP}/24", "dev", INSIDE_IF
        )
        self.run(
            None,
            "ip",
            "-n",
            self.ns(new),
            "addr",
            "replace",
            f"{OUTSIDE_VIP}/24",
            "dev",
            OUTSIDE_IF,
        )
        for dev in (INSIDE_IF, OUTSIDE_IF):
            self._ip(new, "link", "set", dev, "up")
        if self.ipv6:
            for vip, dev in ((INSIDE_VIP6, INSIDE_IF), (OUTSIDE_VIP6, OUTSIDE_IF)):
                self._ip(new, "-6", "addr", "replace", f"{vip}/64", "dev", dev, "nodad")
        self.garp(new, INSIDE_IF, INSIDE_VIP)
        self.garp(new, OUTSIDE_IF, OUTSIDE_VIP)
        if self.ipv6:  # unsolicited neighbour advertisements: the hosts' caches move
            self.garp(new, INSIDE_IF, INSIDE_VIP6)
            self.garp(new, OUTSIDE_IF, OUTSIDE_VIP6)
        self.active = new
        return time.monotonic() - t0

    def failover(self, verify: bool = False) -> float:
        """fw1's inside0/outside0 go down, fw2 takes the VIPs and sends gratuitous ARPs.

        With ``verify``, a fresh ping c1 -> s1 must pass (through fw2).  Returns seconds taken.
        """
        took = self._take_over("fw1", "fw2")
        if verify and not self.ping("c1", server_ip(1)):
            raise LabError("after failover, c1 cannot ping s1 through fw2")
        return took

    def failback(self, verify: bool = False) -> float:
        """fw2 drops the VIPs, fw1's interfaces come up again and it sends gratuitous ARPs."""
        t0 = time.monotonic()
        vips = [(f"{INSIDE_VIP}/24", INSIDE_IF), (f"{OUTSIDE_VIP}/24", OUTSIDE_IF)]
        if self.ipv6:
            vips += [(f"{INSIDE_VIP6}/64", INSIDE_IF), (f"{OUTSIDE_VIP6}/64", OUTSIDE_IF)]
        for vip, dev in vips:
            self.run(None, "ip", "-n", self.ns("fw2"), "addr", "del", vip, "dev", dev, check=False)
        self._take_over("fw2", "fw1")
        for dev in (INSIDE_IF, OUTSIDE_IF):  # fw2 stays on the hub as the standby
            self._ip("fw2", "link", "set", dev, "up")
        if verify and not self.ping("c1", server_ip(1)):
            raise LabError("after failback, c1 cannot ping s1 through fw1")
        return time.monotonic() - t0

    # --- inspection -----------------------------------------------------------------------
    def ping(self, node: str, dst: str, count: int = 1, wait: float = 2.0) -> bool:
        res = self.run(
            node,
            "ping",
            "-n",
            "-q",
            "-c",
            str(count),
            "-W",
            str(wait),
            dst,
            check=False,
            timeout=count * wait + 5,
        )
        return res.returncode == 0

    def conntrack(self, node: str, *args: str) -> str:
        """``conntrack -L`` of the node (stdout only), extra ``args`` appended."""
        return self.run(node, "conntrack", "-L", *args, check=False).stdout

    def conntrack_flush(self, node: str) -> None:
        self.run(node, "conntrack", "-F", check=False)

    def fw_counters(self, node: str) -> dict[str, int]:
        """Packets of the ruleset's named counters: invalid_drop, other_drop, new_accept."""
        out = self.run(node, "nft", "-j", "list", "counters", "table", "inet", NFT_TABLE).stdout
        counters: dict[str, int] = {}
        for item in json.loads(out).get("nftables", []):
            c = item.get("counter")
            if c:
                counters[c["name"]] = int(c.get("packets", 0))
        return counters

    def start_server(
        self,
        node: str = "s1",
        tcp_port: int = 8000,
        udp_port: int = 9000,
        duration: float = 120.0,
        ready_timeout: float = 10.0,
        bind: str = "0.0.0.0",
    ) -> subprocess.Popen[str]:
        """Start the labtraffic server in ``node``; returns once it listens (on ``bind``:
        ``::`` for IPv6, beside an IPv4 one on the same ports)."""
        proc = self.python(
            node,
            "-m",
            "sniffover.lab.traffic",
            "server",
            "--tcp-port",
            str(tcp_port),
            "--udp-port",
            str(udp_port),
            "--duration",
            str(duration),
            "--bind",
            bind,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines = _LineReader(proc.stdout)
        ready = lines.get(ready_timeout)
        if ready is None or not ready.get("ready"):
            stop_process(proc)
            err = proc.stderr.read() if proc.stderr else ""
            raise LabError(f"server in {node} did not start: {ready!r} {err.strip()}")
        return proc

    def traffic_client(self, node: str = "c1", **kw: Any) -> TrafficClient:
        """A started ``TrafficClient`` in ``node`` (keywords as for ``TrafficClient``)."""
        return TrafficClient(self, node, **kw).start()


class _LineReader:
    """JSON lines of a pipe, read by a daemon thread, handed out with a timeout."""

    def __init__(self, pipe: IO[str] | None) -> None:
        if pipe is None:
            raise LabError("process has no stdout pipe")
        self.q: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self.thread.start()

    def _pump(self, pipe: IO[str]) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in pipe:
                self.q.put(line)
        self.q.put(None)

    def get(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON line; None at EOF or timeout."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj
        return None


class TrafficClient:
    """The labtraffic client in a lab node, driven over stdin/stdout.

    ``start()`` waits for the initial exchange (``.initial``); ``probe()``, ``open(n)``,
    ``close(k)``, ``info()`` return the parsed JSON answers; ``stop()`` ends it by pid.
    """

    def __init__(
        self,
        lab: Lab,
        node: str = "c1",
        server: str | None = None,
        tcp: int = 1,
        udp: int = 0,
        tcp_port: int = 8000,
        udp_port: int = 9000,
        duration: float = 120.0,
        timeout: float = 3.0,
        sport_base: int = 0,
    ) -> None:
        self.lab = lab
        self.node = node
        self.argv: Sequence[str] = (
            "-m",
            "sniffover.lab.traffic",
            "client",
            "--server",
            server or server_ip(1),
            "--tcp",
            str(tcp),
            "--udp",
            str(udp),
            "--tcp-port",
            str(tcp_port),
            "--udp-port",
            str(udp_port),
            "--duration",
            str(duration),
            "--timeout",
            str(timeout),
            *(("--sport-base", str(sport_base)) if sport_base else ()),
        )
        self.timeout = timeout
        self.proc: subprocess.Popen[str] | None = None
        self._lines: _LineReader | None = None
        self.initial: dict[str, Any] = {}

    def __enter__(self) -> TrafficClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, ready_timeout: float = 15.0) -> TrafficClient:
        self.proc = self.lab.python(
            self.node,
            *self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lines = _LineReader(self.proc.stdout)
        ready = self._lines.get(ready_timeout)
        if ready is None or not ready.get("ready"):
            self.stop()
            raise LabError(f"client in {self.node} did not start: {ready!r}")
        self.initial = ready
        return self

    def command(self, line: str, timeout: float | None = None) -> dict[str, Any]:
        """Send one command line, return its JSON answer (LabError on timeout or exit)."""
        if self.proc is None or self.proc.stdin is None or self._lines is None:
            raise LabError("client not started")
        try:
            self.proc.stdin.write(line.strip() + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise LabError(f"client in {self.node} is gone: {e}") from e
        answer = self._lines.get(timeout if timeout is not None else 3 * self.timeout + 10)
        if answer is None:
            raise LabError(f"no answer to {line!r} from the client in {self.node}")
        return answer

    def probe(self) -> dict[str, Any]:
        return self.command("probe")

    def open(self, n: int = 1) -> dict[str, Any]:
        return self.command(f"open {n}")

    def close(self, k: int = 1) -> dict[str, Any]:
        return self.command(f"close {k}")

    def info(self) -> dict[str, Any]:
        return self.command("info")

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None and proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.write("quit\n")
                proc.stdin.flush()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2.0)
        stop_process(proc)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError, ValueError):
                    pipe.close()
        self.proc = None


@atexit.register
def _destroy_live_labs() -> None:
    for lab in list(_live):
        with contextlib.suppress(Exception):
            lab.destroy()
