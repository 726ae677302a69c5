"""FTP control channels: the helper's parsers, expectations, their bookkeeping, the messages."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sniffover.conntrack.entry import IPS_SEEN_REPLY, Conn
from sniffover.conntrack.helpers import HelperFollower
from sniffover.conntrack.helpers.ftp import expectation, parse
from sniffover.conntrack.table import ConntrackTable
from sniffover.kernel.ctnetlink import (
    CTA_EXPECT_MASK,
    CTA_EXPECT_MASTER,
    CTA_EXPECT_TIMEOUT,
    CTA_EXPECT_TUPLE,
    CTA_EXPECT_ZONE,
    CTA_HELP,
    CTA_HELP_NAME,
    NFNL_SUBSYS_CTNETLINK_EXP,
    TcpInfo,
    encode_ct_new,
    encode_exp_delete,
    encode_exp_new,
)
from sniffover.kernel.dump import decode_tuple, iter_attrs
from tests.helpers import A6, ACK, B6, PSH, SYN, A, B, tcp


def control(src=A, dst=B, sport=40000, seen_reply=True) -> Conn:
    c = Conn((6, src, dst, sport, 21), (6, dst, src, 21, sport), 0.0)
    if seen_reply:
        c.status |= IPS_SEEN_REPLY
    return c


# --- parsers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload,direction,sender,want",
    [
        (b"PORT 192,0,2,1,39,17\r\n", 0, A, ("PORT", A, 10001)),
        (b"port 192,0,2,1,39,17\r\n", 0, A, ("PORT", A, 10001)),
        (b"PORT 192,0,2,1,39,17\n", 0, A, None),  # the helper wants "\r" after the numbers
        (b"PORT 192,0,2,1,39\r\n", 0, A, None),
        (b"PORT 192,0,2,1,39,17,1\r\n", 0, A, None),
        (b"EPRT |1|192.0.2.1|10002|\r\n", 0, A, ("EPRT", A, 10002)),
        (b"EPRT !1!192.0.2.1!10002!\r\n", 0, A, ("EPRT", A, 10002)),
        (b"EPRT |2|192.0.2.1|10002|\r\n", 0, A, None),  # protocol 2 on IPv4
        (b"EPRT |2|2001:db8:1::1|10003|\r\n", 0, A6, ("EPRT", A6, 10003)),
        (b"EPRT |1|192.0.2.1|0|\r\n", 0, A, None),  # port 0
        (b"227 Entering Passive Mode (198,51,100,1,39,16).\r\n", 1, B, ("227", B, 10000)),
        (b"227 =198,51,100,1,39,16\r\n", 1, B, ("227", B, 10000)),
        (b"227 Entering Passive Mode (198,51,100,1,39,16", 1, B, None),  # no terminator
        (b"229 Entering Extended Passive Mode (|||50000|)\r\n", 1, B, ("229", B, 50000)),
        (b"229 Entering Extended Passive Mode (|||50000|)\r\n", 1, B6, ("229", B6, 50000)),
        (b"229 Entering Extended Passive Mode (||50000|)\r\n", 1, B, None),
        (b"227 Entering Passive Mode (198,51,100,1,39,16).\r\n", 0, A, None),  # wrong way
        (b"PORT 192,0,2,1,39,17\r\n", 1, B, None),
        (b"150 Here comes the directory listing.\r\n", 1, B, None),
        (b"", 0, A, None),
    ],
)
def test_parse_like_the_helper(payload, direction, sender, want):
    assert parse(payload, direction, sender) == want


def test_passive_expectation_client_to_server_any_source_port():
    c = control()
    exp = expectation(c, 1, b"227 Entering Passive Mode (198,51,100,1,39,16).\r\n", 5.0)
    assert exp is not None
    assert exp.master == c.orig
    assert exp.tuple == (6, A, B, 0, 10000)  # the client connects to the server's port
    assert exp.mask == (6, b"\xff" * 4, b"\xff" * 4, 0, 0xFFFF)
    assert exp.expires == 305.0
    assert exp.matches((6, A, B, 51234, 10000)) and not exp.matches((6, A, B, 51234, 10001))


def test_active_expectation_server_to_client():
    c = control()
    exp = expectation(c, 0, b"PORT 192,0,2,1,39,17\r\n", 0.0)
    assert exp is not None and exp.tuple == (6, B, A, 0, 10001)  # the server connects back
    six = control(A6, B6)
    exp6 = expectation(six, 0, b"EPRT |2|2001:db8:1::1|10003|\r\n", 0.0)
    assert exp6 is not None and exp6.tuple == (6, B6, A6, 0, 10003)
    assert exp6.mask[1] == b"\xff" * 16


def test_rules_of_the_helper():
    # another host's address is not recorded (loose=0)
    assert expectation(control(), 0, b"PORT 192,0,2,99,39,17\r\n", 0.0) is None
    assert expectation(control(), 1, b"227 (198,51,100,99,39,16)\r\n", 0.0) is None
    # nothing before traffic both ways, nothing on other ports
    assert expectation(control(seen_reply=False), 0, b"PORT 192,0,2,1,39,17\r\n", 0.0) is None
    other = Conn((6, A, B, 40000, 2121), (6, B, A, 2121, 40000), 0.0)
    other.status |= IPS_SEEN_REPLY
    assert expectation(other, 0, b"PORT 192,0,2,1,39,17\r\n", 0.0) is None


commands = st.sampled_from(
    [b"PORT ", b"EPRT ", b"227 ", b"229 ", b"port", b"EPRT |1|", b"229 (|||", b""]
)


@settings(max_examples=1500)
@given(
    head=commands,
    body=st.binary(max_size=80)
    | st.text(alphabet="0123456789,.|()!: \r\n", max_size=60).map(str.encode),
    direction=st.integers(0, 1),
    v6=st.booleans(),
)
def test_parser_never_raises(head, body, direction, v6):
    c = control(A6, B6) if v6 else control()
    got = parse(head + body, direction, (c.orig if direction == 0 else c.reply)[1])
    if got is not None:
        kind, addr, port = got
        assert kind in ("PORT", "EPRT", "227", "229")
        assert len(addr) in (4, 16) and 0 <= port <= 0xFFFF
    exp = expectation(c, direction, head + body, 1.0)
    if exp is not None:
        assert exp.tuple[1:3] == ((c.reply, c.orig)[direction][1:3])


# --- bookkeeping through the table -------------------------------------------------------


def test_follower_consumed_replaced_and_master_gone():
    table = ConntrackTable()
    f = HelperFollower(names=["ftp"])
    table.listener = lambda kind, conn: (
        f.on_new(conn) if kind == "new" else f.on_destroy(conn) if kind == "destroy" else None
    )
    table.process(tcp(0.0, SYN, 100, dport=21))
    table.process(tcp(0.1, SYN | ACK, 500, 101, src=B, dst=A, sport=21, dport=40000))
    table.process(tcp(0.2, ACK, 101, 501, dport=21))
    conn, d = table.get((6, B, A, 21, 40000)) or (None, 0)
    assert conn is not None and d == 1
    line = b"227 Entering Passive Mode (198,51,100,1,39,16).\r\n"
    assert f.feed(conn, 1, line, 0.3) is not None
    assert f.feed(conn, 0, b"PORT 192,0,2,1,39,17\r\n", 0.4) is not None  # evicts the 227 one
    assert list(f.by_master.values())[0].kind == "PORT"
    # the server connects back from port 20: the expectation is consumed
    table.process(tcp(0.5, SYN, 900, src=B, dst=A, sport=20, dport=10001))
    assert not f.by_master and f.counters["expect-consumed"] == 1
    f.feed(conn, 1, line, 0.6)
    f.expire(100.0)
    assert f.by_master
    f.expire(301.0)
    assert not f.by_master
    f.feed(conn, 1, line, 302.0)
    table.process(tcp(302.1, PSH | ACK | 0x04, 101, 501, dport=21))  # RST: the master goes
    table.expire(10**6)
    assert not f.by_master


# --- messages ------------------------------------------------------------------------------


def _attrs(buf, start, end):
    return {k: (s, e) for k, s, e in iter_attrs(buf, start, end)}


def test_exp_new_message():
    c = control()
    exp = expectation(c, 1, b"229 Entering Extended Passive Mode (|||50000|)\r\n", 0.0)
    assert exp is not None
    msg = encode_exp_new(exp.master, exp.tuple, exp.mask, timeout=123, zone=7, seq=9)
    length, kind, flags, seq, _pid = __import__("struct").unpack_from("=IHHII", msg)
    assert length == len(msg) and seq == 9
    assert kind == NFNL_SUBSYS_CTNETLINK_EXP << 8 | 0  # IPCTNL_MSG_EXP_NEW
    assert flags == 0x01 | 0x04 | 0x400  # REQUEST | ACK | CREATE (an existing one: updated)
    assert msg[16] == 2  # nfgen family AF_INET
    a = _attrs(msg, 20, len(msg))
    assert set(a) == {
        CTA_EXPECT_MASTER,
        CTA_EXPECT_TUPLE,
        CTA_EXPECT_MASK,
        CTA_EXPECT_TIMEOUT,
        CTA_EXPECT_ZONE,
    }
    assert decode_tuple(msg, *a[CTA_EXPECT_MASTER]) == c.orig
    assert decode_tuple(msg, *a[CTA_EXPECT_TUPLE]) == (6, A, B, 0, 50000)
    assert decode_tuple(msg, *a[CTA_EXPECT_MASK]) == (6, b"\xff" * 4, b"\xff" * 4, 0, 0xFFFF)
    s, e = a[CTA_EXPECT_TIMEOUT]
    assert int.from_bytes(msg[s:e], "big") == 123
    s, e = a[CTA_EXPECT_ZONE]
    assert int.from_bytes(msg[s:e], "big") == 7
    dele = encode_exp_delete(exp.tuple, seq=10)
    assert dele[4] == 2 and dele[5] == NFNL_SUBSYS_CTNETLINK_EXP  # EXP_DELETE
    d = _attrs(dele, 20, len(dele))
    assert set(d) == {CTA_EXPECT_TUPLE}


def test_ct_new_with_helper_decodes_with_pyroute2():
    from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg

    orig, reply = (6, A, B, 40000, 21), (6, B, A, 21, 40000)
    msg = encode_ct_new(orig, reply, status=0xE, timeout=300, tcp=TcpInfo(3), helper="ftp")
    m = nfct_msg(msg)
    m.decode()
    # pyroute2 maps CTA_HELP flat (asciiz): its text ends with the nested CTA_HELP_NAME
    assert m.get_attr("CTA_HELP").endswith("ftp")
    assert m.get_nested("CTA_TUPLE_ORIG", "CTA_TUPLE_PROTO", "CTA_PROTO_DST_PORT") == 21
    a = _attrs(msg, 20, len(msg))
    s, e = a[CTA_HELP]
    name = _attrs(msg, s, e)
    assert name.keys() == {CTA_HELP_NAME}
    assert msg[slice(*name[CTA_HELP_NAME])] == b"ftp\0"
    # without a helper: no CTA_HELP, and the bytes are what they were
    assert encode_ct_new(orig, reply, status=0xE, timeout=300) == encode_ct_new(
        orig, reply, status=0xE, timeout=300, helper=None
    )
    plain = encode_ct_new(orig, reply, status=0xE, timeout=3)
    assert CTA_HELP not in _attrs(plain, 20, len(plain))
