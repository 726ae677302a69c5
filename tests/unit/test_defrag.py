"""Reassembly before tracking (capture.defrag, as nf_defrag_ipv4/ipv6): whole datagrams
with their full length, nothing for unfinished ones, and bounds against abuse (overlaps,
endless fragments, floods of queues, timeouts). Golden: pcaps/tcp_fragmented."""

from __future__ import annotations

import random
import struct

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sniffover.capture.decode import Decoder
from sniffover.capture.defrag import FRAG_OVERHEAD, Reassembler
from sniffover.capture.headers import LINKTYPE_ETHERNET, LINKTYPE_RAW
from sniffover.conntrack.table import ConntrackTable
from sniffover.conntrack.verdict import ACCEPT
from tests.helpers import A6, B6, A, B

MAC_C, MAC_R, MAC_S = (bytes([2, 0, 0, 0, 0, i]) for i in (1, 2, 3))


def ip4_packet(l4: bytes, proto: int = 6, ipid: int = 7, ttl: int = 64) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ipid, 0, ttl, proto, 0, A, B)
    return hdr + l4


def fragment4(packet: bytes, size: int) -> list[bytes]:
    """Split an IPv4 packet into fragments carrying ``size`` bytes (a multiple of 8) each."""
    hdr, body = bytearray(packet[:20]), packet[20:]
    out = []
    for off in range(0, len(body), size):
        part = body[off : off + size]
        more = off + size < len(body)
        h = bytearray(hdr)
        h[2:4] = struct.pack("!H", 20 + len(part))
        h[6:8] = struct.pack("!H", (0x2000 if more else 0) | off // 8)
        out.append(bytes(h) + part)
    return out


def fragment6(l4: bytes, nxt: int, size: int, ident: int = 99, hlim: int = 64) -> list[bytes]:
    out = []
    for off in range(0, len(l4), size):
        part = l4[off : off + size]
        more = off + size < len(l4)
        fh = struct.pack("!BBHI", nxt, 0, off | more, ident)
        hdr = struct.pack("!IHBB16s16s", 6 << 28, 8 + len(part), 44, hlim, A6, B6)
        out.append(hdr + fh + part)
    return out


def tcp(data: bytes, seq: int = 1000, flags: int = 0x18, sport: int = 40000) -> bytes:
    return bytes(dpkt.tcp.TCP(sport=sport, dport=80, seq=seq, ack=5, flags=flags, data=data))


def eth(src: bytes, ip: bytes, etype: int = 0x0800) -> bytes:
    return MAC_R + src + struct.pack("!H", etype) + ip


def test_ipv4_tcp_segment_tracked_whole_at_its_last_fragment() -> None:
    frags = fragment4(ip4_packet(tcp(b"d" * 1448), ttl=9), 552)
    assert len(frags) == 3
    dec = Decoder(LINKTYPE_RAW)
    order = [frags[2], frags[0], frags[1]]  # out of order: the middle one completes it
    got = [dec.decode(float(i), f) for i, f in enumerate(order)]
    assert got[0] is None and got[1] is None
    pkt = got[2]
    assert pkt is not None
    assert (pkt.sport, pkt.dport, pkt.seq, pkt.l4len) == (40000, 80, 1000, 1448)
    assert (pkt.ts, pkt.ttl, pkt.ipid) == (2.0, 9, 7)
    assert len(dec.defrag) == 0 and dec.defrag.mem == 0
    assert dec.skipped["ip-fragment"] == 2  # frames = packets + skipped, as ever


def test_the_batch_fast_path_sends_fragments_to_reassembly() -> None:
    frames = [eth(MAC_C, f) for f in fragment4(ip4_packet(tcp(b"d" * 1448)), 552)]
    data = b"".join(frames)
    meta, off = b"", 0
    for f in frames:
        meta += struct.pack("=IIII", 1, 0, off, len(f))
        off += len(f)
    pkts = Decoder(LINKTYPE_ETHERNET).decode_batch(data, meta)
    assert [(p.sport, p.l4len) for p in pkts] == [(40000, 1448)]


def test_ipv6_fragments_with_an_extension_header_in_the_fragmentable_part() -> None:
    udp = bytes(dpkt.udp.UDP(sport=5000, dport=5300, data=b"u" * 2992))
    dstopts = bytes([17, 0]) + bytes(6)  # destination options (8 bytes) -> UDP
    frags = fragment6(dstopts + udp, 60, 1232, hlim=1)
    dec = Decoder(LINKTYPE_RAW)
    got = [dec.decode(0.5, f) for f in frags]
    assert got[:-1] == [None] * (len(frags) - 1)
    pkt = got[-1]
    assert pkt is not None
    assert (pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport) == (17, A6, B6, 5000, 5300)
    assert (pkt.l4len, pkt.ttl) == (2992, 1)


def test_an_unfinished_datagram_is_never_tracked_and_expires() -> None:
    frags = fragment4(ip4_packet(tcp(b"d" * 1448)), 552)
    dec = Decoder(LINKTYPE_RAW)
    assert dec.decode(0.0, frags[0]) is None
    assert dec.decode(1.0, frags[1]) is None
    # the last piece 30 s after the first: the queue is gone, a new one starts
    assert dec.decode(30.0, frags[2]) is None
    assert dec.defrag.counters["frag-timeout"] == 1 and len(dec.defrag) == 1
    dec.defrag.expire(60.0)
    assert len(dec.defrag) == 0 and dec.defrag.mem == 0


def test_ipv6_waits_sixty_seconds() -> None:
    frags = fragment6(tcp(b"d" * 2000), 6, 1232)
    dec = Decoder(LINKTYPE_RAW)
    assert dec.decode(0.0, frags[0]) is None
    pkt = dec.decode(59.0, frags[1])
    assert pkt is not None and pkt.l4len == 2000


def test_duplicate_fragment_is_dropped_alone() -> None:
    frags = fragment4(ip4_packet(tcp(b"d" * 1448)), 552)
    dec = Decoder(LINKTYPE_RAW)
    for f in (frags[0], frags[0], frags[1]):
        assert dec.decode(0.0, f) is None
    assert dec.defrag.counters["frag-duplicate"] == 1
    pkt = dec.decode(0.0, frags[2])
    assert pkt is not None and pkt.l4len == 1448


def test_overlap_drops_the_whole_datagram() -> None:
    packet = ip4_packet(tcp(b"d" * 1448))
    frags = fragment4(packet, 552)
    # a fragment straddling the first two (offset 544, 16 bytes): RFC 5722
    hdr = bytearray(frags[1][:20])
    hdr[2:4] = struct.pack("!H", 36)
    hdr[6:8] = struct.pack("!H", 0x2000 | 544 // 8)
    straddle = bytes(hdr) + packet[20 + 544 : 20 + 560]
    dec = Decoder(LINKTYPE_RAW)
    for f in (frags[0], straddle, frags[1], frags[2]):
        assert dec.decode(0.0, f) is None
    assert dec.defrag.counters["frag-overlap"] == 1
    assert len(dec.defrag) == 1  # frags[1] and [2] began a new queue, never finished


def test_conflicting_ends_and_ipv6_misalignment_drop_the_queue() -> None:
    r = Reassembler()
    key = ("k",)
    assert r.add(0.0, 4, key, 16, 8, False, bytes(8), (64,)) is None  # ends at 24 ...
    assert r.add(0.0, 4, key, 24, 8, False, bytes(8), (64,)) is None  # ... or at 32: dropped
    assert r.counters["frag-bad-end"] == 1 and len(r) == 0
    assert r.add(0.0, 6, key, 0, 13, True, bytes(13), (6, 64)) is None  # not a multiple of 8
    assert r.counters["frag-unaligned"] == 1 and len(r) == 0
    # IPv4 cuts a non-last fragment down to a multiple of 8 instead
    assert r.add(0.0, 4, key, 0, 13, True, bytes(13), (64,)) is None
    done = r.add(0.0, 4, key, 8, 4, False, bytes(4), (64,))
    assert done is not None and done[1] == 12 and len(done[0]) == 12


def test_endless_fragments_of_one_datagram_stay_bounded() -> None:
    # never a last fragment, ever higher offsets: past 65535 bytes nothing can complete,
    # and memory stops at the bound
    r = Reassembler(high_thresh=64 * 1024)
    key = ("flood",)
    for i in range(10_000):
        r.add(i * 0.001, 4, key, i * 8, 8, True, bytes(8), (64,))
    assert r.mem <= 64 * 1024 + 8 + FRAG_OVERHEAD
    assert r.counters["frag-mem-full"] > 9_000
    # the last fragment making it 80000 bytes long: too long for IPv4, dropped
    r2 = Reassembler()
    assert r2.add(0.0, 4, key, 0, 40000, True, b"", (64,)) is None
    assert r2.add(0.0, 4, key, 40000, 40000, False, b"", (64,)) is None
    assert r2.counters["frag-oversize"] == 1 and len(r2) == 0 and r2.mem == 0


def test_a_flood_of_queues_is_bounded_and_the_bound_recovers_after_the_timeout() -> None:
    dec = Decoder(LINKTYPE_RAW)
    dec.defrag = Reassembler(high_thresh=256 * 1024)
    first = fragment4(ip4_packet(tcp(b"d" * 1448)), 552)[0]
    for ipid in range(5000):  # first fragments only, every one a new datagram
        frame = first[:4] + struct.pack("!H", ipid) + first[6:]
        assert dec.decode(ipid * 0.001, frame) is None
    assert dec.defrag.mem <= 256 * 1024 + 552 + FRAG_OVERHEAD
    assert dec.defrag.counters["frag-mem-full"] > 4000
    # while full, even a whole datagram's fragments are dropped ...
    legit = fragment4(ip4_packet(tcp(b"x" * 1448), ipid=60000), 552)
    assert [dec.decode(10.0, f) for f in legit] == [None] * 3
    # ... and once the flood has timed out they get through again
    assert [dec.decode(40.0, f) for f in legit][-1] is not None
    assert dec.defrag.mem == 0


def test_snap_length_cuts_keep_the_full_length() -> None:
    frags = fragment4(ip4_packet(tcp(b"d" * 1448)), 552)
    dec = Decoder(LINKTYPE_RAW)
    got = [dec.decode(0.0, f[:96]) for f in frags]  # tcpdump -s 96
    pkt = got[-1]
    assert pkt is not None and (pkt.sport, pkt.seq, pkt.l4len) == (40000, 1000, 1448)


def test_the_copies_before_and_after_the_router_are_separate_datagrams() -> None:
    inside = [eth(MAC_C, f) for f in fragment4(ip4_packet(tcp(b"d" * 1448), ttl=64), 552)]
    outside = [eth(MAC_S, f) for f in fragment4(ip4_packet(tcp(b"d" * 1448), ttl=63), 552)]
    dec = Decoder(LINKTYPE_ETHERNET)
    got = [dec.decode(0.0, f) for pair in zip(inside, outside, strict=True) for f in pair]
    done = [p for p in got if p is not None]
    assert [(p.ttl, p.l4len) for p in done] == [(64, 1448), (63, 1448)]
    assert dec.defrag.counters["frag-duplicate"] == 0


@pytest.mark.parametrize("whole", [True, False])
def test_window_tracking_counts_the_whole_segment(whole: bool) -> None:
    # handshake, then a 1448-byte segment in three fragments and the ACK of all of it:
    # counted whole the ACK is in the window (the kernel's view: pcaps/tcp_fragmented)
    dec = Decoder(LINKTYPE_RAW)
    table = ConntrackTable()

    def ip(src: bytes, dst: bytes, l4: bytes) -> bytes:
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, 6, 0, src, dst)
        return hdr + l4

    def seg(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
            data: bytes = b"") -> bytes:  # fmt: skip
        return bytes(dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags,
                                  win=65000, data=data))  # fmt: skip

    def feed(frame: bytes) -> int | None:
        pkt = dec.decode(1.0, frame)
        return None if pkt is None else table.process(pkt)

    assert feed(ip(A, B, seg(A, B, 40000, 80, 100, 0, 0x02))) == ACCEPT
    assert feed(ip(B, A, seg(B, A, 80, 40000, 500, 101, 0x12))) == ACCEPT
    assert feed(ip(A, B, seg(A, B, 40000, 80, 101, 501, 0x10))) == ACCEPT
    data = ip(A, B, seg(A, B, 40000, 80, 101, 501, 0x18, b"d" * 1448))
    pieces = fragment4(data, 552) if whole else [fragment4(data, 552)[0][:20] + data[20:572]]
    if not whole:  # the old behaviour: the first fragment alone, as if it were the segment
        hdr = bytearray(pieces[0][:20])
        hdr[2:4] = struct.pack("!H", 572)
        hdr[6:8] = b"\x00\x00"
        pieces = [bytes(hdr) + pieces[0][20:]]
    for p in pieces:
        feed(p)
    verdict = feed(ip(B, A, seg(B, A, 80, 40000, 501, 101 + 1448, 0x10)))
    assert (verdict == ACCEPT) is whole


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 3000),
    cut=st.integers(1, 200),
    order=st.randoms(use_true_random=False),
    dups=st.integers(0, 3),
)
def test_any_order_with_duplicates_gives_the_datagram_back(
    size: int, cut: int, order: random.Random, dups: int
) -> None:
    body = bytes(i * 7 & 0xFF for i in range(size))
    step = cut * 8
    pieces = [(off, body[off : off + step]) for off in range(0, size, step)]
    sends = pieces + [order.choice(pieces) for _ in range(dups)]
    order.shuffle(sends)
    r = Reassembler()
    done = []
    for off, part in sends:
        got = r.add(0.0, 4, ("k",), off, len(part), off + len(part) < size, part, (64,))
        if got is not None:
            done.append(got)
    # whole whatever the order (copies arriving after that start again, as in the kernel)
    assert done and all(d[0] == body and d[1] == size for d in done)
    r.expire(100.0)
    assert len(r) == 0 and r.mem == 0


def test_the_prefilter_passes_every_fragment() -> None:
    # tcp[] cannot look into a fragment: without its own clause the prefilter would pass
    # the first fragment of a data segment (sometimes) and never the others
    pcapy = pytest.importorskip("pcapy")
    from sniffover.capture.bpf import prefilter_bpf

    prog = pcapy.compile(LINKTYPE_ETHERNET, 65535, prefilter_bpf(16), 1, 0)
    segment = ip4_packet(tcp(b"d" * 1448, seq=1001, flags=0x10))  # ACK, not sampled
    assert prog.filter(eth(MAC_C, segment)) == 0
    for frag in fragment4(segment, 552):
        assert prog.filter(eth(MAC_C, frag)) > 0
    for frag in fragment6(tcp(b"d" * 2000, seq=1001, flags=0x10), 6, 1232):
        assert prog.filter(eth(MAC_C, frag, 0x86DD)) > 0
