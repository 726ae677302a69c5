"""FTP through SNAT across a failover: the sequence adjustment follows to fw2.

fw1 source-NATs the inside client (192.0.2.10) to the outside VIP (198.51.100.1) and its
FTP helper rewrites every PORT command: "192,0,2,10" becomes "198,51,100,1", two bytes
longer, so fw1 shifts every later sequence number of the client (and every ack of the
server) by two and keeps that in the entry (CTA_SEQ_ADJ_ORIG). sniffover on fw2 sniffs
both segments, learns the shift from the two copies of the rewritten segment and
installs it. After the failover each control connection must still answer (NOOP), the
data connection announced before the failover must pass as RELATED (the expectation with
its NAT), and a new active transfer must work (fw2's own helper and NAT, shifting from
the installed adjustment on). The control run installs everything but the adjustment
(``encode_seqadj`` emptied in the agent): the control connections then break, as they
do for conntrackd.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sniffover.lab.hub import Lab, client_ip, server_ip, stop_process
from tests.helpers import SOURCE_FIRST
from tests.lab.test_agent_lab import MASTER_ADDRS, agent_log, sniffover_ctl
from tests.lab.test_ftp_lab import CLIENT, FILES, Client, start_vsftpd, stop_sessions

pytestmark = pytest.mark.requires("ip", "nft", "conntrack", "ping", "vsftpd")

SESSIONS = 3
NOOP_CLIENT = CLIENT.replace(
    "    raise ValueError(cmd)",
    '    if cmd == "noop":\n        return {"resp": f.voidcmd("NOOP")}\n    raise ValueError(cmd)',
)
# fw1's and fw2's FTP control entries with their CTA_SEQ_ADJ_* (kernel/dump.py), as JSON
SEQADJ_DUMP = """
import ipaddress, json
from sniffover.kernel.dump import dump_table
out = {}
for e in dump_table():
    o = e.orig
    if o[0] == 6 and o[4] == 21:
        key = f"{ipaddress.ip_address(o[1])}:{o[3]}"
        out[key] = [str(ipaddress.ip_address(e.reply[2])), e.extra.get("seqadj", "")]
print(json.dumps(out))
"""
# their expectations with the NAT helper's part (CTA_EXPECT_NAT, CTA_EXPECT_FN)
EXPECT_DUMP = """
import ipaddress, json
from sniffover.kernel.dump import dump_expectations
print(json.dumps(sorted(
    [x.tuple[4], str(ipaddress.ip_address(x.tuple[2])), x.nat_dir,
     x.nat_tuple[3] if x.nat_tuple else -1, x.fn] for x in dump_expectations())))
"""
# the control run: the agent installs everything except the sequence adjustment
NO_SEQADJ = (
    SOURCE_FIRST + "import sniffover.kernel.ctnetlink as c; c.encode_seqadj = lambda v: b''; "
)


class NoopClient(Client):
    def __init__(self, lab: Lab) -> None:  # the FTP client of test_ftp_lab, plus NOOP
        self.proc = lab.python(
            "c1", "-u", "-c", NOOP_CLIENT, server_ip(1),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self._read(15).get("ready")


def start_agent2(lab: Lab, prelude: str) -> subprocess.Popen[str]:
    """sniffover on fw2 sniffing both segments (NAT is paired from the two copies)."""
    fd, path = tempfile.mkstemp(prefix="snfftp-agent-", suffix=".log")
    log = os.fdopen(fd, "w")
    argv = ["sniffover", "--iface", "inside0", "--iface", "outside0", "--stats-interval", "5",
            "--master-addr", MASTER_ADDRS]  # fmt: skip
    code = f"{prelude}import runpy, sys; sys.argv = {argv!r}; "
    code += "runpy.run_module('sniffover.cli', run_name='__main__')"
    proc = lab.popen("fw2", sys.executable, "-c", code, stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    proc.log_path = path  # type: ignore[attr-defined]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"agent exited: {agent_log(proc)}")
        if sniffover_ctl(lab, "status").returncode == 0:
            return proc
        time.sleep(0.2)
    stop_process(proc)
    raise AssertionError("agent did not become ready")


def seqadj(lab: Lab, node: str) -> dict[str, list[str]]:
    r = lab.run(node, sys.executable, "-c", SEQADJ_DUMP, check=False)
    return json.loads(r.stdout) if r.returncode == 0 else {"error": [r.stderr]}


def wait_masters(lab: Lab) -> None:
    """The master's MAC on both segments, learned from routed traffic (pings through fw1)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lab.ping("c1", server_ip(1))
        st = json.loads(sniffover_ctl(lab, "status", "--json").stdout)
        if len(st["confirm"]["master_macs"]) == 2:
            return
        time.sleep(0.2)
    raise AssertionError(f"master MACs not learned: {st['confirm']}")


def run_ftp_nat(seqadj_install: bool) -> dict:
    r: dict = {}
    prefix = f"snfftp-{os.getpid()}-{int(seqadj_install)}"
    with (
        Lab(nat="snat", ftp=True, prefix=prefix) as lab,
        tempfile.TemporaryDirectory(prefix="snfftp-") as tmpdir,
    ):
        try:
            start_vsftpd(lab, Path(tmpdir))
            agent = start_agent2(lab, "" if seqadj_install else NO_SEQADJ)
            cl = None
            try:
                wait_masters(lab)
                cl = NoopClient(lab)
                sessions = range(1, SESSIONS + 1)
                for s in sessions:
                    assert cl("connect", s)["ok"]
                r["before"] = [cl("get", s, "port:f1.bin") for s in sessions]  # PORT: +2 bytes
                r["announce_port"] = cl("port_announce", 1)  # outstanding at the failover
                r["noop_before"] = [cl("noop", s) for s in sessions]
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:  # fw2 holds the adjustments fw1 has
                    r["fw1_seqadj"], r["fw2_seqadj"] = seqadj(lab, "fw1"), seqadj(lab, "fw2")
                    if r["fw1_seqadj"] == r["fw2_seqadj"] or (
                        not seqadj_install and r["fw1_seqadj"].keys() == r["fw2_seqadj"].keys()
                    ):
                        break
                    time.sleep(0.3)
                for fw in ("fw1", "fw2"):
                    got = lab.run(fw, sys.executable, "-c", EXPECT_DUMP, check=False)
                    r[f"{fw}_expect"] = json.loads(got.stdout or "null")
                r["promote"] = sniffover_ctl(lab, "ctl", "promote").returncode
                lab.failover()
                r["noop_after"] = [cl("noop", s) for s in sessions]
                if not seqadj_install:
                    return r  # the control: the control connections are what it is about
                r["after_outstanding"] = cl("port_finish", 1, "f2.bin")
                r["after_new"] = [cl("get", s, "port:f3.bin") for s in sessions]
                r["fw2_table"] = lab.conntrack("fw2")
            finally:
                if cl is not None:
                    stop_process(cl.proc)
                stop_process(agent)
                r["log"] = agent_log(agent)
                os.unlink(agent.log_path)  # type: ignore[attr-defined]
        finally:
            stop_sessions(lab)
    return r


def test_ftp_through_snat_survives_failover_with_seqadj():
    r = run_ftp_nat(seqadj_install=True)
    info = json.dumps({k: v for k, v in r.items() if k != "log"}, indent=1) + r["log"][-3000:]
    size = {"ok": True, "size": len(FILES["f1.bin"])}
    assert r["before"] == [size] * SESSIONS, info
    fw1 = r["fw1_seqadj"]
    assert len(fw1) == SESSIONS, info
    ports = [2] + [1] * (SESSIONS - 1)  # session 1 also announced one before the failover
    for (key, (nat_addr, adj)), n in zip(sorted(fw1.items()), ports, strict=True):
        assert key.startswith(client_ip(1)) and nat_addr == "198.51.100.1", info
        # fw1 shifted the client's sequence numbers by 2 per PORT, the server's not at all
        pos, before, after, *reply = (int(x) for x in adj.split())
        assert (before, after, reply) == (2 * n - 2, 2 * n, [0, 0, 0]), info
    assert r["fw2_seqadj"] == fw1, info  # fw2 has exactly fw1's adjustments
    port = r["announce_port"]["port"]
    # the outstanding expectation on both, with the NAT helper's part: the data connection
    # (to the VIP) is translated back to the client's port, in the REPLY direction
    assert r["fw1_expect"] == [[port, "198.51.100.1", 1, port, "nat-follow-master"]], info
    assert r["fw2_expect"] == r["fw1_expect"], info
    assert r["promote"] == 0, info
    assert all(x["ok"] for x in r["noop_after"]), info  # every control connection answers
    assert r["after_outstanding"] == {"ok": True, "size": len(FILES["f2.bin"])}, info
    assert r["after_new"] == [{"ok": True, "size": len(FILES["f3.bin"])}] * SESSIONS, info


def test_ftp_through_snat_control_without_seqadj_install_breaks():
    r = run_ftp_nat(seqadj_install=False)
    info = json.dumps({k: v for k, v in r.items() if k != "log"}, indent=1)
    assert all(x["ok"] for x in r["before"]) and all(x["ok"] for x in r["noop_before"]), info
    assert all(not adj for _, adj in r["fw2_seqadj"].values()), info  # nothing installed
    assert not any(x["ok"] for x in r["noop_after"]), info  # 0 of 3 control connections


if __name__ == "__main__":  # quick manual run
    with contextlib.suppress(KeyboardInterrupt):
        print(json.dumps(run_ftp_nat(len(sys.argv) < 2), indent=1))
