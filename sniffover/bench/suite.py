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

The traffic driver (``driver.py``) runs in the client namespace; the subjects are in
``subjects.py``, the measurements in ``measure.py``, the report in ``report.py``.
Results: a Markdown table on stdout, and with ``--out DIR`` also ``results.json``,
``results.md`` and two plots: PNG with matplotlib (the ``[bench]`` extra, ``plots.py``), SVG
without it (``svgplots.py``); the paths written are printed. The suite
needs root (network namespaces) and, for the conntrackd subject, ``conntrackd``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..lab.hub import (
    Lab,
    LabError,
)
from .driver import TCP_PORT, UDP_PORT, DriverHandle, _raise_nofile
from .measure import _diff, coverage, link_bytes, proc_cpu_seconds, proc_rss_kib
from .report import Progress, _summarize, format_markdown, write_results
from .subjects import Cold, Conntrackd, Sniffover, SniffoverPrime, Subject, conntrackd_config

SUBJECTS = ("cold", "sniffover", "sniffover+prime", "conntrackd")


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
        help="write results.json, results.md and the plots there (PNG with the [bench] extra's "
        "matplotlib, else SVG)",
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(
        prog="python3 -m sniffover.bench.suite", description=(__doc__ or "").split("\n\n")[0]
    )
    _add_arguments(p)
    return cmd_bench(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
