"""A fast full dump of this network namespace's conntrack table into ``SnapshotEntry`` records.

pyroute2's dump is 10-30x slower than a minimal parser (conntrack-semantics §7.2),
so this reads ``IPCTNL_MSG_CT_GET``/``NLM_F_DUMP`` replies straight out of the
receive buffer. The kernel lays out tuples and TCP protoinfo the same way for
every entry, so those are unpacked with one ``struct`` call each when their
attribute headers match the expected layout, with a generic attribute walk as
the fallback. The dump is not an atomic snapshot (the kernel walks its hash while
entries come and go, §7.2); that is fine for priming a standby.

``python -m sniffover.bench.prime dump [N]`` times it in the current namespace.
"""

from __future__ import annotations

import gc
import os
import struct
from collections.abc import Iterator

from ..conntrack.snapshot import SnapshotEntry, SnapshotExpectation, format_seqadj
from ..conntrack.zones import ZONE_DIR_KEY
from .ctnetlink import (
    CTA_EXPECT_CLASS,
    CTA_EXPECT_FLAGS,
    CTA_EXPECT_FN,
    CTA_EXPECT_HELP_NAME,
    CTA_EXPECT_MASK,
    CTA_EXPECT_MASTER,
    CTA_EXPECT_NAT,
    CTA_EXPECT_NAT_DIR,
    CTA_EXPECT_NAT_TUPLE,
    CTA_EXPECT_TIMEOUT,
    CTA_EXPECT_TUPLE,
    CTA_EXPECT_ZONE,
    CTA_HELP,
    CTA_HELP_NAME,
    CTA_IP_V4_DST,
    CTA_IP_V4_SRC,
    CTA_IP_V6_DST,
    CTA_IP_V6_SRC,
    CTA_LABELS,
    CTA_MARK,
    CTA_PROTO_DST_PORT,
    CTA_PROTO_ICMP_CODE,
    CTA_PROTO_ICMP_ID,
    CTA_PROTO_ICMP_TYPE,
    CTA_PROTO_ICMPV6_CODE,
    CTA_PROTO_ICMPV6_ID,
    CTA_PROTO_ICMPV6_TYPE,
    CTA_PROTO_NUM,
    CTA_PROTO_SRC_PORT,
    CTA_PROTOINFO,
    CTA_PROTOINFO_TCP,
    CTA_PROTOINFO_TCP_FLAGS_ORIGINAL,
    CTA_PROTOINFO_TCP_FLAGS_REPLY,
    CTA_PROTOINFO_TCP_STATE,
    CTA_PROTOINFO_TCP_WSCALE_ORIGINAL,
    CTA_PROTOINFO_TCP_WSCALE_REPLY,
    CTA_SEQ_ADJ_ORIG,
    CTA_SEQ_ADJ_REPLY,
    CTA_SEQADJ_CORRECTION_POS,
    CTA_SEQADJ_OFFSET_AFTER,
    CTA_STATUS,
    CTA_TIMEOUT,
    CTA_TUPLE_IP,
    CTA_TUPLE_ORIG,
    CTA_TUPLE_PROTO,
    CTA_TUPLE_REPLY,
    CTA_TUPLE_ZONE,
    CTA_ZONE,
    IPCTNL_MSG_CT_GET,
    IPCTNL_MSG_CT_NEW,
    IPCTNL_MSG_EXP_GET,
    IPCTNL_MSG_EXP_NEW,
    NFNL_SUBSYS_CTNETLINK,
    NFNL_SUBSYS_CTNETLINK_EXP,
    NLA_HDR,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSG_HDR,
    CtnlSocket,
    NetlinkError,
    Tuple,
    encode_dump_request,
)

_BE32 = struct.Struct(">I")
_BE16 = struct.Struct(">H")
# Tuple nest body as the kernel writes it for IPv4 + ports (TCP/UDP/SCTP/UDP-Lite):
# IP{V4_SRC, V4_DST} PROTO{NUM, SRC_PORT, DST_PORT}. Ports stay big-endian ("2s").
_T4 = struct.Struct("=HH HH4s HH4s HH HHB3x HH2s2x HH2s2x")
_T4_HDR = (20, 0x8001, 8, 1, 8, 2, 28, 0x8002, 5, 1, 6, 2, 6, 3)
# The same for IPv6.
_T6 = struct.Struct("=HH HH16s HH16s HH HHB3x HH2s2x HH2s2x")
_T6_HDR = (44, 0x8001, 20, 3, 20, 4, 28, 0x8002, 5, 1, 6, 2, 6, 3)
# PROTOINFO{TCP{STATE, WSCALE_ORIGINAL, WSCALE_REPLY, FLAGS_ORIGINAL, FLAGS_REPLY}}:
# the flags attributes are {flags, mask}; only the flags byte is kept.
_TCPINFO = struct.Struct("=HH HHB3x HHB3x HHB3x HHB3x HHB3x")
_TCPINFO_HDR = (44, 0x8001, 5, 1, 5, 2, 5, 3, 6, 4, 6, 5)
_PORT_PROTOS = frozenset((6, 17, 132, 136))


# --- attributes of the kernel's answers ------------------------------------------------


def iter_attrs(buf: bytes | bytearray, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type without flags, payload start, payload end) for each attribute in buf[start:end]."""
    while start + 4 <= end:
        length, kind = NLA_HDR.unpack_from(buf, start)
        if length < 4 or start + length > end:
            return
        yield kind & 0x3FFF, start + 4, start + length
        start += (length + 3) & ~3


def decode_tuple(buf: bytes, start: int, end: int) -> Tuple:
    """The tuple in a CTA_TUPLE_* nest body buf[start:end] (the inverse of ``encode_tuple``)."""
    src = dst = b""
    proto = sport = dport = 0
    icmp_type = icmp_code = 0
    is_icmp = False
    for kind, s, e in iter_attrs(buf, start, end):
        if kind == CTA_TUPLE_IP:
            for k, s2, e2 in iter_attrs(buf, s, e):
                if k in (CTA_IP_V4_SRC, CTA_IP_V6_SRC):
                    src = bytes(buf[s2:e2])
                elif k in (CTA_IP_V4_DST, CTA_IP_V6_DST):
                    dst = bytes(buf[s2:e2])
        elif kind == CTA_TUPLE_PROTO:
            for k, s2, e2 in iter_attrs(buf, s, e):
                v = int.from_bytes(buf[s2:e2], "big")
                if k == CTA_PROTO_NUM:
                    proto = v
                elif k == CTA_PROTO_SRC_PORT:
                    sport = v
                elif k == CTA_PROTO_DST_PORT:
                    dport = v
                elif k in (CTA_PROTO_ICMP_ID, CTA_PROTO_ICMPV6_ID):
                    sport, is_icmp = v, True
                elif k in (CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMPV6_TYPE):
                    icmp_type, is_icmp = v, True
                elif k in (CTA_PROTO_ICMP_CODE, CTA_PROTO_ICMPV6_CODE):
                    icmp_code, is_icmp = v, True
    if is_icmp:
        dport = icmp_type << 8 | icmp_code
    return (proto, src, dst, sport, dport)


def _fast_tuple(buf: bytearray, s: int, e: int) -> Tuple:
    """Decode a tuple nest body buf[s:e], with a one-call fast path for the common layouts."""
    n = e - s
    if n >= 48:
        v = _T4.unpack_from(buf, s)
        if (
            v[0] == 20
            and v[1] == 0x8001
            and v[2] == 8
            and v[5] == 8
            and v[8] == 28
            and v[10] == 5
            and v[13] == 6
            and v[16] == 6
            and v[12] in _PORT_PROTOS
            and (v[3], v[6], v[9], v[11], v[14], v[17]) == (1, 2, 0x8002, 1, 2, 3)
        ):
            return (v[12], v[4], v[7], int.from_bytes(v[15], "big"), int.from_bytes(v[18], "big"))
        if n >= 72:
            v = _T6.unpack_from(buf, s)
            if (
                v[0] == 44
                and v[1] == 0x8001
                and v[2] == 20
                and v[5] == 20
                and v[8] == 28
                and v[10] == 5
                and v[13] == 6
                and v[16] == 6
                and v[12] in _PORT_PROTOS
                and (v[3], v[6], v[9], v[11], v[14], v[17]) == (3, 4, 0x8002, 1, 2, 3)
            ):
                return (
                    v[12],
                    v[4],
                    v[7],
                    int.from_bytes(v[15], "big"),
                    int.from_bytes(v[18], "big"),
                )
    return decode_tuple(bytes(buf[s:e]), 0, e - s)


def _tcp_info(entry: SnapshotEntry, buf: bytearray, s: int, e: int) -> None:
    if e - s >= 44:
        v = _TCPINFO.unpack_from(buf, s)
        if (
            v[0] == 44
            and v[1] == 0x8001
            and (v[2], v[3], v[5], v[6], v[8], v[9], v[11], v[12], v[14], v[15])
            == (5, 1, 5, 2, 5, 3, 6, 4, 6, 5)
        ):
            entry.tcp_state = v[4]
            entry.wscale_orig = v[7]
            entry.wscale_reply = v[10]
            entry.flags_orig = v[13]
            entry.flags_reply = v[16]
            return
    data = bytes(buf[s:e])
    for k, s2, e2 in iter_attrs(data, 0, len(data)):
        if k != CTA_PROTOINFO_TCP:
            continue
        for k3, s3, e3 in iter_attrs(data, s2, e2):
            if e3 <= s3:
                continue
            if k3 == CTA_PROTOINFO_TCP_STATE:
                entry.tcp_state = data[s3]
            elif k3 == CTA_PROTOINFO_TCP_WSCALE_ORIGINAL:
                entry.wscale_orig = data[s3]
            elif k3 == CTA_PROTOINFO_TCP_WSCALE_REPLY:
                entry.wscale_reply = data[s3]
            elif k3 == CTA_PROTOINFO_TCP_FLAGS_ORIGINAL:
                entry.flags_orig = data[s3]
            elif k3 == CTA_PROTOINFO_TCP_FLAGS_REPLY:
                entry.flags_reply = data[s3]


def decode_entry(buf: bytearray, start: int, end: int) -> SnapshotEntry:
    """One IPCTNL_MSG_CT_NEW message buf[start:end] (from its nlmsghdr) as a SnapshotEntry."""
    nla = NLA_HDR.unpack_from
    empty: Tuple = (0, b"", b"", 0, 0)
    orig = reply = empty
    status = timeout = mark = zone = 0
    tz: dict[str, str] = {}  # a directional zone (conntrack.zones)
    tcp: tuple[int, int] | None = None
    labels = b""
    helper = ""
    seqadj = [[0, 0, 0], [0, 0, 0]]
    has_seqadj = False
    off = start + 20  # nlmsghdr + nfgenmsg
    while off + 4 <= end:
        length, kind = nla(buf, off)
        if length < 4 or off + length > end:
            break
        kind &= 0x3FFF
        s = off + 4
        e = off + length
        if kind in (CTA_TUPLE_ORIG, CTA_TUPLE_REPLY):
            if kind == CTA_TUPLE_ORIG:
                orig = _fast_tuple(buf, s, e)
            else:
                reply = _fast_tuple(buf, s, e)
            for k2, s2, _ in iter_attrs(buf, s, e):  # CTA_TUPLE_ZONE: this tuple alone in it
                if k2 == CTA_TUPLE_ZONE:
                    zone = _BE16.unpack_from(buf, s2)[0]
                    tz[ZONE_DIR_KEY] = "orig" if kind == CTA_TUPLE_ORIG else "reply"
        elif kind == CTA_STATUS and length == 8:
            status = _BE32.unpack_from(buf, s)[0]
        elif kind == CTA_TIMEOUT and length == 8:
            timeout = _BE32.unpack_from(buf, s)[0]
        elif kind == CTA_MARK and length == 8:
            mark = _BE32.unpack_from(buf, s)[0]
        elif kind == CTA_ZONE and length == 6:
            zone = _BE16.unpack_from(buf, s)[0]
        elif kind == CTA_PROTOINFO:
            tcp = (s, e)
        elif kind == CTA_LABELS:
            labels = bytes(buf[s:e])
        elif kind == CTA_HELP:
            data = bytes(buf[s:e])
            for k, s2, e2 in iter_attrs(data, 0, len(data)):
                if k == CTA_HELP_NAME:
                    helper = data[s2:e2].split(b"\0", 1)[0].decode("ascii", "replace")
        elif kind in (CTA_SEQ_ADJ_ORIG, CTA_SEQ_ADJ_REPLY):
            has_seqadj = True
            row = seqadj[kind - CTA_SEQ_ADJ_ORIG]
            for k, s2, e2 in iter_attrs(buf, s, e):
                if CTA_SEQADJ_CORRECTION_POS <= k <= CTA_SEQADJ_OFFSET_AFTER and e2 - s2 == 4:
                    row[k - 1] = _BE32.unpack_from(buf, s2)[0]
        off += (length + 3) & ~3
    entry = SnapshotEntry(orig, reply, status, timeout, mark=mark, zone=zone, extra=tz)
    if labels:
        entry.labels = labels
    if helper:
        entry.helper = helper
    if has_seqadj:  # a NAT helper's sequence adjustment (nf_nat_ftp), for the tracker
        o, r = seqadj
        entry.extra["seqadj"] = format_seqadj(((o[0], o[1], o[2]), (r[0], r[1], r[2])))
    if tcp is not None and orig[0] == 6:
        _tcp_info(entry, buf, tcp[0], tcp[1])
    return entry


# --- compiled layouts ------------------------------------------------------------------
# Most messages of a dump share a handful of layouts (same attributes, same order, same
# sizes). The first message of each layout is decoded generically and its layout compiled
# into two structs over the attribute area: one (native order) whose values are every
# attribute header, compared with the expected headers in one tuple comparison, and one
# (big-endian) that pulls out every data field. Anything unusual stays on the generic path.

_T4_HDR_FMT = "HHHH4xHH4xHHHH4xHH4xHH4x"
_T4_DATA_FMT = "4x4x4s4x4s4x4xB3x4xH2x4xH2x"
_T6_HDR_FMT = "HHHH16xHH16xHHHH4xHH4xHH4x"
_T6_DATA_FMT = "4x4x16s4x16s4x4xB3x4xH2x4xH2x"
_TCP_HDR_FMT = "HHHH4xHH4xHH4xHH4xHH4x"
_TCP_DATA_FMT = "4x4xB3x4xB3x4xB3x4xB3x4xB3x"


class _Layout:
    __slots__ = (
        "hdr",
        "expected",
        "data",
        "orig",
        "reply",
        "status",
        "timeout",
        "mark",
        "zone",
        "tcp",
    )
    hdr: struct.Struct
    data: struct.Struct
    expected: tuple[int, ...]
    orig: int
    reply: int
    status: int
    timeout: int
    mark: int
    zone: int
    tcp: int

    def __init__(self) -> None:
        self.orig = self.reply = self.status = self.timeout = self.mark = -1
        self.zone = self.tcp = -1


def _compile(buf: bytearray, start: int, end: int) -> _Layout | None:
    """The layout of message buf[start:end], or None if it has attributes not handled here."""
    hdr_fmt, data_fmt, expected = ["="], [">"], []
    lay = _Layout()
    idx = 0  # index into the data struct's values
    off = start + 20
    seen: set[int] = set()
    while off < end:
        if off + 4 > end:
            return None
        length, raw = NLA_HDR.unpack_from(buf, off)
        kind = raw & 0x3FFF
        if length < 4 or off + length > end or kind in seen:
            return None
        seen.add(kind)
        s = off + 4
        padded = (length + 3) & ~3
        if off + padded > end:
            return None
        expected += [length, raw]
        hdr_fmt.append("HH")
        data_fmt.append("4x")
        if kind in (CTA_TUPLE_ORIG, CTA_TUPLE_REPLY) and length in (52, 76):
            v4 = length == 52
            inner = _T4_HDR if v4 else _T6_HDR
            got = (_T4 if v4 else _T6).unpack_from(buf, s)
            if tuple(got[i] for i in (0, 1, 2, 3, 5, 6, 8, 9, 10, 11, 13, 14, 16, 17)) != inner:
                return None
            if got[12] not in _PORT_PROTOS:
                return None
            expected += inner
            hdr_fmt.append(_T4_HDR_FMT if v4 else _T6_HDR_FMT)
            data_fmt.append(_T4_DATA_FMT if v4 else _T6_DATA_FMT)
            if kind == CTA_TUPLE_ORIG:
                lay.orig = idx
            else:
                lay.reply = idx
            idx += 5
        elif kind in (CTA_STATUS, CTA_TIMEOUT, CTA_MARK) and length == 8:
            hdr_fmt.append("4x")
            data_fmt.append("I")
            setattr(
                lay, {CTA_STATUS: "status", CTA_TIMEOUT: "timeout", CTA_MARK: "mark"}[kind], idx
            )
            idx += 1
        elif kind == CTA_ZONE and length == 6:
            hdr_fmt.append("4x")
            data_fmt.append("H2x")
            lay.zone = idx
            idx += 1
        elif kind == CTA_PROTOINFO and length == 48:
            got = _TCPINFO.unpack_from(buf, s)
            if (
                got[0] != 44
                or got[1] != 0x8001
                or tuple(got[i] for i in (2, 3, 5, 6, 8, 9, 11, 12, 14, 15))
                != (5, 1, 5, 2, 5, 3, 6, 4, 6, 5)
            ):
                return None
            expected += _TCPINFO_HDR
            hdr_fmt.append(_TCP_HDR_FMT)
            data_fmt.append(_TCP_DATA_FMT)
            lay.tcp = idx
            idx += 5
        elif kind in (
            CTA_LABELS,
            CTA_HELP,
            CTA_SEQ_ADJ_ORIG,
            CTA_SEQ_ADJ_REPLY,
            CTA_PROTOINFO,
            CTA_TUPLE_ORIG,
            CTA_TUPLE_REPLY,
            CTA_STATUS,
            CTA_TIMEOUT,
            CTA_MARK,
            CTA_ZONE,
        ):
            return None  # decoded generically
        else:
            hdr_fmt.append(f"{padded - 4}x")
            data_fmt.append(f"{padded - 4}x")
        off += padded
    if lay.orig < 0 or lay.reply < 0:
        return None
    lay.hdr = struct.Struct("".join(hdr_fmt))
    lay.data = struct.Struct("".join(data_fmt))
    if lay.hdr.size != end - start - 20 or lay.data.size != lay.hdr.size:
        return None
    lay.expected = tuple(expected)
    return lay


def _from_layout(lay: _Layout, d: tuple) -> SnapshotEntry:  # type: ignore[type-arg]
    o = lay.orig
    r = lay.reply
    t = lay.tcp
    return SnapshotEntry(
        (d[o + 2], d[o], d[o + 1], d[o + 3], d[o + 4]),
        (d[r + 2], d[r], d[r + 1], d[r + 3], d[r + 4]),
        d[lay.status] if lay.status >= 0 else 0,
        d[lay.timeout] if lay.timeout >= 0 else 0,
        d[t] if t >= 0 else None,
        d[t + 1] if t >= 0 else None,
        d[t + 2] if t >= 0 else None,
        d[t + 3] if t >= 0 else None,
        d[t + 4] if t >= 0 else None,
        d[lay.mark] if lay.mark >= 0 else 0,
        d[lay.zone] if lay.zone >= 0 else 0,
    )


def dump_table(sock: CtnlSocket | None = None, family: int = 0) -> list[SnapshotEntry]:
    """Every conntrack entry of the current network namespace (family 0 = IPv4 and IPv6).

    Raises ``NetlinkError`` when ctnetlink is unavailable or refuses the dump.
    """
    own = sock is None
    ctnl = CtnlSocket(rcvbuf=8 << 20) if sock is None else sock
    gc_was_on = gc.isenabled()
    gc.disable()  # ~1M small objects, no cycles: collector passes would only cost time
    try:
        out: list[SnapshotEntry] = []
        for batch in dump_batches(ctnl, family):
            out += batch
        return out
    finally:
        if gc_was_on:
            gc.enable()
        if own:
            ctnl.close()


def dump_batches(ctnl: CtnlSocket, family: int = 0) -> Iterator[list[SnapshotEntry]]:
    """The dump one receive buffer (up to 1 MiB of messages, ~4,000 entries) at a time,
    for a caller that works on each while the kernel produces the next (``sniffover
    serve``). Holds nothing to release: the caller owns the socket (a compiled generator
    abandoned half-way is not finalized like a Python one)."""
    seq = ctnl.next_seq()
    ctnl.sock.send(encode_dump_request(IPCTNL_MSG_CT_GET, seq, family, NFNL_SUBSYS_CTNETLINK))
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    layouts: dict[int, list[_Layout]] = {}
    for _ in range(1 << 30):  # bounded: ends at NLMSG_DONE
        n = ctnl.sock.recv_into(view)
        if n <= 0:
            raise NetlinkError(0, "ctnetlink dump ended without NLMSG_DONE")
        out, done = _dump_buffer(buf, n, seq, layouts)
        if out:
            yield out
        if done:
            return
    raise NetlinkError(0, "ctnetlink dump did not end")


def _dump_buffer(
    buf: bytearray, n: int, seq: int, layouts: dict[int, list[_Layout]]
) -> tuple[list[SnapshotEntry], bool]:
    """The entries in one received buffer of a dump, and whether it ended the dump."""
    out: list[SnapshotEntry] = []
    append = out.append
    hdr = NLMSG_HDR.unpack_from
    new_kind = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
    off = 0
    while off + 16 <= n:
        length, mkind, _flags, mseq, _pid = hdr(buf, off)
        if length < 16 or off + length > n:
            raise NetlinkError(0, "malformed ctnetlink dump message")
        if mkind == NLMSG_DONE:
            return out, True
        if mkind == NLMSG_ERROR:
            err = -struct.unpack_from("=i", buf, off + 16)[0]
            if err:
                raise NetlinkError(err, f"conntrack dump: {os.strerror(err)}")
        elif mseq == seq and mkind == new_kind:
            for lay in layouts.get(length, ()):
                if lay.hdr.unpack_from(buf, off + 20) == lay.expected:
                    append(_from_layout(lay, lay.data.unpack_from(buf, off + 20)))
                    break
            else:
                append(decode_entry(buf, off, off + length))
                known = layouts.setdefault(length, [])
                if len(known) < 4:
                    compiled = _compile(buf, off, off + length)
                    if compiled is not None:
                        known.append(compiled)
        off += (length + 3) & ~3
    return out, False


# --- expectations ----------------------------------------------------------------------


def decode_expectation(buf: bytes, start: int, end: int) -> SnapshotExpectation:
    """One IPCTNL_MSG_EXP_NEW message buf[start:end] (from its nlmsghdr)."""
    empty: Tuple = (0, b"", b"", 0, 0)
    exp = SnapshotExpectation(empty, empty, empty, 0)
    for kind, s, e in iter_attrs(buf, start + 20, end):
        if kind == CTA_EXPECT_MASTER:
            exp.master = decode_tuple(buf, s, e)
        elif kind == CTA_EXPECT_TUPLE:
            exp.tuple = decode_tuple(buf, s, e)
        elif kind == CTA_EXPECT_MASK:
            exp.mask = decode_tuple(buf, s, e)
        elif kind == CTA_EXPECT_TIMEOUT and e - s == 4:
            exp.timeout = _BE32.unpack_from(buf, s)[0]
        elif kind == CTA_EXPECT_HELP_NAME:
            exp.helper = bytes(buf[s:e]).split(b"\0", 1)[0].decode("ascii", "replace")
        elif kind == CTA_EXPECT_ZONE and e - s == 2:
            exp.zone = _BE16.unpack_from(buf, s)[0]
        elif kind == CTA_EXPECT_FLAGS and e - s == 4:
            exp.flags = _BE32.unpack_from(buf, s)[0]
        elif kind == CTA_EXPECT_CLASS and e - s == 4:
            exp.klass = _BE32.unpack_from(buf, s)[0]
        elif kind == CTA_EXPECT_NAT:
            for k, s2, e2 in iter_attrs(buf, s, e):
                if k == CTA_EXPECT_NAT_DIR and e2 - s2 == 4:
                    exp.nat_dir = _BE32.unpack_from(buf, s2)[0]
                elif k == CTA_EXPECT_NAT_TUPLE:
                    exp.nat_tuple = decode_tuple(buf, s2, e2)
        elif kind == CTA_EXPECT_FN:
            exp.fn = bytes(buf[s:e]).split(b"\0", 1)[0].decode("ascii", "replace")
    return exp


def dump_expectations(sock: CtnlSocket | None = None, family: int = 0) -> list[SnapshotExpectation]:
    """Every expectation of the current network namespace (``IPCTNL_MSG_EXP_GET`` dump on
    ``NFNL_SUBSYS_CTNETLINK_EXP``; family 0 = IPv4 and IPv6). A handful on any real
    firewall (one per FTP session with an announced port), so decoded generically.

    Raises ``NetlinkError`` when ctnetlink refuses the dump.
    """
    own = sock is None
    ctnl = CtnlSocket() if sock is None else sock
    try:
        seq = ctnl.next_seq()
        ctnl.sock.send(
            encode_dump_request(IPCTNL_MSG_EXP_GET, seq, family, NFNL_SUBSYS_CTNETLINK_EXP)
        )
        new_kind = (NFNL_SUBSYS_CTNETLINK_EXP << 8) | IPCTNL_MSG_EXP_NEW
        buf = bytearray(1 << 20)
        out: list[SnapshotExpectation] = []
        for _ in range(1 << 24):  # bounded: ends at NLMSG_DONE
            n = ctnl.sock.recv_into(buf)
            if n <= 0:
                raise NetlinkError(0, "expectation dump ended without NLMSG_DONE")
            off = 0
            while off + 16 <= n:
                length, mkind, _flags, mseq, _pid = NLMSG_HDR.unpack_from(buf, off)
                if length < 16 or off + length > n:
                    raise NetlinkError(0, "malformed expectation dump message")
                if mkind == NLMSG_DONE:
                    return out
                if mkind == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", buf, off + 16)[0]
                    if err:
                        raise NetlinkError(err, f"expectation dump: {os.strerror(err)}")
                elif mseq == seq and mkind == new_kind:
                    out.append(decode_expectation(bytes(buf[off : off + length]), 0, length))
                off += (length + 3) & ~3
        raise NetlinkError(0, "expectation dump did not end")
    finally:
        if own:
            ctnl.close()
