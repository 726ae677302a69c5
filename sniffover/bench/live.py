"""Live benchmark: kernel install rate, live capture+tracking rate, wire -> kernel-table lag.

    python -m sniffover.bench.live [--only install|capture|capture-mix|capture-vxlan|lag] [--json]

Everything runs in network namespaces this module creates (``snfbench-<pid>-<name>``,
deleted in ``finally`` and at exit); the root namespace is never touched.

* ``install``: ``Installer.flush()`` of N established TCP entries (built by feeding
  handshakes through a ``ConntrackTable`` whose listener is ``installer.on_event``)
  into a fresh namespace's kernel table; the count is checked with ``conntrack -C``
  and the table flushed between runs (``conntrack -F`` in that namespace only).
  ``nf_conntrack_max`` cannot be set inside a non-init namespace (the sysctl is
  read-only there: the limit is the init namespace's, the count per namespace), so
  the run checks that N fits under it.
* ``capture``: two namespaces joined by a veth pair; ``tcpreplay`` sends a fixed
  number of frames of the 64-byte ACK worst case (``bench.replay.ack64_frames``: 100k
  handshakes, then pure ACKs round robin) at stepped rates; a child process in the
  other namespace reads them with ``LiveCapture`` (promiscuous, snaplen 128, 32 MiB
  ring, non-blocking, select()) and tracks every frame with ``ConntrackTable``
  (the agent's loop with install disabled). pcap's drop counters decide.
* ``capture-vxlan`` (not in the default set): the realistic mix with full tracking, bare
  and as a remote mirror delivers it (each frame in Ethernet/IPv4/UDP/VXLAN, the
  receiver reading with ``--decap vxlan``'s path), the two sweeps interleaved rate by rate
  in one run; each frame keeps the same 128 bytes of the mirrored frame (the tunnel's
  frames are 50 bytes longer on the wire).
* ``lag``: the real agent (``python -m sniffover.cli``) in one namespace; from the
  peer namespace complete TCP handshakes are written on a raw ``AF_PACKET`` socket
  at a modest rate; a ctnetlink listener (group NFNLGRP_CONNTRACK_NEW) in the
  agent's namespace timestamps each entry's arrival. Lag = event time - time the
  handshake's final ACK was sent (both CLOCK_MONOTONIC, which is system wide).

The measuring parts run as ``python -m sniffover.bench.live --inner KIND ...`` inside
the namespaces (so sockets belong there) and answer with one JSON line.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import IO, Any

from ..lab import netns
from ..lab.hub import lab_env, stop_process
from .live_inner import BenchError, inner_capture, inner_events, inner_install, inner_send
from .replay import ack64_frames, machine, write_pcap

PREFIX = f"{netns.base_name('snfbench-')}-"
TOOLS = ("ip", "conntrack", "tcpreplay")


# --- namespaces and processes ---------------------------------------------------------------

_procs: list[subprocess.Popen[Any]] = []


def _cleanup() -> None:
    """End the processes we started (by pid), delete exactly the namespaces we created."""
    while _procs:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            stop_process(_procs.pop())
    for name in reversed(netns.created()):
        if name.startswith(PREFIX):
            netns.delete(name)


atexit.register(_cleanup)


def run(argv: Sequence[str], timeout: float = 60, check: bool = True) -> str:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise BenchError(f"{' '.join(argv)}: {r.stderr.strip() or r.returncode}")
    return r.stdout


class Netns:
    """A namespace of ours: ``snfbench-<pid>-<name>``, loopback up, IPv6 off (no chatter)."""

    def __init__(self, name: str) -> None:
        self.name = PREFIX + name
        try:
            netns.create(self.name)
        except netns.NetnsExists as exc:
            raise BenchError(f"namespace {self.name} exists already") from exc
        except netns.NetnsError as exc:
            raise BenchError(str(exc)) from exc
        for key in ("all", "default"):
            self.sysctl(f"net.ipv6.conf.{key}.disable_ipv6", 1, check=False)

    def cmd(self, *argv: str) -> list[str]:
        return netns.exec_argv(self.name, *argv)

    def run(self, *argv: str, timeout: float = 60, check: bool = True) -> str:
        return run(self.cmd(*argv), timeout=timeout, check=check)

    def ip(self, *argv: str) -> None:
        run(["ip", "-n", self.name, *argv])

    def sysctl(self, key: str, value: object, check: bool = True) -> None:
        path = "/proc/sys/" + key.replace(".", "/")
        self.run("sh", "-c", f"echo {value} > {path}", check=check)

    def read(self, key: str) -> str:
        return self.run("cat", "/proc/sys/" + key.replace(".", "/")).strip()

    def popen(self, *argv: str, **kw: Any) -> subprocess.Popen[Any]:
        kw.setdefault("env", lab_env())
        proc = subprocess.Popen(self.cmd(*argv), **kw)
        _procs.append(proc)
        return proc

    def inner(self, kind: str, *args: str, timeout: float = 300) -> dict[str, Any]:
        """Run ``--inner kind`` here and return its JSON answer."""
        proc = self.popen(
            sys.executable,
            "-m",
            "sniffover.bench.live",
            "--inner",
            kind,
            *args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            stop_process(proc)
            _procs.remove(proc)
        if proc.returncode != 0:
            raise BenchError(f"inner {kind} failed ({proc.returncode}): {err.strip()[-2000:]}")
        return dict(json.loads(out.strip().splitlines()[-1]))

    def delete(self) -> None:
        netns.delete(self.name)


def veth_pair(a: Netns, a_if: str, b: Netns, b_if: str) -> None:
    tmp = f"snfb{os.getpid() % 100000}"
    run(
        a.cmd(
            "ip",
            "link",
            "add",
            a_if,
            "type",
            "veth",
            "peer",
            "name",
            tmp,
            "netns",
            b.name,
        )
    )
    b.ip("link", "set", tmp, "name", b_if)
    for ns, dev in ((a, a_if), (b, b_if)):
        ns.ip("link", "set", dev, "up")


def link_stats(ns: Netns, dev: str) -> dict[str, int]:
    doc = json.loads(ns.run("ip", "-s", "-j", "link", "show", "dev", dev))[0]["stats64"]
    return {
        "rx_packets": doc["rx"]["packets"],
        "rx_dropped": doc["rx"]["dropped"],
        "tx_packets": doc["tx"]["packets"],
        "tx_dropped": doc["tx"]["dropped"],
    }


def ct_count(ns: Netns) -> int:
    return int(ns.run("conntrack", "-C").strip())


# --- synthetic flows ----------------------------------------------------------------------


# --- outer: the three measurements ----------------------------------------------------------


def bench_install(entries: int = 100_000, runs: int = 3) -> dict[str, Any]:
    ns = Netns("install")
    try:
        ct_max = int(ns.read("net.netfilter.nf_conntrack_max"))
        mode = ns.run("stat", "-c", "%a", "/proc/sys/net/netfilter/nf_conntrack_max").strip()
        writable = mode != "444"
        if ct_max and entries > ct_max:
            raise BenchError(f"{entries} entries > nf_conntrack_max {ct_max} (global, read-only)")
        results = []
        for _ in range(runs):
            ns.run("conntrack", "-F", check=False)
            if ct_count(ns):
                raise BenchError("conntrack -F left entries behind")
            r = ns.inner("install", "--entries", str(entries))
            r["kernel_count"] = ct_count(ns)
            if r["kernel_count"] != entries:
                raise BenchError(f"kernel holds {r['kernel_count']} entries, {entries} installed")
            results.append(r)
        ns.run("conntrack", "-F", check=False)
        rates = [r["rate"] for r in results]
        return {
            "entries": entries,
            "runs": runs,
            "nf_conntrack_max": ct_max,
            "nf_conntrack_max_writable_in_netns": writable,
            "median_rate": round(statistics.median(rates)),
            "rates": rates,
            "seconds": [r["seconds"] for r in results],
            "kernel_counts": [r["kernel_count"] for r in results],
            "installer_counters": results[-1]["counters"],
            "target_rate": 150_000,
        }
    finally:
        ns.delete()


CAPTURE_RATES = "100000,150000,200000,300000,400000,500000"
TCPREPLAY_RATE = re.compile(r"Rated:\s*([\d.]+)\s*Bps,\s*([\d.]+)\s*Mbps,\s*([\d.]+)\s*pps")
TCPREPLAY_SENT = re.compile(r"Actual:\s*(\d+)\s*packets.*?in\s*([\d.]+)\s*seconds")


def ack64_pcap(flows: int, packets: int, directory: str) -> str:
    path = os.path.join(directory, f"sniffover-benchlive-ack64-{flows}-{packets}.pcap")
    if not os.path.exists(path):
        tmp = path + f".{os.getpid()}.tmp"
        write_pcap(tmp, ack64_frames(flows, packets))
        os.replace(tmp, path)
    return path


def bench_capture(
    rates: Sequence[int] = (100_000, 150_000, 200_000, 300_000, 400_000, 500_000),
    packets: int = 1_000_000,
    flows: int = 100_000,
    directory: str = "/tmp",
    gc_off: bool = False,
) -> dict[str, Any]:
    path = ack64_pcap(flows, packets, directory)
    tx, rx = Netns("tx"), Netns("rx")
    steps = []
    try:
        veth_pair(tx, "tx0", rx, "rx0")
        for rate in rates:
            steps.append(_capture_step(tx, rx, path, rate, packets, gc_off))
    finally:
        rx.delete()
        tx.delete()
    clean = [s["rate"] for s in steps if s["lossless"]]
    return {
        "pcap": os.path.basename(path),
        "flows": flows,
        "packets_per_step": packets,
        "frame": "60 bytes + FCS (64 on the wire); handshakes first",
        "steps": steps,
        "max_lossless_pps": max(clean) if clean else 0,
        "lossless_up_to_pps": _lossless_prefix(steps),
        "receiver_gc": "disabled (diagnostic)"
        if gc_off
        else "as the agent (survivors frozen every 10 s)",
    }


def mix_pcap(packets: int, directory: str) -> str:
    from .replay import mix_frames

    path = os.path.join(directory, f"sniffover-bench-mix-{packets}.pcap")
    if not os.path.exists(path):
        tmp = path + f".{os.getpid()}.tmp"
        write_pcap(tmp, mix_frames(packets))
        os.replace(tmp, path)
    return path


def bench_capture_mix(
    rates: Sequence[int] = (75_000, 150_000, 300_000),
    packets: int = 1_000_000,
    directory: str = "/tmp",
) -> dict[str, Any]:
    """The realistic mix (bench.mix_frames) at gigabit-equivalent rates and above, with and
    without ``--prefilter control``. A 1 Gbit/s link carries ~147,000 frames/s of this
    mix (mean frame 824 bytes on the wire); frames are replayed with their 128-byte snap
    length (the rate in frames/s is what costs the sniffer)."""
    path = mix_pcap(packets, directory)
    tx, rx = Netns("tx"), Netns("rx")
    out: dict[str, Any] = {"pcap": os.path.basename(path), "packets_per_step": packets}
    try:
        veth_pair(tx, "tx0", rx, "rx0")
        for prefilter in (False, True):
            steps = [_capture_step(tx, rx, path, rate, packets, False, prefilter) for rate in rates]
            out["prefilter" if prefilter else "full"] = {
                "steps": steps,
                "lossless_up_to_pps": _lossless_prefix(steps),
            }
    finally:
        rx.delete()
        tx.delete()
    return out


def vxlan_mix_pcap(packets: int, directory: str) -> str:
    """The mix as a remote mirror's tunnel carries it: every frame (whole, then snapped to
    its 128 bytes + the 50 of the encapsulation) in VXLAN from one VTEP to a collector."""
    from ..lab.forge import vxlan_frame
    from .replay import SNAPLEN, mix_frames

    path = os.path.join(directory, f"sniffover-bench-mix-vxlan-{packets}.pcap")
    if not os.path.exists(path):
        smac, dmac = b"\x02\x00\x00\x00\x0b\x01", b"\x02\x00\x00\x00\x0b\x02"
        vtep, collector = bytes([203, 0, 113, 129]), bytes([203, 0, 113, 130])
        frames = (
            (ts, vxlan_frame(dmac, smac, vtep, collector, 4242, frame))
            for ts, frame in mix_frames(packets)
        )
        tmp = path + f".{os.getpid()}.tmp"
        write_pcap(tmp, frames, SNAPLEN + VXLAN_OVERHEAD)
        os.replace(tmp, path)
    return path


VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8


VXLAN_RATES = (150_000, 300_000, 400_000, 500_000)


def bench_capture_vxlan(
    rates: Sequence[int] = VXLAN_RATES,
    packets: int = 1_000_000,
    directory: str = "/tmp",
) -> dict[str, Any]:
    """The realistic mix with full tracking, bare and through VXLAN decapsulation, the same
    rates interleaved (bare, then VXLAN, at each rate) so both see the same machine."""
    bare_path, vxlan_path = mix_pcap(packets, directory), vxlan_mix_pcap(packets, directory)
    tx, rx = Netns("tx"), Netns("rx")
    out: dict[str, Any] = {
        "pcaps": [os.path.basename(bare_path), os.path.basename(vxlan_path)],
        "packets_per_step": packets,
    }
    bare: list[dict[str, Any]] = []
    vxlan: list[dict[str, Any]] = []
    try:
        veth_pair(tx, "tx0", rx, "rx0")
        for dev, ns in (("tx0", tx), ("rx0", rx)):
            ns.ip("link", "set", dev, "mtu", "9000")  # as a mirror's underlay
        for rate in rates:
            bare.append(_capture_step(tx, rx, bare_path, rate, packets, False))
            vxlan.append(_capture_step(tx, rx, vxlan_path, rate, packets, False, decap="vxlan"))
    finally:
        rx.delete()
        tx.delete()
    for name, steps in (("bare", bare), ("vxlan", vxlan)):
        cpu = [sum(s["receiver_cpu_seconds"]) / s["received"] * 1e6 for s in steps if s["received"]]
        upto = _lossless_prefix(steps)
        median_cpu = statistics.median(cpu) if cpu else 0.0
        out[name] = {
            "steps": steps,
            "lossless_up_to_pps": upto,
            # what the sender really achieved on the lossless steps (a busy 2-core machine's
            # tcpreplay falls short of the asked rate)
            "lossless_sent_pps": round(
                max((s["tcpreplay_pps"] for s in steps if s["rate"] <= upto), default=0.0)
            ),
            "median_cpu_seconds_per_million": round(median_cpu, 3),
            # the receiver's CPU-bound capacity: frames per CPU second (user + system)
            "capacity_pps": round(1e6 / median_cpu) if median_cpu else 0,
        }
    for key in ("lossless_up_to_pps", "lossless_sent_pps", "capacity_pps"):
        b, v = out["bare"][key], out["vxlan"][key]
        out[key.replace("_pps", "_ratio")] = round(v / b, 3) if b else 0.0
    out["target_ratio"] = 0.8
    return out


def _lossless_prefix(steps: list[dict[str, Any]]) -> int:
    """Highest rate such that it and every lower rate stepped were lossless."""
    best = 0
    for s in sorted(steps, key=lambda s: s["rate"]):
        if not s["lossless"]:
            break
        best = s["rate"]
    return best


def _capture_step(
    tx: Netns,
    rx: Netns,
    path: str,
    rate: int,
    packets: int,
    gc_off: bool,
    prefilter: bool = False,
    decap: str = "none",
) -> dict[str, Any]:
    budget = packets / rate * 3 + 20
    recv = rx.popen(
        sys.executable,
        "-m",
        "sniffover.bench.live",
        "--inner",
        "capture",
        "--iface",
        "rx0",
        "--expect",
        str(packets),
        "--idle",
        "2",
        "--deadline",
        str(budget),
        *(["--gc-off"] if gc_off else []),
        *(["--prefilter"] if prefilter else []),
        *(["--decap", decap] if decap != "none" else []),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert recv.stdout is not None
        line = _readline(recv.stdout, 30)
        if line.strip() != "ready":
            raise BenchError(f"capture child: {line!r} {recv.stderr.read() if recv.stderr else ''}")
        before_tx, before_rx = link_stats(tx, "tx0"), link_stats(rx, "rx0")
        out = tx.run(
            "tcpreplay",
            "--intf1=tx0",
            f"--pps={rate}",
            f"--limit={packets}",
            "--preload-pcap",
            path,
            timeout=budget,
        )
        out_s, err_s = recv.communicate(timeout=budget)
    finally:
        stop_process(recv)
        _procs.remove(recv)
    if recv.returncode != 0:
        raise BenchError(f"capture child failed: {err_s.strip()[-2000:]}")
    got = json.loads(out_s.strip().splitlines()[-1])
    after_tx, after_rx = link_stats(tx, "tx0"), link_stats(rx, "rx0")
    m = TCPREPLAY_RATE.search(out)
    a = TCPREPLAY_SENT.search(out)
    sent = int(a.group(1)) if a else 0
    veth_drops = (after_tx["tx_dropped"] - before_tx["tx_dropped"]) + (
        after_rx["rx_dropped"] - before_rx["rx_dropped"]
    )
    busy = got["busy_seconds"]
    lossless = (
        got["pcap_dropped"] == 0
        and got["pcap_ifdropped"] == 0
        and veth_drops == 0
        and (prefilter or got["packets"] + sum(got["skipped"].values()) >= sent)
    )
    return {
        "rate": rate,
        "tcpreplay_sent": sent,
        "tcpreplay_seconds": float(a.group(2)) if a else 0.0,
        "tcpreplay_pps": float(m.group(3)) if m else 0.0,
        "received": got["packets"],
        "pcap_received": got["pcap_received"],
        "pcap_dropped": got["pcap_dropped"],
        "pcap_ifdropped": got["pcap_ifdropped"],
        "veth_dropped": veth_drops,
        "flows_tracked": got["flows"],
        "tracker_pps": round(got["packets"] / busy) if busy else 0,
        "receiver_busy_seconds": busy,
        "receiver_read_seconds": got["read_seconds"],
        "receiver_track_seconds": got["track_seconds"],
        "receiver_cpu_seconds": [got["cpu_user_seconds"], got["cpu_system_seconds"]],
        "lossless": lossless,
        "verdicts": got["verdicts"],
        "skipped": got["skipped"],
    }


def _readline(pipe: IO[str], timeout: float) -> str:
    ready, _, _ = select.select([pipe], [], [], timeout)
    return pipe.readline() if ready else ""


def bench_lag(
    flows: int = 2000, rate: float = 2000.0, flush_interval: float = 0.02
) -> dict[str, Any]:
    agent_ns, peer = Netns("agent"), Netns("peer")
    fd, log_path = tempfile.mkstemp(prefix="snfbench-agent-", suffix=".log")
    log = os.fdopen(fd, "w")
    agent = None
    try:
        veth_pair(agent_ns, "fw0", peer, "seg0")
        agent_ns.sysctl("net.netfilter.nf_conntrack_events", 1, check=False)
        agent = agent_ns.popen(
            sys.executable,
            "-m",
            "sniffover.cli",
            "--iface",
            "fw0",
            "--flush-interval",
            str(flush_interval),
            "--stats-interval",
            "3600",
            "--confirm",
            "off",  # synthetic frames: there is no master to confirm against
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        deadline = time.monotonic() + 20
        while True:
            if agent.poll() is not None:
                raise BenchError(f"agent exited: {_tail(log_path)}")
            st = subprocess.run(
                agent_ns.cmd(sys.executable, "-m", "sniffover.cli", "status"),
                env=lab_env(),
                capture_output=True,
                timeout=10,
            )
            if st.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"agent not ready: {_tail(log_path)}")
            time.sleep(0.2)
        ev = agent_ns.popen(
            sys.executable,
            "-m",
            "sniffover.bench.live",
            "--inner",
            "events",
            "--count",
            str(flows),
            "--idle",
            "3",
            "--deadline",
            str(flows / rate + 30),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert ev.stdout is not None
            if _readline(ev.stdout, 30).strip() != "ready":
                raise BenchError("event listener did not start")
            sent = peer.inner(
                "send",
                "--iface",
                "seg0",
                "--flows",
                str(flows),
                "--rate",
                str(rate),
                timeout=flows / rate + 60,
            )
            out, err = ev.communicate(timeout=flows / rate + 40)
        finally:
            stop_process(ev)
            _procs.remove(ev)
        if ev.returncode != 0:
            raise BenchError(f"event listener failed: {err.strip()[-2000:]}")
        events = json.loads(out.strip().splitlines()[-1])
        status = json.loads(
            agent_ns.run(sys.executable, "-m", "sniffover.cli", "status", "--json", check=False)
            or "{}"
        )
        kernel = ct_count(agent_ns)
    finally:
        if agent is not None:
            stop_process(agent)
            _procs.remove(agent)
        peer.delete()
        agent_ns.delete()
        log.close()
    lags = sorted(
        (events["events"][k] - t) * 1000 for k, t in sent["sent"].items() if k in events["events"]
    )
    with contextlib.suppress(OSError):
        os.unlink(log_path)
    return {
        "flows": flows,
        "send_rate": rate,
        "achieved_send_rate": sent["rate"],
        "flush_interval": flush_interval,
        "samples": len(lags),
        "missing": flows - len(lags),
        "kernel_count": kernel,
        "event_overruns": events["overruns"],
        "median_ms": round(statistics.median(lags), 2) if lags else None,
        "p90_ms": round(percentile(lags, 90), 2) if lags else None,
        "p99_ms": round(percentile(lags, 99), 2) if lags else None,
        "max_ms": round(lags[-1], 2) if lags else None,
        "min_ms": round(lags[0], 2) if lags else None,
        "agent_install": status.get("install", {}),
        "agent_capture": status.get("capture", {}),
        "target_p99_ms": 50,
    }


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    k = max(0, min(len(sorted_values) - 1, -(-len(sorted_values) * pct // 100) - 1))
    return sorted_values[int(k)]


def _tail(path: str) -> str:
    with contextlib.suppress(OSError), open(path) as f:
        return f.read()[-2000:]
    return ""


# --- command line ---------------------------------------------------------------------------


def preflight() -> None:
    if os.geteuid() != 0:
        raise BenchError("needs root (network namespaces)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise BenchError(f"missing tools: {', '.join(missing)}")


def describe() -> dict[str, Any]:
    return {
        "machine": machine(),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(["python -m sniffover.bench.live", *sys.argv[1:]]),
    }


def _inner_main(args: argparse.Namespace) -> int:
    if args.inner == "install":
        doc = inner_install(args.entries)
    elif args.inner == "capture":
        doc = inner_capture(
            args.iface,
            args.expect,
            args.idle,
            args.deadline,
            args.gc_off,
            args.prefilter,
            args.decap,
        )
    elif args.inner == "events":
        doc = inner_events(args.count, args.idle, args.deadline)
    else:
        doc = inner_send(args.iface, args.flows, args.rate)
    print(json.dumps(doc), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m sniffover.bench.live", description=(__doc__ or "").split("\n")[0]
    )
    p.add_argument(
        "--only",
        choices=["install", "capture", "capture-mix", "capture-vxlan", "lag"],
        action="append",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--entries", type=int, default=100_000, help="install: entries per run")
    p.add_argument("--runs", type=int, default=3, help="install: runs (median reported)")
    p.add_argument(
        "--rates",
        default=None,
        help="capture: comma-separated pps steps (100000,...,500000; capture-vxlan: "
        "150000,300000,400000,500000)",
    )
    p.add_argument("--packets", type=int, default=1_000_000, help="capture: frames per step")
    p.add_argument("--flows", type=int, default=0, help="capture: flows (100000) / lag: (2000)")
    p.add_argument("--rate", type=float, default=2000.0, help="lag: handshakes per second")
    p.add_argument("--flush-interval", type=float, default=0.02, help="lag: agent's")
    p.add_argument(
        "--gc-off",
        action="store_true",
        help="capture, diagnostic: receiver without cyclic GC (the agent keeps it on)",
    )
    p.add_argument("--dir", default="/tmp", help="where the synthetic capture is written")
    # inner (in-namespace) parts
    p.add_argument(
        "--inner", choices=["install", "capture", "events", "send"], help=argparse.SUPPRESS
    )
    p.add_argument("--iface", help=argparse.SUPPRESS)
    p.add_argument("--prefilter", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--decap", default="none", help=argparse.SUPPRESS)
    p.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--idle", type=float, default=2.0, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=60.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.inner:
        return _inner_main(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        preflight()
        which = args.only or ["install", "capture", "lag"]
        report: dict[str, Any] = describe()
        if "install" in which:
            report["install"] = bench_install(args.entries, args.runs)
        if "capture" in which:
            rates = [int(r) for r in (args.rates or CAPTURE_RATES).split(",") if r]
            report["capture"] = bench_capture(rates, args.packets, args.flows or 100_000, args.dir)
        if "capture-mix" in which:  # not in the default set: two full sweeps
            report["capture_mix"] = bench_capture_mix(packets=args.packets, directory=args.dir)
        if "capture-vxlan" in which:  # not in the default set: two interleaved sweeps
            steps = args.rates or ",".join(map(str, VXLAN_RATES))
            report["capture_vxlan"] = bench_capture_vxlan(
                [int(r) for r in steps.split(",") if r], args.packets, args.dir
            )
        if "lag" in which:
            report["lag"] = bench_lag(args.flows or 2000, args.rate, args.flush_interval)
    except BenchError as exc:
        print(f"benchlive: {exc}", file=sys.stderr)
        return 1
    finally:
        _cleanup()
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_report(report)
    return 0


def print_report(report: dict[str, Any]) -> None:
    for key in ("command", "machine", "kernel", "date"):
        print(f"{key}: {report[key]}")
    if "capture_vxlan" in report:
        r = report["capture_vxlan"]
        print(
            f"capture-vxlan: the mix, full tracking, {r['packets_per_step']} frames/step "
            f"(target: VXLAN >= {r['target_ratio']:.0%} of bare)"
        )
        for what, key in (
            ("lossless up to (asked)", "lossless_up_to"),
            ("lossless at (sent)", "lossless_sent"),
            ("receiver capacity (frames per CPU s)", "capacity"),
        ):
            print(
                f"   {what}: bare {r['bare'][key + '_pps']} pps, VXLAN "
                f"{r['vxlan'][key + '_pps']} pps ({r[key + '_ratio']:.0%})"
            )
        for mode in ("bare", "vxlan"):
            for s in r[mode]["steps"]:
                print(
                    f"   {mode:>5} {s['rate']:>7} pps asked: sent {s['tcpreplay_sent']} at "
                    f"{s['tcpreplay_pps']:.0f} pps; tracked {s['received']}, pcap dropped "
                    f"{s['pcap_dropped']}, veth dropped {s['veth_dropped']}, CPU "
                    f"{sum(s['receiver_cpu_seconds']):.2f} s"
                    f"{'' if s['lossless'] else '  LOSSY'}"
                )
    if "capture_mix" in report:
        r = report["capture_mix"]
        for mode in ("full", "prefilter"):
            m = r[mode]
            print(
                f"capture-mix ({mode}): lossless up to {m['lossless_up_to_pps']} pps "
                "(1 Gbit/s of this mix = ~147,000 frames/s)"
            )
            for s in m["steps"]:
                print(
                    f"   {s['rate']:>7} pps asked: sent {s['tcpreplay_sent']} at "
                    f"{s['tcpreplay_pps']:.0f} pps; tracked {s['received']}, pcap dropped "
                    f"{s['pcap_dropped']}, veth dropped {s['veth_dropped']}"
                    f"{'' if s['lossless'] else '  LOSSY'}"
                )
    if "install" in report:
        r = report["install"]
        print(
            f"install: {r['entries']} established TCP entries, {r['runs']} runs: median "
            f"{r['median_rate']} entries/s (runs {r['rates']}, seconds {r['seconds']}; "
            f"conntrack -C {r['kernel_counts']}; nf_conntrack_max {r['nf_conntrack_max']}, "
            f"{'writable' if r['nf_conntrack_max_writable_in_netns'] else 'read-only'} in the "
            f"netns; target >= {r['target_rate']})"
        )
    if "capture" in report:
        r = report["capture"]
        print(
            f"capture: {r['pcap']} ({r['flows']} flows, {r['packets_per_step']} frames/step): "
            f"max lossless {r['max_lossless_pps']} pps, lossless at every step up to "
            f"{r['lossless_up_to_pps']} pps; receiver GC {r['receiver_gc']}"
        )
        for s in r["steps"]:
            print(
                f"  {s['rate']:>7} pps asked: tcpreplay sent {s['tcpreplay_sent']} at "
                f"{s['tcpreplay_pps']:.0f} pps; received {s['received']}, pcap dropped "
                f"{s['pcap_dropped']} (if {s['pcap_ifdropped']}), veth dropped "
                f"{s['veth_dropped']}, flows {s['flows_tracked']}, tracker busy rate "
                f"{s['tracker_pps']} pps{'' if s['lossless'] else '  LOSSY'}"
            )
    if "lag" in report:
        r = report["lag"]
        print(
            f"lag: {r['flows']} handshakes at {r['achieved_send_rate']}/s, flush interval "
            f"{r['flush_interval']} s: {r['samples']} samples ({r['missing']} missing, kernel "
            f"count {r['kernel_count']}): median {r['median_ms']} ms, p90 {r['p90_ms']} ms, "
            f"p99 {r['p99_ms']} ms, max {r['max_ms']} ms (target p99 < {r['target_p99_ms']})"
        )


if __name__ == "__main__":
    sys.exit(main())
