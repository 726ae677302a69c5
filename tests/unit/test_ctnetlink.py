"""Hand-packed ctnetlink messages, checked against pyroute2's decoder and each other."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg

from sniffover.kernel.ctnetlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    TcpInfo,
    encode_ct_delete,
    encode_ct_new,
    encode_ct_new_fast,
)

A4, B4 = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 1])
A6 = bytes.fromhex("20010db8000100000000000000000001")
B6 = bytes.fromhex("20010db8000200000000000000000001")


def decode(raw: bytes) -> nfct_msg:
    msg = nfct_msg(raw)
    msg.decode()
    return msg


def test_pyroute2_reads_what_we_send():
    orig = (6, A4, B4, 40000, 80)
    reply = (6, B4, A4, 80, 40000)
    tcp = TcpInfo(3, 7, 9, 0x03, 0x0B, 0x0F, 0x0F)
    raw = encode_ct_new(orig, reply, status=0x6, timeout=300, tcp=tcp, mark=0x2A, zone=5, seq=77)
    msg = decode(raw)
    assert msg["header"]["sequence_number"] == 77
    assert msg["header"]["flags"] & (NLM_F_ACK | NLM_F_CREATE) == NLM_F_ACK | NLM_F_CREATE
    assert not msg["header"]["flags"] & NLM_F_EXCL
    t = msg.get_attr("CTA_TUPLE_ORIG")
    ip, proto = t.get_attr("CTA_TUPLE_IP"), t.get_attr("CTA_TUPLE_PROTO")
    assert ip.get_attr("CTA_IP_V4_SRC") == "192.0.2.1"
    assert ip.get_attr("CTA_IP_V4_DST") == "198.51.100.1"
    assert proto.get_attr("CTA_PROTO_NUM") == 6
    assert proto.get_attr("CTA_PROTO_SRC_PORT") == 40000
    assert proto.get_attr("CTA_PROTO_DST_PORT") == 80
    assert msg.get_attr("CTA_STATUS") == 0x6 | 0x8  # CONFIRMED always added
    assert msg.get_attr("CTA_TIMEOUT") == 300
    assert msg.get_attr("CTA_MARK") == 0x2A
    assert msg.get_attr("CTA_ZONE") == 5
    info = msg.get_attr("CTA_PROTOINFO").get_attr("CTA_PROTOINFO_TCP")
    assert info.get_attr("CTA_PROTOINFO_TCP_STATE") == 3
    assert info.get_attr("CTA_PROTOINFO_TCP_WSCALE_ORIGINAL") == 7
    assert info.get_attr("CTA_PROTOINFO_TCP_WSCALE_REPLY") == 9


def test_icmp_and_delete():
    orig = (1, A4, B4, 77, 8 << 8)
    msg = decode(encode_ct_new(orig, (1, B4, A4, 77, 0), status=0, timeout=30, seq=3))
    proto = msg.get_attr("CTA_TUPLE_ORIG").get_attr("CTA_TUPLE_PROTO")
    assert proto.get_attr("CTA_PROTO_ICMP_ID") == 77
    assert proto.get_attr("CTA_PROTO_ICMP_TYPE") == 8
    msg = decode(encode_ct_delete((17, A6, B6, 5353, 53), seq=4, ack=False))
    assert not msg["header"]["flags"] & NLM_F_ACK
    ip = msg.get_attr("CTA_TUPLE_ORIG").get_attr("CTA_TUPLE_IP")
    assert ip.get_attr("CTA_IP_V6_SRC") == "2001:db8:1::1"


ports = st.integers(0, 65535)


@settings(max_examples=300)
@given(
    v6=st.booleans(),
    proto=st.sampled_from([6, 17, 132, 136, 47, 50]),
    sport=ports,
    dport=ports,
    status=st.integers(0, 0xFFFF),
    timeout=st.integers(-5, 1 << 33),
    tcp=st.none() | st.tuples(*(st.integers(0, 255) for _ in range(7))),
    mark=st.none() | st.integers(0, 0xFFFFFFFF),
    zone=st.integers(0, 65535),
    seq=st.integers(0, 0xFFFFFFFF),
    create=st.booleans(),
    exclusive=st.booleans(),
    ack=st.booleans(),
)
def test_fast_encoder_is_byte_identical(
    v6, proto, sport, dport, status, timeout, tcp, mark, zone, seq, create, exclusive, ack
):
    a, b = (A6, B6) if v6 else (A4, B4)
    orig, reply = (proto, a, b, sport, dport), (proto, b, a, dport, sport)
    info = TcpInfo(*tcp) if tcp is not None else None
    slow = encode_ct_new(
        orig,
        reply,
        status=status,
        timeout=timeout,
        tcp=info,
        mark=mark,
        zone=zone,
        seq=seq,
        create=create,
        exclusive=exclusive,
        ack=ack,
    )
    fast = encode_ct_new_fast(
        orig, reply, status, timeout, info, mark, zone, seq, create, exclusive, ack
    )
    assert fast == slow
    assert struct.unpack_from("=I", fast)[0] == len(fast)


def test_labels_go_with_a_create_only():
    orig, reply = (6, A4, B4, 40000, 80), (6, B4, A4, 80, 40000)
    labels = bytes([0x08]) + bytes(15)
    msg = decode(encode_ct_new(orig, reply, status=0, timeout=9, labels=labels, seq=1))
    assert msg.get_attr("CTA_LABELS") is not None
    upd = decode(encode_ct_new(orig, reply, status=0, timeout=9, labels=labels, create=False))
    assert upd.get_attr("CTA_LABELS") is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.sampled_from([6, 17, 132, 136]),
            ports,
            ports,
            st.integers(0, 0xFFFF),
            st.integers(1, 0xFFFFFFFF),
            st.tuples(*(st.integers(0, 255) for _ in range(7))),
            st.none() | st.integers(0, 0xFFFFFFFF),
            st.integers(0, 65535),
            st.sampled_from([None, "ftp", "tftp"]),
            st.sampled_from([b"", bytes([0x08]) + bytes(15)]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_dump_decoder_reads_what_we_encode(rows):
    """The dump decoder (the generic path and the layouts it compiles on the way) against
    the reference encoder: a dump reply is CT_NEW messages of the same attribute tree."""
    from sniffover.kernel.ctnetlink import NLMSG_DONE, NLMSG_HDR
    from sniffover.kernel.dump import _dump_buffer

    seq = 9
    blob, want = b"", []
    for v6, proto, sport, dport, status, timeout, tcp, mark, zone, helper, labels in rows:
        a, b = (A6, B6) if v6 else (A4, B4)
        orig, reply = (proto, a, b, sport, dport), (proto, b, a, dport, sport)
        info = TcpInfo(*tcp) if proto == 6 else None
        blob += encode_ct_new(
            orig,
            reply,
            status=status,
            timeout=timeout,
            tcp=info,
            mark=mark,
            zone=zone,
            seq=seq,
            helper=helper,
            labels=labels,
        )
        tcp_fields = (tcp[0], tcp[1], tcp[2], tcp[3], tcp[4]) if info else (None,) * 5
        want.append(
            (orig, reply, status | 0x8, timeout, *tcp_fields, mark or 0, zone, labels, helper or "")
        )
    blob += NLMSG_HDR.pack(20, NLMSG_DONE, 2, seq, 0) + bytes(4)
    buf = bytearray(blob)
    layouts: dict = {}
    out, done = _dump_buffer(buf, len(buf), seq, layouts)
    assert done
    got = [
        (e.orig, e.reply, e.status, e.timeout, e.tcp_state, e.wscale_orig, e.wscale_reply)
        + (e.flags_orig, e.flags_reply, e.mark, e.zone, e.labels, e.helper)
        for e in out
    ]
    assert got == want


def test_bench_event_decoder_reads_what_we_encode():
    """The benchmarks' general decoder (``bench/ctdecode.py``, NEW events) on our messages."""
    from sniffover.bench.ctdecode import decode_ct_message

    orig, reply = (6, A6, B6, 40000, 80), (6, B6, A6, 80, 40000)
    tcp = TcpInfo(3, 7, 9, 0x03, 0x0B, 0x0F, 0x0F)
    raw = encode_ct_new(orig, reply, status=0x6, timeout=300, tcp=tcp, mark=0x2A, zone=5)
    e = decode_ct_message(raw, 16, len(raw))
    assert (e.orig, e.reply, e.status, e.timeout, e.mark, e.zone, e.tcp_state) == (
        orig,
        reply,
        0xE,
        300,
        0x2A,
        5,
        3,
    )
    icmp = (1, A4, B4, 77, 8 << 8)
    raw = encode_ct_new(icmp, (1, B4, A4, 77, 0), status=0, timeout=30)
    e = decode_ct_message(raw, 16, len(raw))
    assert (e.orig, e.reply, e.tcp_state) == (icmp, (1, B4, A4, 77, 0), None)
