"""Cold start in the hub lab: connections opened before the standby's agent started.

They stay idle until after the failover, so sniffing alone never sees them: only the
prime (a pull of fw1's table over the sync link from ``sniffover serve``) can save
them, and without it they die (the control). Wrong key, unreachable master and a
connection closed while the pull runs are checked against the kernels' tables.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from sniffover.lab.hub import FW_SYNC, Lab, stop_process
from tests.lab.test_agent_lab import MASTER_ADDRS, agent_log, sniffover_ctl, start_agent, table

pytestmark = pytest.mark.requires("ip", "nft", "conntrack", "ping")

MASTER = FW_SYNC["fw1"]


def key_file(tmp_path) -> str:
    path = tmp_path / "key"
    path.write_bytes(os.urandom(32).hex().encode())
    path.chmod(0o600)
    return str(path)


def start_serve(lab: Lab, key: str) -> subprocess.Popen[str]:
    proc = lab.popen(
        "fw1",
        sys.executable,
        "-m",
        "sniffover.cli",
        "serve",
        "--listen",
        MASTER,
        "--key-file",
        key,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = lab.run("fw2", "bash", "-c", f"exec 3<>/dev/tcp/{MASTER}/7445", check=False)
        if r.returncode == 0:
            return proc
        time.sleep(0.2)
    raise AssertionError("sniffover serve did not come up on fw1")


def run_cold_start(tmp_path, prime: bool, segment: str = "hub") -> dict[str, object]:
    out: dict[str, object] = {}
    with Lab(segment=segment) as lab:
        lab.start_server("s1", duration=120)
        key = key_file(tmp_path)
        serve = start_serve(lab, key) if prime else None
        # opened before the standby's agent exists, then silent until after the failover
        old = lab.traffic_client("c1", tcp=40, udp=0, duration=120)
        assert old.initial["tcp_ok"] == 40
        args = ("--prime-from", MASTER, "--key-file", key, "--prime-required") if prime else ()
        agent = start_agent(lab, *args)  # ready = capturing (and primed)
        try:
            status = sniffover_ctl(lab, "status")
            out["status"] = status.stdout
            r = sniffover_ctl(lab, "ctl", "promote")
            assert r.returncode == 0, r.stderr
            out["fw1"], out["fw2"] = table(lab, "fw1"), table(lab, "fw2")
            lab.failover()
            out["after"] = old.probe()
        finally:
            old.stop()
            stop_process(agent)
            out["log"] = agent_log(agent)
            if serve is not None:
                stop_process(serve)
    return out


@pytest.mark.parametrize("segment", ["hub", "mirror", "vxlan"])
def test_prime_saves_connections_opened_before_the_agent(tmp_path, segment: str) -> None:
    r = run_cold_start(tmp_path, prime=True, segment=segment)
    assert "primed True" in str(r["status"]), r["status"]
    assert r["after"]["tcp_ok"] == 40, (r["after"], r["log"])  # type: ignore[index]
    fw1: dict = r["fw1"]  # type: ignore[assignment]
    fw2: dict = r["fw2"]  # type: ignore[assignment]
    live = {k: v for k, v in fw1.items() if k[0] == "tcp" and v == "ESTABLISHED"}
    assert len(live) == 40 and {k: fw2.get(k) for k in live} == live


def test_without_prime_idle_connections_die(tmp_path) -> None:
    r = run_cold_start(tmp_path, prime=False)
    assert r["after"]["tcp_ok"] == 0, r["after"]  # type: ignore[index]


def test_wrong_key_and_unreachable_master_install_nothing(tmp_path) -> None:
    with Lab() as lab:
        key = key_file(tmp_path)
        serve = start_serve(lab, key)
        wrong = tmp_path / "wrong"
        wrong.write_text("not the key, but long enough")
        wrong.chmod(0o600)
        cases = [
            (("--prime-from", MASTER, "--key-file", str(wrong)), "authentication"),
            (("--prime-from", "203.0.113.99", "--key-file", key, "--prime-timeout", "0.5"), ""),
            (("--prime-from", str(tmp_path / "nosuch.dump")), "nosuch.dump"),
        ]
        try:
            for extra, needle in cases:
                t0 = time.monotonic()
                proc = lab.run(
                    "fw2",
                    sys.executable,
                    "-m",
                    "sniffover.cli",
                    "--iface",
                    "inside0",
                    "--master-addr",
                    MASTER_ADDRS,
                    "--prime-required",
                    *extra,
                    check=False,
                    timeout=60,
                )
                err = proc.stderr.strip().splitlines()
                assert proc.returncode == 1, (extra, proc.stderr)
                assert err and err[-1].startswith("sniffover: ") and needle in err[-1], err
                assert "Traceback" not in proc.stderr
                assert time.monotonic() - t0 < 30
                # only fw2's own pull connections (made by its kernel) are there
                assert {k for k in table(lab, "fw2") if k[1] != FW_SYNC["fw2"]} == set()
        finally:
            stop_process(serve)


def test_connection_closed_during_the_pull_is_not_resurrected(tmp_path) -> None:
    """The pull blocks on a FIFO; the master's dump written into it is older than a close
    the agent sniffed meanwhile: the close wins."""
    fifo = tmp_path / "dump.fifo"
    os.mkfifo(fifo)
    with Lab() as lab:
        lab.start_server("s1", duration=60)
        cl = lab.traffic_client("c1", tcp=6, udp=0, duration=60)
        dump = lab.conntrack("fw1")  # all 6 ESTABLISHED
        closed = cl.info()["tcp_sports"][:2]
        agent = lab.popen(
            "fw2",
            sys.executable,
            "-m",
            "sniffover.cli",
            "--iface",
            "inside0",
            "--master-addr",
            MASTER_ADDRS,
            "--prime-from",
            str(fifo),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        writer = threading.Thread(target=lambda: fifo.write_text(dump))
        try:
            time.sleep(1.5)  # the agent captures and waits on the FIFO
            assert cl.close(2) == {"closed": 2}
            time.sleep(0.3)
            writer.start()
            writer.join(10)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if sniffover_ctl(lab, "status").returncode == 0:
                    break
                time.sleep(0.2)
            assert sniffover_ctl(lab, "ctl", "promote").returncode == 0
            fw1, fw2 = table(lab, "fw1"), table(lab, "fw2")
        finally:
            cl.stop()
            stop_process(agent)
        for (proto, src, dst, sport, dport), state in fw1.items():
            key = (proto, src, dst, sport, dport)
            if sport in closed:
                assert state == "TIME_WAIT" and fw2.get(key) != "ESTABLISHED", (key, fw2.get(key))
            elif proto == "tcp":
                assert fw2.get(key) == "ESTABLISHED", (key, fw2)


# A master that streams 5,000 entries and, with a limit, dies after that many: the first
# chunk (2,048) has then reached the standby, been authenticated, staged and encoded.
DYING_SERVE = """
import sys
from sniffover.conntrack.snapshot import SnapshotEntry
from sniffover.prime.handshake import read_key
from sniffover.prime.server import Server

listen, key_path, die_after = sys.argv[1], sys.argv[2], int(sys.argv[3])

def dump():
    for i in range(5000):
        if i == die_after:
            raise OSError("the master went away")
        a, b = bytes((192, 0, 2, 1 + i % 200)), bytes((198, 51, 100, 1 + i // 200))
        yield SnapshotEntry((6, a, b, 20000 + i, 443), (6, b, a, 443, 20000 + i), 0xE, 3600,
                            3, 7, 7, 0x23, 0x23)

Server(listen, read_key(key_path), dump=dump).serve_forever()
"""


def synthetic(lab: Lab) -> int:
    """fw2's entries of the dying master's synthetic range (to 443 from 192.0.2.x)."""
    return sum(1 for k in table(lab, "fw2") if k[0] == "tcp" and k[4] == 443)


@pytest.mark.parametrize("die_after", [3000, -1])
def test_master_dying_mid_stream_installs_nothing(tmp_path, die_after: int) -> None:
    """The master dies after its first chunk went out: the standby staged it, the pull
    fails as truncated, and fw2's table gets none of it. The control (no death) shows the
    same stream does install all 5,000 once its end frame is in."""
    with Lab() as lab:
        key = key_file(tmp_path)
        serve = lab.popen(
            "fw1",
            sys.executable,
            "-c",
            DYING_SERVE,
            MASTER,
            key,
            str(die_after),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            time.sleep(1.0)  # listening
            if die_after >= 0:
                proc = lab.run(
                    "fw2",
                    sys.executable,
                    "-m",
                    "sniffover.cli",
                    "--iface",
                    "inside0",
                    "--prime-from",
                    MASTER,
                    "--key-file",
                    key,
                    "--prime-required",
                    check=False,
                    timeout=60,
                )
                err = proc.stderr.strip().splitlines()
                assert proc.returncode == 1, proc.stderr
                assert err and err[-1].startswith("sniffover: ") and "truncated" in err[-1], err
                assert synthetic(lab) == 0
            else:
                agent = start_agent(
                    lab, "--prime-from", MASTER, "--key-file", key, "--prime-required"
                )
                try:
                    assert synthetic(lab) == 5000, agent_log(agent)
                finally:
                    stop_process(agent)
        finally:
            stop_process(serve)


def test_reprime_and_demotion_keep_the_state(tmp_path) -> None:
    """``ctl prime`` over a live table (staged aside, merged by adoption: what the tracker
    holds wins) and a demotion's re-prime into a fresh table (taken over whole; the kernel
    already holds the entries, so the creates turn into updates) both leave fw2 with
    every connection ESTABLISHED and nothing refused."""
    with Lab() as lab:
        lab.start_server("s1", duration=90)
        key = key_file(tmp_path)
        serve = start_serve(lab, key)
        old = lab.traffic_client("c1", tcp=10, udp=0, duration=90)
        agent = start_agent(lab, "--prime-from", MASTER, "--key-file", key)
        try:
            r = sniffover_ctl(lab, "ctl", "prime")
            assert r.returncode == 0 and r.stdout.startswith("primed from"), (r.stdout, r.stderr)
            live = {k for k, v in table(lab, "fw1").items() if k[0] == "tcp" and k[4] != 7445}
            assert len(live) == 10
            assert {table(lab, "fw2").get(k) for k in live} == {"ESTABLISHED"}
            assert sniffover_ctl(lab, "ctl", "promote").returncode == 0
            assert sniffover_ctl(lab, "ctl", "demote").returncode == 0
            deadline = time.monotonic() + 15
            while sniffover_ctl(lab, "status").returncode != 0:  # primed again
                assert time.monotonic() < deadline, agent_log(agent)
                time.sleep(0.2)
            assert {table(lab, "fw2").get(k) for k in live} == {"ESTABLISHED"}
        finally:
            old.stop()
            stop_process(agent)
            stop_process(serve)
        log = agent_log(agent)
        assert log.count("primed from") == 3 and "refused" not in log, log
