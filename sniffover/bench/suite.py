"""``sniffover bench``: sniffover against conntrackd on identical, seeded traffic in the hub lab.

    sniffover bench [--quick] [--out DIR] [--subjects cold,sniffover,sniffover+prime,conntrackd]
                    [--long N] [--old-active N] [--old-idle N] [--udp N] [--icmp N]
                    [--churn RATE] [--duration S] [--cold-window S] [--seed N]
    sniffover bench micro [--quick]          # the replay / live / prime micro-benchmarks
    python -m sniffover.bench.suite ...       # the same

One fresh lab (``sniffover.lab.hub.Lab``, namespaces ``snflab-*``) per subject, one subject after
the other, the same traffic each time (driver seeded with ``--seed``):

1. the master-side sync process starts on fw1 (``sniffover serve`` / ``conntrackd``);
2. "old" long-lived TCP connections are opened through fw1 (half of them exchange a request
   every ~0.5 s, the others stay silent until after the failover);
3. the standby's agent/daemon starts on fw2; coverage of fw1's table by the standby's state is
   sampled every 0.5 s for ``--cold-window`` seconds (the cold-start curve);
4. the main traffic runs for ``--duration`` seconds: long-lived TCP connections with a request
   every ~0.5 s, a churn of short TCP connections, UDP request/response flows, ICMP echo;
5. just before the failover: coverage (fw1's ``conntrack -L`` against the standby's state:
   kernel table for sniffover, the external cache for conntrackd), sync-link bytes, CPU seconds
   and RSS of the sync processes;
6. takeover: the subject's commit (``sniffover ctl promote`` / ``conntrackd -c; -f; -R``), then
   ``Lab.failover()`` (fw1's links down, fw2 takes the VIPs, gratuitous ARP);
7. every TCP connection, UDP flow and ICMP echo id is probed through fw2 once.

The traffic driver is this module, run in the client namespace with ``--inner driver``.
Results: a Markdown table on stdout, and with ``--out DIR`` also ``results.json``,
``results.md`` and PNG plots (``sniffover.bench.plots``). Only the plots need matplotlib, the
``[bench]`` extra (``pip install 'sniffover[bench]'``); without it they are skipped. The suite
needs root (network namespaces) and, for the conntrackd subject, ``conntrackd``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import heapq
import json
import os
import random
import re
import resource
import selectors
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..lab.hub import (
    FW_INSIDE,
    FW_OUTSIDE,
    FW_SYNC,
    INSIDE_VIP,
    OUTSIDE_VIP,
    SYNC_IF,
    Lab,
    LabError,
    _LineReader,
    server_ip,
    stop_process,
)

SUBJECTS = ("cold", "sniffover", "sniffover+prime", "conntrackd")
TCP_PORT = 8000
UDP_PORT = 9000
CONNTRACKD_PORT = 3780
TCP_STATES = frozenset(
    {
        "NONE",
        "SYN_SENT",
        "SYN_RECV",
        "ESTABLISHED",
        "FIN_WAIT",
        "CLOSE_WAIT",
        "LAST_ACK",
        "TIME_WAIT",
        "CLOSE",
        "SYN_SENT2",
    }
)
CLOSED_STATES = frozenset({"TIME_WAIT", "CLOSE"})
PROTOS = frozenset({"tcp", "udp", "icmp", "udplite", "sctp", "dccp", "gre", "icmpv6"})
# addresses of the firewalls themselves: their own traffic (sync link, pulls) is not state
# the standby needs, and each kernel tracks it itself
FW_ADDRS = frozenset(
    {
        *FW_INSIDE.values(),
        *FW_OUTSIDE.values(),
        *FW_SYNC.values(),
        INSIDE_VIP,
        OUTSIDE_VIP,
        "127.0.0.1",
    }
)

Progress = Callable[[str], None]


# --- metrics: conntrack listings ----------------------------------------------------------


Key = tuple[str, str, str, int, int]

_FIELD = re.compile(r"(src|dst|sport|dport|type|code|id)=(\S+)")


def parse_ct(text: str) -> dict[Key, str]:
    """Entries of a ``conntrack -L`` (or ``conntrackd -i/-e``) listing: ORIGINAL tuple -> state.

    The key is (protocol, src, dst, sport, dport) of the first (ORIGINAL) tuple; for ICMP the
    ports are (id, type). The state is the TCP state, '' for other protocols. Lines that are
    not entries (summaries, headers) are ignored; ``-o extended``'s family columns too.
    Not ``conntrack.listing.parse_listing``: that parser is strict (it raises on any line
    that is not ``conntrack -L``), and conntrackd's cache dumps are not written for it.
    """
    out: dict[Key, str] = {}
    for line in text.splitlines():
        words = line.split()
        proto = next((w for w in words[:4] if w in PROTOS), None)
        if proto is None:
            continue
        state = ""
        fields: dict[str, str] = {}
        for w in words:
            if "=" not in w:
                if proto == "tcp" and not state and w in TCP_STATES:
                    state = w
                continue
            m = _FIELD.fullmatch(w)
            if m and m[1] not in fields:
                fields[m[1]] = m[2]
        if "src" not in fields or "dst" not in fields:
            continue
        try:
            if proto.startswith("icmp"):
                a, b = int(fields.get("id", 0)), int(fields.get("type", 0))
            else:
                a, b = int(fields.get("sport", 0)), int(fields.get("dport", 0))
        except ValueError:
            continue
        out[(proto, fields["src"], fields["dst"], a, b)] = state
    return out


def forwarded(table: dict[Key, str]) -> dict[Key, str]:
    """Only the entries of forwarded traffic (neither end a firewall address)."""
    return {k: v for k, v in table.items() if k[1] not in FW_ADDRS and k[2] not in FW_ADDRS}


def coverage(master: str | dict[Key, str], standby: str | dict[Key, str]) -> dict[str, Any]:
    """How well the standby's state covers the master's (forwarded traffic only).

    ``coverage``: fraction of the master's entries present on the standby with the same TCP
    state (presence for other protocols); ``present``: fraction present at all;
    ``established_coverage``: the same over the master's ESTABLISHED TCP entries (what a
    takeover needs); ``wrong_state``: present with another TCP state; ``extra``: on the
    standby, not on the master.
    """
    m = forwarded(parse_ct(master) if isinstance(master, str) else master)
    s = forwarded(parse_ct(standby) if isinstance(standby, str) else standby)
    present = [k for k in m if k in s]
    same = sum(1 for k in present if s[k] == m[k])
    est = [k for k, v in m.items() if k[0] == "tcp" and v == "ESTABLISHED"]
    live = [k for k, v in m.items() if v not in CLOSED_STATES]
    live_same = sum(1 for k in live if k in s and s[k] == m[k])
    est_same = sum(1 for k in est if s.get(k) == "ESTABLISHED")
    by_proto: dict[str, list[int]] = {}
    for k, v in m.items():
        row = by_proto.setdefault(k[0], [0, 0])
        row[1] += 1
        row[0] += s.get(k) == v
    return {
        "master": len(m),
        "standby": len(s),
        "coverage": round(same / len(m), 4) if m else 1.0,
        "present": round(len(present) / len(m), 4) if m else 1.0,
        "open_coverage": round(live_same / len(live), 4) if live else 1.0,
        "established": len(est),
        "established_coverage": round(est_same / len(est), 4) if est else 1.0,
        "wrong_state": len(present) - same,
        "extra": sum(1 for k in s if k not in m),
        "by_proto": {p: {"same": a, "total": b} for p, (a, b) in sorted(by_proto.items())},
    }


# --- metrics: processes and links ---------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (and its reaped children: cutime + cstime), in seconds."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid: int) -> dict[str, int] | None:
    """VmRSS and VmHWM (peak) of ``pid`` in KiB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(val.split()[0])
    return out


def link_bytes(lab: Lab, node: str, dev: str = SYNC_IF) -> dict[str, int]:
    """tx/rx bytes and packets of ``dev`` in ``node`` (its /sys statistics, read in the netns)."""
    names = ("tx_bytes", "rx_bytes", "tx_packets", "rx_packets")
    files = " ".join(f"/sys/class/net/{dev}/statistics/{n}" for n in names)
    out = lab.run(node, "sh", "-c", f"cat {files}", check=False).stdout.split()
    if len(out) != len(names):
        return dict.fromkeys(names, 0)
    return {n: int(v) for n, v in zip(names, out, strict=True)}


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


# --- the traffic driver (runs in the client namespace) ------------------------------------


ICMP_ECHO, ICMP_ECHOREPLY = 8, 0
PROBE_SEQ = 0xFF00


def _icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def icmp_echo(ident: int, seq: int, payload: bytes = b"sniffover-bench") -> bytes:
    head = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
    csum = _icmp_checksum(head + payload)
    return struct.pack("!BBHHH", ICMP_ECHO, 0, csum, ident, seq) + payload


class _Flow:
    __slots__ = ("kind", "group", "sock", "sport", "buf", "dead", "ok", "sent", "answered")

    def __init__(self, kind: str, group: str, sock: socket.socket | None, sport: int) -> None:
        self.kind = kind  # tcp | udp | icmp | churn
        self.group = group
        self.sock = sock
        self.sport = sport  # for icmp: the echo id
        self.buf = b""
        self.dead: str | None = None
        self.ok = False  # answered the current probe
        self.sent = 0
        self.answered = 0


class Driver:
    """Long-lived TCP groups (periodic or idle), UDP and ICMP flows, TCP churn; one event loop.

    Commands (stdin, one per line) and one JSON answer line each:
    ``open GROUP N PERIODIC`` (0/1), ``udp N``, ``icmp N``, ``churn RATE [MAX]``, ``stats``,
    ``probe`` (stops periodic traffic and churn, one request on every flow), ``quit``.
    """

    def __init__(
        self, server: str, seed: int, interval: float, timeout: float, probe_timeout: float
    ) -> None:
        self.server = server
        self.rng = random.Random(seed)
        self.interval = interval
        self.timeout = timeout
        self.probe_timeout = probe_timeout
        self.sel = selectors.DefaultSelector()
        self.flows: list[_Flow] = []
        self.periodic: list[tuple[float, int, int]] = []  # heap of (due, seq, flow index)
        self._heap_seq = 0
        self.seq = 0
        self.paused = False
        self.churn_rate = 0.0
        self.churn_limit = 0
        self.churn_next = 0.0
        self.churn: dict[socket.socket, tuple[str, float]] = {}  # sock -> (phase, deadline)
        self.churn_stats = {"started": 0, "ok": 0, "failed": 0}
        self.icmp_sock: socket.socket | None = None
        self.icmp_flows: dict[int, _Flow] = {}
        self.icmp_base = 0x5000 + self.rng.randrange(0x1000)
        self.probe: dict[str, Any] | None = None

    # setup commands
    def open_group(self, group: str, n: int, periodic: bool) -> dict[str, Any]:
        socks: dict[socket.socket, int] = {}
        failed = 0
        sel = selectors.DefaultSelector()
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.bind(("0.0.0.0", 0))
            err = s.connect_ex((self.server, TCP_PORT))
            if err not in (0, errno.EINPROGRESS):
                failed += 1
                s.close()
                continue
            socks[s] = s.getsockname()[1]
            sel.register(s, selectors.EVENT_WRITE)
        opened: list[_Flow] = []
        deadline = time.monotonic() + self.timeout
        while socks and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(timeout=left):
                s = key.fileobj  # type: ignore[assignment]
                assert isinstance(s, socket.socket)
                sel.unregister(s)
                sport = socks.pop(s)
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    failed += 1
                    s.close()
                else:
                    opened.append(_Flow("tcp", group, s, sport))
        for s in socks:
            failed += 1
            s.close()
        sel.close()
        now = time.monotonic()
        for f in opened:
            self._add(f, now if periodic else None)
        return {"group": group, "opened": len(opened), "failed": failed}

    def _add(self, f: _Flow, periodic_from: float | None) -> None:
        self.flows.append(f)
        idx = len(self.flows) - 1
        if f.sock is not None:
            self.sel.register(f.sock, selectors.EVENT_READ, f)
        if periodic_from is not None:
            self._schedule(idx, periodic_from + self.rng.uniform(0, self.interval))

    def _schedule(self, idx: int, due: float) -> None:
        self._heap_seq += 1
        heapq.heappush(self.periodic, (due, self._heap_seq, idx))

    def open_udp(self, n: int) -> dict[str, Any]:
        now = time.monotonic()
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            s.bind(("0.0.0.0", 0))
            s.connect((self.server, UDP_PORT))
            self._add(_Flow("udp", "udp", s, s.getsockname()[1]), now)
        return {"udp": n}

    def open_icmp(self, n: int) -> dict[str, Any]:
        if self.icmp_sock is None:
            self.icmp_sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            self.icmp_sock.setblocking(False)
            self.sel.register(self.icmp_sock, selectors.EVENT_READ, "icmp")
        now = time.monotonic()
        for _ in range(n):
            ident = self.icmp_base + len(self.icmp_flows)
            f = _Flow("icmp", "icmp", None, ident)
            self.icmp_flows[ident] = f
            self._add(f, now)
        return {"icmp": n}

    def set_churn(self, rate: float, limit: int = 1_000_000) -> dict[str, Any]:
        self.churn_rate = max(0.0, min(rate, 1000.0))
        self.churn_limit = limit
        self.churn_next = time.monotonic()
        return {"churn": self.churn_rate}

    # traffic
    def _send(self, f: _Flow, token: str) -> None:
        try:
            if f.kind == "tcp" and f.sock is not None:
                f.sock.send(f"ping {token}\n".encode())
            elif f.kind == "udp" and f.sock is not None:
                f.sock.send(f"ping {token}".encode())
            elif f.kind == "icmp" and self.icmp_sock is not None:
                seq = PROBE_SEQ if token.startswith("p") else self.seq & 0x7FFF
                self.icmp_sock.sendto(icmp_echo(f.sport, seq), (self.server, 0))
            f.sent += 1
        except OSError as e:
            if f.kind == "tcp":
                f.dead = errno.errorcode.get(e.errno or 0, str(e.errno))

    def _tick_periodic(self, now: float) -> None:
        for _ in range(len(self.periodic)):
            if not self.periodic or self.periodic[0][0] > now or self.paused:
                return
            _due, _s, idx = heapq.heappop(self.periodic)
            f = self.flows[idx]
            if f.dead:
                continue
            self.seq += 1
            self._send(f, str(self.seq))
            self._schedule(idx, now + self.interval * self.rng.uniform(0.9, 1.1))

    def _tick_churn(self, now: float) -> None:
        for s, (_phase, deadline) in list(self.churn.items()):
            if now > deadline:
                self._churn_done(s, False)
        if self.paused or self.churn_rate <= 0:
            return
        for _ in range(100):
            if self.churn_next > now or len(self.churn) >= 200:
                return
            if self.churn_stats["started"] >= self.churn_limit:
                return
            self.churn_next += self.rng.expovariate(self.churn_rate)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.bind(("0.0.0.0", 0))
            self.churn_stats["started"] += 1
            if s.connect_ex((self.server, TCP_PORT)) not in (0, errno.EINPROGRESS):
                self.churn_stats["failed"] += 1
                s.close()
                continue
            self.churn[s] = ("connect", now + self.timeout)
            self.sel.register(s, selectors.EVENT_WRITE, "churn")

    def _churn_done(self, s: socket.socket, ok: bool) -> None:
        self.churn.pop(s, None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(s)
        s.close()  # the client closes first: FIN, TIME_WAIT on the client
        self.churn_stats["ok" if ok else "failed"] += 1

    def _on_churn(self, s: socket.socket) -> None:
        phase, deadline = self.churn.get(s, ("", 0.0))
        if phase == "connect":
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._churn_done(s, False)
                return
            try:
                s.send(b"ping c\n")
            except OSError:
                self._churn_done(s, False)
                return
            self.churn[s] = ("answer", deadline)
            self.sel.modify(s, selectors.EVENT_READ, "churn")
        elif phase == "answer":
            try:
                data = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            self._churn_done(s, b"pong c" in data)

    def _on_read(self, f: _Flow) -> None:
        assert f.sock is not None
        try:
            data = f.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            if f.kind == "tcp":
                f.dead = errno.errorcode.get(e.errno or 0, str(e.errno))
                self.sel.unregister(f.sock)
            return
        if f.kind == "udp":
            self._answer(f, data.decode(errors="replace")[5:])
            return
        if not data:
            f.dead = "eof"
            self.sel.unregister(f.sock)
            return
        f.buf += data
        *lines, rest = f.buf.split(b"\n")
        f.buf = rest[-4096:]
        for line in lines:
            if line.startswith(b"pong "):
                self._answer(f, line[5:].decode(errors="replace"))

    def _on_icmp(self) -> None:
        assert self.icmp_sock is not None
        for _ in range(256):
            try:
                pkt = self.icmp_sock.recv(65535)
            except (BlockingIOError, InterruptedError, OSError):
                return
            ihl = (pkt[0] & 0x0F) * 4
            if len(pkt) < ihl + 8 or pkt[ihl] != ICMP_ECHOREPLY:
                continue
            ident, seq = struct.unpack_from("!HH", pkt, ihl + 4)
            f = self.icmp_flows.get(ident)
            if f is not None:
                self._answer(f, "p" if seq == PROBE_SEQ else "x")

    def _answer(self, f: _Flow, token: str) -> None:
        probe_token = "p" if f.kind == "icmp" else (self.probe or {}).get("token")
        if self.probe is not None and token == probe_token:
            f.ok = True
        elif token and not token.startswith("p"):
            f.answered += 1

    # probing
    def start_probe(self) -> None:
        self.paused = True
        token = f"p{self.seq}"
        self.seq += 1
        for f in self.flows:
            f.ok = False
            if f.kind == "tcp" and f.dead:
                continue
            self._send(f, token if f.kind != "icmp" else "p")  # icmp: the probe's seq
        self.probe = {"token": token, "deadline": time.monotonic() + self.probe_timeout}

    def probe_pending(self) -> bool:
        assert self.probe is not None
        return any(not f.ok and not (f.kind == "tcp" and f.dead) for f in self.flows)

    def probe_result(self) -> dict[str, Any]:
        groups: dict[str, dict[str, int]] = {}
        failed: list[str] = []
        for f in self.flows:
            g = groups.setdefault(f.group, {"ok": 0, "total": 0})
            g["total"] += 1
            g["ok"] += f.ok
            if not f.ok and len(failed) < 50:
                failed.append(f"{f.group}:{f.sport}:{f.dead or 'timeout'}")
        self.probe = None
        return {"probe": groups, "failed": failed, **self.stats()}

    def stats(self) -> dict[str, Any]:
        per: dict[str, dict[str, int]] = {}
        for f in self.flows:
            g = per.setdefault(f.group, {"sent": 0, "answered": 0, "dead": 0})
            g["sent"] += f.sent
            g["answered"] += f.answered
            g["dead"] += f.dead is not None
        return {"periodic": per, "churn": dict(self.churn_stats)}

    def command(self, line: str) -> dict[str, Any] | None:
        words = line.split()
        if not words:
            return {"error": "empty"}
        cmd, args = words[0], words[1:]
        try:
            if cmd == "open":
                return self.open_group(args[0], int(args[1]), args[2] == "1")
            if cmd == "udp":
                return self.open_udp(int(args[0]))
            if cmd == "icmp":
                return self.open_icmp(int(args[0]))
            if cmd == "churn":
                return self.set_churn(float(args[0]), *(int(a) for a in args[1:2]))
            if cmd == "stats":
                return self.stats()
        except (IndexError, ValueError) as e:
            return {"error": f"{line!r}: {e}"}
        if cmd == "quit":
            return None
        return {"error": f"unknown command {cmd!r}"}

    def run(self, duration: float) -> int:
        deadline = time.monotonic() + duration
        stdin = sys.stdin.fileno()
        os.set_blocking(stdin, False)
        self.sel.register(stdin, selectors.EVENT_READ, "stdin")
        _emit({"ready": True})
        buf = b""
        while (now := time.monotonic()) < deadline:
            self._tick_periodic(now)
            self._tick_churn(now)
            if self.probe is not None and (
                now > self.probe["deadline"] or not self.probe_pending()
            ):
                _emit(self.probe_result())
            wait = 0.05
            if self.periodic and not self.paused:
                wait = max(0.0, min(wait, self.periodic[0][0] - now))
            for key, _ in self.sel.select(timeout=wait):
                data = key.data
                if data == "stdin":
                    try:
                        chunk = os.read(stdin, 65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        return 0
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for raw in lines:
                        text = raw.decode(errors="replace").strip()
                        if text == "probe":
                            self.start_probe()
                            continue
                        answer = self.command(text)
                        if answer is None:
                            _emit({"bye": True})
                            return 0
                        _emit(answer)
                elif data == "icmp":
                    self._on_icmp()
                elif data == "churn":
                    s = key.fileobj
                    assert isinstance(s, socket.socket)
                    self._on_churn(s)
                elif isinstance(data, _Flow):
                    self._on_read(data)
        return 0


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


class DriverHandle:
    """The driver in a lab node, over stdin/stdout (like ``lab.TrafficClient``)."""

    def __init__(self, lab: Lab, node: str, seed: int, duration: float, probe_timeout: float):
        self.proc = lab.python(
            node,
            "-m",
            "sniffover.bench.suite",
            "--inner",
            "driver",
            "--server",
            server_ip(1),
            "--seed",
            str(seed),
            "--duration",
            str(duration),
            "--probe-timeout",
            str(probe_timeout),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self.lines = _LineReader(self.proc.stdout)
        self.probe_timeout = probe_timeout
        ready = self.lines.get(15)
        if not ready or not ready.get("ready"):
            stop_process(self.proc)
            raise LabError(f"traffic driver in {node} did not start: {ready!r}")

    def command(self, line: str, timeout: float = 30.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except OSError as e:
            raise LabError(f"traffic driver is gone: {e}") from e
        answer = self.lines.get(timeout)
        if answer is None:
            raise LabError(f"no answer from the traffic driver to {line!r}")
        if "error" in answer:
            raise LabError(f"traffic driver: {answer['error']}")
        return answer

    def probe(self) -> dict[str, Any]:
        return self.command("probe", self.probe_timeout + 15)

    def stop(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(2)
        stop_process(self.proc)


# --- subjects ---------------------------------------------------------------------------------


def conntrackd_config(node: str, tmp: Path) -> str:
    """conntrackd.conf for ``node`` (fw1/fw2): FTFW over unicast UDP on sync0, external cache.

    As the FTFW example of conntrack-tools, with everything that is per-instance (lock file,
    unix socket, log) in ``tmp`` and TCP, UDP and ICMP accepted; the firewalls' own addresses
    are ignored (their own traffic, the sync link).
    """
    peer = "fw2" if node == "fw1" else "fw1"
    ignore = "\n".join(f"            IPv4_address {a}" for a in sorted(FW_ADDRS))
    return f"""\
Sync {{
    Mode FTFW {{
        ResendQueueSize 131072
        StartupResync on
    }}
    UDP {{
        IPv4_address {FW_SYNC[node]}
        IPv4_Destination_Address {FW_SYNC[peer]}
        Port {CONNTRACKD_PORT}
        Interface {SYNC_IF}
        SndSocketBuffer 1249280
        RcvSocketBuffer 1249280
        Checksum on
    }}
}}
General {{
    Systemd off
    HashSize 32768
    HashLimit 131072
    LogFile {tmp}/conntrackd-{node}.log
    Syslog off
    LockFile {tmp}/conntrackd-{node}.lock
    UNIX {{
        Path {tmp}/conntrackd-{node}.ctl
    }}
    NetlinkBufferSize 2097152
    NetlinkBufferSizeMaxGrowth 8388608
    NetlinkOverrunResync on
    NetlinkEventsReliable off
    Filter From Userspace {{
        Protocol Accept {{
            TCP
            UDP
            ICMP
        }}
        Address Ignore {{
{ignore}
        }}
    }}
}}
"""


def _python_sniffover(*args: str) -> list[str]:
    return [sys.executable, "-m", "sniffover.cli", *args]


class Subject:
    """What runs on the firewalls for one bench subject."""

    name = "?"
    description = ""

    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab = lab
        self.tmp = tmp
        self.master: subprocess.Popen[Any] | None = None
        self.standby: subprocess.Popen[Any] | None = None
        self.started_at = 0.0
        self.ready_after: float | None = None

    def start_master(self) -> None:
        """The master-side sync process on fw1 (if any), before any traffic."""

    def start_standby(self) -> None:
        """The standby's agent/daemon on fw2 (may return before it is ready)."""

    def wait_ready(self, timeout: float) -> bool:
        return True

    def standby_state(self) -> str:
        """The standby's view of the connections, in ``conntrack -L`` format."""
        return self.lab.conntrack("fw2")

    def commit(self) -> dict[str, float]:
        """Take over the state before the failover; seconds per step."""
        return {}

    def extra_stats(self) -> dict[str, Any]:
        return {}

    def stop(self) -> None:
        for p in (self.standby, self.master):
            if p is not None:
                stop_process(p)

    def _log(self, name: str) -> Any:
        return open(self.tmp / name, "w")  # noqa: SIM115 - closed in the child's hands

    def log_tail(self) -> str:
        out = []
        for f in sorted(self.tmp.glob("*.log")):
            with contextlib.suppress(OSError):
                out.append(f"== {f.name}\n" + "\n".join(f.read_text().splitlines()[-8:]))
        return "\n".join(out)


class Cold(Subject):
    name = "cold"
    description = "nothing on the standby: fw2 takes over with an empty table (control)"


class Sniffover(Subject):
    name = "sniffover"
    description = "fw2: sniffover --iface inside0 (sniffing only, mid-stream pickup)"
    prime = False

    def _agent_args(self) -> list[str]:
        return ["--iface", "inside0", "--stats-interval", "60"]

    def start_standby(self) -> None:
        log = self._log("agent.log")
        self.started_at = time.monotonic()
        self.standby = self.lab.popen(
            "fw2",
            *_python_sniffover(*self._agent_args()),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.standby is None or self.standby.poll() is not None:
                return False
            r = self.lab.run("fw2", *_python_sniffover("status"), check=False)
            if r.returncode == 0:
                if self.ready_after is None:
                    self.ready_after = round(time.monotonic() - self.started_at, 3)
                return True
            time.sleep(0.2)
        return False

    def commit(self) -> dict[str, float]:
        t0 = time.monotonic()
        r = self.lab.run("fw2", *_python_sniffover("ctl", "promote"), check=False, timeout=90)
        if r.returncode != 0:
            raise LabError(f"sniffover ctl promote failed: {r.stderr.strip()}")
        return {"promote": time.monotonic() - t0}

    def extra_stats(self) -> dict[str, Any]:
        r = self.lab.run("fw2", *_python_sniffover("status", "--json"), check=False)
        try:
            doc = json.loads(r.stdout)
        except json.JSONDecodeError:
            return {}
        keep = ("state", "flows", "installed", "pending", "primed", "packets", "capture")
        return {"status": {k: doc[k] for k in keep if k in doc}}


class SniffoverPrime(Sniffover):
    name = "sniffover+prime"
    description = (
        f"fw1: sniffover serve --listen {FW_SYNC['fw1']}; "
        f"fw2: sniffover --iface inside0 --prime-from {FW_SYNC['fw1']} --key-file K"
    )

    def start_master(self) -> None:
        self.key = self.tmp / "key"
        self.key.write_bytes(os.urandom(32).hex().encode())
        self.key.chmod(0o600)
        log = self._log("serve.log")
        self.master = self.lab.popen(
            "fw1",
            *_python_sniffover("serve", "--listen", FW_SYNC["fw1"], "--key-file", str(self.key)),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            r = self.lab.run(
                "fw2", "bash", "-c", f"exec 3<>/dev/tcp/{FW_SYNC['fw1']}/7445", check=False
            )
            if r.returncode == 0:
                return
            time.sleep(0.2)
        raise LabError("sniffover serve did not come up on fw1")

    def _agent_args(self) -> list[str]:
        return [*super()._agent_args(), "--prime-from", FW_SYNC["fw1"], "--key-file", str(self.key)]


class Conntrackd(Subject):
    name = "conntrackd"
    description = (
        "conntrackd FTFW over unicast UDP on sync0 (port 3780) on fw1 and fw2, external "
        "cache; fw2 after start: conntrackd -n (resync request, as primary-backup.sh backup); "
        "takeover: conntrackd -c (commit), -f (flush caches), -R (resync internal cache), "
        "-B (bulk send), as primary-backup.sh primary"
    )

    def _conf(self, node: str) -> Path:
        path = self.tmp / f"conntrackd-{node}.conf"
        if not path.exists():
            path.write_text(conntrackd_config(node, self.tmp))
        return path

    def _start(self, node: str) -> subprocess.Popen[Any]:
        log = self._log(f"conntrackd-{node}.out.log")
        proc = self.lab.popen(
            node, "conntrackd", "-C", str(self._conf(node)), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LabError(f"conntrackd in {node} exited: {self.log_tail()}")
            if self.ctl(node, "-s", check=False).returncode == 0:
                return proc
            time.sleep(0.1)
        raise LabError(f"conntrackd in {node} did not answer on its unix socket")

    def ctl(self, node: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.lab.run(
            node, "conntrackd", "-C", str(self._conf(node)), *args, check=check, timeout=60
        )

    def start_master(self) -> None:
        self.master = self._start("fw1")

    def start_standby(self) -> None:
        self.started_at = time.monotonic()
        self.standby = self._start("fw2")
        self.ctl("fw2", "-n", check=False)  # request a resync (primary-backup.sh: backup)
        self.ready_after = round(time.monotonic() - self.started_at, 3)

    def standby_state(self) -> str:
        return self.ctl("fw2", "-e", check=False).stdout  # the external cache

    def commit(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for flag, label in (("-c", "commit"), ("-f", "flush"), ("-R", "resync"), ("-B", "bulk")):
            t0 = time.monotonic()
            self.ctl("fw2", flag, check=False)
            out[label] = time.monotonic() - t0
        return out


SUBJECT_CLASSES: dict[str, type[Subject]] = {
    c.name: c for c in (Cold, Sniffover, SniffoverPrime, Conntrackd)
}


# --- one run ----------------------------------------------------------------------------------


@dataclasses.dataclass
class BenchConfig:
    subjects: tuple[str, ...] = SUBJECTS
    long: int = 200
    old_active: int = 50
    old_idle: int = 50
    udp: int = 20
    icmp: int = 4
    churn: float = 20.0
    duration: float = 20.0
    cold_window: float = 4.0
    sample_interval: float = 0.5
    probe_timeout: float = 6.0
    seed: int = 5

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(
            long=60,
            old_active=20,
            old_idle=20,
            udp=10,
            icmp=2,
            churn=10.0,
            duration=6.0,
            cold_window=3.0,
            probe_timeout=5.0,
        )


def _snapshot_procs(subject: Subject) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for role, p in (("master", subject.master), ("standby", subject.standby)):
        if p is not None and p.poll() is None:
            out[f"{role}_cpu_s"] = proc_cpu_seconds(p.pid)
            out[f"{role}_rss_kib"] = proc_rss_kib(p.pid)
    return out


def run_subject(name: str, cfg: BenchConfig, progress: Progress) -> dict[str, Any]:
    """One lab, one subject, the whole scenario; returns its figures."""
    res: dict[str, Any] = {"subject": name, "description": SUBJECT_CLASSES[name].description}
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sniffover-bench-") as tmpdir, Lab() as lab:
        tmp = Path(tmpdir)
        subject = SUBJECT_CLASSES[name](lab, tmp)
        driver: DriverHandle | None = None
        try:
            lab.start_server("s1", tcp_port=TCP_PORT, udp_port=UDP_PORT, duration=600)
            sync0 = {fw: link_bytes(lab, fw) for fw in ("fw1", "fw2")}
            subject.start_master()
            driver = DriverHandle(
                lab, "c1", cfg.seed, duration=600, probe_timeout=cfg.probe_timeout
            )
            progress(f"{name}: lab up; opening {cfg.old_active}+{cfg.old_idle} old connections")
            old = [
                driver.command(f"open old-active {cfg.old_active} 1"),
                driver.command(f"open old-idle {cfg.old_idle} 0"),
            ]
            res["old_opened"] = {o["group"]: o["opened"] for o in old}
            time.sleep(0.5)
            # the standby starts: coverage over time
            subject.start_standby()
            t0 = time.monotonic()
            ready_ok: list[bool] = []
            waiter = threading.Thread(
                target=lambda: ready_ok.append(subject.wait_ready(30)), daemon=True
            )
            waiter.start()  # records when the standby became ready, during the sampling
            curve = []
            for i in range(int(cfg.cold_window / cfg.sample_interval) + 1):
                due = t0 + i * cfg.sample_interval
                time.sleep(max(0.0, due - time.monotonic()))
                cov = coverage(lab.conntrack("fw1"), subject.standby_state())
                curve.append(
                    {
                        "t": round(time.monotonic() - t0, 3),
                        "coverage": cov["coverage"],
                        "established_coverage": cov["established_coverage"],
                    }
                )
            res["cold_start_curve"] = curve
            waiter.join(35)
            if not ready_ok or not ready_ok[0]:
                raise LabError(f"{name}: standby not ready: {subject.log_tail()}")
            res["standby_ready_s"] = subject.ready_after
            ready = "" if subject.ready_after is None else f" (ready after {subject.ready_after} s)"
            progress(f"{name}: standby up{ready}; main traffic for {cfg.duration:g} s")
            driver.command(f"open long {cfg.long} 1")
            driver.command(f"udp {cfg.udp}")
            driver.command(f"icmp {cfg.icmp}")
            # the same number of short connections for every subject
            driver.command(f"churn {cfg.churn} {round(cfg.churn * cfg.duration)}")
            time.sleep(cfg.duration)
            # just before the failover
            master_text = lab.conntrack("fw1")
            standby_text = subject.standby_state()
            res["coverage"] = coverage(master_text, standby_text)
            res["traffic"] = driver.command("stats")
            sync_after = {fw: link_bytes(lab, fw) for fw in ("fw1", "fw2")}
            res["sync_link"] = {fw: _diff(sync_after[fw], sync0[fw]) for fw in sync0}
            res["sync_bytes"] = sum(v["tx_bytes"] for v in res["sync_link"].values())
            res["procs_before"] = _snapshot_procs(subject)
            res["agent"] = subject.extra_stats()
            progress(
                f"{name}: coverage {res['coverage']['coverage']:.3f} "
                f"(ESTABLISHED {res['coverage']['established_coverage']:.3f}); taking over"
            )
            steps = subject.commit()
            res["commit_steps_s"] = {k: round(v, 3) for k, v in steps.items()}
            res["commit_s"] = round(sum(steps.values()), 3)
            res["procs"] = _snapshot_procs(subject)
            res["coverage_after_commit"] = coverage(lab.conntrack("fw1"), lab.conntrack("fw2"))
            res["failover_s"] = round(lab.failover(), 3)
            res["takeover_s"] = round(res["commit_s"] + res["failover_s"], 3)
            progress(f"{name}: failed over in {res['takeover_s']} s; probing every flow")
            res["probe"] = driver.probe()
        except BaseException:
            res["log_tail"] = subject.log_tail()
            raise
        finally:
            if driver is not None:
                driver.stop()
            subject.stop()
    res["seconds"] = round(time.monotonic() - t_start, 1)
    return _summarize(res)


def _frac(group: dict[str, int] | None) -> tuple[int, int]:
    if not group:
        return 0, 0
    return int(group.get("ok", 0)), int(group.get("total", 0))


def _summarize(res: dict[str, Any]) -> dict[str, Any]:
    probe = res.get("probe", {}).get("probe", {})
    tcp_ok = tcp_total = 0
    for g in ("long", "old-active", "old-idle"):
        ok, total = _frac(probe.get(g))
        tcp_ok += ok
        tcp_total += total
    old_ok = sum(_frac(probe.get(g))[0] for g in ("old-active", "old-idle"))
    old_total = sum(_frac(probe.get(g))[1] for g in ("old-active", "old-idle"))
    procs = res.get("procs", {})
    res["summary"] = {
        "tcp": [tcp_ok, tcp_total],
        "old": [old_ok, old_total],
        "old_idle": list(_frac(probe.get("old-idle"))),
        "udp": list(_frac(probe.get("udp"))),
        "icmp": list(_frac(probe.get("icmp"))),
        "coverage": res.get("coverage", {}).get("coverage"),
        "open_coverage": res.get("coverage", {}).get("open_coverage"),
        "established_coverage": res.get("coverage", {}).get("established_coverage"),
        "wrong_state": res.get("coverage", {}).get("wrong_state"),
        "extra": res.get("coverage", {}).get("extra"),
        "master_entries": res.get("coverage", {}).get("master"),
        "kernel_coverage_after_commit": res.get("coverage_after_commit", {}).get("coverage"),
        "standby_ready_s": res.get("standby_ready_s"),
        "commit_s": res.get("commit_s"),
        "takeover_s": res.get("takeover_s"),
        "sync_bytes": res.get("sync_bytes"),
        "master_cpu_s": procs.get("master_cpu_s"),
        "standby_cpu_s": procs.get("standby_cpu_s"),
        "standby_rss_mib": round(procs["standby_rss_kib"]["VmRSS"] / 1024, 1)
        if procs.get("standby_rss_kib")
        else None,
    }
    return res


# --- the suite --------------------------------------------------------------------------------


def preflight(subjects: Iterable[str]) -> list[str]:
    """Problems that stop the lab run (empty when it can run)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("needs root (it creates network namespaces)")
    for tool in ("ip", "nft", "conntrack"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} not found")
    if "conntrackd" in subjects and shutil.which("conntrackd") is None:
        problems.append("conntrackd not found (apt-get install -y conntrackd)")
    return problems


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def run_suite(cfg: BenchConfig, progress: Progress) -> dict[str, Any]:
    _raise_nofile()  # children (server, driver) inherit it: thousands of sockets
    results: dict[str, Any] = {
        "config": dataclasses.asdict(cfg),
        "host": {
            "kernel": os.uname().release,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "conntrackd_config_fw2": conntrackd_config("fw2", Path("$TMP"))
        if "conntrackd" in cfg.subjects
        else None,
        "subjects": [],
    }
    t0 = time.monotonic()
    for i, name in enumerate(cfg.subjects, 1):
        progress(f"[{i}/{len(cfg.subjects)}] {name}: starting")
        try:
            results["subjects"].append(run_subject(name, cfg, progress))
        except (LabError, OSError, subprocess.SubprocessError) as e:
            progress(f"{name}: FAILED: {e}")
            results["subjects"].append({"subject": name, "error": str(e)})
        s = results["subjects"][-1].get("summary")
        if s:
            progress(
                f"[{i}/{len(cfg.subjects)}] {name}: TCP {s['tcp'][0]}/{s['tcp'][1]}, "
                f"UDP {s['udp'][0]}/{s['udp'][1]} after the failover"
            )
    results["seconds"] = round(time.monotonic() - t0, 1)
    return results


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _ratio(pair: list[int] | None) -> str:
    if not pair:
        return "—"
    ok, total = pair
    return f"{ok}/{total}" if total else "—"


def _num(v: float | None, fmt: str = "{:.2f}") -> str:
    return "—" if v is None else fmt.format(v)


def format_markdown(results: dict[str, Any]) -> str:
    cfg = results.get("config", {})
    head = [
        "subject",
        "standby ready s",
        "coverage",
        "w/o TIME_WAIT",
        "ESTABLISHED cov.",
        "wrong / extra",
        "TCP survived",
        "old (idle) survived",
        "UDP",
        "ICMP",
        "commit s",
        "takeover s",
        "sync bytes",
        "CPU s master",
        "CPU s standby",
        "standby RSS MiB",
    ]
    lines = [
        f"sniffover bench: {cfg.get('long')} long-lived TCP (request every ~0.5 s), "
        f"{cfg.get('old_active')}+{cfg.get('old_idle')} old (active+idle, opened before the "
        f"standby), {cfg.get('udp')} UDP, {cfg.get('icmp')} ICMP echo, churn "
        f"{cfg.get('churn')}/s, {cfg.get('duration')} s, seed {cfg.get('seed')}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for r in results.get("subjects", []):
        s = r.get("summary")
        if not s:
            lines.append(f"| {r['subject']} | failed: {r.get('error', '?')} |")
            continue
        lines.append(
            "| "
            + " | ".join(
                [
                    r["subject"],
                    _num(s["standby_ready_s"]),
                    _pct(s["coverage"]) + f" of {s['master_entries']}",
                    _pct(s["open_coverage"]),
                    _pct(s["established_coverage"]),
                    f"{s['wrong_state']} / {s['extra']}",
                    _ratio(s["tcp"]),
                    f"{_ratio(s['old'])} ({_ratio(s['old_idle'])})",
                    _ratio(s["udp"]),
                    _ratio(s["icmp"]),
                    _num(s["commit_s"]),
                    _num(s["takeover_s"]),
                    _num(s["sync_bytes"], "{:,}"),
                    _num(s["master_cpu_s"]),
                    _num(s["standby_cpu_s"]),
                    _num(s["standby_rss_mib"], "{:.1f}"),
                ]
            )
            + " |"
        )
    lines += [
        "",
        "coverage: fw1's forwarded entries present on the standby with the same TCP state, "
        "just before the takeover (sniffover: fw2's kernel table; conntrackd: its external "
        "cache); standby ready: from its start until `sniffover status` exits 0 (capturing, "
        "primed) / conntrackd answers and `-n` returned; w/o TIME_WAIT: without fw1's "
        "TIME_WAIT/CLOSE entries (the short connections of the churn). takeover s = commit "
        "+ the lab's link switch and gratuitous ARP. CPU: "
        "utime+stime of the sync processes over the run (master: sniffover serve / conntrackd "
        "on fw1).",
    ]
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], out: Path, progress: Progress) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    (out / "results.md").write_text(format_markdown(results))
    written = [out / "results.json", out / "results.md"]
    from .plots import plot_results

    try:
        written += plot_results(results, out)
    except ImportError:
        progress("plots skipped: matplotlib is not installed (pip install 'sniffover[bench]')")
    return written


# --- micro-benchmarks -------------------------------------------------------------------------


def micro_commands(quick: bool) -> list[tuple[str, list[str]]]:
    py = sys.executable
    if quick:
        return [
            (
                "replay packets/s and memory per flow",
                [
                    py,
                    "-m",
                    "sniffover.bench.replay",
                    "--packets",
                    "100000",
                    "--flows",
                    "10000",
                    "--memory-flows",
                    "100000",
                    "--runs",
                    "1",
                ],
            ),
            (
                "install rate and capture-to-kernel lag",
                [
                    py,
                    "-m",
                    "sniffover.bench.live",
                    "--only",
                    "install",
                    "--only",
                    "lag",
                    "--entries",
                    "20000",
                    "--runs",
                    "1",
                    "--flows",
                    "500",
                ],
            ),
            (
                "live capture rate without drops",
                [
                    py,
                    "-m",
                    "sniffover.bench.live",
                    "--only",
                    "capture",
                    "--packets",
                    "200000",
                    "--flows",
                    "10000",
                    "--rates",
                    "100000,200000,300000",
                ],
            ),
            (
                "prime time per table size",
                [py, "-m", "sniffover.bench.prime", "bench", "2000", "10000"],
            ),
        ]
    return [
        (
            "replay packets/s and memory per flow",
            [py, "-m", "sniffover.bench.replay", "--runs", "3"],
        ),
        ("live capture rate without drops, install rate, lag", [py, "-m", "sniffover.bench.live"]),
        ("prime time per table size", [py, "-m", "sniffover.bench.prime", "bench"]),
    ]


def run_micro(quick: bool, progress: Progress, timeout: float = 1800.0) -> int:
    rc = 0
    cmds = micro_commands(quick)
    for i, (what, argv) in enumerate(cmds, 1):
        shown = " ".join(shlex.quote(a) for a in ["python3", *argv[1:]])
        progress(f"[micro {i}/{len(cmds)}] {what}: {shown}")
        print(f"## {what}\n\n    $ {shown}\n", flush=True)
        t0 = time.monotonic()
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            print(f"    timed out after {timeout:g} s\n", flush=True)
            rc = 1
            continue
        body = (r.stdout.strip() or "(no output)").splitlines()
        print("\n".join(f"    {line}" for line in body), flush=True)
        if r.returncode != 0:
            rc = 1
            print(f"\n    exit {r.returncode}: {r.stderr.strip()[-500:]}", flush=True)
        print(f"\n    ({time.monotonic() - t0:.1f} s)\n", flush=True)
    return rc


# --- CLI --------------------------------------------------------------------------------------


def _progress(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def _add_arguments(p: argparse.ArgumentParser) -> None:
    d = BenchConfig()
    p.add_argument(
        "what",
        nargs="?",
        choices=["suite", "micro"],
        default="suite",
        help="suite: the failover comparison (default); micro: the micro-benchmarks",
    )
    p.add_argument("--micro", action="store_true", help="same as 'micro'")
    p.add_argument("--quick", action="store_true", help="small sizes (suite well under 2 min)")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write results.json, results.md and PNG plots (plots: matplotlib, the [bench] extra)",
    )
    p.add_argument(
        "--subjects",
        default=",".join(SUBJECTS),
        help=f"comma-separated, from {', '.join(SUBJECTS)} (default: all)",
    )
    p.add_argument("--long", type=int, help=f"long-lived TCP connections (default {d.long})")
    p.add_argument(
        "--old-active",
        type=int,
        help=f"connections opened before the standby, active ({d.old_active})",
    )
    p.add_argument(
        "--old-idle", type=int, help=f"connections opened before the standby, idle ({d.old_idle})"
    )
    p.add_argument("--udp", type=int, help=f"UDP request/response flows ({d.udp})")
    p.add_argument("--icmp", type=int, help=f"ICMP echo ids ({d.icmp})")
    p.add_argument("--churn", type=float, help=f"short TCP connections per second ({d.churn})")
    p.add_argument("--duration", type=float, help=f"seconds of main traffic ({d.duration})")
    p.add_argument(
        "--cold-window",
        type=float,
        help=f"seconds of coverage sampling after the standby starts ({d.cold_window})",
    )
    p.add_argument("--seed", type=int, help=f"traffic seed ({d.seed})")
    p.add_argument("--json", action="store_true", help="print the JSON results on stdout too")


def add_bench_arguments(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "bench",
        help="compare sniffover with conntrackd in the hub lab (or: bench micro)",
        description=(__doc__ or "").split("\n\n")[0],
    )
    _add_arguments(p)
    return p


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    cfg = BenchConfig.quick() if args.quick else BenchConfig()
    subjects = tuple(s.strip() for s in args.subjects.split(",") if s.strip())
    unknown = [s for s in subjects if s not in SUBJECT_CLASSES]
    if unknown or not subjects:
        raise ValueError(
            f"unknown subject(s) {', '.join(unknown)}; choose from {', '.join(SUBJECTS)}"
        )
    cfg.subjects = subjects
    limits = {"long": 4000, "old_active": 2000, "old_idle": 2000, "udp": 1000, "icmp": 64}
    for name, top in limits.items():
        v = getattr(args, name)
        if v is not None:
            if not 0 <= v <= top:
                raise ValueError(f"--{name.replace('_', '-')} must be 0..{top}")
            setattr(cfg, name, v)
    for name, lo, hi in (("churn", 0, 500), ("duration", 1, 600), ("cold_window", 0.5, 60)):
        v = getattr(args, name)
        if v is not None:
            if not lo <= v <= hi:
                raise ValueError(f"--{name.replace('_', '-')} must be {lo}..{hi}")
            setattr(cfg, name, v)
    if args.seed is not None:
        cfg.seed = args.seed
    return cfg


def cmd_bench(args: argparse.Namespace) -> int:
    if args.micro or args.what == "micro":
        return run_micro(args.quick, _progress)
    try:
        cfg = config_from_args(args)
    except ValueError as e:
        print(f"sniffover: bench: {e}", file=sys.stderr)
        return 2
    problems = preflight(cfg.subjects)
    if problems:
        print(f"sniffover: bench: {'; '.join(problems)}", file=sys.stderr)
        return 1
    results = run_suite(cfg, _progress)
    print(format_markdown(results), end="")
    if args.json:
        print(json.dumps(results, indent=1, sort_keys=True))
    if args.out:
        for path in write_results(results, Path(args.out), _progress):
            _progress(f"wrote {path}")
    return 0 if all("summary" in r for r in results["subjects"]) else 1


def _inner_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python3 -m sniffover.bench.suite --inner driver")
    p.add_argument("role", choices=["driver"])
    p.add_argument("--server", required=True)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--probe-timeout", type=float, default=6.0)
    p.add_argument("--duration", type=float, default=600.0)
    a = p.parse_args(argv)
    _raise_nofile()
    drv = Driver(a.server, a.seed, a.interval, min(a.timeout, 30), min(a.probe_timeout, 60))
    return drv.run(min(a.duration, 3600.0))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--inner"]:
        return _inner_main(argv[1:])
    p = argparse.ArgumentParser(
        prog="python3 -m sniffover.bench.suite", description=(__doc__ or "").split("\n\n")[0]
    )
    _add_arguments(p)
    return cmd_bench(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
