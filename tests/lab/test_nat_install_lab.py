"""Translated entries installed into a real kernel come out with the reply tuple the master
had (issue 15 point 1: ICMP echo through SNAT came out with id 0).

Each case is a master entry (orig, reply) seeded as a prime seeds it, installed by the
Installer over ctnetlink in a scratch network namespace (``unshare -n``: anonymous, gone
with the child), and read back with ``conntrack -L``: the kernel derives the reply from
the plain inverse plus the NAT binding, so the dump is the judge of the binding.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.requires("unshare", "nft", "conntrack")

CHILD = textwrap.dedent(
    """
    import json, subprocess, sys, time
    from sniffover.conntrack.entry import IPS_CONFIRMED, IPS_SEEN_REPLY
    from sniffover.conntrack.snapshot import SnapshotEntry, seed
    from sniffover.conntrack.tuple import addr_bytes
    from sniffover.kernel.ctnetlink import CtnlSocket
    from sniffover.kernel.installer import Installer

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["nft", "-f", "-"], input=sys.argv[2], text=True, check=True)
    now = time.time()
    inst = Installer(CtnlSocket())
    for orig, reply in json.loads(sys.argv[1]):
        o = (orig[0], addr_bytes(orig[1]), addr_bytes(orig[2]), orig[3], orig[4])
        r = (reply[0], addr_bytes(reply[1]), addr_bytes(reply[2]), reply[3], reply[4])
        entry = SnapshotEntry(o, r, IPS_CONFIRMED | IPS_SEEN_REPLY, 60)
        inst.on_event("new", seed(entry, now))
    inst.flush(now)
    print(json.dumps(dict(inst.counters)))
    print(subprocess.run(["conntrack", "-L"], capture_output=True, text=True).stdout)
    """
)

NAT_TABLES = """
table ip snfnat {
    chain post { type nat hook postrouting priority srcnat; policy accept; }
}
table ip6 snfnat {
    chain post { type nat hook postrouting priority srcnat; policy accept; }
}
"""

C, S, VIP, X = "192.0.2.10", "198.51.100.10", "198.51.100.1", "203.0.113.7"
C6, S6, VIP6 = "2001:db8:1::10", "2001:db8:2::10", "2001:db8:2::1"
CASES = [
    # (orig, reply) as the master's table has them: (proto, src, dst, sport|id, dport|type<<8)
    ((1, C, S, 35078, 8 << 8), (1, S, VIP, 35078, 0)),  # echo through SNAT, id kept
    ((1, C, S, 35079, 8 << 8), (1, S, VIP, 40001, 0)),  # SNAT that rewrote the id (clash)
    ((1, X, VIP, 35080, 8 << 8), (1, C, X, 35080, 0)),  # echo to a DNATed address
    ((58, C6, S6, 35081, 128 << 8), (58, S6, VIP6, 35081, 129 << 8)),  # ICMPv6 through SNAT
    ((17, C, S, 40000, 53), (17, S, VIP, 53, 40002)),  # UDP SNAT with a port rewrite
]


def line_of(reply: tuple) -> str:
    proto, src, dst, a, b = reply
    if proto in (1, 58):
        return f"src={src} dst={dst} type={b >> 8} code={b & 0xFF} id={a}"
    return f"src={src} dst={dst} sport={a} dport={b}"


def test_translated_entries_come_out_as_the_master_had_them() -> None:
    res = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", CHILD, json.dumps(CASES), NAT_TABLES],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    counters_line, _, table = res.stdout.partition("\n")
    assert json.loads(counters_line).get("created") == len(CASES), res.stdout
    for orig, reply in CASES:
        lines = [ln for ln in table.splitlines() if line_of(orig) + " " in ln + " "]
        assert len(lines) == 1, (orig, table)
        assert line_of(reply) in lines[0].split(line_of(orig), 1)[1], (reply, lines[0])
