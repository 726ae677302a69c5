"""NAT helper state over ctnetlink: CTA_SEQ_ADJ_* on entries and CTA_EXPECT_NAT/FN on
expectations, checked against pyroute2's decoders (its nfct_msg for entries; for
expectations a message class built from its tuple decoder and the kernel's enum
ctattr_expect), our dump decoder, and the installer's choice of encoder."""

from __future__ import annotations

from pyroute2.netlink import nla
from pyroute2.netlink.nfnetlink import nfgen_msg
from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg

from sniffover.conntrack.entry import Conn, TcpState
from sniffover.conntrack.expect import Expectation, nat_of
from sniffover.conntrack.helpers import ftp, tftp
from sniffover.conntrack.install_policy import desired
from sniffover.conntrack.seqadj import SeqAdj
from sniffover.conntrack.snapshot import format_seqadj, parse_seqadj
from sniffover.conntrack.states import TCP_ESTABLISHED
from sniffover.kernel.ctnetlink import TcpInfo, encode_ct_new, encode_exp_new
from sniffover.kernel.dump import decode_entry, decode_expectation
from sniffover.kernel.installer import Installer
from tests.helpers import FakeSender

A4, B4, N4 = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 1]), bytes([198, 51, 100, 254])
A6 = bytes.fromhex("20010db8000100000000000000000001")
B6 = bytes.fromhex("20010db8000200000000000000000001")
N6 = bytes.fromhex("20010db80002000000000000000000fe")
ADJ = ((1001, 0, 5), (5009, 0, 0xFFFFFFFE))  # ORIGINAL +5, REPLY -2 (as u32)


class exp_msg(nfgen_msg):
    """enum ctattr_expect (nfnetlink_conntrack.h), tuples with pyroute2's decoder."""

    prefix = "CTA_EXPECT_"
    nla_map = (
        ("CTA_EXPECT_UNSPEC", "none"),
        ("CTA_EXPECT_MASTER", "cta_tuple"),
        ("CTA_EXPECT_TUPLE", "cta_tuple"),
        ("CTA_EXPECT_MASK", "cta_tuple"),
        ("CTA_EXPECT_TIMEOUT", "be32"),
        ("CTA_EXPECT_ID", "be32"),
        ("CTA_EXPECT_HELP_NAME", "asciiz"),
        ("CTA_EXPECT_ZONE", "be16"),
        ("CTA_EXPECT_FLAGS", "be32"),
        ("CTA_EXPECT_CLASS", "be32"),
        ("CTA_EXPECT_NAT", "cta_expect_nat"),
        ("CTA_EXPECT_FN", "asciiz"),
    )
    cta_tuple = nfct_msg.cta_tuple

    class cta_expect_nat(nla):
        prefix = "CTA_EXPECT_NAT_"
        nla_map = (
            ("CTA_EXPECT_NAT_UNSPEC", "none"),
            ("CTA_EXPECT_NAT_DIR", "be32"),
            ("CTA_EXPECT_NAT_TUPLE", "cta_tuple"),
        )
        cta_tuple = nfct_msg.cta_tuple


def test_seq_adj_attributes_as_pyroute2_reads_them():
    orig, plain = (6, A4, B4, 40000, 21), (6, B4, A4, 21, 40000)
    raw = encode_ct_new(orig, plain, status=0x6, timeout=300, seqadj=ADJ, nat_src=(N4, 40000))
    msg = nfct_msg(raw)
    msg.decode()
    for name, (pos, before, after) in zip(
        ("CTA_SEQ_ADJ_ORIG", "CTA_SEQ_ADJ_REPLY"), ADJ, strict=True
    ):
        a = msg.get_attr(name)
        assert a.get_attr("CTA_NAT_SEQ_CORRECTION_POS") == pos
        assert a.get_attr("CTA_NAT_SEQ_OFFSET_BEFORE") == before
        assert a.get_attr("CTA_NAT_SEQ_OFFSET_AFTER") == after
    # the dump decoder (what a router's table gives) reads the same values back
    entry = decode_entry(bytearray(raw), 0, len(raw))
    assert entry.extra["seqadj"] == format_seqadj(ADJ)
    sa = parse_seqadj(entry.extra["seqadj"])
    assert sa is not None and sa.values() == ADJ and sa.after[1] == -2


def test_expectation_nat_as_pyroute2_reads_it():
    for a, b, n in ((A4, B4, N4), (A6, B6, N6)):
        master = (6, a, b, 40000, 21)
        zero = bytes(len(a))
        nat = (1, (6, zero, zero, 40100, 0))
        raw = encode_exp_new(
            master, (6, b, n, 0, 40100), (6, b"\xff" * len(a), b"\xff" * len(a), 0, 0xFFFF),
            timeout=290, nat=nat,
        )  # fmt: skip
        msg = exp_msg(raw)
        msg.decode()
        got = msg.get_attr("CTA_EXPECT_NAT")
        assert got.get_attr("CTA_EXPECT_NAT_DIR") == 1
        t = got.get_attr("CTA_EXPECT_NAT_TUPLE")
        assert t.get_attr("CTA_TUPLE_PROTO").get_attr("CTA_PROTO_SRC_PORT") == 40100
        assert t.get_attr("CTA_TUPLE_PROTO").get_attr("CTA_PROTO_NUM") == 6
        assert msg.get_attr("CTA_EXPECT_FN") == "nat-follow-master"
        assert msg.get_attr("CTA_EXPECT_TIMEOUT") == 290
        mt = msg.get_attr("CTA_EXPECT_MASTER").get_attr("CTA_TUPLE_PROTO")
        assert mt.get_attr("CTA_PROTO_DST_PORT") == 21
        x = decode_expectation(raw, 0, len(raw))  # what a router's dump gives, decoded
        assert (x.nat_dir, x.nat_tuple, x.fn) == (1, nat[1], "nat-follow-master")
    # without NAT: neither attribute
    plain = exp_msg(encode_exp_new(master, master, master, timeout=1))
    plain.decode()
    assert plain.get_attr("CTA_EXPECT_NAT") is None and plain.get_attr("CTA_EXPECT_FN") is None


def _control(reply, status=0x6):
    conn = Conn((6, A4, B4, 40000, 21), reply, 0.0)
    conn.status = status
    conn.expires = 100.0
    conn.forwarded = True
    st = TcpState()
    st.state = TCP_ESTABLISHED
    conn.tcp = st
    return conn


def test_helpers_record_the_nat_of_a_translated_master():
    snat = _control((6, B4, N4, 21, 40000))
    port = b"PORT 192,0,2,1,156,164\r\n"
    exp = ftp.expectation(snat, 0, port, 1.0)
    assert exp is not None and exp.tuple == (6, B4, N4, 0, 40100)
    assert exp.nat == (1, (6, bytes(4), bytes(4), 40100, 0))  # exp->dir REPLY, saved port
    plain = _control((6, B4, A4, 21, 40000))
    assert ftp.expectation(plain, 0, port, 1.0).nat is None  # no NAT: nf_nat_ftp not run
    pasv = b"227 Entering Passive Mode (198,51,100,1,156,164).\r\n"
    assert ftp.expectation(snat, 1, pasv, 1.0).nat == (0, (6, bytes(4), bytes(4), 40100, 0))
    req = Conn((17, A4, B4, 5000, 69), (17, B4, N4, 69, 5001), 0.0)
    texp = tftp.expectation(req, 0, b"\x00\x01f\x00octet\x00", 1.0)
    assert texp.tuple == (17, B4, N4, 0, 5001) and texp.nat == (
        1,
        (17, bytes(4), bytes(4), 5000, 0),
    )
    assert nat_of(plain, 0, 1) is None


def test_installer_sends_the_adjustment_on_create_and_update():
    conn = _control((6, B4, N4, 21, 40000))
    sender = FakeSender()
    inst = Installer(sender, helpers=("ftp",))
    inst.on_event("new", conn)
    inst.flush(1.0)
    first = nfct_msg(sender.sent[-1])
    first.decode()
    assert first.get_attr("CTA_SEQ_ADJ_ORIG") is None
    assert first.get_attr("CTA_NAT_SRC") is not None and first.get_attr("CTA_HELP") is not None
    sa = SeqAdj()
    sa.record(0, 1001, 5)
    conn.seqadj = sa
    assert desired(conn, 1.0, True).seqadj == ((1001, 0, 5), (0, 0, 0))
    inst.on_event("update", conn)
    inst.flush(2.0)
    upd = nfct_msg(sender.sent[-1])
    upd.decode()
    adj = upd.get_attr("CTA_SEQ_ADJ_ORIG")
    assert adj is not None and adj.get_attr("CTA_NAT_SEQ_OFFSET_AFTER") == 5
    assert upd.get_attr("CTA_NAT_SRC") is None  # an update never carries NAT
    assert Expectation(conn.orig, conn.orig, conn.orig, 0.0, "x").nat is None


def test_a_prime_carries_the_masters_adjustment():
    """Dump (router) -> prime records -> seed (standby): the entry keeps the adjustment."""
    from sniffover.conntrack.snapshot import seed
    from sniffover.prime.records import decode_body, encode_body

    orig, plain = (6, A4, B4, 40000, 21), (6, B4, A4, 21, 40000)
    tcp = TcpInfo(3, 7, 7, 0x03, 0x03, 0x0F, 0x0F)
    raw = encode_ct_new(orig, plain, status=0x6, timeout=300, tcp=tcp, seqadj=ADJ)
    entry = decode_entry(bytearray(raw), 0, len(raw))
    body = encode_body([entry])
    (back,) = decode_body(body, 0, len(body), 1)
    conn = seed(back, 100.0)
    assert conn.seqadj is not None and conn.seqadj.values() == ADJ
    assert desired(conn, 101.0, False).seqadj == ADJ  # and goes into the standby's kernel
