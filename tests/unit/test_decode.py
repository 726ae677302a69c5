"""The hand-written decoder, checked against dpkt's full parse and fuzzed with hypothesis."""

from __future__ import annotations

import struct
import zlib

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sniffover.capture.decode import Decoder
from sniffover.capture.headers import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    LINKTYPES,
)
from sniffover.conntrack.packet import FAMILY_IPV4, FAMILY_IPV6, Packet
from tests.helpers import A6, B6, A, B, syn_opts

MAC1, MAC2 = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"


# --- frames built with dpkt ------------------------------------------------------------


def tcp_seg(sport=40000, dport=80, seq=1000, ack=0, flags=0x02, win=64240, opts=b"", data=b""):
    seg = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=win)
    seg.opts = opts
    seg.off = (20 + len(opts)) // 4
    seg.data = data
    return seg


def ipv4(l4, p, src=A, dst=B, opts=b"", mf=0, offset=0, ttl=64):
    ip = dpkt.ip.IP(src=src, dst=dst, p=p, ttl=ttl, mf=mf, offset=offset)
    if opts:
        ip.opts = opts
        ip.hl = 5 + len(opts) // 4
    ip.data = l4
    ip.len = len(ip)
    return ip


def ipv6(l4, nxt, src=A6, dst=B6):
    body = bytes(l4)
    return bytes(dpkt.ip6.IP6(src=src, dst=dst, nxt=nxt, hlim=64, plen=len(body)))[:40] + body


def ether(payload, etype=0x0800, tags=()):
    head = MAC1 + MAC2
    for tpid, vid in tags:
        head += struct.pack("!HH", tpid, vid)
    return head + struct.pack("!H", etype) + bytes(payload)


def check_against_dpkt(pkt: Packet, ip) -> None:
    """Every field the tracker reads equals what dpkt's full parse gives."""
    assert pkt.src == ip.src and pkt.dst == ip.dst
    assert pkt.proto == ip.p
    l4 = ip.data
    if isinstance(l4, dpkt.tcp.TCP):
        assert (pkt.sport, pkt.dport, pkt.seq, pkt.ack) == (l4.sport, l4.dport, l4.seq, l4.ack)
        assert (pkt.tcp_flags, pkt.win, pkt.tcp_opts) == (
            l4.flags & 0xFF,
            l4.win,
            l4.opts,
        )  # dpkt adds NS (bit 8)
        assert pkt.l4len == len(l4.data)
    elif isinstance(l4, dpkt.udp.UDP):
        assert (pkt.sport, pkt.dport, pkt.l4len) == (l4.sport, l4.dport, len(l4.data))


@pytest.mark.parametrize(
    "flags,opts,data",
    [(0x02, syn_opts(), b""), (0x12, syn_opts(5, False), b""), (0x18, b"", b"x" * 700)],
)
def test_ipv4_tcp_matches_dpkt(flags, opts, data):
    ip = ipv4(tcp_seg(flags=flags, opts=opts, data=data, seq=0xFFFFFFF0, ack=7), 6)
    frame = ether(ip)
    pkt = Decoder(LINKTYPE_ETHERNET).decode(5.25, frame)
    assert pkt is not None
    check_against_dpkt(pkt, dpkt.ethernet.Ethernet(frame).data)
    assert (pkt.ts, pkt.family, pkt.ttl, pkt.vlan) == (5.25, FAMILY_IPV4, 64, 0)


def test_ipv4_options_and_ethernet_padding():
    # 8 bytes of IP options (NOP x3 + EOL + padding); a 60-byte minimum frame is padded
    ip = ipv4(dpkt.udp.UDP(sport=5353, dport=53, data=b"ab"), 17, opts=b"\x01\x01\x01\x00" * 2)
    frame = ether(ip) + b"\x00" * 20
    pkt = Decoder(LINKTYPE_ETHERNET).decode(0.0, frame)
    assert pkt is not None
    assert (pkt.sport, pkt.dport, pkt.l4len) == (5353, 53, 2)  # padding is not payload


def test_vlan_stacks():
    ip = ipv4(dpkt.udp.UDP(sport=1, dport=2, data=b""), 17)
    dec = Decoder(LINKTYPE_ETHERNET)
    for tags in ([(0x8100, 100)], [(0x88A8, 200), (0x8100, 0x2000 | 300)], [(0x9100, 7)]):
        pkt = dec.decode(0.0, ether(ip, tags=tags))
        assert pkt is not None and pkt.vlan == tags[-1][1] & 0xFFF
        assert (pkt.sport, pkt.dport) == (1, 2)


def test_ipv4_fragments_wait_for_the_whole_datagram():
    # nf_defrag_ipv4: nothing is tracked until the datagram is whole (tests/unit/test_defrag)
    seg = tcp_seg(flags=0x18, data=b"y" * 100)
    dec = Decoder(LINKTYPE_ETHERNET)
    assert dec.decode(0.0, ether(ipv4(seg, 6, mf=1))) is None
    later = dec.decode(0.0, ether(ipv4(b"z" * 64, 6, mf=1, offset=15)))
    assert later is None and dec.skipped["ip-fragment"] == 2 and len(dec.defrag) == 1


def test_ipv6_tcp_and_extension_chain():
    seg = tcp_seg(sport=50000, dport=443, flags=0x10, data=b"q" * 10)
    dec = Decoder(LINKTYPE_ETHERNET)
    plain = dec.decode(1.0, ether(ipv6(seg, 6), 0x86DD))
    assert plain is not None and plain.family == FAMILY_IPV6
    assert (plain.src, plain.dst, plain.sport, plain.dport, plain.l4len) == (A6, B6, 50000, 443, 10)
    # hop-by-hop (8 bytes) -> destination options (16 bytes) -> atomic fragment -> TCP
    hbh = bytes([60, 0]) + b"\x01\x04\x00\x00\x00\x00"
    dst = bytes([44, 1]) + b"\x01\x0c" + b"\x00" * 12
    frag = bytes([6, 0, 0, 0]) + b"\x00\x00\x00\x2a"
    body = hbh + dst + frag + bytes(seg)
    hdr = bytearray(bytes(ipv6(b"", 6))[:40])
    hdr[4:6] = struct.pack("!H", len(body))
    hdr[6] = 0
    pkt = dec.decode(1.0, ether(bytes(hdr) + body, 0x86DD))
    assert pkt is not None
    assert (pkt.proto, pkt.sport, pkt.dport, pkt.l4len) == (6, 50000, 443, 10)
    # the same chain with a non-zero fragment offset: queued, not a new flow
    frag_later = bytes([6, 0, 0x01, 0x01]) + b"\x00\x00\x00\x2a"
    body = hbh + dst + frag_later + b"z" * 16
    hdr[4:6] = struct.pack("!H", len(body))
    assert dec.decode(1.0, ether(bytes(hdr) + body, 0x86DD)) is None
    assert dec.skipped["ip-fragment"] == 1


def test_icmp_echo_and_error_quote():
    dec = Decoder(LINKTYPE_ETHERNET)
    echo = dpkt.icmp.ICMP(type=8, code=0, data=dpkt.icmp.ICMP.Echo(id=77, seq=1, data=b"p" * 56))
    pkt = dec.decode(0.0, ether(ipv4(echo, 1)))
    assert pkt is not None and (pkt.sport, pkt.dport, pkt.inner) == (77, 8 << 8, None)
    # its digest (pairs copies across NAT) covers sequence and data, not the identifier
    assert pkt.digest == zlib.crc32(b"\x00\x01" + b"p" * 30)
    other = dpkt.icmp.ICMP(type=8, code=0, data=dpkt.icmp.ICMP.Echo(id=9, seq=1, data=b"p" * 56))
    assert dec.decode(0.0, ether(ipv4(other, 1))).digest == pkt.digest
    # port unreachable quoting a UDP datagram from A:40000 to B:33434
    quoted = bytes(ipv4(dpkt.udp.UDP(sport=40000, dport=33434, data=b"x" * 12), 17))
    err = dpkt.icmp.ICMP(type=3, code=3, data=dpkt.icmp.ICMP.Unreach(data=quoted))
    pkt = dec.decode(0.0, ether(ipv4(err, 1, src=B, dst=A)))
    assert pkt is not None and pkt.dport == (3 << 8 | 3)
    inner = pkt.inner
    assert inner is not None
    assert (inner.proto, inner.src, inner.dst, inner.sport, inner.dport) == (17, A, B, 40000, 33434)
    # a quote too short to hold the ports gives no inner tuple (the tracker calls it INVALID)
    err = dpkt.icmp.ICMP(type=3, code=3, data=dpkt.icmp.ICMP.Unreach(data=quoted[:24]))
    pkt = dec.decode(0.0, ether(ipv4(err, 1, src=B, dst=A)))
    assert pkt is not None and pkt.inner is None


def test_icmpv6_echo_and_error_quote():
    dec = Decoder(LINKTYPE_ETHERNET)
    echo = bytes([128, 0, 0, 0]) + struct.pack("!HH", 9, 1) + b"d" * 8
    pkt = dec.decode(0.0, ether(ipv6(echo, 58), 0x86DD))
    assert pkt is not None and (pkt.proto, pkt.sport, pkt.dport) == (58, 9, 128 << 8)
    quoted = ipv6(dpkt.udp.UDP(sport=40001, dport=9, data=b"x"), 17)
    err = bytes([1, 4, 0, 0, 0, 0, 0, 0]) + quoted
    pkt = dec.decode(0.0, ether(ipv6(err, 58, src=B6, dst=A6), 0x86DD))
    assert pkt is not None and pkt.inner is not None
    assert (pkt.inner.src, pkt.inner.sport, pkt.inner.dport) == (A6, 40001, 9)


def test_other_protocols():
    dec = Decoder(LINKTYPE_ETHERNET)
    sctp = struct.pack("!HHII", 3868, 3869, 0, 0) + b"\x00" * 16
    pkt = dec.decode(0.0, ether(ipv4(sctp, 132)))
    assert pkt is not None and (pkt.proto, pkt.sport, pkt.dport) == (132, 3868, 3869)
    gre0 = struct.pack("!HH", 0, 0x0800) + b"\x45" + b"\x00" * 19
    pkt = dec.decode(0.0, ether(ipv4(gre0, 47)))
    assert pkt is not None and (pkt.proto, pkt.sport, pkt.dport) == (47, 0, 0)
    gre1 = struct.pack("!HHHH", 0x2001, 0x880B, 0, 0x1234)
    pkt = dec.decode(0.0, ether(ipv4(gre1, 47)))
    assert pkt is not None and pkt.dport == 0x1234
    esp = b"\x00\x00\x10\x00" + b"\x00" * 20
    pkt = dec.decode(0.0, ether(ipv4(esp, 50)))
    assert pkt is not None and (pkt.proto, pkt.sport, pkt.dport) == (50, 0, 0)
    udplite = struct.pack("!HHHH", 1000, 2000, 8, 0) + b"u" * 4
    pkt = dec.decode(0.0, ether(ipv4(udplite, 136)))
    assert pkt is not None and (pkt.sport, pkt.dport, pkt.l4len) == (1000, 2000, 4)


def test_link_types():
    ip = bytes(ipv4(dpkt.udp.UDP(sport=10, dport=20, data=b"abc"), 17))
    ip6 = ipv6(dpkt.udp.UDP(sport=11, dport=21, data=b"abc"), 17)
    sll = struct.pack("!HHH", 0, 1, 6) + MAC1 + b"\x00\x00" + struct.pack("!H", 0x0800)
    sll2 = struct.pack("!HHIHBB", 0x86DD, 0, 2, 1, 4, 6) + MAC1 + b"\x00\x00"
    cases = [
        (LINKTYPE_LINUX_SLL, sll + ip, 10),
        (LINKTYPE_LINUX_SLL2, sll2 + ip6, 11),
        (LINKTYPE_RAW, ip, 10),
        (LINKTYPE_RAW, ip6, 11),
        (LINKTYPE_IPV4, ip, 10),
        (LINKTYPE_NULL, struct.pack("<I", 2) + ip, 10),
        (LINKTYPE_NULL, struct.pack(">I", 24) + ip6, 11),
        (LINKTYPE_LOOP, struct.pack(">I", 30) + ip6, 11),
    ]
    for linktype, frame, sport in cases:
        pkt = Decoder(linktype).decode(0.0, frame)
        assert pkt is not None and pkt.sport == sport and pkt.l4len == 3, LINKTYPES[linktype]


def test_malformed_frames_are_counted_by_reason():
    dec = Decoder(LINKTYPE_ETHERNET)
    good = ether(ipv4(tcp_seg(), 6))
    arp = ether(b"\x00" * 28, 0x0806)
    bad_ihl = bytearray(good)
    bad_ihl[14] = 0x43
    bad_doff = bytearray(good)
    bad_doff[14 + 20 + 12] = 0x30
    for frame in (good[:10], good[:30], good[:40], arp, bytes(bad_ihl), bytes(bad_doff)):
        assert dec.decode(0.0, frame) is None
    assert dict(dec.skipped) == {
        "truncated-link": 1,
        "truncated-ip": 1,
        "truncated-l4": 1,
        "not-ip": 1,
        "bad-ip-header": 1,
        "bad-tcp-header": 1,
    }


def test_decode_batch_layout():
    frames = [ether(ipv4(tcp_seg(sport=1000 + i), 6)) for i in range(3)]
    data = b"".join(frames)
    meta = b""
    off = 0
    for i, f in enumerate(frames):
        meta += struct.pack("=IIII", 100 + i, 500000, off, len(f))
        off += len(f)
    pkts = Decoder(LINKTYPE_ETHERNET).decode_batch(data, meta)
    assert [(p.ts, p.sport) for p in pkts] == [(100.5, 1000), (101.5, 1001), (102.5, 1002)]


# --- property tests ----------------------------------------------------------------------

frames_st = st.binary(min_size=0, max_size=200)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(linktype=st.sampled_from(sorted(LINKTYPES)), frame=frames_st)
def test_random_bytes_never_raise(linktype, frame):
    dec = Decoder(linktype)
    pkt = dec.decode(0.0, frame)
    assert (pkt is None) == (sum(dec.skipped.values()) == 1)


def _valid_frames():
    return [
        ether(ipv4(tcp_seg(flags=0x12, opts=syn_opts(), data=b"d" * 30), 6)),
        ether(ipv4(dpkt.udp.UDP(sport=53, dport=4000, data=b"r" * 40), 17), tags=[(0x8100, 5)]),
        ether(ipv6(tcp_seg(flags=0x10, data=b"e" * 9), 6), 0x86DD),
        ether(
            ipv4(
                dpkt.icmp.ICMP(
                    type=3,
                    code=1,
                    data=dpkt.icmp.ICMP.Unreach(data=bytes(ipv4(tcp_seg(), 6))[:28]),
                ),
                1,
            )
        ),
    ]


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, 3),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 250),
)
def test_mutated_frames_never_raise_and_agree_with_dpkt(which, edits, cut):
    frame = bytearray(_valid_frames()[which])
    for pos, val in edits:
        if pos < len(frame):
            frame[pos] = val
    frame = frame[:cut]
    dec = Decoder(LINKTYPE_ETHERNET)
    pkt = dec.decode(0.0, bytes(frame))
    if pkt is None:
        assert sum(dec.skipped.values()) == 1
        return
    assert pkt.family in (FAMILY_IPV4, FAMILY_IPV6) and len(pkt.src) == len(pkt.dst)
    assert pkt.l4len >= 0 or pkt.proto not in (6, 17)
    # where dpkt parses the same frame cleanly as Ethernet/IPv4/TCP, the fields agree
    try:
        eth = dpkt.ethernet.Ethernet(bytes(frame))
    except (dpkt.UnpackError, struct.error):
        return
    ip = eth.data
    if (
        isinstance(ip, dpkt.ip.IP)
        and isinstance(ip.data, dpkt.tcp.TCP)
        and ip.len <= len(frame) - 14
        and ip.hl >= 5
        and not ip.offset
        and ip.data.off * 4 <= ip.len - ip.hl * 4
    ):
        check_against_dpkt(pkt, ip)


def decoded_both_ways(frame: bytes, edits, cut: int, master: frozenset = frozenset()):
    """``frame`` mutated by ``edits``, cut at ``cut`` and whole, decoded by ``decode_batch``
    and frame by frame: (batch packets, frame-by-frame packets without the undecodable)."""
    mutated = bytearray(frame)
    for pos, val in edits:
        if pos < len(mutated):
            mutated[pos] = val
    frames = [bytes(mutated[:cut]), bytes(mutated)]
    meta = struct.pack("=IIII", 7, 250000, 0, len(frames[0]))
    meta += struct.pack("=IIII", 8, 0, len(frames[0]), len(frames[1]))
    fast, one = Decoder(LINKTYPE_ETHERNET), Decoder(LINKTYPE_ETHERNET)
    fast.master = one.master = master
    batch = fast.decode_batch(b"".join(frames), meta)
    expected = [one.decode(7.25, frames[0]), one.decode(8.0, frames[1])]
    return batch, [p for p in expected if p is not None], expected[1]


def _fields(p):
    if p is None:
        return None
    inner = _fields(p.inner) if p.inner is not None else None
    return (
        p.ts,
        p.family,
        p.proto,
        p.src,
        p.dst,
        p.sport,
        p.dport,
        p.l4len,
        p.tcp_flags,
        p.seq,
        p.ack,
        p.win,
        p.tcp_opts,
        inner,
        p.vlan,
        p.ttl,
        p.hw,
        p.ipid,
        p.payload,
        p.digest,
    )


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, 3),
    edits=st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 250),
    master=st.booleans(),
)
def test_batch_fast_path_equals_frame_by_frame(which, edits, cut, master):
    """decode_batch's inline IPv4 path gives exactly what decode() gives, frame by frame."""
    frame = _valid_frames()[which]
    if which == 1:  # drop the VLAN tag so the fast path applies
        frame = frame[:12] + frame[16:]
    batch, expected, _ = decoded_both_ways(
        frame, edits, cut, frozenset({MAC1}) if master else frozenset()
    )
    assert [_fields(p) for p in batch] == [_fields(p) for p in expected]


def test_master_mac_flags():
    dec = Decoder(LINKTYPE_ETHERNET)
    dec.master = frozenset({MAC2})
    frame = ether(ipv4(tcp_seg(), 6))  # dst MAC1, src MAC2
    pkt = dec.decode(0.0, frame)
    assert pkt is not None and pkt.hw == 1  # from the master
    back = MAC2 + MAC1 + frame[12:]
    assert dec.decode(0.0, back).hw == 2  # to the master
    dec.master = frozenset()
    assert dec.decode(0.0, frame).hw == 0


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, 3),
    edits=st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 140),
)
def test_ftp_control_payload_batch_equals_frame_by_frame(which, edits, cut):
    """Port-21 segments keep their payload (IP length bound, snap length cut), in the batch
    path exactly as frame by frame; other segments carry none."""
    line = b"227 Entering Passive Mode (198,51,100,10,39,16).\r\n"
    port = b"PORT 192,0,2,10,39,17\r\n"
    frames = [
        ether(ipv4(tcp_seg(sport=40000, dport=21, flags=0x18, data=port), 6)),
        ether(ipv4(tcp_seg(sport=21, dport=40000, flags=0x18, opts=b"\x01" * 12, data=line), 6)),
        ether(ipv4(tcp_seg(sport=21, dport=40000, flags=0x18, data=b"229 (|||5000|)\r\n"), 6))
        + b"\0" * 6,  # Ethernet padding is not payload
        ether(ipv4(tcp_seg(sport=40000, dport=80, flags=0x18, data=b"GET / HTTP/1.0\r\n"), 6)),
    ]
    batch, expected, pkt = decoded_both_ways(frames[which], edits, cut)
    assert [_fields(p) for p in batch] == [_fields(p) for p in expected]
    if not edits:
        assert pkt is not None
        want = {0: port, 1: line, 2: b"229 (|||5000|)\r\n", 3: b""}
        assert pkt.payload == want[which]


def test_cooked_capture_direction():
    """SLL/SLL2 say whether the capturing host sent the frame: with ``sll_direction`` the
    outgoing copy of a packet is flagged as leaving "the master", any other as entering."""
    ip = bytes(ipv4(dpkt.udp.UDP(sport=10, dport=20, data=b"abc"), 17))
    for linktype, head in (
        (LINKTYPE_LINUX_SLL, lambda t: struct.pack("!HHH", t, 1, 6) + MAC1 + b"\0\0\x08\x00"),
        (
            LINKTYPE_LINUX_SLL2,
            lambda t: struct.pack("!HHIHBB", 0x0800, 0, 2, 1, t, 6) + MAC1 + b"\0\0",
        ),
    ):
        dec = Decoder(linktype)
        assert dec.decode(0.0, head(4) + ip).hw == 0  # off by default
        dec.sll_direction = True
        assert dec.decode(0.0, head(4) + ip).hw == 1  # outgoing: left the router
        assert dec.decode(0.0, head(0) + ip).hw == 2  # to us: entered it


def test_ipv6_pairing_fields_flow_label_and_payload_digest():
    """What pairs an IPv6 packet's copies across NAT: the flow label (in ``ipid``) and, for
    UDP (both families) and ICMPv6 echo, a digest of the first payload bytes; never the
    translated parts (addresses, ports, the echo identifier), never bytes past the first 32."""
    dec = Decoder(LINKTYPE_ETHERNET)

    def v6(l4: bytes, nxt: int, label: int, src: bytes = A6) -> Packet:
        hdr = bytearray(ipv6(l4, nxt, src=src)[:40])
        hdr[1] = (hdr[1] & 0xF0) | label >> 16  # the traffic class's low nibble stays
        hdr[2:4] = (label & 0xFFFF).to_bytes(2, "big")
        pkt = dec.decode(0.0, ether(bytes(hdr) + l4, 0x86DD))
        assert pkt is not None
        return pkt

    def dg(data: bytes, sport: int = 40001, src: bytes = A6, label: int = 0xABCDE) -> Packet:
        return v6(bytes(dpkt.udp.UDP(sport=sport, dport=53, data=data, ulen=8 + len(data))), 17,
                  label, src)  # fmt: skip

    v4 = dec.decode(0.0, ether(ipv4(dpkt.udp.UDP(sport=1, dport=53, data=b"q1" + b"z" * 40), 17)))
    assert v4 is not None and v4.digest == zlib.crc32(b"q1" + b"z" * 30)  # IPv4 too
    a = dg(b"q1" + b"z" * 40)
    assert a.ipid == 0xABCDE and a.digest == zlib.crc32(b"q1" + b"z" * 30)
    assert dg(b"q1" + b"z" * 40, sport=50000, src=bytes(16)).digest == a.digest  # NATed
    assert dg(b"q1" + b"z" * 30 + b"y" * 10).digest == a.digest  # only the first 32 bytes
    assert dg(b"q2" + b"z" * 40).digest != a.digest
    echo = bytes([128, 0, 0, 0]) + struct.pack("!HH", 9, 7) + b"d" * 8
    e = v6(echo, 58, 5)
    renumbered = v6(bytes([128, 0, 0, 0]) + struct.pack("!HH", 4242, 7) + b"d" * 8, 58, 5)
    assert e.ipid == 5 and e.digest == renumbered.digest != 0  # the identifier is NAT's
    assert v6(bytes([128, 0, 0, 0]) + struct.pack("!HH", 9, 8) + b"d" * 8, 58, 5).digest != e.digest
    assert v6(bytes(tcp_seg(flags=0x10, data=b"e" * 9)), 6, 1).digest == 0  # TCP: seq/ack suffice


@pytest.mark.parametrize("digests", [True, False])
def test_digests_can_be_off_and_both_paths_agree(digests):
    """With ``digests`` off (nothing pairs copies) no packet carries one, on the fast path
    and the frame-by-frame path alike; on, both compute the same."""
    udp4 = ether(ipv4(dpkt.udp.UDP(sport=1, dport=53, data=b"abc" * 20), 17))
    udp6 = ether(ipv6(dpkt.udp.UDP(sport=1, dport=53, data=b"abc" * 20), 17), 0x86DD)
    frames = [udp4, udp6]
    meta = b"".join(
        struct.pack("=IIII", 1, 0, sum(map(len, frames[:i])), len(f)) for i, f in enumerate(frames)
    )
    fast, one = Decoder(LINKTYPE_ETHERNET), Decoder(LINKTYPE_ETHERNET)
    fast.digests = one.digests = digests
    batch = [p.digest for p in fast.decode_batch(b"".join(frames), meta)]
    assert batch == [one.decode(1.0, f).digest for f in frames]
    assert (batch == [0, 0]) != digests
