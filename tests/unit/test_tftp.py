"""TFTP requests: the helper's rule, expectations, their bookkeeping, the decoder, the
installer's messages (no root)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg

from sniffover.conntrack.entry import IPS_CONFIRMED, IPS_SEEN_REPLY, Conn
from sniffover.conntrack.helpers import HelperFollower
from sniffover.conntrack.helpers.tftp import HELPER, expectation, parse
from sniffover.conntrack.install_policy import desired
from sniffover.conntrack.table import ConntrackTable
from sniffover.kernel.ctnetlink import (
    CTA_EXPECT_MASK,
    CTA_EXPECT_MASTER,
    CTA_EXPECT_TUPLE,
)
from sniffover.kernel.dump import decode_tuple, iter_attrs
from sniffover.kernel.expect import ExpectInstaller
from sniffover.kernel.installer import Installer
from tests.helpers import A6, B6, A, B, FakeSender, udp
from tests.unit.test_decode import _fields, decoded_both_ways, ether, ipv4, ipv6

RRQ = b"\x00\x01f1.bin\x00octet\x00"
WRQ = b"\x00\x02up.bin\x00octet\x00"
FULL4 = b"\xff" * 4


def request(src=A, dst=B, sport=40000, dport=69, seen_reply=False) -> Conn:
    c = Conn((17, src, dst, sport, dport), (17, dst, src, dport, sport), 0.0)
    if seen_reply:
        c.status |= IPS_SEEN_REPLY
    return c


# --- the helper's rule -------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload,want",
    [
        (RRQ, "RRQ"),
        (WRQ, "WRQ"),
        (b"\x00\x01", "RRQ"),  # the helper reads the opcode only
        (b"\x00\x03\x00\x01" + bytes(512), None),  # DATA
        (b"\x00\x04\x00\x01", None),  # ACK
        (b"\x00\x05\x00\x01File not found\x00", None),  # ERROR
        (b"\x00\x06blksize\x00512\x00", None),  # OACK
        (b"\x01\x01", None),
        (b"\x00", None),
        (b"", None),
    ],
)
def test_parse_like_the_helper(payload, want):
    assert parse(payload) == want


def test_request_expects_the_servers_answer_from_any_port():
    c = request()  # unreplied: the very first request registers (the helper checks no state)
    exp = expectation(c, 0, RRQ, 5.0)
    assert exp is not None and exp.kind == "RRQ"
    assert exp.master == c.orig
    assert exp.tuple == (17, B, A, 0, 40000)  # server -> client's port, source port any
    assert exp.mask == (17, FULL4, FULL4, 0, 0xFFFF)
    assert exp.expires == 305.0
    assert exp.matches((17, B, A, 54321, 40000))
    assert not exp.matches((17, B, A, 54321, 40001)) and not exp.matches((6, B, A, 1, 40000))
    six = expectation(request(A6, B6), 0, WRQ, 0.0)
    assert six is not None and six.tuple == (17, B6, A6, 0, 40000)
    assert six.mask[1] == b"\xff" * 16 and six.kind == "WRQ"


def test_rules_of_the_helper():
    # either direction (tftp_help does not look at it); the tuple comes from the REPLY tuple
    assert expectation(request(), 1, RRQ, 0.0) == expectation(request(), 0, RRQ, 0.0)
    # only flows to port 69 (where the ruleset attaches the helper), only UDP
    assert expectation(request(dport=6969), 0, RRQ, 0.0) is None
    tcp69 = Conn((6, A, B, 40000, 69), (6, B, A, 69, 40000), 0.0)
    assert expectation(tcp69, 0, RRQ, 0.0) is None
    assert expectation(request(), 0, b"\x00\x04\x00\x00", 0.0) is None


@settings(max_examples=1500)
@given(
    payload=st.binary(max_size=40) | st.sampled_from([RRQ, WRQ, b"\x00\x01", b"\x00\x02"]),
    sport=st.integers(0, 0xFFFF),
    dport=st.sampled_from([69, 68, 0, 0xFFFF]),
    proto=st.sampled_from([17, 6, 136]),
    direction=st.integers(0, 1),
    v6=st.booleans(),
)
def test_never_raises(payload, sport, dport, proto, direction, v6):
    src, dst = (A6, B6) if v6 else (A, B)
    c = Conn((proto, src, dst, sport, dport), (proto, dst, src, dport, sport), 0.0)
    kind = parse(payload)
    assert kind in (None, "RRQ", "WRQ")
    exp = expectation(c, direction, payload, 1.0)
    if exp is not None:
        assert proto == 17 and dport == 69 and kind is not None
        assert exp.tuple == (17, dst, src, 0, sport)
    got = HelperFollower().feed(c, direction, payload, 1.0)
    assert got == exp or proto == 6  # TCP goes to the FTP rule


# --- bookkeeping through the table -------------------------------------------------------


def test_follower_consumed_replaced_and_master_gone():
    table = ConntrackTable()
    f = HelperFollower(names=["tftp"])
    table.listener = lambda kind, conn: (
        f.on_new(conn) if kind == "new" else f.on_destroy(conn) if kind == "destroy" else None
    )
    table.process(udp(0.0, dport=69))
    conn, d = table.get((17, A, B, 40000, 69)) or (None, 0)
    assert conn is not None and d == 0
    assert f.feed(conn, d, RRQ, 0.0) is not None
    assert f.feed(conn, d, WRQ, 0.5) is not None  # one per master: replaces
    assert [e.kind for e in f.by_master.values()] == ["WRQ"]
    # an unrelated flow from the server consumes nothing; the answer from a new port does
    table.process(udp(0.6, src=B, dst=A, sport=50000, dport=40001))
    assert f.by_master
    table.process(udp(0.7, src=B, dst=A, sport=50000, dport=40000))
    assert not f.by_master and f.counters["expect-consumed"] == 1
    # a later request on the same flow registers again; its master times out (30 s
    # unreplied) and takes the expectation with it
    f.feed(conn, 0, RRQ, 1.0)
    assert f.by_master
    table.expire(1000.0)
    assert not f.by_master and f.counters["expect-master-gone"] == 1
    f.feed(conn, 0, RRQ, 2000.0)
    f.expire(2299.0)
    assert f.by_master
    f.expire(2300.0)
    assert not f.by_master


def test_helper_follower_dispatches_by_protocol():
    ftp_conn = Conn((6, A, B, 40000, 21), (6, B, A, 21, 40000), 0.0)
    ftp_conn.status |= IPS_SEEN_REPLY
    port = b"PORT 192,0,2,1,39,17\r\n"
    both = HelperFollower()
    assert both.feed(ftp_conn, 0, port, 0.0) is not None
    assert both.feed(request(), 0, RRQ, 0.0) is not None
    assert len(both.by_master) == 2
    assert HelperFollower(names=["tftp"]).feed(ftp_conn, 0, port, 0.0) is None
    assert HelperFollower(names=["ftp"]).feed(request(), 0, RRQ, 0.0) is None
    assert HelperFollower(names=["ftp"]).feed(ftp_conn, 0, port, 0.0) is not None


# --- what goes into the kernel --------------------------------------------------------------


UNREPLIED = frozenset({HELPER.key})  # what the installer passes with the tftp helper on


def test_unreplied_request_flow_goes_in_only_with_tftp():
    c = request()
    c.expires = 30.0
    assert desired(c, 1.0, False) is None  # plain UDP: only once replied
    want = desired(c, 1.0, False, unreplied=UNREPLIED)
    assert want is not None and want.status == IPS_CONFIRMED
    assert desired(request(dport=53), 1.0, False, unreplied=UNREPLIED) is None
    c.forwarded = False
    assert desired(c, 1.0, False, require_forwarded=True, unreplied=UNREPLIED) is None


def test_request_flow_is_created_with_the_tftp_helper():
    inst = Installer(sock=None, helpers=["tftp"])  # type: ignore[arg-type]
    c = request()
    c.expires = 1_000.0
    (op,) = inst._plan(c.orig, c, 990.0)
    assert op.mode == "create" and op.timeout == 10
    msg = nfct_msg(inst._encode(op, 7))
    msg.decode()
    assert msg.get_attr("CTA_HELP").endswith("tftp")
    assert msg.get_nested("CTA_TUPLE_ORIG", "CTA_TUPLE_PROTO", "CTA_PROTO_DST_PORT") == 69
    assert msg.get_attr("CTA_STATUS") == IPS_CONFIRMED
    # without the option: not installed unreplied, and a replied one has no helper
    assert Installer(sock=None)._plan(c.orig, c, 990.0) == []  # type: ignore[arg-type]
    c.status |= IPS_SEEN_REPLY
    (op,) = Installer(sock=None)._plan(c.orig, c, 990.0)  # type: ignore[arg-type]
    assert Installer(sock=None)._helper(op, c) is None  # type: ignore[arg-type]
    # other UDP never gets it
    d = request(dport=53, seen_reply=True)
    d.expires = 1_000.0
    (op,) = inst._plan(d.orig, d, 990.0)
    assert inst._helper(op, d) is None


def test_expectation_sent_once_the_master_is_in():
    sock = FakeSender()
    inst = Installer(sock=sock, helpers=["tftp"])  # type: ignore[arg-type]
    ex = ExpectInstaller(sock, inst)  # type: ignore[arg-type]
    c = request()
    exp = expectation(c, 0, RRQ, 100.0)
    assert exp is not None
    ex.add(exp)
    assert ex.flush(101.0) == 0  # the master is not in the kernel yet
    inst.shadow[c.orig] = None  # type: ignore[assignment]
    assert ex.flush(101.0) == 1
    assert ex.installed == {c.orig: exp} and not ex.pending
    msg = sock.sent[-1]
    a = {k: (s, e) for k, s, e in iter_attrs(msg, 20, len(msg))}
    assert decode_tuple(msg, *a[CTA_EXPECT_MASTER]) == (17, A, B, 40000, 69)
    assert decode_tuple(msg, *a[CTA_EXPECT_TUPLE]) == (17, B, A, 0, 40000)
    assert decode_tuple(msg, *a[CTA_EXPECT_MASK]) == (17, FULL4, FULL4, 0, 0xFFFF)
    ex.consumed(exp)  # the answer appeared on the master: deleted here too
    assert ex.flush(102.0) == 1 and ex.counters["expect-deleted"] == 1


# --- the decoder: UDP port 69 keeps its payload, in the batch path as frame by frame ---------


def _udp(sport, dport, data):
    import dpkt

    return dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(data), data=data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, 4),
    edits=st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 120),
)
def test_tftp_payload_batch_equals_frame_by_frame(which, edits, cut):
    frames = [
        ether(ipv4(_udp(40000, 69, RRQ), 17)),
        ether(ipv4(_udp(69, 40000, b"\x00\x05\x00\x01x\x00"), 17)) + b"\0" * 8,  # padding
        ether(ipv4(_udp(50000, 40000, b"\x00\x03\x00\x01data"), 17)),  # DATA: not kept
        ether(ipv4(_udp(40000, 53, b"\x00\x01dns"), 17)),
        ether(ipv6(_udp(40000, 69, WRQ), 17), etype=0x86DD),
    ]
    batch, expected, pkt = decoded_both_ways(frames[which], edits, cut)
    assert [_fields(p) for p in batch] == [_fields(p) for p in expected]
    if not edits:
        assert pkt is not None
        want = {0: RRQ, 1: b"\x00\x05\x00\x01x\x00", 2: b"", 3: b"", 4: WRQ}
        assert pkt.payload == want[which]


def test_helper_follower_index():
    f = HelperFollower()
    table = ConntrackTable()
    table.listener = lambda kind, conn: (
        f.on_new(conn) if kind == "new" else f.on_destroy(conn) if kind == "destroy" else None
    )
    masters = []
    for i in range(200):  # many outstanding requests: each new flow is one lookup
        table.process(udp(0.0, sport=30000 + i, dport=69))
        found = table.get((17, A, B, 30000 + i, 69))
        assert found is not None
        masters.append(found[0])
        assert f.feed(found[0], 0, RRQ, 0.0) is not None
    assert len(f.by_master) == 200
    table.process(udp(0.1, src=B, dst=A, sport=50000, dport=30007))
    assert len(f.by_master) == 199 and masters[7].orig not in f.by_master
    assert f.counters["expect-consumed"] == 1
    # the same expected flow from another master (a NATed client port reused, say): the
    # kernel refuses it (expect_clash) and keeps the first
    clash = Conn((17, A, B, 30008, 69), (17, B, A, 69, 30008), 0.0)
    clash.orig = (17, A, bytes([198, 51, 100, 2]), 30008, 69)  # another server ...
    clash.reply = (17, B, A, 69, 30008)  # ... answering from B (a translated reply)
    assert f.feed(clash, 0, RRQ, 0.2) is None and f.counters["expect-clash"] == 1
    # a master gone leaves a stale index entry: the flow it expected consumes nothing
    table.process(udp(0.3, sport=30009, dport=69, src=A, dst=B))
    f.on_destroy(masters[9])
    table.process(udp(0.4, src=B, dst=A, sport=50000, dport=30009))
    assert f.counters["expect-consumed"] == 1 and len(f.by_master) == 198
    f.expire(400.0)  # the index is rebuilt as it grows past the live expectations
    for i in range(100):
        c = request(sport=20000 + i)
        f.feed(c, 0, RRQ, 400.0)
        f.on_destroy(c)
    assert len(f.outstanding.by_key) <= 2 * len(f.by_master) + 65
    # written straight into by_master (as the agent does with primed expectations): indexed
    primed = expectation(request(sport=12345), 0, RRQ, 400.0)
    assert primed is not None
    f.by_master[primed.master] = primed
    table.process(udp(400.1, src=B, dst=A, sport=50001, dport=12345))
    assert primed.master not in f.by_master and f.counters["expect-consumed"] == 2
