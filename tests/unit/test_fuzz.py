"""Hostile segment (issue 6): fuzzed frames, captures and prime peers.

* Random and mutated frames (truncations, bad lengths, TCP option loops, IPv6 extension
  chains, stacked VLAN tags, fragments) for every link type through ``Decoder`` and the
  packets through ``ConntrackTable`` (bounded and unbounded): no exception, and the
  table's invariants hold after every packet.
* Corrupt pcap / pcapng files through ``sniffover.capture.files``: ``CaptureError`` only.
* Hostile prime peers are in ``test_prime_peers.py``.

The coverage-guided counterpart is ``fuzz/atheris_decode.py`` (not collected by pytest).
"""

from __future__ import annotations

import struct
from dataclasses import asdict
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sniffover.capture.decode import Decoder
from sniffover.capture.files import CaptureError, iter_pcap_packets
from sniffover.capture.headers import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    LINKTYPE_RAW_OBSD,
    LINKTYPE_RAW_OLD,
    LINKTYPES,
)
from sniffover.conntrack.packet import Packet
from sniffover.conntrack.table import ConntrackTable
from sniffover.conntrack.timeouts import Timeouts
from sniffover.conntrack.tuple import Tuple

MAX_TIMEOUT = max(
    [
        *Timeouts().tcp,
        *(v for k, v in asdict(Timeouts()).items() if k.endswith("timeout") or "timeout_" in k),
    ]
)
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- frame builders ---------------------------------------------------------------------

V4 = [bytes([192, 0, 2, 1]), bytes([198, 51, 100, 7]), bytes([203, 0, 113, 9])]
V6 = [
    bytes.fromhex("20010db8000000000000000000000001"),
    bytes.fromhex("20010db8000100000000000000000002"),
]
PORTS = st.sampled_from([0, 53, 80, 443, 1023, 1024, 40000, 40001, 60999, 65535])


def csum_free_ipv4(
    proto: int,
    payload: bytes,
    src: bytes,
    dst: bytes,
    *,
    ihl: int = 5,
    total: int | None = None,
    frag: int = 0,
    ttl: int = 64,
) -> bytes:
    opts = bytes(range(1, 1 + (ihl - 5) * 4)) if ihl > 5 else b""
    tl = 20 + len(opts) + len(payload) if total is None else total
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, tl & 0xFFFF, 1, frag, ttl, proto, 0, src, dst
    )
    return head + opts + payload


def ipv6(nexthdr: int, payload: bytes, src: bytes, dst: bytes, *, plen: int | None = None) -> bytes:
    pl = len(payload) if plen is None else plen
    return struct.pack("!IHBB16s16s", 0x60000000, pl & 0xFFFF, nexthdr, 64, src, dst) + payload


@st.composite
def tcp_options(draw: st.DrawFn) -> bytes:
    """Plausible options, option loops (length 0/1), overlong lengths, NOP/EOL runs."""
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 8, 30, 254]))
        if kind in (0, 1):
            parts.append(bytes([kind]))
            continue
        size = draw(
            st.one_of(st.sampled_from([0, 1, 2, 3, 4, 10, 18, 40, 255]), st.integers(0, 40))
        )
        body = draw(st.binary(min_size=0, max_size=max(0, min(size, 40) - 2)))
        parts.append(bytes([kind, size]) + body)
    opts = b"".join(parts)[:40]
    return opts + bytes(-len(opts) % 4)


@st.composite
def l4(draw: st.DrawFn, family: int) -> tuple[int, bytes]:
    kind = draw(st.sampled_from(["tcp", "tcp", "udp", "icmp", "icmperr", "gre", "sctp", "other"]))
    if kind == "tcp":
        opts = draw(tcp_options())
        doff = draw(st.one_of(st.just((20 + len(opts)) // 4), st.integers(0, 15)))
        hdr = struct.pack(
            "!HHIIBBHHH",
            draw(PORTS),
            draw(PORTS),
            draw(st.integers(0, 2**32 - 1)),
            draw(st.integers(0, 2**32 - 1)),
            doff << 4,
            draw(st.integers(0, 255)),
            draw(st.integers(0, 65535)),
            0,
            0,
        )
        return 6, hdr + opts + draw(st.binary(max_size=20))
    if kind == "udp":
        proto = draw(st.sampled_from([17, 136]))
        return proto, struct.pack("!HHHH", draw(PORTS), draw(PORTS), 8, 0) + draw(
            st.binary(max_size=20)
        )
    icmp_proto = 1 if family == 4 else 58
    if kind == "icmp":
        itype = draw(st.sampled_from([0, 8, 13, 14, 128, 129, 133, 135, 136, 137, 143]))
        return icmp_proto, struct.pack("!BBHHH", itype, 0, 0, draw(st.integers(0, 65535)), 1)
    if kind == "icmperr":
        itype = draw(st.sampled_from([3, 11, 12] if family == 4 else [1, 2, 3, 4]))
        inner_proto, inner = draw(l4(family))
        src, dst = (V4[0], V4[1]) if family == 4 else (V6[0], V6[1])
        quoted = (
            csum_free_ipv4(inner_proto, inner, dst, src)
            if family == 4
            else ipv6(inner_proto, inner, dst, src)
        )
        quoted = quoted[: draw(st.integers(0, len(quoted)))]
        return icmp_proto, struct.pack("!BBHI", itype, draw(st.integers(0, 3)), 0, 0) + quoted
    if kind == "gre":
        flags_ver = draw(st.sampled_from([0x0000, 0x2001, 0x3001, 0x0007]))
        return 47, struct.pack("!HHHH", flags_ver, 0x880B, 0, draw(st.integers(0, 65535)))
    if kind == "sctp":
        return 132, struct.pack("!HHII", draw(PORTS), draw(PORTS), 0, 0)
    return draw(st.integers(0, 255)), draw(st.binary(max_size=16))


@st.composite
def ipv6_exthdrs(draw: st.DrawFn, last: int) -> tuple[int, bytes]:
    """A chain of extension headers ending in ``last``: (first next-header, bytes)."""
    chain = draw(st.lists(st.sampled_from([0, 43, 44, 51, 60]), max_size=18))
    data = b""
    nxt = last
    for h in reversed(chain):
        if h == 44:
            off = draw(st.sampled_from([0, 0, 1, 0x1FFF]))
            ext = struct.pack("!BBHI", nxt, 0, off << 3 | draw(st.integers(0, 1)), 7)
        elif h == 51:
            n = draw(st.integers(0, 3))
            ext = bytes([nxt, n]) + bytes((n + 2) * 4 - 2)
        else:
            n = draw(st.integers(0, 2))
            ext = bytes([nxt, n]) + bytes((n + 1) * 8 - 2)
        data = ext + data
        nxt = h
    return nxt, data


@st.composite
def ip_packets(draw: st.DrawFn) -> bytes:
    family = draw(st.sampled_from([4, 6]))
    proto, payload = draw(l4(family))
    if family == 4:
        src, dst = draw(st.sampled_from(V4)), draw(st.sampled_from(V4))
        frag = draw(st.sampled_from([0, 0, 0, 0x2000, 0x0001, 0x20B9, 0x4000]))
        ihl = draw(st.sampled_from([5, 5, 5, 6, 15, 4, 0]))
        total = draw(st.one_of(st.none(), st.integers(0, 120)))
        pkt = csum_free_ipv4(proto, payload, src, dst, ihl=max(ihl, 5), total=total, frag=frag)
        return bytes([0x40 | ihl]) + pkt[1:]
    first, exts = draw(ipv6_exthdrs(proto))
    plen = draw(st.one_of(st.none(), st.integers(0, 200)))
    return ipv6(
        first, exts + payload, draw(st.sampled_from(V6)), draw(st.sampled_from(V6)), plen=plen
    )


def ethertype(pkt: bytes) -> int:
    return 0x86DD if pkt and pkt[0] >> 4 == 6 else 0x0800


@st.composite
def vlan_stack(draw: st.DrawFn, etype: int) -> bytes:
    tags = draw(st.lists(st.sampled_from([0x8100, 0x88A8, 0x9100]), max_size=10))
    if not tags:
        return struct.pack("!H", etype)
    out = struct.pack("!H", tags[0])
    for nxt in [*tags[1:], etype]:
        out += struct.pack("!HH", draw(st.integers(0, 0xFFFF)), nxt)
    return out


@st.composite
def frames(draw: st.DrawFn, linktype: int) -> bytes:
    pkt = draw(ip_packets())
    et = draw(st.one_of(st.just(ethertype(pkt)), st.sampled_from([0x0806, 0x8100, 0])))
    if linktype == LINKTYPE_ETHERNET:
        frame = bytes(6) + bytes(range(6)) + draw(vlan_stack(et)) + pkt
    elif linktype == LINKTYPE_LINUX_SLL:
        frame = struct.pack("!HHH8s", 0, 1, 6, bytes(8)) + draw(vlan_stack(et)) + pkt
    elif linktype == LINKTYPE_LINUX_SLL2:
        frame = struct.pack("!HHIHBB8s", et, 0, 2, 1, 0, 6, bytes(8)) + pkt
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        af = draw(st.sampled_from([2, 10, 24, 28, 30, 7, 0x02000000]))
        order = "<" if linktype == LINKTYPE_NULL and draw(st.booleans()) else ">"
        frame = struct.pack(order + "I", af) + pkt
    else:
        frame = pkt
    return frame


@st.composite
def mutated(draw: st.DrawFn, linktype: int) -> bytes:
    frame = bytearray(draw(st.one_of(frames(linktype), st.binary(max_size=120))))
    for _ in range(draw(st.integers(0, 4))):
        if not frame:
            break
        op = draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        i = draw(st.integers(0, len(frame) - 1))
        if op == "flip":
            frame[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            frame[i] = draw(st.sampled_from([0, 0xFF, 0x45, 0x60, 0x06, 0x11, 0x2C, 0x81]))
        elif op == "cut":
            del frame[i:]
        else:
            frame[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(frame)


ALL_LINKTYPES = sorted(LINKTYPES)
assert {LINKTYPE_RAW, LINKTYPE_RAW_OLD, LINKTYPE_RAW_OBSD, LINKTYPE_IPV4, LINKTYPE_IPV6} <= set(
    ALL_LINKTYPES
)


# --- invariants ------------------------------------------------------------------------


def check_packet(pkt: Packet) -> None:
    assert pkt.family in (2, 10)
    alen = 4 if pkt.family == 2 else 16
    assert len(pkt.src) == alen and len(pkt.dst) == alen
    assert 0 <= pkt.proto <= 255
    assert 0 <= pkt.sport <= 0xFFFF and 0 <= pkt.dport <= 0xFFFF
    assert pkt.l4len >= 0
    assert len(pkt.tcp_opts) <= 40
    if pkt.inner is not None:
        assert pkt.inner.family == pkt.family
        assert len(pkt.inner.src) == alen and len(pkt.inner.dst) == alen
        assert 0 <= pkt.inner.sport <= 0xFFFF and 0 <= pkt.inner.dport <= 0xFFFF


def check_tuple(t: Tuple) -> None:
    proto, src, dst, sport, dport = t
    assert 0 <= proto <= 255
    assert len(src) in (4, 16) and len(dst) == len(src)
    assert 0 <= sport <= 0xFFFF and 0 <= dport <= 0xFFFF


def check_table(table: ConntrackTable, now: float) -> None:
    n = 0
    for conn in table.conns():
        n += 1
        check_tuple(conn.orig)
        check_tuple(conn.reply)
        assert len(conn.orig[1]) == len(conn.reply[1]) and conn.orig[0] == conn.reply[0]
        if conn.orig != conn.reply:
            assert table.get(conn.orig) == (conn, 0)
        assert table.get(conn.reply) == (conn, 1)
    assert n == len(table)
    if table.max_entries is not None:
        assert len(table) <= table.max_entries
    for conn in table.entries(now):
        assert conn.expires > now
        assert 0 <= conn.remaining(now) <= MAX_TIMEOUT


def track(packets: list[Packet], max_entries: int | None) -> ConntrackTable:
    table = ConntrackTable(max_entries=max_entries)
    for pkt in packets:
        table.process(pkt)
        check_table(table, pkt.ts)
    return table


# --- decoder + tracker -----------------------------------------------------------------


@FUZZ
@given(st.data())
def test_fuzzed_frames_decode_and_track(data: st.DataObject) -> None:
    linktype = data.draw(st.sampled_from(ALL_LINKTYPES))
    raw = data.draw(st.lists(mutated(linktype), min_size=1, max_size=12))
    gaps = data.draw(
        st.lists(
            st.sampled_from([0.0, 0.001, 1.0, 29.0, 200.0, 1e6]),
            min_size=len(raw),
            max_size=len(raw),
        )
    )
    dec = Decoder(linktype)
    packets = []
    ts = 1_700_000_000.0
    for frame, gap in zip(raw, gaps, strict=True):
        ts += gap
        pkt = dec.decode(ts, frame)
        if pkt is not None:
            check_packet(pkt)
            packets.append(pkt)
    track(packets, None)
    track(packets, 2)


@FUZZ
@given(st.data())
def test_fuzzed_batches_equal_frame_by_frame(data: st.DataObject) -> None:
    linktype = data.draw(st.sampled_from([LINKTYPE_ETHERNET, LINKTYPE_ETHERNET, *ALL_LINKTYPES]))
    raw = data.draw(st.lists(mutated(linktype), min_size=1, max_size=8))
    buf = b"".join(raw)
    meta = b""
    off = 0
    for i, frame in enumerate(raw):
        meta += struct.pack("=IIII", 1000 + i, 0, off, len(frame))
        off += len(frame)
    batch = Decoder(linktype).decode_batch(buf, meta)
    one = Decoder(linktype)
    single = [p for i, f in enumerate(raw) if (p := one.decode(1000.0 + i, f)) is not None]
    assert [repr(p) for p in batch] == [repr(p) for p in single]
    for p in batch:
        check_packet(p)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=20), st.sampled_from(ALL_LINKTYPES))
def test_random_bytes_never_raise(blobs: list[bytes], linktype: int) -> None:
    dec = Decoder(linktype)
    packets = [p for i, b in enumerate(blobs) if (p := dec.decode(float(i), b)) is not None]
    for p in packets:
        check_packet(p)
    track(packets, 3)


# --- corrupt captures ------------------------------------------------------------------

PCAPS = Path(__file__).resolve().parents[2] / "pcaps"


def pcap_file(linktype: int, frames_: list[bytes], snaplen: int = 65535) -> bytes:
    out = struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)
    for i, f in enumerate(frames_):
        out += struct.pack("=IIII", 1000 + i, 0, len(f), len(f)) + f
    return out


def pcapng_file(linktype: int, frames_: list[bytes]) -> bytes:
    def block(btype: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        n = 12 + len(body)
        return struct.pack("=II", btype, n) + body + struct.pack("=I", n)

    out = block(0x0A0D0D0A, struct.pack("=IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("=HHI", linktype, 0, 65535))
    for i, f in enumerate(frames_):
        out += block(6, struct.pack("=IIIII", 0, 0, 1000 + i, len(f), len(f)) + f)
    return out


def read_all(path: Path) -> None:
    try:
        for pkt in iter_pcap_packets([str(path)]):
            check_packet(pkt)
    except CaptureError as exc:
        assert str(exc) and "\n" not in str(exc)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_corrupt_captures_raise_capture_error_only(tmp_path: Path, data: st.DataObject) -> None:
    linktype = data.draw(st.sampled_from(ALL_LINKTYPES))
    frames_ = data.draw(st.lists(frames(linktype), max_size=5))
    golden = sorted(PCAPS.glob("*.pcap"))
    choice = data.draw(st.integers(0, 3))
    if choice == 0:
        blob = bytearray(pcap_file(linktype, frames_, data.draw(st.sampled_from([0, 1, 65535]))))
    elif choice == 1:
        blob = bytearray(pcapng_file(linktype, frames_))
    elif choice == 2 and golden:
        blob = bytearray(data.draw(st.sampled_from(golden)).read_bytes()[:4000])
    else:
        blob = bytearray(data.draw(st.binary(max_size=200)))
    for _ in range(data.draw(st.integers(0, 6))):
        if not blob:
            break
        i = data.draw(st.integers(0, len(blob) - 1))
        op = data.draw(st.sampled_from(["byte", "u32", "cut"]))
        if op == "byte":
            blob[i] = data.draw(st.integers(0, 255))
        elif op == "u32":
            val = data.draw(st.sampled_from([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x40000, 65536]))
            blob[i : i + 4] = struct.pack("=I", val)
        else:
            del blob[i:]
    path = tmp_path / f"fuzz{data.draw(st.integers(0, 10**9))}.pcap"
    path.write_bytes(bytes(blob))
    try:
        read_all(path)
    finally:
        path.unlink()


def test_truncated_golden_captures(tmp_path: Path) -> None:
    for src in sorted(PCAPS.glob("*.pcap"))[:6]:
        data = src.read_bytes()
        for cut in (0, 10, 24, 30, 40, len(data) // 2, len(data) - 1):
            path = tmp_path / "cut.pcap"
            path.write_bytes(data[:cut])
            read_all(path)
