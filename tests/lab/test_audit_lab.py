"""Self-audit in the hub lab: ``sniffover audit`` on fw2 against ``sniffover serve`` on fw1.

A healthy pair (the agent primed and sniffing) audits to 0 differences, in the command
and in the agent's periodic audit (status and Prometheus gauges), also while connections
open and close all through the audit (the young-flow rule: those the master had at its dump
are compared, those made after it are young; a single local dump before or after the pull
would have counted them missing or extra). Then fw2's kernel table
is changed behind the agent's back with ``conntrack -D`` / ``-I`` in fw2's namespace, and
the audit reports exactly what was done: 2 missing (deleted), 1 extra (inserted, unknown
to fw1), 1 state (re-inserted in TIME_WAIT, ahead of fw1's ESTABLISHED before its dump)
and 1 NAT (re-inserted with another reply tuple). The control is the healthy run: the same
command with nothing changed finds nothing.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.request  # noqa: F401  (used inside fw2's namespace through -c)

import pytest

from sniffover.lab.hub import Lab, client_ip, server_ip, stop_process
from tests.lab.test_agent_lab import MASTER_ADDRS, agent_log, start_agent, table
from tests.lab.test_prime_agent_lab import MASTER, key_file, start_serve

pytestmark = pytest.mark.requires("ip", "nft", "conntrack", "ping")

METRICS = "127.0.0.1:9478"


def audit(lab: Lab, key: str, *extra: str, text: bool = False) -> tuple[int, dict]:
    r = lab.run(
        "fw2",
        sys.executable,
        "-m",
        "sniffover.cli",
        "audit",
        "--against",
        MASTER,
        "--key-file",
        key,
        "--master-addr",
        MASTER_ADDRS,
        "--lag",
        "1",
        *(() if text else ("--json",)),
        *extra,
        check=False,
        timeout=60,
    )
    assert "Traceback" not in r.stderr, r.stderr
    if text:
        print(r.stdout)
        return r.returncode, {"lines": r.stdout.splitlines()}
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else {"stderr": r.stderr}


def ct(lab: Lab, *argv: str) -> None:
    lab.run("fw2", "conntrack", *argv, check=True)


def metrics(lab: Lab) -> dict[str, float]:
    code = (
        f"import urllib.request; print(urllib.request.urlopen('http://{METRICS}/').read().decode())"
    )
    text = lab.run("fw2", sys.executable, "-c", code, check=True).stdout
    out = {}
    for line in text.splitlines():
        if line.startswith("sniffover_audit_"):
            name, _, value = line.partition(" ")
            out[name] = float(value)
    return out


def test_audit_healthy_pair_then_exactly_the_injected_differences(tmp_path) -> None:
    c, s = client_ip(1), server_ip(1)
    with Lab() as lab:
        lab.start_server("s1", duration=120)
        key = key_file(tmp_path)
        serve = start_serve(lab, key)
        cl = lab.traffic_client("c1", tcp=8, udp=2, duration=120)
        agent = start_agent(
            lab,
            "--prime-from",
            MASTER,
            "--key-file",
            key,
            "--audit-interval",
            "10",
            "--metrics",
            METRICS,
        )
        try:
            rc, doc = audit(lab, key)
            assert rc == 0 and doc["differences"] == 0, (doc, table(lab, "fw1"), table(lab, "fw2"))
            assert doc["compared"] >= 10, doc  # 8 TCP + 2 UDP at least
            rc, out = audit(lab, key, text=True)  # one summary line
            assert rc == 0 and len(out["lines"]) == 1, out
            assert out["lines"][0].startswith("audit: 0 differences (0 missing, 0 extra"), out
            # churn during an audit: connections opened and closed all through it (the
            # young-flow rule: none of them is a difference)
            churn: list[dict] = []

            def opens_and_closes() -> None:
                for _ in range(10):
                    churn.append(cl.open(1))
                    churn.append(cl.close(1))
                    time.sleep(0.15)

            t = threading.Thread(target=opens_and_closes)
            t.start()
            rc, doc = audit(lab, key)
            t.join(30)
            assert len(churn) == 20 and not any(c.get("failed") for c in churn), churn
            assert rc == 0 and doc["differences"] == 0, doc
            assert doc["compared"] > 10, doc  # the churned ones the master had were compared
            # the agent's own periodic audit (first one 10 s after its start)
            deadline = time.monotonic() + 30
            while True:
                st = json.loads(
                    lab.run("fw2", sys.executable, "-m", "sniffover.cli", "status", "--json",
                            check=False).stdout
                )  # fmt: skip
                if st["audit"].get("at"):
                    break
                assert time.monotonic() < deadline, agent_log(agent)
                time.sleep(0.5)
            assert st["audit"]["differences"] == 0, st["audit"]
            assert "audit: 0 differences" in agent_log(agent)
            time.sleep(1.5)  # the metrics refresh once a second
            m = metrics(lab)
            assert m["sniffover_audit_missing"] == 0 and m["sniffover_audit_nat"] == 0, m
            assert m["sniffover_audit_last_run_timestamp"] == pytest.approx(time.time(), abs=60)

            # behind the agent's back
            live = sorted(
                k for k, v in table(lab, "fw2").items() if k[0] == "tcp" and v == "ESTABLISHED"
                and k[1] == c
            )  # fmt: skip
            assert len(live) == 8, live
            (_, _, _, sp1, dp), (_, _, _, sp2, _), (_, _, _, sp3, _), (_, _, _, sp4, _) = live[:4]
            for sp in (sp1, sp2, sp3, sp4):
                ct(lab, "-D", "-p", "tcp", "-s", c, "-d", s, "--sport", str(sp), "--dport", str(dp))
            tcp = ["-p", "tcp", "-s", c, "-d", s, "--dport", str(dp), "-t", "600"]
            # fw1 has ESTABLISHED: here TIME_WAIT (ahead of the master before its dump)
            ct(
                lab,
                "-I",
                *tcp,
                "--sport",
                str(sp3),
                "--state",
                "TIME_WAIT",
                "-u",
                "SEEN_REPLY,ASSURED",
            )
            # another NAT mapping: the reply goes to another address
            ct(lab, "-I", *tcp, "--sport", str(sp4), "--state", "ESTABLISHED", "-u",
               "SEEN_REPLY,ASSURED", "-r", s, "-q", "192.0.2.99", "--reply-port-src", str(dp),
               "--reply-port-dst", str(sp4))  # fmt: skip
            # unknown to fw1
            ct(
                lab,
                "-I",
                *tcp,
                "--sport",
                "1111",
                "--state",
                "ESTABLISHED",
                "-u",
                "SEEN_REPLY,ASSURED",
            )

            rc, doc = audit(lab, key)
            got = {k: doc[k] for k in ("missing", "extra", "state", "nat", "expect_missing",
                                        "expect_extra")}  # fmt: skip
            assert got == {"missing": 2, "extra": 1, "state": 1, "nat": 1, "expect_missing": 0,
                           "expect_extra": 0}, doc  # fmt: skip
            assert rc == 3 and doc["differences"] == 5
            assert audit(lab, key, "--max-differences", "5")[0] == 0
            assert any(str(sp1) in t or str(sp2) in t for t in doc["samples"]["missing"])
        finally:
            cl.stop()
            stop_process(agent)
            stop_process(serve)


@pytest.mark.requires("vsftpd")
def test_audit_compares_expectations(tmp_path) -> None:
    """An FTP passive port announced before the agent started reaches fw2 through the
    prime (``test_prime_expect_lab``): the audit finds nothing; once fw2's expectation is
    flushed behind the agent's back, exactly one expectation is missing."""
    import tempfile
    from pathlib import Path

    from tests.lab.test_ftp_lab import Client, expectations, start_vsftpd, stop_sessions

    with Lab(ftp=True) as lab, tempfile.TemporaryDirectory(prefix="snfaud-ftp-") as tmpdir:
        serve = agent = cl = None
        try:
            start_vsftpd(lab, Path(tmpdir))
            key = key_file(tmp_path)
            serve = start_serve(lab, key)
            cl = Client(lab)
            assert cl("connect", 1)["ok"]
            announce = cl("pasv_announce", 1)  # 227, then silence
            port = f"dport={announce.get('port')}"
            agent = start_agent(lab, "--iface", "outside0", "--prime-from", MASTER,
                                "--key-file", key, "--prime-required")  # fmt: skip
            deadline = time.monotonic() + 10
            while port not in expectations(lab, "fw2"):
                assert time.monotonic() < deadline, agent_log(agent)
                time.sleep(0.2)
            rc, doc = audit(lab, key)
            assert rc == 0 and doc["differences"] == 0, doc
            assert "expect-not-compared" not in doc["excluded"], doc
            lab.run("fw2", "conntrack", "-F", "expect", check=True)
            rc, doc = audit(lab, key)
            assert rc == 3 and doc["expect_missing"] == 1 and doc["differences"] == 1, doc
        finally:
            if cl is not None:
                stop_process(cl.proc)
            if agent is not None:
                stop_process(agent)
            if serve is not None:
                stop_process(serve)
            stop_sessions(lab)
