"""Prime benchmarks (root; scratch ``snfprime-*`` namespaces), run by hand or by the suite.

``python -m sniffover.bench.prime bench [N ...]`` times dump + serialize + transfer + parse;
``bench-audit [N ...]`` the same plus one ``sniffover audit`` (the master's cost per audit);
``bench-agent [N ...]`` the agent's start to a fully primed standby kernel;
``bench-install-load [N [FILLERS]]`` committing N prepared entries beside FILLERS x N others;
``dump [ROUNDS]`` a dump of the current namespace's table.
"""

from __future__ import annotations

import gc
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from ..conntrack.snapshot import SnapshotEntry
from ..kernel.ctnetlink import CtnlSocket
from ..kernel.dump import dump_table
from ..lab import netns
from ..prime.client import fetch


def bench(
    sizes: Sequence[int] = (10_000, 100_000), audit: bool = False, tag: str = ""
) -> list[dict[str, float]]:
    """Time dump + serialize + transfer + parse over loopback in a scratch namespace (root).

    Creates ``snfprime-<tag><pid>-bench``, re-runs itself inside (``ip netns exec``) and
    always deletes the namespace again. Returns one dict of figures per size. ``audit``:
    then one ``sniffover audit`` of the namespace against itself (its pull is the master's
    whole cost: ``audit_server_cpu_s``; the local dumps and the comparison the standby's).
    """
    import json

    ns = netns.create(f"{netns.base_name('snfprime-' + tag)}-bench")
    inner = "bench-inner-audit" if audit else "bench-inner"
    try:
        out = subprocess.run(
            netns.exec_argv(ns, sys.executable, "-m", "sniffover.bench.prime", inner)
            + [str(s) for s in sizes],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        ).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    finally:
        netns.delete(ns)


def _bench_inner(sizes: Sequence[int], audit: bool = False) -> None:
    import json
    import tempfile
    import threading

    from ..prime.server import Server

    if not os.path.basename(_netns_name()).startswith("snfprime-"):
        raise SystemExit("bench-inner must run inside a snfprime-* scratch namespace")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    key = secrets.token_hex(32).encode()
    with tempfile.TemporaryDirectory() as tmp:
        key_file = os.path.join(tmp, "key")
        with open(os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(key)
        server = Server("127.0.0.1:0", key, max_clients=1, timeout=30)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        have = 0
        try:
            for size in sizes:
                have += populate(size - have, start=have)
                t0 = time.perf_counter()
                n_dumped = len(dump_table())
                dump_s = time.perf_counter() - t0
                pulls = len(server.stats)
                snap = fetch(f"127.0.0.1:{server.address[1]}", key_file, timeout=60, retries=0)
                st = _last_pull(server, pulls)
                row = (
                    _audit_row(f"127.0.0.1:{server.address[1]}", key_file, server) if audit else {}
                )
                print(
                    json.dumps(
                        {
                            **row,
                            "entries": len(snap.entries),
                            "dump_only_s": round(dump_s, 3),
                            "dumped": n_dumped,
                            "pull_s": round(snap.seconds, 3),
                            "bytes": snap.bytes,
                            "bytes_per_entry": round(snap.bytes / max(1, len(snap.entries)), 1),
                            "server_s": round(st.seconds, 3),
                            "server_cpu_s": round(st.cpu_seconds, 3),
                        }
                    ),
                    flush=True,
                )
        finally:
            server.close()


def _last_pull(server: Any, before: int) -> Any:
    """The figures of the pull that just ended: the server thread appends them after the
    client has read the end frame (reading ``stats[-1]`` at once could give the one before)."""
    deadline = time.monotonic() + 5
    while len(server.stats) == before and time.monotonic() < deadline:
        time.sleep(0.01)
    return server.stats[-1]


def _audit_row(source: str, key: str, server: Any) -> dict[str, float]:
    """One audit of this namespace against its own serve: the figures of both sides."""
    from ..prime.audit import run_audit

    gc.collect()
    pulls = len(server.stats)
    result, t = run_audit(source, key, lag=0.0, timeout=60, local={b"\x7f\x00\x00\x01"})
    st = _last_pull(server, pulls)
    return {
        "audit_differences": result.total,
        "audit_server_cpu_s": round(st.cpu_seconds, 3),
        "audit_server_s": round(st.seconds, 3),
        "audit_local_dump_s": t["dump_seconds"],
        "audit_compare_s": t["compare_seconds"],
        "audit_s": t["seconds"],
    }


def bench_agent(sizes: Sequence[int] = (10_000, 100_000)) -> list[dict[str, Any]]:
    """Agent start -> every primed entry in the standby's kernel table (root).

    Two scratch namespaces ``snfprime-<pid>-m`` (master) and ``-s`` (standby) joined by a
    veth over 203.0.113.0/24. The master's kernel table is filled with ``populate()``,
    ``sniffover serve`` runs there; the standby starts the real agent
    (``python -m sniffover.cli --iface s0 --prime-from ...``) and the clock runs from its
    start until ``conntrack -C`` in the standby reaches the master's count (polled every
    20 ms). Both namespaces are deleted in any case.
    """
    import json
    import tempfile

    from ..lab.hub import stop_process

    tag = netns.base_name("snfprime-")
    master, standby = f"{tag}-m", f"{tag}-s"

    def run(ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            netns.exec_argv(ns, *argv),
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def count(ns: str) -> int:
        out = subprocess.run(
            netns.exec_argv(ns, "conntrack", "-C"),
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        return int(out.stdout.strip() or 0)

    rows: list[dict[str, Any]] = []
    created: list[str] = []
    # diagnostic: SNIFFOVER_BENCH_PROFILE=DIR writes the agent's cProfile there per size
    prof_dir = os.environ.get("SNIFFOVER_BENCH_PROFILE", "")
    try:
        for ns in (master, standby):
            created.append(netns.create(ns))
        subprocess.run(
            [
                "ip",
                "link",
                "add",
                "m0",
                "netns",
                master,
                "type",
                "veth",
                "peer",
                "name",
                "s0",
                "netns",
                standby,
            ],
            check=True,
        )
        for ns, dev, addr in ((master, "m0", "203.0.113.1/24"), (standby, "s0", "203.0.113.2/24")):
            run(ns, "ip", "addr", "add", addr, "dev", dev)
            run(ns, "ip", "link", "set", dev, "up")
        with tempfile.TemporaryDirectory() as tmp:
            key_file = os.path.join(tmp, "key")
            with open(os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(secrets.token_hex(32).encode())
            have = 0
            for size in sizes:
                code = f"from sniffover.bench.prime import populate; print(populate({size - have}, "
                code += f"start={have}))"
                have += int(run(master, sys.executable, "-c", code).stdout.strip())
                want = count(master)
                subprocess.run(
                    netns.exec_argv(standby, "conntrack", "-F"), capture_output=True, check=False
                )
                serve_log = os.path.join(tmp, f"serve-{size}.log")
                with open(serve_log, "w") as serve_file:
                    serve = subprocess.Popen(
                        netns.exec_argv(
                            master,
                            sys.executable,
                            "-m",
                            "sniffover.cli",
                            "serve",
                            "--listen",
                            "203.0.113.1",
                            "--key-file",
                            key_file,
                        ),
                        stdout=subprocess.DEVNULL,
                        stderr=serve_file,
                    )
                # the judge is the standby kernel's own count, read in the namespace by
                # one long-lived poller: spawning conntrack -C every 20 ms would take CPU
                # from the run being measured
                poller = subprocess.Popen(
                    netns.exec_argv(standby, sys.executable, "-c", _POLL_COUNT, str(want)),
                    stdout=subprocess.PIPE,
                    text=True,
                )
                agent = None
                try:
                    assert poller.stdout is not None
                    poller.stdout.readline()  # "ready"
                    time.sleep(1.0)  # serve is listening
                    t0 = time.monotonic()
                    log_path = os.path.join(tmp, f"agent-{size}.log")
                    profile: list[str] = []
                    if prof_dir:
                        profile = ["-m", "cProfile", "-o", f"{prof_dir}/agent-{size}.prof"]
                    with open(log_path, "w") as log_file:
                        agent = subprocess.Popen(
                            netns.exec_argv(
                                standby,
                                sys.executable,
                                *profile,
                                "-m",
                                "sniffover.cli",
                                "--iface",
                                "s0",
                                "--prime-from",
                                "203.0.113.1",
                                "--key-file",
                                key_file,
                                "--prime-required",
                            ),
                            stdout=subprocess.DEVNULL,
                            stderr=log_file,
                        )
                    at, reached = poller.communicate(timeout=130)[0].split()
                    took, got = float(at) - t0, int(reached)
                    mem = _memory(agent.pid)
                finally:
                    if agent is not None:
                        stop_process(agent)
                    stop_process(serve)
                    stop_process(poller)
                with open(log_path) as lf:
                    primed = [ln.split(" sniffover ", 1)[-1].strip() for ln in lf if "primed" in ln]
                with open(serve_log) as lf:
                    pulled = [ln.split(": ", 1)[-1].strip() for ln in lf if "pull from" in ln]
                rows.append(
                    {
                        "entries": want,
                        "installed": got,
                        "start_to_primed_s": round(took, 2),
                        "us_per_entry": round(took / max(1, want) * 1e6, 1),
                        "agent_rss_mb": mem,
                        "agent_log": primed[:1],
                        "master_log": pulled[:1],
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    finally:
        for ns in created:
            netns.delete(ns)
    return rows


# bench_agent's judge: the standby namespace's entry count, polled every 5 ms until it
# reaches argv[1] (120 s at most); prints the monotonic time it got there and the count
_POLL_COUNT = """
import sys, time
want, end = int(sys.argv[1]), time.monotonic() + 120
print("ready", flush=True)
with open("/proc/sys/net/netfilter/nf_conntrack_count") as f:
    while True:
        f.seek(0)
        n = int(f.read())
        if n >= want or time.monotonic() > end:
            break
        time.sleep(0.005)
print(time.monotonic(), n)
"""


def bench_install_load(size: int = 250_000, fillers: int = 3) -> list[dict[str, Any]]:
    """The kernel's part of a primed install as its table grows (root).

    The conntrack hash is one for all namespaces (``nf_conntrack_buckets``, 262,144
    here) while ``nf_conntrack_max`` caps each namespace at 262,144 entries, so a 1M
    table cannot be made but its hash chains can: ``fillers`` scratch namespaces of
    ``size`` entries each are filled one by one, and after each step the time to commit
    ``size`` prepared entries into one more namespace is measured (two sockets, as the
    agent does). Summed over the steps, that is the install of a table of
    ``size * (fillers + 1)`` entries. All namespaces are deleted in any case.
    """
    import json

    tag = netns.base_name("snfprime-")
    names = [f"{tag}-f{i}" for i in range(fillers)] + [f"{tag}-t"]
    rows: list[dict[str, Any]] = []

    def inner(ns: str, *argv: str) -> str:
        return subprocess.run(
            netns.exec_argv(ns, sys.executable, "-m", "sniffover.bench.prime", *argv),
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        ).stdout.strip()

    created: list[str] = []
    try:
        for ns in names:
            created.append(netns.create(ns))
        for step in range(fillers + 1):
            if step:
                inner(names[step - 1], "fill-inner", str(size), str((step - 1) * size))
            out = json.loads(inner(names[-1], "commit-inner", str(size)))
            rows.append({"others": step * size, **out})
            print(json.dumps(rows[-1]), flush=True)
            subprocess.run(
                netns.exec_argv(names[-1], "conntrack", "-F"), capture_output=True, check=False
            )
    finally:
        for ns in created:
            netns.delete(ns)
    return rows


def _commit_inner(size: int) -> None:
    """Prepare ``size`` primed TCP entries and time their commit (in a scratch namespace)."""
    import json

    from ..conntrack.snapshot import seed
    from ..kernel.installer import Installer

    if not _netns_name().startswith("snfprime-"):
        raise SystemExit("commit-inner must run inside a snfprime-* scratch namespace")
    now = time.time()
    conns = []
    for i in range(5_000_000, 5_000_000 + size):  # not the fillers' tuples
        a, b = bytes((203, 0, 113, 1 + (i >> 16) % 250)), bytes((198, 51, 100, 1 + (i >> 8) % 250))
        sport, dport = 1024 + i % 60000, 80 + i % 200
        entry = SnapshotEntry(
            (6, a, b, sport, dport), (6, b, a, dport, sport), 0xE, 3600, 3, 7, 9, 3, 3
        )
        conns.append(seed(entry, now))
    gc.collect()
    gc.freeze()
    gc.disable()
    with CtnlSocket() as sock, CtnlSocket() as helper:
        inst = Installer(sock, require_forwarded=True)
        batches = inst.prepare(conns, now)
        t0 = time.perf_counter()
        inst.commit(batches, now, helper)
        took = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "committed": inst.counters["created"],
                "seconds": round(took, 3),
                "us_per_entry": round(took / max(1, size) * 1e6, 2),
            }
        )
    )


def _memory(pid: int) -> dict[str, float]:
    """A process's peak and current resident size in MB (``/proc/PID/status``)."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmHWM", "VmRSS"):
                    out["peak" if name == "VmHWM" else "now"] = round(int(value.split()[0]) / 1024)
    except OSError:
        pass
    return out


def _netns_name() -> str:
    """Name of the namespace we run in, as ``ip netns identify`` reports it."""
    out = subprocess.run(
        ["ip", "netns", "identify", str(os.getpid())], capture_output=True, text=True, check=False
    )
    return out.stdout.strip()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["bench-inner"], ["bench-inner-audit"]):
        _bench_inner([int(a) for a in args[1:]] or [10_000, 100_000], args[0].endswith("audit"))
        return 0
    if args[:1] == ["bench-audit"]:
        for row in bench([int(a) for a in args[1:]] or [10_000, 100_000], True, _tag()):
            print(row)
        return 0
    if args[:1] == ["bench-agent"]:
        bench_agent([int(a) for a in args[1:]] or [10_000, 100_000])
        return 0
    if args[:1] == ["bench"]:
        for row in bench([int(a) for a in args[1:]] or [10_000, 100_000]):
            print(row)
        return 0
    if args[:1] == ["bench-install-load"]:
        bench_install_load(*[int(a) for a in args[1:3]])
        return 0
    if args[:1] == ["fill-inner"] and len(args) == 3:
        if not _netns_name().startswith("snfprime-"):
            raise SystemExit("fill-inner must run inside a snfprime-* scratch namespace")
        print(populate(int(args[1]), start=int(args[2])))
        return 0
    if args[:1] == ["dump"]:
        return dump_rounds(int(args[1]) if len(args) > 1 else 1)
    if args[:1] == ["commit-inner"] and len(args) == 2:
        _commit_inner(int(args[1]))
        return 0
    print(
        "usage: python -m sniffover.bench.prime bench|bench-audit|bench-agent|bench-install-load|"
        "dump [N ...]",
        file=sys.stderr,
    )
    return 2


def _tag() -> str:
    """``SNFLAB_TAG``: a word in the scratch namespace's name (parallel sessions)."""
    tag = os.environ.get("SNFLAB_TAG", "")
    return tag if tag.replace("-", "").isalnum() else ""


def dump_rounds(rounds: int = 1) -> int:
    """Time a dump of the current namespace's table ``rounds`` times."""
    for _ in range(max(1, rounds)):
        t0 = time.perf_counter()
        entries = dump_table()
        print(f"{len(entries)} entries in {time.perf_counter() - t0:.3f} s")
    return 0


def populate(count: int, *, start: int = 0, batch: int = 200) -> int:
    """Create ``count`` synthetic entries in the current namespace (benchmarks, lab tests).

    TCP ESTABLISHED with window scales and flags, every 4th one UDP, between
    192.0.2.0/24 and 198.51.100.0/24 hosts; returns how many the kernel accepted.
    Only ever call this inside a scratch namespace.
    """
    from ..kernel.ctnetlink import TcpInfo, encode_ct_new

    ok = 0
    with CtnlSocket() as ctnl:
        msgs: list[bytes] = []
        for i in range(start, start + count):
            src = bytes((192, 0, 2, 1 + (i >> 16) % 250))
            dst = bytes((198, 51, 100, 1 + (i >> 8) % 250))
            sport = 1024 + (i & 0xFFFF) % 60000
            dport = 80 + i % 200
            if i % 4 == 3:
                orig = (17, src, dst, sport, dport)
                reply = (17, dst, src, dport, sport)
                msg = encode_ct_new(orig, reply, status=0x6, timeout=120, seq=ctnl.next_seq())
            else:
                orig = (6, src, dst, sport, dport)
                reply = (6, dst, src, dport, sport)
                info = TcpInfo(3, 7, 9, 0x03, 0x03, 0x03, 0x03)
                msg = encode_ct_new(
                    orig,
                    reply,
                    status=0x6,
                    timeout=3600,
                    tcp=info,
                    mark=i & 0xFF,
                    seq=ctnl.next_seq(),
                )
            msgs.append(msg)
            if len(msgs) >= batch:
                ok += sum(1 for err in ctnl.send_batch(msgs).values() if not err)
                msgs = []
        if msgs:
            ok += sum(1 for err in ctnl.send_batch(msgs).values() if not err)
    return ok


if __name__ == "__main__":
    sys.exit(main())
