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

Through SNAT (``test_primed_expectation_of_a_snat_master_keeps_its_nat``): an active port
(PORT, rewritten by fw1's ``nf_nat_ftp`` to the outside VIP) is announced before the agent
starts; its expectation on fw1 carries the NAT helper's part (REPLY direction, the
client's port, "nat-follow-master"), the prime carries it and fw2 installs it equal to
fw1's. After the failover the server's data connection to the VIP is translated back to
the client through fw2. The control serves the same prime without the NAT part (what
format 3 carried): fw2 holds the expectation untranslated and the transfer fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sniffover.lab.hub import Lab, stop_process
from tests.helpers import SOURCE_FIRST
from tests.lab.test_agent_lab import agent_log, sniffover_ctl, start_agent
from tests.lab.test_ftp_lab import FILES, Client, expectations, start_vsftpd, stop_sessions
from tests.lab.test_ftp_nat_lab import EXPECT_DUMP
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


# the control's serve: the expectations dumped without their NAT part (format 3's content)
NO_NAT_PART = SOURCE_FIRST + (
    "import sniffover.kernel.dump as d; f = d.decode_expectation\n"
    "def g(*a):\n x = f(*a); x.nat_dir, x.nat_tuple, x.fn = -1, None, ''; return x\n"
    "d.decode_expectation = g\n"
)


def start_serve_code(lab: Lab, key: str, prelude: str) -> subprocess.Popen[str]:
    """``sniffover serve`` on fw1 with ``prelude`` run first (the control's patch)."""
    argv = ["sniffover", "serve", "--listen", MASTER, "--key-file", key]
    code = f"{prelude}import runpy, sys; sys.argv = {argv!r}; "
    code += "runpy.run_module('sniffover.cli', run_name='__main__')"
    proc = lab.popen("fw1", sys.executable, "-c", code, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = lab.run("fw2", "bash", "-c", f"exec 3<>/dev/tcp/{MASTER}/7445", check=False)
        if r.returncode == 0:
            return proc
        time.sleep(0.2)
    stop_process(proc)
    raise AssertionError("sniffover serve did not come up on fw1")


def exp_dump(lab: Lab, node: str) -> list:  # type: ignore[type-arg]
    got = lab.run(node, sys.executable, "-c", EXPECT_DUMP, check=False)
    return json.loads(got.stdout or "null") or []


def run_prime_expect_snat(tmp_path: Path, nat_part: bool) -> dict:  # type: ignore[type-arg]
    r: dict = {}  # type: ignore[type-arg]
    with (
        Lab(nat="snat", ftp=True) as lab,
        tempfile.TemporaryDirectory(prefix="snfftp-") as tmpdir,
    ):
        serve = agent = cl = None
        try:
            start_vsftpd(lab, Path(tmpdir))
            key = key_file(tmp_path)
            serve = start_serve_code(lab, key, "" if nat_part else NO_NAT_PART)
            cl = Client(lab)
            assert cl("connect", 1)["ok"]
            r["before"] = cl("get", 1, "port:f1.bin")  # PORT through fw1's SNAT
            r["announce"] = cl("port_announce", 1)  # PORT, then silence
            r["fw1_expect"] = exp_dump(lab, "fw1")
            t0 = time.monotonic()
            agent = start_agent(lab, "--iface", "outside0", "--prime-from", MASTER,
                                "--key-file", key, "--prime-required")  # fmt: skip
            port = r["announce"].get("port")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                r["fw2_expect"] = exp_dump(lab, "fw2")
                if any(x[0] == port for x in r["fw2_expect"]):
                    break
                time.sleep(0.2)
            r["fw2_expect_s"] = round(time.monotonic() - t0, 2)
            r["fw2_listing"] = expectations(lab, "fw2")
            r["promote"] = sniffover_ctl(lab, "ctl", "promote").returncode
            lab.failover()
            r["after_outstanding"] = cl("port_finish", 1, "f2.bin")
            if nat_part:
                r["after_new"] = cl("get", 1, "port:f3.bin")  # fw2's helper, NAT and seqadj
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


def test_primed_expectation_of_a_snat_master_keeps_its_nat(tmp_path: Path) -> None:
    r = run_prime_expect_snat(tmp_path, nat_part=True)
    info = _info(r)
    assert r["before"] == {"ok": True, "size": len(FILES["f1.bin"])}, info
    port = r["announce"]["port"]
    # fw1's expectation: to the VIP, translated back in the REPLY direction to the port
    assert r["fw1_expect"] == [[port, "198.51.100.1", 1, port, "nat-follow-master"]], info
    assert r["fw2_expect"] == r["fw1_expect"], info  # carried by the prime, installed equal
    assert r["promote"] == 0, info
    assert r["after_outstanding"] == {"ok": True, "size": len(FILES["f2.bin"])}, info
    assert r["after_new"] == {"ok": True, "size": len(FILES["f3.bin"])}, info


def test_primed_expectation_without_its_nat_part_fails_after_takeover(tmp_path: Path) -> None:
    r = run_prime_expect_snat(tmp_path, nat_part=False)
    info = _info(r)
    port = r["announce"]["port"]
    assert r["fw1_expect"] == [[port, "198.51.100.1", 1, port, "nat-follow-master"]], info
    assert r["fw2_expect"] == [[port, "198.51.100.1", -1, -1, ""]], info  # untranslated
    assert not r["after_outstanding"]["ok"], info
