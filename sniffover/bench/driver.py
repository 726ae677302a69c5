"""The suite's traffic driver: runs in the client namespace (``python -m sniffover.bench.driver``)
and reports what it sees as JSON lines."""

from __future__ import annotations

import argparse
import contextlib
import errno
import heapq
import json
import os
import random
import resource
import selectors
import socket
import struct
import subprocess
import sys
import time
from typing import Any

from ..lab.hub import (
    Lab,
    LabError,
    _LineReader,
    server_ip,
    stop_process,
)

PROBE_SEQ = 0xFF00

TCP_PORT = 8000
UDP_PORT = 9000
ICMP_ECHO, ICMP_ECHOREPLY = 8, 0


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
            "sniffover.bench.driver",
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


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m sniffover.bench.driver")
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


if __name__ == "__main__":
    sys.exit(main())
