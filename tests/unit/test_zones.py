"""Zones (issue 15 point 7): --zone-map rules, the zone in the tracker's key (directional
zones as ``nf_ct_zone_id``), the decoder's VLAN / interface mapping, the listing's
``zone-orig=``/``zone-reply=``, and the ctnetlink layout checked against pyroute2."""

from __future__ import annotations

import struct

import pytest
from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg

from sniffover.capture.decode import LINKTYPE_ETHERNET, Decoder
from sniffover.cli import main
from sniffover.conntrack.listing import format_entry, parse_line
from sniffover.conntrack.table import ConntrackTable
from sniffover.conntrack.zones import ZoneMap, ZoneMapError, parse_rule
from sniffover.kernel.ctnetlink import encode_ct_delete, encode_ct_new, encode_ct_new_fast
from tests.helpers import ACK, SYN, A, B, syn_opts, tcp, udp
from tests.unit.test_config_validation import usage_error


class zmsg(nfct_msg):
    """pyroute2's decoder, taught CTA_TUPLE_ZONE (3, be16) inside a tuple as in
    include/uapi/linux/netfilter/nfnetlink_conntrack.h (pyroute2 leaves it out). pyroute2
    compiles a class's attribute table once and a subclass inherits the compiled one:
    both classes start uncompiled."""

    _nlmsg_base__compiled_nla = False
    _nlmsg_base__t_nla_map = None

    class cta_tuple(nfct_msg.cta_tuple):
        _nlmsg_base__compiled_nla = False
        _nlmsg_base__t_nla_map = None
        nla_map = (*nfct_msg.cta_tuple.nla_map, ("CTA_TUPLE_ZONE", "be16"))


def decode(raw: bytes) -> zmsg:
    m = zmsg(raw)
    m.decode()
    return m


def zoned(pkt, zone, zdir=3):
    pkt.zone, pkt.zone_dir = zone, zdir
    return pkt


# --- rules -------------------------------------------------------------------------


def test_rules_parse():
    m = ZoneMap.parse(["vlan:100=1", "iface:outside0=2/orig", "vlan:0200=3/reply"])
    assert m.vlans == {100: (1, 3), 200: (3, 2)}
    assert m.ifaces == {"outside0": (2, 1)}
    assert m.specs() == ["vlan:100=1", "iface:outside0=2/orig", "vlan:200=3/reply"]
    got = m.for_capture("outside0")
    assert (got.default, got.vlans) == ((2, 1), m.vlans)
    assert m.for_capture("eth9").default == (0, 3)
    assert ZoneMap.parse(["iface:eth0=1"]).for_capture("eth1") is None  # nothing to do


@pytest.mark.parametrize(
    "spec,needle",
    [
        ("vlan100=1", "expected vlan:ID=ZONE"),
        ("vlan:100", "expected vlan:ID=ZONE"),
        ("mac:x=1", "expected vlan:ID=ZONE"),
        ("vlan:4095=1", "VLAN id"),
        ("vlan:0=1", "VLAN id"),
        ("vlan:x=1", "VLAN id"),
        ("vlan:1=65536", "zone '65536'"),
        ("vlan:1=-1", "zone '-1'"),
        ("iface:eth0=1/sideways", "direction 'sideways'"),
        ("iface:averyveryverylongname=1", "interface name"),
    ],
)
def test_bad_rules_say_why(spec, needle):
    with pytest.raises(ZoneMapError, match=needle):
        parse_rule(spec)


def test_one_vlan_mapped_twice_is_refused():
    with pytest.raises(ZoneMapError, match="mapped twice"):
        ZoneMap.parse(["vlan:100=1", "vlan:100=2"])


@pytest.mark.parametrize("bad", ["vlan:5000=1", "iface:eth0=1/up", "nonsense"])
def test_bad_zone_map_on_the_command_line_is_one_line_exit_2(capsys, bad):
    err = usage_error(capsys, ["--iface", "lo", "--zone-map", bad])
    assert "--zone-map" in err
    err = usage_error(capsys, ["--iface", "lo", "--zone-map", "vlan:7=1", "--zone-map", "vlan:7=2"])
    assert "--zone-map" in err and "mapped twice" in err


def test_bad_zone_map_in_replay_is_one_line_exit_1(capsys, tmp_path):
    code = main(["replay", "--zone-map", "vlan:1=x", str(tmp_path / "none.pcap")])
    out, err = capsys.readouterr()
    assert code == 1 and not out and err.count("\n") == 1 and "zone '" in err


def test_zone_map_from_the_config_file(tmp_path):
    from sniffover.agent.config import agent_config, merged_options
    from sniffover.cli import build_parser
    from sniffover.conntrack.timeouts import Timeouts

    f = tmp_path / "a.toml"
    f.write_text('iface = ["eth0"]\nzone_map = ["vlan:100=1", "iface:eth0=2/reply"]\n')
    args = build_parser().parse_args(["--config", str(f), "--zone-map", "vlan:200=3"])
    cfg = agent_config(merged_options(args), Timeouts())
    assert cfg.zone_map == ["vlan:200=3"]  # the command line overrides the file's list
    args = build_parser().parse_args(["--config", str(f)])
    assert agent_config(merged_options(args), Timeouts()).zone_map == [
        "vlan:100=1",
        "iface:eth0=2/reply",
    ]


# --- the tracker -------------------------------------------------------------------


def two_vrfs(table, zones=(1, 2)):
    """The same TCP handshake (same addresses and ports) in each zone."""
    for i, z in enumerate(zones):
        t = i * 0.1
        table.process(zoned(tcp(t, SYN, 1000, opts=syn_opts()), z))
        table.process(
            zoned(
                tcp(
                    t + 0.01,
                    SYN | ACK,
                    5000,
                    1001,
                    src=B,
                    dst=A,
                    sport=80,
                    dport=40000,
                    opts=syn_opts(),
                ),
                z,
            )  # fmt: skip
        )
        table.process(zoned(tcp(t + 0.02, ACK, 1001, 5001), z))


def test_same_tuples_in_two_zones_are_two_entries():
    table = ConntrackTable()
    two_vrfs(table)
    got = sorted((c.zone, c.tcp.state, c.orig) for c in table.entries(1.0))
    assert [(z, s) for z, s, _ in got] == [(1, 3), (2, 3)]
    assert got[0][2] == got[1][2]
    assert table.counters["insert-clash"] == 0
    assert table.get(got[0][2], 2)[0].zone == 2
    assert table.get(got[0][2]) is None  # nothing in the default zone


def test_control_without_zones_the_flows_are_one_entry():
    table = ConntrackTable()
    two_vrfs(table, zones=(0, 0))
    assert len(table.entries(1.0)) == 1


def test_directional_zone_orig_replies_come_from_the_default_zone():
    """``ct original zone set 1`` on the inside: the original tuple is in zone 1, the reply
    tuple in zone 0, so replies arriving outside (no zone) find the entry."""
    table = ConntrackTable()
    table.process(zoned(udp(0.0), 1, 1))
    table.process(udp(0.1, src=B, dst=A, sport=53, dport=40000))  # reply, default zone
    (conn,) = table.entries(1.0)
    assert (conn.zone, conn.zone_dir, conn.zone_id(0), conn.zone_id(1)) == (1, 1, 1, 0)
    assert conn.status & 2  # SEEN_REPLY
    # the same original tuple in the default zone is another entry (its reply tuple clashes
    # with this one's, which lives in zone 0: the kernel drops it, insert-clash)
    table.process(udp(0.2))
    assert len(table.entries(1.0)) == 1 and table.counters["insert-clash"] == 1
    # a reply carrying zone 1 for both directions looks in zone 1 only: not this entry
    assert table.get((17, B, A, 53, 40000), 1, 3) is None
    assert table.get((17, B, A, 53, 40000), 1, 1) == (conn, 1)
    line = format_entry(conn, 1.0)
    assert "dport=53 zone-orig=1 src=" in line and " zone=" not in line
    e = parse_line(line)
    assert (e.zone, e.zone_dir) == (1, 1)


def test_directional_zone_reply():
    table = ConntrackTable()
    table.process(zoned(udp(0.0), 4, 2))  # original tuple in zone 0, reply in zone 4
    (conn,) = table.entries(1.0)
    assert (conn.zone_id(0), conn.zone_id(1)) == (0, 4)
    table.process(zoned(udp(0.1, src=B, dst=A, sport=53, dport=40000), 4, 2))
    assert conn.status & 2 and len(table.entries(1.0)) == 1
    line = format_entry(conn, 1.0)
    assert "[UNREPLIED]" not in line and "dport=40000 zone-reply=4 mark=0" in line
    assert parse_line(line).zone_dir == 2


def test_icmp_error_is_related_in_its_zone_only():
    from sniffover.conntrack.verdict import RELATED
    from tests.helpers import icmp

    table = ConntrackTable()
    table.process(zoned(udp(0.0), 3))
    quoted = udp(0.0)
    err = icmp(0.1, 3, 3, 0, src=B, dst=A, inner=quoted)
    assert table.process(err) != RELATED  # from another zone: not about this entry
    assert table.process(zoned(icmp(0.2, 3, 3, 0, src=B, dst=A, inner=quoted), 3)) == RELATED


def test_expiry_and_destroy_work_with_zoned_keys():
    table = ConntrackTable()
    table.process(zoned(udp(0.0), 1, 1))
    table.process(zoned(udp(0.0), 2))
    assert len(table) == 2 and len(list(table.conns())) == 2
    assert table.expire(1000.0) == 2
    assert len(table) == 0 and not table._map


# --- decoding ----------------------------------------------------------------------


def frame(vlan: int | None) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 17, 0, A, B)
    udp_h = struct.pack("!HHHH", 40000, 53, 8, 0)
    eth = b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02"
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    return eth + tag + b"\x08\x00" + ip + udp_h


def test_decoder_zone_from_vlan_then_interface():
    zones = ZoneMap.parse(["vlan:100=1", "vlan:200=2/orig", "iface:trunk0=9"])
    d = Decoder(LINKTYPE_ETHERNET)
    d.zones = zones.for_capture("trunk0")
    got = [d.decode(0.0, frame(v)) for v in (100, 200, 300, None)]
    assert [(p.vlan, p.zone, p.zone_dir) for p in got] == [
        (100, 1, 3),
        (200, 2, 1),
        (300, 9, 3),
        (0, 9, 3),
    ]
    other = Decoder(LINKTYPE_ETHERNET)
    other.zones = zones.for_capture("eth1")
    assert (other.decode(0.0, frame(None)).zone, other.decode(0.0, frame(100)).zone) == (0, 1)
    # the batch path (pcapy's next_batch) gives the same zones
    frames = [frame(100), frame(None)]
    data, meta, off = b"", b"", 0
    for f in frames:
        meta += struct.pack("=IIII", 1, 0, off, len(f))
        data += f
        off += len(f)
    assert [p.zone for p in d.decode_batch(data, meta)] == [1, 9]


# --- ctnetlink ---------------------------------------------------------------------

A4, B4 = A, B


def test_zone_attributes_against_pyroute2():
    o, r = (6, A4, B4, 40000, 80), (6, B4, A4, 80, 40000)
    m = decode(encode_ct_new(o, r, status=6, timeout=30, zone=7))
    assert m.get_attr("CTA_ZONE") == 7
    assert m.get_attr("CTA_TUPLE_ORIG").get_attr("CTA_TUPLE_ZONE") is None
    m = decode(encode_ct_new(o, r, status=6, timeout=30, zone=7, zone_dir=1))
    assert m.get_attr("CTA_ZONE") is None  # never both: the kernel says EINVAL
    assert m.get_attr("CTA_TUPLE_ORIG").get_attr("CTA_TUPLE_ZONE") == 7
    assert m.get_attr("CTA_TUPLE_REPLY").get_attr("CTA_TUPLE_ZONE") is None
    proto = m.get_attr("CTA_TUPLE_ORIG").get_attr("CTA_TUPLE_PROTO")
    assert proto.get_attr("CTA_PROTO_DST_PORT") == 80  # the nest around it still reads
    m = decode(encode_ct_new(o, r, status=6, timeout=30, zone=7, zone_dir=2))
    assert m.get_attr("CTA_ZONE") is None
    assert m.get_attr("CTA_TUPLE_ORIG").get_attr("CTA_TUPLE_ZONE") is None
    assert m.get_attr("CTA_TUPLE_REPLY").get_attr("CTA_TUPLE_ZONE") == 7
    assert (
        m.get_attr("CTA_TUPLE_REPLY").get_attr("CTA_TUPLE_IP").get_attr("CTA_IP_V4_SRC")
        == "198.51.100.1"
    )
    # the fast path (zone for both tuples) stays byte-identical to the reference
    fast = encode_ct_new_fast(o, r, 6, 30, None, None, 7, 1, True, True)
    assert fast == encode_ct_new(o, r, status=6, timeout=30, zone=7, seq=1, exclusive=True)
    assert decode(encode_ct_delete(o, zone=7)).get_attr("CTA_ZONE") == 7


def test_installer_sends_each_entrys_zone():
    from sniffover.kernel.installer import Installer

    class Sock:
        def __init__(self):
            self.sent: list[bytes] = []
            self.seq = 0

        def next_seq(self):
            self.seq += 1
            return self.seq

        def send_batch(self, msgs):
            self.sent += msgs
            return {}

    sock = Sock()
    inst = Installer(sock)
    table = ConntrackTable(listener=inst.on_event)
    table.process(zoned(udp(0.0), 1, 1))
    table.process(udp(0.01, src=B, dst=A, sport=53, dport=40000))
    table.process(zoned(udp(0.02), 2))
    table.process(zoned(udp(0.03, src=B, dst=A, sport=53, dport=40000), 2))
    inst.flush(0.1)
    msgs = [decode(m) for m in sock.sent]
    got = {
        (m.get_attr("CTA_ZONE"), m.get_attr("CTA_TUPLE_ORIG").get_attr("CTA_TUPLE_ZONE"))
        for m in msgs
    }
    assert got == {(2, None), (None, 1)}
    assert len(inst.shadow) == 2  # one per zone, though both have the same original tuple


def test_two_segments_pair_copies_in_their_zones():
    """``ct original zone set`` per inside segment, SNAT per zone: the ingress copies carry
    the zone, the egress copies (another segment, zone 0) rebind each entry to its own
    translation, and the untagged replies find the reply tuples in zone 0."""
    from sniffover.conntrack.confirm import ForwardingConfirmer
    from sniffover.conntrack.packet import HW_FROM_MASTER, HW_TO_MASTER

    table = ConntrackTable()
    f = ForwardingConfirmer(table, two_segments=True, hold_teardowns=False)
    nat = {1: bytes([198, 51, 100, 201]), 2: bytes([198, 51, 100, 202])}
    for z in (1, 2):
        # same tuple, own ISN: copies pair on what NAT leaves alone, which the zones do
        # not share (had they, the key would be ambiguous and pair nothing: the egress
        # copy cannot tell which zone it came from)
        t, isn = z * 0.1, 1000 * z
        syn = zoned(tcp(t, SYN, isn, opts=syn_opts()), z, 1)
        syn.hw, syn.ipid = HW_TO_MASTER, 7
        f.feed(syn)
        out = tcp(t + 0.001, SYN, isn, src=nat[z], opts=syn_opts())
        out.hw, out.ipid = HW_FROM_MASTER, 7
        f.feed(out)
        rep = tcp(t + 0.01, SYN | ACK, 5000, isn + 1, src=B, dst=nat[z], sport=80, dport=40000,
                  opts=syn_opts())  # fmt: skip
        rep.hw, rep.ipid = HW_TO_MASTER, 9
        f.feed(rep)
    got = sorted((c.zone, c.zone_dir, c.reply[2], bool(c.status & 2)) for c in table.conns())
    assert got == [(1, 1, nat[1], True), (2, 1, nat[2], True)], table.counters


@pytest.mark.parametrize(
    "text",
    ['zone_map = ["vlan:x=1"]', "zone_map = [1]", 'zone_map = ["vlan:1=1", "vlan:1=2"]'],
)
def test_bad_zone_map_in_the_config_file_is_one_line_exit_2(capsys, tmp_path, text):
    f = tmp_path / "a.toml"
    f.write_text(f'iface = ["lo"]\n{text}\n')
    err = usage_error(capsys, ["--config", str(f)])
    assert "zone" in err
