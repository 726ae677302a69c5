"""Expectations of a master in a zone (issue 15 point 7, nf_conntrack_expect.c): each zone's
FTP session has its own expectation, a new connection consumes one only with a zone
template of the master's zone id (``nf_ct_zone_equal_any``), and the installer sends
CTA_EXPECT_ZONE = the zone the master's ORIGINAL tuple is hashed in (create) or the
master's zone id (delete), checked against the kernel in ``tests/lab/test_zones_lab.py``."""

from __future__ import annotations

import struct

from sniffover.agent.pipeline import helper_listener
from sniffover.conntrack.entry import Conn
from sniffover.conntrack.helpers import HelperFollower
from sniffover.conntrack.table import ConntrackTable
from sniffover.kernel.ctnetlink import (
    CTA_EXPECT_MASTER,
    CTA_EXPECT_TUPLE,
    CTA_EXPECT_ZONE,
    IPCTNL_MSG_EXP_DELETE,
    IPCTNL_MSG_EXP_NEW,
)
from sniffover.kernel.dump import decode_tuple, iter_attrs
from sniffover.kernel.expect import ExpectInstaller
from sniffover.kernel.installer import Installer
from tests.helpers import ACK, SYN, A, B, FakeSender, tcp

PASV = b"227 Entering Passive Mode (198,51,100,1,39,16).\r\n"  # port 10000 on B


def zoned(pkt, zone, zdir=3):
    pkt.zone, pkt.zone_dir = zone, zdir
    return pkt


def session(table: ConntrackTable, zone: int, zdir: int = 3, t: float = 0.0) -> Conn:
    """An FTP control connection A:40000 -> B:21 whose packets carry (zone, zdir) both ways."""
    table.process(zoned(tcp(t, SYN, 100, dport=21), zone, zdir))
    table.process(zoned(tcp(t + 0.01, SYN | ACK, 500, 101, src=B, dst=A, sport=21, dport=40000),
                        zone if zdir & 2 else 0, zdir))  # fmt: skip
    table.process(zoned(tcp(t + 0.02, ACK, 101, 501, dport=21), zone, zdir))
    found = table.get((6, A, B, 40000, 21), zone, zdir)
    assert found is not None
    return found[0]


def follower(table: ConntrackTable) -> HelperFollower:
    f = HelperFollower(names=["ftp"])
    table.listener = lambda kind, conn: (
        f.on_new(conn) if kind == "new" else f.on_destroy(conn) if kind == "destroy" else None
    )
    return f


def data_syn(t: float, zone: int, zdir: int = 3):
    """A data connection from A to B's passive port, from a new source port each time."""
    return zoned(tcp(t, SYN, 900, sport=41000 + int(t * 100), dport=10000), zone, zdir)


def test_each_zone_keeps_its_own_expectation():
    table = ConntrackTable()
    f = follower(table)
    c1, c2 = session(table, 1), session(table, 2)
    e1, e2 = f.feed(c1, 1, PASV, 0.1), f.feed(c2, 1, PASV, 0.1)
    assert e1 is not None and e2 is not None
    assert (e1.zone, e1.master_zid, e2.zone) == (1, 1, 2)
    assert len(f.by_master) == 2 and f.counters.get("expect-clash", 0) == 0
    table.process(data_syn(0.2, 0))  # zone 0: neither (the kernel: not RELATED)
    assert len(f.by_master) == 2 and "expect-consumed" not in f.counters
    table.process(data_syn(0.3, 2))
    assert f.counters["expect-consumed"] == 1 and list(f.by_master.values()) == [e1]
    table.process(data_syn(0.4, 1))
    assert not f.by_master


def test_control_without_zones_one_session_takes_the_other_ones_slot():
    table = ConntrackTable()
    f = follower(table)
    c1 = session(table, 0)
    assert f.feed(c1, 1, PASV, 0.1) is not None
    assert len(f.by_master) == 1 and f.by_master[c1.orig].zone == 0


def test_directional_zone_matches_by_id_whatever_the_direction():
    """``ct original zone set 1``: the master's id is 1 (hashed in 1 for ORIGINAL); a data
    connection from the inside (template zone 1, original) consumes the expectation, one
    without the zone does not."""
    table = ConntrackTable()
    f = follower(table)
    c = session(table, 1, 1)
    exp = f.feed(c, 1, PASV, 0.1)
    assert exp is not None and (exp.zone, exp.master_zid) == (1, 1)
    table.process(data_syn(0.2, 0))
    assert f.by_master
    table.process(data_syn(0.3, 1, 1))
    assert not f.by_master
    # a reply-only zone: the ORIGINAL tuple is hashed in zone 0, the id is still 4
    c4 = session(ConntrackTable(), 4, 2)
    exp4 = HelperFollower(names=["ftp"]).feed(c4, 1, PASV, 0.1)
    assert exp4 is not None and (exp4.zone, exp4.master_zid, exp4.master_key) == (
        4, 0, c4.orig,
    )  # fmt: skip


def _exp_msgs(sock: FakeSender, kind: int) -> list[dict[int, bytes]]:
    out = []
    for m in sock.sent:
        if struct.unpack_from("=H", m, 4)[0] == (2 << 8) | kind:  # NFNL_SUBSYS_CTNETLINK_EXP
            out.append({k: m[s:e] for k, s, e in iter_attrs(m, 20, len(m))})
    return out


def test_installer_sends_the_zone_that_finds_the_master_and_deletes_by_its_id():
    for zone, zdir, create_zone, delete_zone in ((1, 1, 1, 1), (5, 3, 5, 5), (4, 2, None, 4)):
        sock = FakeSender()
        inst = Installer(sock, helpers=["ftp"])  # type: ignore[arg-type]
        f = HelperFollower(names=["ftp"])
        ex = ExpectInstaller(sock, inst)  # type: ignore[arg-type]
        table = ConntrackTable(listener=helper_listener(inst, f, ex))
        c = session(table, zone, zdir)
        inst.flush(0.05)
        exp = f.feed(c, 1, PASV, 0.1)
        assert exp is not None
        ex.add(exp)
        ex.flush(0.2)
        (new,) = _exp_msgs(sock, IPCTNL_MSG_EXP_NEW)
        assert decode_tuple(new[CTA_EXPECT_MASTER], 0, len(new[CTA_EXPECT_MASTER])) == c.orig
        got = new.get(CTA_EXPECT_ZONE)
        assert (int.from_bytes(got, "big") if got else None) == create_zone, (zone, zdir)
        assert ex.installed
        table.process(data_syn(0.3, zone, zdir))  # consumed: deleted again
        ex.flush(0.4)
        (dele,) = _exp_msgs(sock, IPCTNL_MSG_EXP_DELETE)
        assert int.from_bytes(dele[CTA_EXPECT_ZONE], "big") == delete_zone
        assert CTA_EXPECT_TUPLE in dele and not ex.installed


# --- the prime: the kernel's dump does not say an expectation's zone ----------------------


def _x(master, port: int):
    from sniffover.conntrack.snapshot import SnapshotExpectation

    full = b"\xff" * 4
    return SnapshotExpectation(master, (6, A, B, 0, port), (6, full, full, 0, 0xFFFF), 200, "ftp")


def test_serve_assigns_each_expectation_its_masters_zone():
    from sniffover.prime.server import assign_zones

    m, other = (6, A, B, 40000, 21), (6, A, B, 40001, 21)
    # the master tuple in zones 1 and 2, expecting ports 10000 (zone 2) and 10001 (zone 1);
    # another master in zone 3 alone, and one in zone 0 alone
    held = {((6, A, B, 0, 10000), 2), ((6, A, B, 0, 10001), 1)}
    asked: list[int] = []

    def in_zone(t, z):
        asked.append(z)
        return (t, z) in held

    xs = [_x(m, 10000), _x(m, 10001), _x(other, 10002), _x((6, B, A, 1, 21), 10003)]
    zones = {m: [1, 2], other: [3], (6, B, A, 1, 21): [0]}
    assign_zones(xs, zones, in_zone)
    assert [x.zone for x in xs] == [2, 1, 3, 0]
    assert len(asked) == 3  # only the ambiguous master's are asked about
    # identical expectations of the same master tuple in two zones take one zone each
    twins = [_x(m, 10004), _x(m, 10004)]
    assign_zones(twins, zones, lambda t, z: True)
    assert sorted(x.zone for x in twins) == [1, 2]


def test_exp_get_message_is_a_get_never_a_delete():
    from sniffover.kernel.ctnetlink import IPCTNL_MSG_EXP_GET, NLM_F_ACK, NLM_F_REQUEST
    from sniffover.kernel.expect import encode_exp_get

    msg = encode_exp_get((6, A, B, 0, 10000), 7, 3)
    _len, kind, flags, seq = struct.unpack_from("=IHHI", msg)
    assert (kind, flags, seq) == ((2 << 8) | IPCTNL_MSG_EXP_GET, NLM_F_REQUEST | NLM_F_ACK, 3)
    a = {k: msg[s:e] for k, s, e in iter_attrs(msg, 20, len(msg))}
    assert int.from_bytes(a[CTA_EXPECT_ZONE], "big") == 7 and CTA_EXPECT_TUPLE in a


def test_listing_expectation_of_a_master_tuple_in_two_zones_is_left_out():
    from sniffover.prime.client import listing_snapshot

    entry = (
        "tcp      6 431999 ESTABLISHED src=192.0.2.1 dst=198.51.100.1 sport=40000 dport=21 "
        "src=198.51.100.1 dst=192.0.2.1 sport=21 dport=40000 [ASSURED] mark=0 zone={z} use=1\n"
    )
    exp = (
        "296 proto=6 src=192.0.2.1 dst=198.51.100.1 sport=0 dport=10000 "
        "mask-src=255.255.255.255 mask-dst=255.255.255.255 sport=0 dport=65535 "
        "master-src=192.0.2.1 master-dst=198.51.100.1 sport=40000 dport=21 class=0 helper=ftp\n"
    )
    _, (x,) = listing_snapshot(entry.format(z=3) + exp)
    assert x.zone == 3
    assert listing_snapshot(entry.format(z=3) + entry.format(z=4) + exp)[1] == []


def test_an_expectation_whose_master_is_in_makes_a_flush_due():
    """The PASV reply leaves the control entry as it was (nothing for the installer): the
    expectation alone must make the agent flush, not wait for the next entry change."""
    from tests.unit.test_agent_parts import FakeClock, make

    fc = FakeClock()
    agent, _ = make(fc)
    agent.start()
    pipe = agent.pipeline
    assert pipe.installer is not None and pipe.expect is not None and pipe.helpers is not None
    c = session(pipe.table, 1, 1, fc.now)
    pipe.flush(fc.now)
    assert not pipe.flush_due and pipe.installer.shadow
    exp = pipe.helpers.feed(c, 1, PASV, fc.now)
    assert exp is not None
    pipe.expect.add(exp)
    assert pipe.flush_due
    pipe.flush(fc.now)
    assert not pipe.flush_due and pipe.expect.installed
