"""The kernel takes our NAT helper state as it is: entries with CTA_SEQ_ADJ_* and
expectations with CTA_EXPECT_NAT + CTA_EXPECT_FN, IPv4 and IPv6, created over ctnetlink in
a throwaway namespace and dumped back (this kernel's ctnetlink is the judge)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sniffover.lab import netns
from sniffover.lab.hub import lab_env

pytestmark = pytest.mark.requires("ip", "nft")

NAT_TABLES = "".join(
    f"table {fam} snfnat {{\n  chain post {{\n"
    "    type nat hook postrouting priority srcnat; policy accept;\n  }\n}\n"
    for fam in ("ip", "ip6")
)
SCRIPT = r"""
import json
from sniffover.kernel.ctnetlink import CtnlSocket, encode_ct_new, encode_exp_new
from sniffover.kernel.dump import dump_expectations, dump_table
from sniffover.conntrack.snapshot import parse_seqadj

out = []
for a, b, n in ((bytes([192, 0, 2, 1]), bytes([198, 51, 100, 1]), bytes([198, 51, 100, 254])),
                (bytes.fromhex("20010db8000100000000000000000001"),
                 bytes.fromhex("20010db8000200000000000000000001"),
                 bytes.fromhex("20010db80002000000000000000000fe"))):
    orig, plain = (6, a, b, 40000, 21), (6, b, a, 21, 40000)
    adj = ((1001, 0, 26), (5009, 0, 0xFFFFFFFD))
    zero, full = bytes(len(a)), b"\xff" * len(a)
    with CtnlSocket() as s:
        s.request(encode_ct_new(orig, plain, status=0x6, timeout=300, helper="ftp",
                                nat_src=(n, 40000), seqadj=adj, seq=s.next_seq()))
        s.request(encode_exp_new(orig, (6, b, n, 0, 40100), (6, full, full, 0, 0xFFFF),
                                 timeout=300, nat=(1, (6, zero, zero, 40100, 0)),
                                 seq=s.next_seq()))
    e = next(x for x in dump_table() if x.orig == orig)
    x = next(x for x in dump_expectations() if x.master == orig)
    out.append({"reply_dst": list(e.reply[2]), "status_seqadj": bool(e.status & 0x40),
                "seqadj": parse_seqadj(e.extra.get("seqadj", "")).values(),
                "exp": [x.tuple[4], list(x.tuple[2]), x.nat_dir, x.nat_tuple[3], x.fn,
                        x.helper]})
print(json.dumps(out))
"""


def test_kernel_takes_seqadj_and_expectation_nat_v4_v6():
    ns = netns.create(f"{netns.base_name('snflab-')}-snfftp-k")
    try:
        subprocess.run(netns.exec_argv(ns, "nft", "-f", "-"), input=NAT_TABLES, text=True,
                       check=True, timeout=10)  # fmt: skip
        res = subprocess.run(
            netns.exec_argv(ns, sys.executable, "-c", SCRIPT),
            capture_output=True, text=True, timeout=30, env=lab_env(),
        )  # fmt: skip
    finally:
        netns.delete(ns)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    nats = ([198, 51, 100, 254], list(bytes.fromhex("20010db80002000000000000000000fe")))
    for row, n in zip(got, nats, strict=True):
        assert row["reply_dst"] == n and row["status_seqadj"]
        assert row["seqadj"] == [[1001, 0, 26], [5009, 0, 0xFFFFFFFD]]
        assert row["exp"] == [40100, n, 1, 40100, "nat-follow-master", "ftp"]


ZONES_SCRIPT = r"""
import json
from sniffover.kernel.ctnetlink import CtnlSocket, encode_ct_new, encode_exp_new
from sniffover.kernel.dump import dump_expectations, dump_table
from sniffover.prime.server import assign_zones, default_in_zone

a, b = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 1])
full = b"\xff" * 4
orig, reply = (6, a, b, 40000, 21), (6, b, a, 21, 40000)
with CtnlSocket() as s:
    for zone, port in ((5, 40100), (6, 40101), (0, 40102)):
        s.request(encode_ct_new(orig, reply, status=0xE, timeout=300, helper="ftp", zone=zone,
                                seq=s.next_seq()))
        s.request(encode_exp_new(orig, (6, a, b, 0, port), (6, full, full, 0, 0xFFFF),
                                 timeout=300, zone=zone, seq=s.next_seq()))
exps = dump_expectations()
zones = {}
for e in dump_table():
    zones.setdefault(e.orig, []).append(e.zone)
assign_zones(exps, zones, default_in_zone)
print(json.dumps(sorted([x.tuple[4], x.zone] for x in exps)))
"""


def test_serve_finds_each_expectations_zone_in_the_kernel():
    """The dump gives no expectation zone; serve's GET with CTA_EXPECT_ZONE does: three
    masters with one tuple in zones 5, 6 and 0, one expectation each."""
    ns = netns.create(f"{netns.base_name('snflab-')}-snfexpz")
    try:
        subprocess.run(netns.exec_argv(ns, "nft", "-f", "-"), input=NAT_TABLES, text=True,
                       check=True, timeout=10)  # fmt: skip
        res = subprocess.run(
            netns.exec_argv(ns, sys.executable, "-c", ZONES_SCRIPT),
            capture_output=True, text=True, timeout=30, env=lab_env(),
        )  # fmt: skip
    finally:
        netns.delete(ns)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == [[40100, 5], [40101, 6], [40102, 0]]
