"""The installer's decisions and messages for primed and translated entries (no root):
what the master had is what goes into the standby's kernel."""

from __future__ import annotations

import errno

import pytest
from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg

from sniffover.conntrack.entry import IPS_ASSURED, IPS_CONFIRMED, IPS_SEEN_REPLY
from sniffover.conntrack.snapshot import SnapshotEntry, seed
from sniffover.conntrack.states import TCP_ESTABLISHED
from sniffover.kernel.installer import Installer, nat_bindings
from tests.helpers import FakeSender

C, S = bytes([192, 0, 2, 10]), bytes([198, 51, 100, 10])
VIP = bytes([198, 51, 100, 1])
C6 = bytes.fromhex("20010db8000100000000000000000010")
S6 = bytes.fromhex("20010db8000200000000000000000010")
VIP6 = bytes.fromhex("20010db8000200000000000000000001")
NOW = 1_700_000_000.0


def planned_message(entry: SnapshotEntry) -> nfct_msg:
    inst = Installer(sock=None)  # type: ignore[arg-type]  # only planning and encoding
    conn = seed(entry, NOW)
    (op,) = inst._plan(conn.orig, conn, NOW)
    msg = nfct_msg(inst._encode(op, 7))
    msg.decode()
    return msg


def test_primed_snat_entry_goes_in_with_its_binding_labels_and_mark():
    entry = SnapshotEntry(
        orig=(6, C, S, 40000, 8000),
        reply=(6, S, VIP, 8000, 40000),  # source NAT to the VIP, port kept
        status=IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED,
        timeout=431999,
        tcp_state=TCP_ESTABLISHED,
        wscale_orig=7,
        wscale_reply=7,
        flags_orig=3,
        flags_reply=3,
        mark=0x2A,
        labels=bytes([0x08]) + bytes(15),
    )
    msg = planned_message(entry)
    reply_ip = msg.get_attr("CTA_TUPLE_REPLY").get_attr("CTA_TUPLE_IP")
    assert reply_ip.get_attr("CTA_IP_V4_DST") == "192.0.2.10"  # the plain inverse ...
    nat = msg.get_attr("CTA_NAT_SRC")
    assert nat is not None  # ... plus the binding: the kernel derives the translated reply
    assert nat.get_attr("CTA_NAT_V4_MINIP") == "198.51.100.1"
    assert msg.get_attr("CTA_NAT_DST") is None
    assert msg.get_attr("CTA_MARK") == 0x2A
    assert msg.get_attr("CTA_LABELS") is not None
    assert msg.get_attr("CTA_TIMEOUT") == 431999
    info = msg.get_attr("CTA_PROTOINFO").get_attr("CTA_PROTOINFO_TCP")
    assert info.get_attr("CTA_PROTOINFO_TCP_STATE") == TCP_ESTABLISHED
    assert info.get_attr("CTA_PROTOINFO_TCP_WSCALE_ORIGINAL") == 7


def test_primed_dnat_entry():
    entry = SnapshotEntry(
        orig=(17, S, VIP, 5353, 9090),
        reply=(17, C, S, 9000, 5353),  # port forward VIP:9090 -> C:9000
        status=IPS_CONFIRMED | IPS_SEEN_REPLY,
        timeout=25,
    )
    msg = planned_message(entry)
    assert msg.get_attr("CTA_NAT_SRC") is None
    nat = msg.get_attr("CTA_NAT_DST")
    assert nat is not None and nat.get_attr("CTA_NAT_V4_MINIP") == "192.0.2.10"


@pytest.mark.parametrize("proto,rtype", [(1, 0), (58, 129 << 8)])
def test_icmp_echo_through_snat_keeps_its_id(proto: int, rtype: int) -> None:
    """The echo id is ICMP's NAT "port": the binding must name it (issue 15 point 1: a
    range 0-0 made the kernel install reply id 0)."""
    c, s, vip = (C, S, VIP) if proto == 1 else (C6, S6, VIP6)
    req = 8 << 8 if proto == 1 else 128 << 8
    entry = SnapshotEntry(
        orig=(proto, c, s, 35078, req),
        reply=(proto, s, vip, 35078, rtype),
        status=IPS_CONFIRMED | IPS_SEEN_REPLY,
        timeout=29,
    )
    msg = planned_message(entry)
    assert msg.get_attr("CTA_NAT_DST") is None  # the echo still goes to the server
    nat = msg.get_attr("CTA_NAT_SRC")
    assert nat is not None
    ports = nat.get_attr("CTA_NAT_PROTO")
    assert ports.get_attr("CTA_PROTONAT_PORT_MIN") == 35078
    assert ports.get_attr("CTA_PROTONAT_PORT_MAX") == 35078


def test_icmp_nat_bindings_by_stage() -> None:
    echo = (1, C, S, 7, 8 << 8)
    assert nat_bindings(echo, (1, S, VIP, 7, 0)) == ((VIP, 7), None)  # SNAT, id kept
    assert nat_bindings(echo, (1, S, VIP, 9, 0)) == ((VIP, 9), None)  # SNAT, id rewritten
    assert nat_bindings(echo, (1, VIP, C, 7, 0)) == (None, (VIP, 7))  # DNAT
    assert nat_bindings(echo, (1, S, C, 9, 0)) == ((C, 9), None)  # id rewrite alone
    # ports: unchanged rules (SNAT names the reply's destination port)
    assert nat_bindings((17, C, S, 4000, 53), (17, S, VIP, 53, 4001)) == ((VIP, 4001), None)


# --- a prime prepared during the pull, committed after it ------------------------------


def primed(n: int) -> list:  # type: ignore[type-arg]
    out = []
    for i in range(n):
        src = bytes([192, 0, 2, 1 + i // 250])
        entry = SnapshotEntry(
            (6, src, S, 10000 + i, 443),
            (6, S, src, 443, 10000 + i),
            IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED,
            3600,
            TCP_ESTABLISHED,
            7,
            7,
            3,
            3,
        )
        out.append(seed(entry, NOW))
    return out


def test_prepare_sends_nothing_and_commit_equals_flush():
    conns = primed(300)
    a, b = FakeSender(), FakeSender()
    flushed, committed = Installer(a), Installer(b)
    for c in conns:
        flushed.on_event("new", c)
    flushed.flush(NOW)
    batches = committed.prepare(conns, NOW)
    assert b.sent == [] and committed.shadow == {}  # nothing sent or recorded yet
    assert committed.commit(batches, NOW) == 300
    assert a.sent == b.sent and len(a.sent) == 300
    assert committed.counters == flushed.counters and committed.counters["created"] == 300
    assert committed.shadow.keys() == flushed.shadow.keys()


def test_commit_over_two_senders_accounts_for_both():
    """Every other batch goes through the helper (its own seqs: another socket); its
    refusals are handled like the main socket's (EEXIST: retried as an update), and a
    batch it could not send (ENOBUFS) is requeued for the next flush."""
    conns = primed(64 * 20)
    main, helper = FakeSender(), FakeSender(start=10**6, errors={5: errno.EEXIST}, enobufs=3)
    inst = Installer(main)
    batches = inst.prepare(conns, NOW)
    assert len(batches) == 20
    inst.commit(batches, NOW, helper)
    assert main.batches >= 10 and helper.batches == 10
    assert inst.counters["created"] == 64 * 20 - 64 - 1  # all but the requeued batch, EEXIST
    assert inst.counters["exists-adopted"] == 1 and inst.counters["updated"] == 1
    assert inst.counters["enobufs"] == 1 and len(inst.dirty) == 64
    assert len(inst.shadow) == 64 * 19
