"""A passive port announced before the standby's agent started: only the prime carries it.

vsftpd on s1, ftplib on c1 (as in ``test_ftp_lab``): the client opens an FTP control
connection through fw1 and has the server announce a passive port (227) *before* the
agent on fw2 exists, then stays silent, so sniffing alone never sees the connection or
the 227 reply. The agent starts with ``--prime-from`` (``sniffover serve`` on fw1 over
the sync link, a key file): the pull carries fw1's expectation, the agent creates the
control entry with the ftp helper and installs the expectation for it. After the
promotion and the failover the data connection for that PASV is opened through fw2
(whose ruleset lets new TCP from the inside reach port 21 only: the data connection
passes only as RELATED) and must carry the file; a fresh PASV on the same control
connection must work too (fw2's own helper on the primed entry). The control: the same
agent without ``--prime-from`` loses both.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest

from sniffover.lab.hub import Lab, stop_process
from tests.lab.test_agent_lab import agent_log, sniffover_ctl, start_agent
from tests.lab.test_ftp_lab import FILES, Client, expectations, start_vsftpd, stop_sessions
from tests.lab.test_prime_agent_lab import MASTER, key_file, start_serve

pytestmark = pytest.mark.requires("ip", "nft", "conntrack", "ping", "vsftpd")


def run_prime_expect(tmp_path: Path, prime: bool) -> dict:  # type: ignore[type-arg]
    r: dict = {}  # type: ignore[type-arg]
    with Lab(ftp=True) as lab, tempfile.TemporaryDirectory(prefix="snfftp-") as tmpdir:
        serve = agent = cl = None
        try:
            start_vsftpd(lab, Path(tmpdir))
            key = key_file(tmp_path)
            serve = start_serve(lab, key) if prime else None
            cl = Client(lab)
            assert cl("connect", 1)["ok"]
            r["before"] = cl("get", 1, "pasv:f1.bin")  # the helper works on fw1
            r["announce"] = cl("pasv_announce", 1)  # 227, then silence
            r["fw1_expect"] = expectations(lab, "fw1")
            args = ("--prime-from", MASTER, "--key-file", key, "--prime-required") if prime else ()
            t0 = time.monotonic()
            agent = start_agent(lab, "--iface", "outside0", *args)
            r["ready_s"] = round(time.monotonic() - t0, 2)
            port = f"dport={r['announce'].get('port')}"
            deadline = time.monotonic() + (10 if prime else 2)
            while time.monotonic() < deadline and port not in expectations(lab, "fw2"):
                time.sleep(0.2)
            r["fw2_expect_s"] = round(time.monotonic() - t0, 2)
            r["fw2_expect"] = expectations(lab, "fw2")
            r["fw2_control"] = [ln for ln in lab.conntrack("fw2").splitlines() if "dport=21 " in ln]
            status = sniffover_ctl(lab, "status", "--json")
            r["status"] = json.loads(status.stdout) if status.stdout.strip() else {}
            r["promote"] = sniffover_ctl(lab, "ctl", "promote").returncode
            lab.failover()
            r["after_outstanding"] = cl("pasv_finish", 1, "f2.bin")
            r["after_new"] = cl("get", 1, "pasv:f4.bin")
            r["fw2_data"] = [ln for ln in lab.conntrack("fw2").splitlines() if port + " " in ln]
        finally:
            if cl is not None:
                stop_process(cl.proc)
            if agent is not None:
                stop_process(agent)
                r["log"] = agent_log(agent)
                os.unlink(agent.log_path)  # type: ignore[attr-defined]
            if serve is not None:
                stop_process(serve)
            stop_sessions(lab)
    return r


def _info(r: dict) -> str:  # type: ignore[type-arg]
    return json.dumps({k: v for k, v in r.items() if k != "log"}, indent=1) + r.get("log", "")


def test_primed_expectation_lets_the_data_connection_through(tmp_path: Path) -> None:
    r = run_prime_expect(tmp_path, prime=True)
    info = _info(r)
    assert r["before"] == {"ok": True, "size": len(FILES["f1.bin"])}, info
    port = f"dport={r['announce']['port']}"
    assert port in r["fw1_expect"], info
    prime = r["status"].get("prime", {})
    assert prime.get("ok") and prime.get("expectations", 0) >= 1, info
    assert prime.get("expectations_queued") == 1, info
    # the expectation went into fw2's kernel from the prime, on a control entry with the helper
    assert port in r["fw2_expect"] and "helper=ftp" in r["fw2_expect"], info
    assert r["fw2_control"] and all("helper=ftp" in ln for ln in r["fw2_control"]), info
    assert r["promote"] == 0, info
    assert r["after_outstanding"] == {"ok": True, "size": len(FILES["f2.bin"])}, info
    assert r["after_new"] == {"ok": True, "size": len(FILES["f4.bin"])}, info


def test_without_prime_the_outstanding_passive_port_is_lost(tmp_path: Path) -> None:
    r = run_prime_expect(tmp_path, prime=False)
    info = _info(r)
    assert r["before"]["ok"] and f"dport={r['announce']['port']}" in r["fw1_expect"], info
    assert f"dport={r['announce']['port']}" not in r["fw2_expect"], info
    assert not r["after_outstanding"]["ok"], info
