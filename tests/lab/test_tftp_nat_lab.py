"""TFTP through SNAT across a failover: the expectation's NAT part follows to fw2.

fw1 source-NATs the inside client to the outside VIP and its TFTP helper expects the
server's answer at the VIP; ``nf_nat_tftp`` notes on the expectation that the answer is
to be translated back to the client's port (CTA_EXPECT_NAT, "nat-follow-master").
sniffover on fw2 (both segments sniffed) installs the expectation with that part. The
requests are sent before the failover and answered only after it, from new ports: the
answers must reach the client through fw2. The control run installs the expectations
without their NAT part: fw2 then lets the answers in as RELATED but does not translate
them, and they never reach the client.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from sniffover.lab.hub import Lab, client_ip, server_ip, stop_process
from tests.helpers import SOURCE_FIRST
from tests.lab.test_agent_lab import agent_log, sniffover_ctl
from tests.lab.test_ftp_nat_lab import EXPECT_DUMP, start_agent2, wait_masters
from tests.lab.test_tftp_lab import CLIENT, GET_PORT, PUT_PORT, SERVER, Proc, sha, wait_for

pytestmark = pytest.mark.requires("ip", "nft", "conntrack", "ping")

NO_EXPECT_NAT = SOURCE_FIRST + (
    "import sniffover.kernel.expect as e; _f = e.encode_exp_new; "
    "e.encode_exp_new = lambda *a, **k: _f(*a, **{**k, 'nat': None}); "
)


def expect_dump(lab: Lab, node: str) -> list:
    got = lab.run(node, sys.executable, "-c", EXPECT_DUMP, check=False)
    return json.loads(got.stdout or "null")


def run_tftp_nat(expect_nat: bool) -> dict:
    r: dict = {}
    prefix = f"snfftp-t{os.getpid()}-{int(expect_nat)}"
    with Lab(tftp=True, nat="snat", prefix=prefix) as lab:
        server = Proc(lab, "s1", SERVER, server_ip(1))
        client = Proc(lab, "c1", CLIENT, client_ip(1), server_ip(1))
        agent = start_agent2(lab, "" if expect_nat else NO_EXPECT_NAT)
        try:
            wait_masters(lab)
            r["before_get"] = client("get", port=40600, name="f3.bin")
            server("hold")
            r["req_get"] = client("request", port=GET_PORT, op=1, name="f5.bin")
            r["req_put"] = client("request", port=PUT_PORT, op=2, name="f4.bin")
            r["held"] = wait_for(lambda: server("status").get("held") == 2, 5)
            r["fw1_expect"] = expect_dump(lab, "fw1")
            wait_for(lambda: len(expect_dump(lab, "fw2") or []) >= 2, 10)
            r["fw2_expect"] = expect_dump(lab, "fw2")
            r["promote"] = sniffover_ctl(lab, "ctl", "promote").returncode
            lab.failover()
            server("answer")
            r["after_get"] = client("finish", port=GET_PORT, wait=3.0)
            r["after_put"] = client("finish", port=PUT_PORT, wait=3.0)
            r["fw2_table"] = lab.conntrack("fw2", "-p", "udp")
        finally:
            stop_process(client.proc)
            stop_process(server.proc)
            stop_process(agent)
            r["log"] = agent_log(agent)
            os.unlink(agent.log_path)  # type: ignore[attr-defined]
    return r


def test_tftp_through_snat_answers_after_failover():
    r = run_tftp_nat(expect_nat=True)
    info = json.dumps({k: v for k, v in r.items() if k != "log"}, indent=1) + r["log"][-3000:]
    assert r["before_get"]["ok"] and r["before_get"]["sha"] == sha("f3.bin"), info
    assert r["held"], info
    # fw1's expectations: answer translated back to the client's port, REPLY direction
    nat = sorted([p, "198.51.100.1", 1, p, "nat-follow-master"] for p in (GET_PORT, PUT_PORT))
    assert r["fw1_expect"] == nat, info
    assert r["fw2_expect"] == r["fw1_expect"], info
    assert r["promote"] == 0, info
    assert r["after_get"]["ok"] and r["after_get"]["sha"] == sha("f5.bin"), info
    assert r["after_put"]["ok"], info


def test_tftp_through_snat_control_without_expectation_nat():
    r = run_tftp_nat(expect_nat=False)
    info = json.dumps({k: v for k, v in r.items() if k != "log"}, indent=1)
    assert r["before_get"]["ok"] and r["held"], info
    assert [x[0] for x in r["fw2_expect"]] == [GET_PORT, PUT_PORT], info  # installed...
    assert all(x[2] == -1 for x in r["fw2_expect"]), info  # ... without the NAT part
    assert not r["after_get"]["ok"] and not r["after_put"]["ok"], info
