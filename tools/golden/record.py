"""Record golden captures from the real kernel: client, router and server network namespaces.

For every scenario this builds three fresh namespaces (``snfrec-<pid>-c``,
``-r``, ``-s``) joined by veth pairs::

    client 192.0.2.1 <-inside-> 192.0.2.254  router  198.51.100.254 <-outside-> 198.51.100.1 server
           2001:db8:1::1        2001:db8:1::fe         2001:db8:2::fe             2001:db8:2::1

The router forwards with an nft ``forward`` chain that only counts (``ct state``
rules, so nf_conntrack tracks the namespace; policy accept: nothing is dropped).
tcpdump captures the router's inside interface while small Python programs
(``tools/golden/scenarios/``, run with ``ip netns exec NS python3 -m ...``) generate the
scenario's traffic; right
after the capture stops the router's ``conntrack -L -o extended`` is saved
beside the pcap, with the dump time and the router's ``nf_conntrack_*``
sysctls in ``<name>.json``. The kernel's table is the expected result of the
golden tests: nothing here predicts it.

Usage::

    python -m tools.golden.record --out pcaps [--only NAME ...] [--list]

A few captures are derived from recorded ones (VLAN tag, Linux cooked SLL and
SLL2, raw IP) so the decoders are exercised on the same traffic.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt

from sniffover.lab import netns
from sniffover.lab.frames import (
    SC_COOKIE_ACK,
    SC_SHUTDOWN_ACK,
    sc_abort,
    sc_cookie_echo,
    sc_data,
    sc_heartbeat,
    sc_heartbeat_ack,
    sc_init,
    sc_init_ack,
    sc_sack,
    sc_shutdown,
    sc_shutdown_complete,
    sctp_packet,
)

CLIENT4, ROUTER_IN4 = "192.0.2.1", "192.0.2.254"
ROUTER_OUT4, SERVER4 = "198.51.100.254", "198.51.100.1"
CLIENT6, ROUTER_IN6 = "2001:db8:1::1", "2001:db8:1::fe"
ROUTER_OUT6, SERVER6 = "2001:db8:2::fe", "2001:db8:2::1"
INSIDE, OUTSIDE, HOST_IF = "inside", "outside", "eth0"

# the traffic programs: tools/golden/scenarios/<name>.py, run with ``python3 -m`` from the
# repository root (``ip netns exec`` keeps the working directory)
REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIOS_PACKAGE = "tools.golden.scenarios"

ROUTER_RULESET = """table inet snfrec {
    chain forward_filter {
        type filter hook forward priority 0; policy accept;
        ct state invalid counter
        ct state established,related counter
        ct state new counter
    }
}
"""


# Extra name part after "snfrec-" (``--tag``): recorders run side by side keep apart.
NETNS_TAG = ""


class RecorderError(RuntimeError):
    """A scenario could not be recorded."""


def _log(msg: str) -> None:
    print(f"[recorder] {msg}", file=sys.stderr, flush=True)


class Proc:
    """A process started in a namespace; its stdout is read line by line."""

    def __init__(self, popen: subprocess.Popen[bytes], label: str) -> None:
        self.popen = popen
        self.label = label
        self.lines: list[str] = []
        self._buf = b""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read_available(self, timeout: float) -> bool:
        out = self.popen.stdout
        if out is None:
            return False
        ready, _, _ = select.select([out], [], [], max(0.0, timeout))
        if not ready:
            return False
        chunk = os.read(out.fileno(), 65536)
        if not chunk:
            return False
        self._buf += chunk
        *done, self._buf = self._buf.split(b"\n")
        self.lines.extend(d.decode(errors="replace").strip() for d in done)
        return True

    def expect(self, word: str, timeout: float = 10.0) -> str:
        """Wait until a line starting with ``word`` was printed; return it."""
        end = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if line.startswith(word):
                    return line
            left = end - time.monotonic()
            got = left > 0 and self._read_available(min(left, 0.2))
            if left <= 0 or (not got and self.popen.poll() is not None):
                # drain whatever is left once more before giving up
                while self._read_available(0):
                    pass
                for line in self.lines:
                    if line.startswith(word):
                        return line
                err = b""
                if self.popen.stderr is not None and self.popen.poll() is not None:
                    err = self.popen.stderr.read() or b""
                raise RecorderError(
                    f"{self.label}: no {word!r} within {timeout}s (rc={self.popen.poll()}, "
                    f"out={self.lines!r}, err={err.decode(errors='replace')[-2000:]!r})"
                )

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise RecorderError(f"{self.label}: still running after {timeout}s") from exc

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 3.0) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.kill(self.popen.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout)


class Lab:
    """Three namespaces (client, router, server), the capture and the traffic processes."""

    def __init__(self, prefix: str | None = None) -> None:
        prefix = prefix or netns.base_name(f"snfrec-{NETNS_TAG}")
        self.client = f"{prefix}-c"
        self.router = f"{prefix}-r"
        self.server = f"{prefix}-s"
        self.created: list[str] = []
        self.procs: list[Proc] = []
        self.tcpdump: Proc | None = None
        self.capturing = False
        self.server_nft = False

    # --- plumbing -----------------------------------------------------------------
    def sh(
        self,
        ns: str | None,
        *cmd: str,
        check: bool = True,
        stdin: str | None = None,
        cwd: Path | None = None,
    ) -> str:
        full = netns.exec_argv(ns, *cmd) if ns else list(cmd)
        res = subprocess.run(
            full,
            input=stdin.encode() if stdin is not None else None,
            capture_output=True,
            timeout=30,
            cwd=cwd,
        )
        if check and res.returncode != 0:
            raise RecorderError(
                f"{' '.join(full)} failed ({res.returncode}): {res.stderr.decode(errors='replace')}"
            )
        return res.stdout.decode(errors="replace")

    def sysctl(self, ns: str, key: str, value: str | int) -> None:
        self.sh(ns, "sysctl", "-q", "-w", f"{key}={value}")

    def setup(self) -> None:
        existing = set(netns.list_netns())
        for ns in (self.client, self.router, self.server):
            try:
                self.created.append(netns.create(ns, existing))
            except netns.NetnsError as exc:
                raise RecorderError(str(exc)) from exc
            for scope in ("all", "default"):
                self.sysctl(ns, f"net.ipv6.conf.{scope}.accept_dad", 0)
                self.sysctl(ns, f"net.ipv6.conf.{scope}.router_solicitations", 0)
        self.sh(
            None,
            "ip",
            "-n",
            self.router,
            "link",
            "add",
            INSIDE,
            "type",
            "veth",
            "peer",
            "name",
            HOST_IF,
            "netns",
            self.client,
        )
        self.sh(
            None,
            "ip",
            "-n",
            self.router,
            "link",
            "add",
            OUTSIDE,
            "type",
            "veth",
            "peer",
            "name",
            HOST_IF,
            "netns",
            self.server,
        )
        addrs = [
            (self.client, HOST_IF, f"{CLIENT4}/24", f"{CLIENT6}/64"),
            (self.router, INSIDE, f"{ROUTER_IN4}/24", f"{ROUTER_IN6}/64"),
            (self.router, OUTSIDE, f"{ROUTER_OUT4}/24", f"{ROUTER_OUT6}/64"),
            (self.server, HOST_IF, f"{SERVER4}/24", f"{SERVER6}/64"),
        ]
        for ns, dev, a4, a6 in addrs:
            self.sh(None, "ip", "-n", ns, "addr", "add", a4, "dev", dev)
            self.sh(None, "ip", "-n", ns, "-6", "addr", "add", a6, "dev", dev, "nodad")
            self.sh(None, "ip", "-n", ns, "link", "set", dev, "up")
        for ns, gw4, gw6 in (
            (self.client, ROUTER_IN4, ROUTER_IN6),
            (self.server, ROUTER_OUT4, ROUTER_OUT6),
        ):
            self.sh(None, "ip", "-n", ns, "route", "add", "default", "via", gw4)
            self.sh(None, "ip", "-n", ns, "-6", "route", "add", "default", "via", gw6)
        self.sysctl(self.router, "net.ipv4.ip_forward", 1)
        self.sysctl(self.router, "net.ipv6.conf.all.forwarding", 1)
        # one ICMP error per closed port must not be swallowed by the rate limiter
        self.sysctl(self.server, "net.ipv4.icmp_ratelimit", 0)
        self.sysctl(self.server, "net.ipv6.icmp.ratelimit", 0)
        self.sh(self.router, "nft", "-f", "-", stdin=ROUTER_RULESET)
        loose = self.sh(
            self.router, "cat", "/proc/sys/net/netfilter/nf_conntrack_tcp_loose"
        ).strip()
        if loose != "1":
            raise RecorderError(f"router nf_conntrack_tcp_loose is {loose}, expected 1")

    def teardown(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                proc.stop(signal.SIGKILL)
        self.procs.clear()
        if self.tcpdump is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self.tcpdump.stop(signal.SIGINT)
        for ns in reversed(self.created):
            netns.delete(ns)
        self.created.clear()

    # --- traffic ------------------------------------------------------------------
    def spawn(
        self, ns: str, program: str, args: dict[str, Any] | None = None, label: str = ""
    ) -> Proc:
        """Start scenario program ``program`` (``tools/golden/scenarios/<program>.py``) in
        ``ns`` with ``args`` as JSON in argv[1]; it runs from the repository root."""
        cmd = netns.exec_argv(
            ns, sys.executable, "-m", f"{SCENARIOS_PACKAGE}.{program}", json.dumps(args or {})
        )
        return self._popen(cmd, label or f"{ns}:python", cwd=REPO_ROOT)

    def spawn_cmd(self, ns: str, *cmd: str, label: str = "") -> Proc:
        return self._popen(netns.exec_argv(ns, *cmd), label or f"{ns}:{cmd[0]}")

    def _popen(self, cmd: list[str], label: str, cwd: Path | None = None) -> Proc:
        popen = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd
        )
        proc = Proc(popen, label)
        self.procs.append(proc)
        return proc

    def run_py(
        self, ns: str, code: str, args: dict[str, Any] | None = None, timeout: float = 15.0
    ) -> Proc:
        """Run a traffic program until it prints ``done`` (it may then hold its sockets)."""
        proc = self.spawn(ns, code, args)
        proc.expect("done", timeout)
        return proc

    def ping(self, *args: str, timeout: float = 10.0) -> None:
        proc = self.spawn_cmd(self.client, "ping", "-n", *args, label="ping")
        proc.wait(timeout)

    def echo_server(
        self, tcp: Sequence[tuple[str, int]] = (), udp: Sequence[tuple[str, int]] = ()
    ) -> Proc:
        proc = self.spawn(
            self.server, "echo_server", {"tcp": list(tcp), "udp": list(udp)}, label="server"
        )
        proc.expect("ready")
        return proc

    def server_rule(self, rule: str) -> None:
        """Add a rule to the server's own input chain (drops there are invisible to the router)."""
        if not self.server_nft:
            self.sh(
                self.server,
                "nft",
                "-f",
                "-",
                stdin=(
                    "table inet snfsrv {\n chain input_filter {\n"
                    "  type filter hook input priority 0; policy accept;\n }\n}\n"
                ),
            )
            self.server_nft = True
        self.sh(self.server, "nft", f"add rule inet snfsrv input_filter {rule}")

    def server_rules_flush(self) -> None:
        if self.server_nft:
            self.sh(self.server, "nft", "flush chain inet snfsrv input_filter")

    # --- capture and dump -----------------------------------------------------------
    def start_capture(self, pcap: Path, snaplen: int = 0, iface: str = INSIDE) -> None:
        if self.capturing:
            return
        proc = self._popen(
            netns.exec_argv(
                self.router,
                "tcpdump",
                "-i",
                iface,
                "-w",
                str(pcap),
                "-U",
                "--immediate-mode",
                "-s",
                str(snaplen),
                "-B",
                "65536",
                "-n",
                "-Z",
                "root",
            ),
            "tcpdump",
        )
        self.procs.remove(proc)
        self.tcpdump = proc
        end = time.monotonic() + 10
        err = b""
        stderr = proc.popen.stderr
        assert stderr is not None
        while b"listening on" not in err:
            if time.monotonic() > end or proc.popen.poll() is not None:
                raise RecorderError(f"tcpdump did not start: {err.decode(errors='replace')}")
            ready, _, _ = select.select([stderr], [], [], 0.2)
            if ready:
                err += os.read(stderr.fileno(), 4096)
        time.sleep(0.2)
        self.capturing = True

    def stop_capture(self) -> str:
        proc = self.tcpdump
        if proc is None:
            return ""
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(10)
        self.tcpdump = None
        self.capturing = False
        stderr = proc.popen.stderr
        return (stderr.read() if stderr is not None else b"").decode(errors="replace")

    def router_sysctls(self) -> dict[str, str]:
        out = self.sh(
            self.router, sys.executable, "-m", f"{SCENARIOS_PACKAGE}.router_sysctls", cwd=REPO_ROOT
        )
        data: dict[str, str] = json.loads(out)
        return data

    def seqadj(self) -> str:
        """The router's NAT sequence adjustments (ctnetlink dump), as JSON text."""
        return self.sh(
            self.router, sys.executable, "-m", f"{SCENARIOS_PACKAGE}.router_seqadj", cwd=REPO_ROOT
        ).strip()

    def dump(self) -> tuple[float, str]:
        dump_time = time.time()
        res = subprocess.run(
            netns.exec_argv(self.router, "conntrack", "-L", "-o", "extended"),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        if res.returncode != 0:
            raise RecorderError(f"conntrack -L failed ({res.returncode})")
        return dump_time, res.stdout.decode()


# --------------------------------------------------------------------------------------
# Scenarios. Each gets the lab with the capture running (unless ``precapture``) and
# returns when the traffic is over; processes it leaves running hold their sockets
# open through the dump and are killed afterwards.
# --------------------------------------------------------------------------------------


def sc_tcp_fin_close(lab: Lab) -> None:
    lab.echo_server(tcp=[(SERVER4, 8080)])
    lab.run_py(lab.client, "fin_client", {"dst": SERVER4, "port": 8080, "n": 4096})


def sc_tcp_rst_abort(lab: Lab) -> None:
    lab.echo_server(tcp=[(SERVER4, 8080)])
    lab.run_py(
        lab.client,
        "tcp_rst_abort_client",
        {"dst": SERVER4},
    )


def sc_tcp_simultaneous_close(lab: Lab) -> None:
    # Both sides shut down at the same instant. veth latency is microseconds, so to make
    # the FINs really cross the server drops the client's first FIN for 0.15 s: the
    # router sees client FIN, server FIN (not acking it), then the retransmitted FIN.
    sport = 40400
    t = time.time() + 1.0
    server = lab.spawn(
        lab.server,
        "simclose_server",
        {"host": SERVER4, "port": 8080, "n": 2000, "t": t},
        label="server",
    )
    server.expect("ready")
    lab.server_rule(f"ip saddr {CLIENT4} tcp sport {sport} tcp flags & fin == fin drop")
    client = lab.spawn(
        lab.client,
        "simclose_client",
        {"dst": SERVER4, "port": 8080, "n": 2000, "t": t, "src": [CLIENT4, sport]},
        label="client",
    )
    client.expect("exchanged")
    time.sleep(max(0.0, t + 0.15 - time.time()))
    lab.server_rules_flush()
    client.expect("done")
    server.expect("done")


def sc_tcp_simultaneous_open(lab: Lab) -> None:
    # The client's SYN is dropped at the server (the router still sees it); 0.3 s later
    # the server's own SYN reaches the client, which is in SYN_SENT: crossing SYNs.
    cport, sport = 40500, 40600
    lab.server_rule(f"ip saddr {CLIENT4} tcp flags & (syn|ack) == syn drop")
    t = time.time() + 0.5
    client = lab.spawn(
        lab.client,
        "simopen_peer",
        {"me": CLIENT4, "myport": cport, "peer": SERVER4, "peerport": sport, "t": t, "first": True},
        label="client",
    )
    server = lab.spawn(
        lab.server,
        "simopen_peer",
        {
            "me": SERVER4,
            "myport": sport,
            "peer": CLIENT4,
            "peerport": cport,
            "t": t + 0.3,
            "first": False,
        },
        label="server",
    )
    client.expect("connected", 5)
    server.expect("connected", 5)
    lab.server_rules_flush()
    client.expect("done")
    server.expect("done")


def sc_tcp_half_close(lab: Lab) -> None:
    server = lab.spawn(
        lab.server,
        "tcp_half_close_server",
        {"host": SERVER4},
        label="server",
    )
    server.expect("ready")
    client = lab.spawn(
        lab.client,
        "tcp_half_close_client",
        {"dst": SERVER4},
        label="client",
    )
    client.expect("done")
    server.expect("done")


def sc_tcp_syn_unanswered(lab: Lab) -> None:
    lab.server_rule("tcp dport 8082 drop")
    lab.run_py(
        lab.client,
        "tcp_syn_unanswered_client",
        {"dst": SERVER4},
    )


def sc_tcp_syn_closed_port(lab: Lab) -> None:
    lab.run_py(
        lab.client,
        "tcp_syn_closed_port_client",
        {"dst": SERVER4},
    )


def sc_tcp_syn_retransmit(lab: Lab) -> None:
    lab.echo_server(tcp=[(SERVER4, 8081)])
    lab.server_rule("tcp dport 8081 drop")
    client = lab.spawn(
        lab.client,
        "tcp_syn_retransmit_client",
        {"dst": SERVER4},
        label="client",
    )
    time.sleep(0.4)
    lab.server_rules_flush()
    client.expect("done", 6)


def sc_tcp_timewait_reuse(lab: Lab) -> None:
    # the client may reuse its own TIME_WAIT port for an outgoing connection
    lab.sysctl(lab.client, "net.ipv4.tcp_tw_reuse", 1)
    lab.echo_server(tcp=[(SERVER4, 8080)])
    lab.run_py(
        lab.client,
        "tcp_timewait_reuse_client",
        {"dst": SERVER4, "src": CLIENT4, "sport": 40300},
    )


def sc_tcp_midstream(lab: Lab, pcap: Path) -> None:
    # The flows are set up (the router's conntrack sees their handshakes) before the
    # capture starts; after it starts the server talks first, so the first captured
    # packet of each flow goes server -> client.
    t = time.time() + 2.0
    pairs = []
    for port in (8080, 8090):
        server = lab.spawn(
            lab.server,
            "midstream_server",
            {"host": SERVER4, "port": port, "t": t, "secs": 1.0},
            label=f"server{port}",
        )
        server.expect("ready")
        client = lab.spawn(
            lab.client,
            "midstream_client",
            {"dst": SERVER4, "port": port, "t": t, "secs": 1.0},
            label=f"client{port}",
        )
        pairs.append((server, client))
    for server, client in pairs:
        server.expect("pre")
        client.expect("pre")
    lab.start_capture(pcap)  # delayed ACKs of the setup have long gone by then
    if time.time() > t - 0.2:
        raise RecorderError("capture started too late for the midstream schedule")
    for server, client in pairs:
        server.expect("done", 5)
        client.expect("done", 5)


def sc_udp_flows(lab: Lab) -> None:
    lab.server_rule("udp dport 9998 drop")
    lab.echo_server(udp=[(SERVER4, 5300)])
    lab.run_py(
        lab.client,
        "udp_flows_client",
        {"dst": SERVER4},
        timeout=15,
    )


def sc_icmp_echo(lab: Lab) -> None:
    lab.ping("-c", "3", "-i", "0.2", "-W", "1", SERVER4)
    lab.ping("-c", "3", "-i", "0.2", "-W", "1", SERVER4)


def sc_udplite(lab: Lab, checksum: int = 1) -> None:
    # Real UDP-Lite sockets both families, whole and partial (20-byte) coverage, answered;
    # then one datagram each family checksummed with protocol 17 (see udplite_peer).
    lab.sysctl(lab.router, "net.netfilter.nf_conntrack_checksum", checksum)
    listen = [(SERVER4, 7000, 0), (SERVER4, 7020, 20), (SERVER6, 7000, 0), (SERVER6, 7020, 20)]
    server = lab.spawn(
        lab.server,
        "udplite_peer",
        {"role": "server", "listen": listen + [(SERVER4, 7017, 0), (SERVER6, 7017, 0)]},
        label="server",
    )
    server.expect("ready")
    client = lab.spawn(
        lab.client,
        "udplite_peer",
        {
            "role": "client",
            "flows": [(h, p, c) for h, p, c in listen],
            "crafted": [(CLIENT4, SERVER4, 7017, 41017), (CLIENT6, SERVER6, 7017, 41017)],
        },
        label="client",
    )
    client.expect("done", 15)


def sc_udplite_nochecksum(lab: Lab) -> None:
    sc_udplite(lab, checksum=0)


def sc_multicast_broadcast(lab: Lab) -> None:
    # a remote subnet behind the server, so a broadcast directed to it is forwarded
    lab.sh(None, "ip", "-n", lab.router, "route", "add", "203.0.113.0/24", "via", SERVER4)
    lab.echo_server(udp=[(SERVER4, 5300), (SERVER6, 5300)])
    lab.run_py(
        lab.client,
        "multicast_client",
        {
            "src4": CLIENT4,
            "src6": CLIENT6,
            "iface": HOST_IF,
            # limited; the inside subnet's (link broadcast); the outside subnet's (routed to
            # the router, which delivers it: it is a broadcast address of its own); a remote
            # subnet's (forwarded like any unicast destination)
            "bcast": ["255.255.255.255", "192.0.2.255", "198.51.100.255", "203.0.113.255"],
            "dst4": SERVER4,
            "dst6": SERVER6,
            "port": 5300,
        },
    )


JOINED = [("224.0.0.251", 5353), ("239.255.255.250", 1900), ("ff02::fb", 5353), ("ff02::c", 1900)]


def sc_multicast_joined(lab: Lab) -> None:
    # The router itself listens to mDNS and SSDP (a firewall running an mDNS reflector or
    # a UPnP daemon): it joined those groups, so their datagrams are delivered and tracked.
    listener = lab.spawn(
        lab.router,
        "group_listener",
        {"iface": INSIDE, "addr4": ROUTER_IN4, "groups": JOINED},
        label="listener",
    )
    listener.expect("ready")
    time.sleep(1.0)  # the router's IPv6 groups take effect once its link-local address is up
    lab.echo_server(udp=[(SERVER4, 5300), (SERVER6, 5300)])
    lab.run_py(
        lab.client,
        "multicast_client",
        {"src4": CLIENT4, "iface": HOST_IF, "groups": JOINED, "dst4": SERVER4,
         "dst6": SERVER6, "port": 5300},
    )  # fmt: skip


def sc_multicast_router_own(lab: Lab) -> None:
    # multicast_broadcast, and the router's own multicast on its inside: a VRRP-like
    # advertisement and mDNS/SSDP datagrams (its OUTPUT path: confirmed, unlike the others)
    sc_multicast_broadcast(lab)
    own = {"src4": ROUTER_IN4, "iface": INSIDE, "vrrp": True, "groups": JOINED}
    lab.run_py(lab.router, "multicast_client", own)


def sc_icmp_port_unreachable(lab: Lab) -> None:
    lab.run_py(
        lab.client,
        "icmp_port_unreachable_client",
        {"dst": SERVER4},
    )
    lab.ping("-c", "1", "-W", "1", SERVER4)


def sc_ipv6_mixed(lab: Lab) -> None:
    lab.echo_server(tcp=[(SERVER6, 8080)], udp=[(SERVER6, 5300)])
    client = lab.spawn(
        lab.client,
        "ipv6_mixed_client",
        {"dst": SERVER6},
        label="client",
    )
    client.expect("done", 10)
    lab.ping("-6", "-c", "2", "-i", "0.2", "-W", "1", SERVER6)


def sc_mixed_many(lab: Lab) -> None:
    lab.server_rule("udp dport 9998 drop")
    lab.echo_server(tcp=[(SERVER4, 8080), (SERVER6, 8080)], udp=[(SERVER4, 5300), (SERVER6, 5300)])
    client = lab.spawn(
        lab.client,
        "mixed_many_client",
        {"dst4": SERVER4, "dst6": SERVER6},
        label="client",
    )
    pings = [
        lab.spawn_cmd(lab.client, "ping", "-n", "-c", "6", "-i", "0.3", "-W", "1", SERVER4),
        lab.spawn_cmd(lab.client, "ping", "-n", "-6", "-c", "4", "-i", "0.4", "-W", "1", SERVER6),
    ]
    client.expect("done", 20)
    for p in pings:
        p.wait(10)


# --- SCTP: no SCTP sockets on this kernel, so the packets are crafted (parent side, with
# the CRC32c conntrack verifies) and sent from raw IPPROTO_SCTP sockets in the client and
# server namespaces on a fixed schedule. The open raw sockets also keep the endpoints'
# kernels from answering with ICMP protocol unreachable.


class SctpAssoc:
    """One association's endpoints, ports and verification tags: builds its packets."""

    def __init__(self, cport: int, sport: int, tag_c: int, tag_s: int, v6: bool = False) -> None:
        self.client, self.server = (CLIENT6, SERVER6) if v6 else (CLIENT4, SERVER4)
        self.cport, self.sport = cport, sport
        self.tag_c, self.tag_s = tag_c, tag_s

    def c(self, *chunks: bytes, vtag: int | None = None) -> tuple[str, str, bytes]:
        """Client -> server; the vtag defaults to the server's tag."""
        v = self.tag_s if vtag is None else vtag
        return "c", self.server, sctp_packet(self.cport, self.sport, v, *chunks)

    def s(self, *chunks: bytes, vtag: int | None = None) -> tuple[str, str, bytes]:
        """Server -> client; the vtag defaults to the client's tag."""
        v = self.tag_c if vtag is None else vtag
        return "s", self.client, sctp_packet(self.sport, self.cport, v, *chunks)

    def handshake(self, data: bool = True) -> list[tuple[str, str, bytes]]:
        steps = [
            self.c(sc_init(self.tag_c), vtag=0),
            self.s(sc_init_ack(self.tag_s)),
            self.c(sc_cookie_echo()),
            self.s(SC_COOKIE_ACK),
        ]
        if data:
            steps += [
                self.c(sc_data(1000)),
                self.s(sc_sack(1000)),
                self.s(sc_data(5000, 300)),
                self.c(sc_sack(5000)),
            ]
        return steps


def sctp_run(lab: Lab, steps: Sequence[tuple[str, str, bytes] | float], gap: float = 0.1) -> None:
    """Send ``steps`` in order, ``gap`` apart (a float in the list is an extra pause)."""
    sends: dict[str, list[tuple[float, str, str]]] = {"c": [], "s": []}
    off = 0.0
    for step in steps:
        if isinstance(step, float):
            off += step
            continue
        side, dst, pkt = step
        sends[side].append((off, dst, pkt.hex()))
        off += gap
    peers = []
    t0 = time.time() + 1.0
    for side, ns in (("s", lab.server), ("c", lab.client)):
        proc = lab.spawn(ns, "sctp_peer", {"t0": t0, "sends": sends[side]}, label=f"sctp-{side}")
        proc.expect("ready")
        peers.append(proc)
    if time.time() > t0 - 0.2:
        raise RecorderError("SCTP peers started too late for their schedule")
    for proc in peers:
        proc.expect("done", off + 10)


def sc_sctp_handshake(lab: Lab) -> None:
    a = SctpAssoc(40001, 5000, 0x11111111, 0x22222222)
    b = SctpAssoc(40002, 5000, 0x33333333, 0x44444444, v6=True)
    c = SctpAssoc(40003, 5000, 0x55555555, 0x66666666)
    steps = a.handshake() + b.handshake()
    # heartbeats both ways, then bundled data (COOKIE_ECHO may carry DATA)
    steps += [
        a.c(sc_heartbeat()),
        a.s(sc_heartbeat_ack()),
        a.s(sc_heartbeat()),
        a.c(sc_heartbeat_ack()),
        a.c(sc_data(1001), sc_data(1002)),
    ]
    steps += [
        c.c(sc_init(c.tag_c), vtag=0),
        c.s(sc_init_ack(c.tag_s)),
        c.c(sc_cookie_echo(), sc_data(1000)),
        c.s(SC_COOKIE_ACK, sc_sack(1000)),
    ]
    # data with a wrong vtag: INVALID, no refresh, nothing changes
    steps += [a.c(sc_data(1003), vtag=0xDEADBEEF)]
    sctp_run(lab, steps)


def sc_sctp_shutdown(lab: Lab) -> None:
    a = SctpAssoc(40011, 5000, 0x0A0A0A0A, 0x0B0B0B0B)
    b = SctpAssoc(40012, 5000, 0x0C0C0C0C, 0x0D0D0D0D)
    c = SctpAssoc(40013, 5000, 0x0E0E0E0E, 0x0F0F0F0F)
    steps = a.handshake() + b.handshake() + c.handshake()
    # a: client shuts down, complete: CLOSED
    steps += [a.c(sc_shutdown(5000)), a.s(SC_SHUTDOWN_ACK), a.c(sc_shutdown_complete())]
    # b: the server shuts down, the client acks: SHUTDOWN_ACK_SENT (complete never sent)
    steps += [b.s(sc_shutdown(1000)), b.c(SC_SHUTDOWN_ACK)]
    # c: client SHUTDOWN only: SHUTDOWN_SENT
    steps += [c.c(sc_shutdown(5000))]
    sctp_run(lab, steps)


def sc_sctp_abort(lab: Lab) -> None:
    a = SctpAssoc(40021, 5000, 0x12345678, 0x9ABCDEF0)
    b = SctpAssoc(40022, 5000, 0x13572468, 0x24681357)
    c = SctpAssoc(40023, 5000, 0x31415926, 0x27182818)
    d = SctpAssoc(40024, 5000, 0x01020304, 0x05060708)
    steps = a.handshake() + b.handshake() + c.handshake()
    steps += [a.c(sc_abort())]  # ABORT from the client with the server's tag: CLOSED
    steps += [b.s(sc_abort(t_flag=True), vtag=b.tag_s)]  # T flag: the sender's own tag
    steps += [c.c(sc_abort(), vtag=0x0BADF00D)]  # wrong tag: INVALID, stays ESTABLISHED
    # d: INIT answered by ABORT (port closed): CLOSED
    steps += [d.c(sc_init(d.tag_c), vtag=0), d.s(sc_abort())]
    sctp_run(lab, steps)


def sc_sctp_init_unanswered(lab: Lab) -> None:
    a = SctpAssoc(40031, 5000, 0x0AAAAAAA, 0)
    b = SctpAssoc(40032, 5000, 0x0BBBBBBB, 0)
    c = SctpAssoc(40033, 5000, 0x0CCCCCCC, 0x0DDDDDDD)
    steps: list[tuple[str, str, bytes] | float] = [
        a.c(sc_init(a.tag_c), vtag=0),
        b.c(sc_init(b.tag_c), vtag=0),
        # DATA, COOKIE_ACK or ABORT on an unknown flow create nothing
        c.c(sc_data(1)),
        c.c(SC_COOKIE_ACK),
        c.c(sc_abort()),
        3.0,
        a.c(sc_init(a.tag_c), vtag=0),  # retransmitted INIT: the timer is not renewed
        b.c(sc_init(0x0B0B0BBB), vtag=0),  # a new INIT (other tag): not renewed either
    ]
    sctp_run(lab, steps)


def sc_sctp_heartbeat_pickup(lab: Lab) -> None:
    # Heartbeats of an association the router never saw set up (a secondary path of a
    # multi-homed association): HEARTBEAT creates HEARTBEAT_SENT, the ACK makes it
    # ESTABLISHED; then data on it; a lone HEARTBEAT stays HEARTBEAT_SENT.
    a = SctpAssoc(40041, 5000, 0x7A7A7A7A, 0x7B7B7B7B)
    b = SctpAssoc(40042, 5000, 0x7C7C7C7C, 0x7D7D7D7D)
    steps = [
        a.c(sc_heartbeat()),
        a.s(sc_heartbeat_ack()),
        a.c(sc_data(1000)),
        a.s(sc_sack(1000)),
        b.c(sc_heartbeat()),
    ]
    sctp_run(lab, steps)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    run: Callable[..., None] | None = None
    precapture: bool = False  # run() starts the capture itself (gets the pcap path)
    source: str = ""  # derived captures: converted from this recorded one
    convert: str = ""
    # keyword arguments of sniffover.replay.replay() the golden test passes (the router's
    # configuration the tracker must be told about), saved as "replay" in <name>.json
    replay: dict[str, Any] = field(default_factory=dict)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "tcp_fin_close",
            "IPv4 TCP to 8080, 4 KB each way, client closes first, then the server: TIME_WAIT.",
            sc_tcp_fin_close,
        ),
        Scenario(
            "tcp_rst_abort",
            "IPv4 TCP with data, then the client aborts with RST (SO_LINGER 0).",
            sc_tcp_rst_abort,
        ),
        Scenario(
            "tcp_simultaneous_close",
            "IPv4 TCP, both sides shutdown(SHUT_WR) at the "
            "same instant; the client's first FIN is dropped at the server so the FINs "
            "cross at the router, then retransmitted.",
            sc_tcp_simultaneous_close,
        ),
        Scenario(
            "tcp_simultaneous_open",
            "IPv4 TCP simultaneous open: both bind fixed ports "
            "and connect; the client's SYN is dropped at the server, the server's SYN "
            "crosses it; data both ways, left open.",
            sc_tcp_simultaneous_open,
        ),
        Scenario(
            "tcp_half_close",
            "IPv4 TCP, client sends then shutdown(SHUT_WR); the server "
            "keeps sending and never closes; dumped in that state.",
            sc_tcp_half_close,
        ),
        Scenario(
            "tcp_syn_unanswered",
            "IPv4 TCP SYN to a port the server drops silently; "
            "the client gives up after 1.5 s (one retransmitted SYN).",
            sc_tcp_syn_unanswered,
        ),
        Scenario(
            "tcp_syn_closed_port",
            "IPv4 TCP SYN to a closed port: RST from the server.",
            sc_tcp_syn_closed_port,
        ),
        Scenario(
            "tcp_syn_retransmit",
            "IPv4 TCP whose first SYN is dropped at the server; the "
            "retransmitted SYN is answered; data, left open.",
            sc_tcp_syn_retransmit,
        ),
        Scenario(
            "tcp_timewait_reuse",
            "IPv4 TCP from fixed source port 40300, FIN close "
            "(TIME_WAIT), then a new connection on the same tuple 1.3 s later with data, "
            "left open.",
            sc_tcp_timewait_reuse,
        ),
        Scenario(
            "tcp_midstream",
            "Two IPv4 TCP flows set up before the capture starts; the "
            "capture begins mid-stream with server data, ~1 s both ways, left open.",
            sc_tcp_midstream,
            precapture=True,
        ),
        Scenario(
            "udp_flows",
            "IPv4 UDP: one flow never answered (dropped at the server), one "
            "request/response, one stream both ways over 3 s (ASSURED).",
            sc_udp_flows,
        ),
        Scenario("icmp_echo", "Two IPv4 pings of 3 echoes each.", sc_icmp_echo),
        Scenario(
            "udplite",
            "UDP-Lite sockets, IPv4 and IPv6, whole and 20-byte coverage, answered, through a "
            "router with nf_conntrack_checksum=1 (its check uses protocol 17: all INVALID), "
            "plus one datagram per family checksummed with protocol 17 (tracked).",
            sc_udplite,
        ),
        Scenario(
            "udplite_nochecksum",
            "The udplite traffic through a router with nf_conntrack_checksum=0: every flow "
            "tracked, answered ones ASSURED; the protocol-17 datagrams are bad for the "
            "server and go unanswered.",
            sc_udplite_nochecksum,
        ),
        Scenario(
            "multicast_broadcast",
            "IGMPv3 report (224.0.0.22), LLMNR, SSDP, mDNS and other groups, IPv4 and IPv6, "
            "to a router that joined none and routes no multicast; the groups every Linux "
            "router joins (224.0.0.1 also by IGMP query, ff02::1, ff02::2, ff05::2); a "
            "frame to the interface-local ff01::1 (dropped before conntrack); a DHCP "
            "DISCOVER from 0.0.0.0 to 255.255.255.255; limited, link, other-subnet and "
            "remote-subnet broadcasts; one answered unicast UDP flow per family.",
            sc_multicast_broadcast,
        ),
        Scenario(
            "multicast_joined",
            "mDNS and SSDP datagrams, IPv4 and IPv6, to a router that joined those groups "
            "(a listener in the router namespace): delivered and tracked; replayed with "
            "--multicast track.",
            sc_multicast_joined,
            replay={"multicast": "track"},
        ),
        Scenario(
            "icmp_port_unreachable",
            "IPv4 UDP to a closed port answered with ICMP port unreachable, plus one echo.",
            sc_icmp_port_unreachable,
        ),
        Scenario(
            "ipv6_mixed",
            "IPv6: two TCP connections (one closed, one open), UDP "
            "request/response, UDP to a closed port (ICMPv6 unreachable), two echoes.",
            sc_ipv6_mixed,
        ),
        Scenario(
            "mixed_many",
            "Busy mix: 40 TCP connections (open, FIN, RST, refused; every "
            "5th IPv6), 30 UDP flows (replied, dropped, ICMP unreachable), IPv4 and IPv6 "
            "pings.",
            sc_mixed_many,
        ),
        Scenario(
            "sctp_handshake",
            "IPv4 and IPv6 SCTP (crafted, raw sockets): INIT, INIT_ACK, "
            "COOKIE_ECHO, COOKIE_ACK, DATA/SACK both ways, heartbeats both ways; one "
            "COOKIE_ECHO bundled with DATA; a DATA with a wrong vtag; left ESTABLISHED.",
            sc_sctp_handshake,
        ),
        Scenario(
            "sctp_shutdown",
            "SCTP associations closing: SHUTDOWN/SHUTDOWN_ACK/"
            "SHUTDOWN_COMPLETE (CLOSED), server-side SHUTDOWN acked (SHUTDOWN_ACK_SENT), "
            "a lone SHUTDOWN (SHUTDOWN_SENT).",
            sc_sctp_shutdown,
        ),
        Scenario(
            "sctp_abort",
            "SCTP ABORTs: from the client, from the server with the T flag, "
            "one with a wrong vtag (ignored), and an INIT answered by ABORT.",
            sc_sctp_abort,
        ),
        Scenario(
            "sctp_init_unanswered",
            "SCTP INITs never answered, each re-sent after 3 s "
            "(same tag, new tag: the CLOSED timer is not renewed either way); "
            "DATA, COOKIE_ACK and ABORT on an unknown flow.",
            sc_sctp_init_unanswered,
        ),
        Scenario(
            "sctp_heartbeat_pickup",
            "SCTP heartbeats on associations set up before: "
            "HEARTBEAT + HEARTBEAT_ACK + DATA/SACK, and a lone HEARTBEAT.",
            sc_sctp_heartbeat_pickup,
        ),
        Scenario(
            "vlan_tagged",
            "mixed_many with an 802.1Q tag (VLAN 100) added by tcprewrite.",
            source="mixed_many",
            convert="vlan",
        ),
        Scenario(
            "sll_cooked",
            "icmp_port_unreachable converted to Linux cooked capture (SLL, linktype 113).",
            source="icmp_port_unreachable",
            convert="sll",
        ),
        Scenario(
            "sll2_cooked",
            "ipv6_mixed converted to Linux cooked capture v2 (SLL2, linktype 276).",
            source="ipv6_mixed",
            convert="sll2",
        ),
        Scenario(
            "raw_ip",
            "mixed_many converted to raw IP (LINKTYPE_RAW 101).",
            source="mixed_many",
            convert="raw",
        ),
    )
}


# --------------------------------------------------------------------------------------
# Derived captures
# --------------------------------------------------------------------------------------

ETH_IP4, ETH_IP6 = 0x0800, 0x86DD
FAR_SIDE = {SERVER4, SERVER6, ROUTER_IN4, ROUTER_IN6}


def _router_macs(frames: list[tuple[float, bytes]]) -> set[bytes]:
    """MACs sending the server's (forwarded) or the router's own IP packets: the router's."""
    macs = set()
    for _ts, buf in frames:
        if len(buf) < 14:
            continue
        etype = struct.unpack("!H", buf[12:14])[0]
        if etype == ETH_IP4 and len(buf) >= 34:
            src = str(ipaddress.IPv4Address(buf[26:30]))
        elif etype == ETH_IP6 and len(buf) >= 54:
            src = str(ipaddress.IPv6Address(buf[22:38]))
        else:
            continue
        if src in FAR_SIDE:
            macs.add(buf[6:12])
    return macs


def convert_pcap(src: Path, dst: Path, kind: str) -> int:
    """Rewrite an Ethernet pcap as SLL (113), SLL2 (276) or raw IP (101); returns packets."""
    with src.open("rb") as f:
        frames = [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(f)]
    router_macs = _router_macs(frames)
    linktype = {"sll": 113, "sll2": 276, "raw": 101}[kind]
    n = 0
    with dst.open("wb") as f:
        writer = dpkt.pcap.Writer(f, snaplen=262144, linktype=linktype, nano=False)
        for ts, buf in frames:
            if len(buf) < 14:
                continue
            src_mac, etype, l3 = buf[6:12], struct.unpack("!H", buf[12:14])[0], buf[14:]
            # captured on the router: its own frames go out (4), all others arrive (0)
            pkttype = 4 if src_mac in router_macs else 0
            addr = src_mac + b"\0\0"
            if kind == "sll":
                out = struct.pack("!HHH8sH", pkttype, 1, 6, addr, etype) + l3
            elif kind == "sll2":
                out = struct.pack("!HHIHBB8s", etype, 0, 2, 1, pkttype, 6, addr) + l3
            else:
                if etype not in (ETH_IP4, ETH_IP6):
                    continue
                out = l3
            writer.writepkt(out, ts=ts)
            n += 1
    return n


def derive(sc: Scenario, outdir: Path) -> Path:
    src = outdir / f"{sc.source}.pcap"
    if not (src.exists() and (outdir / f"{sc.source}.json").exists()):
        record(sc.source, outdir)
    dst = outdir / f"{sc.name}.pcap"
    if sc.convert == "vlan":
        res = subprocess.run(
            [
                "tcprewrite",
                "--enet-vlan=add",
                "--enet-vlan-tag=100",
                "--enet-vlan-cfi=0",
                "--enet-vlan-pri=0",
                f"--infile={src}",
                f"--outfile={dst}",
            ],
            capture_output=True,
            timeout=60,
        )
        if res.returncode != 0:
            raise RecorderError(f"tcprewrite failed: {res.stderr.decode(errors='replace')}")
    else:
        convert_pcap(src, dst, sc.convert)
    shutil.copyfile(outdir / f"{sc.source}.conntrack", outdir / f"{sc.name}.conntrack")
    meta = json.loads((outdir / f"{sc.source}.json").read_text())
    meta["description"] = sc.description
    meta["scenario"] = sc.name
    meta["derived_from"] = sc.source
    (outdir / f"{sc.name}.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return dst


# --------------------------------------------------------------------------------------


def _tcpdump_stats(stderr: str) -> dict[str, int]:
    """tcpdump's closing counters ("N packets captured", "... dropped by kernel")."""
    stats = {}
    for key, pattern in (
        ("captured", r"(\d+) packets? captured"),
        ("received_by_filter", r"(\d+) packets? received by filter"),
        ("dropped_by_kernel", r"(\d+) packets? dropped by kernel"),
    ):
        m = re.search(pattern, stderr)
        if m:
            stats[key] = int(m.group(1))
    return stats


def record(name: str, outdir: Path | str) -> Path:
    """Record scenario ``name`` into ``outdir``; returns the pcap path."""
    outdir = Path(outdir).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    sc = SCENARIOS.get(name)
    if sc is None:
        raise RecorderError(f"unknown scenario {name!r}")
    if sc.source:
        return derive(sc, outdir)
    assert sc.run is not None
    pcap = outdir / f"{name}.pcap"
    lab = Lab()
    try:
        lab.setup()
        if sc.precapture:
            sc.run(lab, pcap)
        else:
            lab.start_capture(pcap)
            sc.run(lab)
        lab.start_capture(pcap)  # no-op unless the scenario forgot
        time.sleep(0.5)
        tcpdump_err = lab.stop_capture()
        dump_time, table = lab.dump()
        sysctls = lab.router_sysctls()
        meta = {
            "dump_time": dump_time,
            "description": sc.description,
            "router_sysctls": sysctls,
            "scenario": name,
            "tcpdump": _tcpdump_stats(tcpdump_err),
        }
        if sc.replay:
            meta["replay"] = sc.replay
        (outdir / f"{name}.conntrack").write_text(table)
        seqadj = lab.seqadj()  # conntrack -L does not show them: beside it, when any
        if seqadj != "[]":
            (outdir / f"{name}.seqadj").write_text(seqadj + "\n")
        (outdir / f"{name}.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    finally:
        lab.teardown()
    return pcap


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tools.golden.record",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--out", default="pcaps", help="output directory (default: pcaps)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="record only these scenarios")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument(
        "--tag",
        default="",
        metavar="WORD",
        help="name the namespaces snfrec-WORD-<pid>-* (recorders running side by side)",
    )
    args = ap.parse_args(argv)
    if args.tag and not re.fullmatch(r"[a-z0-9]{1,12}", args.tag):
        ap.error("--tag: 1 to 12 lower-case letters or digits")
    global NETNS_TAG
    NETNS_TAG = f"{args.tag}-" if args.tag else ""
    if args.list:
        for sc in SCENARIOS.values():
            print(f"{sc.name:24} {sc.description}")
        return 0
    names = args.only or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(unknown)}")
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces)")
    failed = []
    start = time.monotonic()
    for name in names:
        t0 = time.monotonic()
        try:
            path = record(name, args.out)
        except (RecorderError, OSError, subprocess.SubprocessError) as exc:
            _log(f"{name}: FAILED: {exc}")
            failed.append(name)
            continue
        conntrack = path.with_suffix(".conntrack")
        n = len(conntrack.read_text().splitlines()) if conntrack.exists() else 0
        _log(f"{name}: {path} ({n} conntrack entries, {time.monotonic() - t0:.1f}s)")
    _log(
        f"recorded {len(names) - len(failed)}/{len(names)} in {time.monotonic() - start:.1f}s"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
