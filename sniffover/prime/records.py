"""The snapshot stream's records: one master entry or expectation each, packed and unpacked.

The per-entry part of ``sniffover serve``'s stream (see ``serve`` for the framing,
authentication and transport, ``prime`` for the pull). Kept in its own module because it
runs once per entry on both ends, hundreds of thousands of times per pull: it is compiled
with the hot path (see ``setup.py``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from ..conntrack.snapshot import SnapshotEntry, SnapshotExpectation
from ..errors import PrimeError

# Record: addr length, proto, presence bits, tcp state, wscale o/r, flags o/r,
# orig sport/dport, reply sport/dport, status, timeout, mark, zone; then 4 addresses
# (orig src, dst, reply src, dst) and, if bit 5, labels/helper/extra.
RECORD = struct.Struct("!BBBBBBBBHHHHIIIH")
HAS_STATE: Final = 1
HAS_WS_O: Final = 2
HAS_WS_R: Final = 4
HAS_FL_O: Final = 8
HAS_FL_R: Final = 16
HAS_TAIL: Final = 32

# Expectation record: addr length, master proto, expected proto (the mask's too), helper
# name length, master sport/dport, expected sport/dport, mask sport/dport, timeout, flags,
# class, zone, then the NAT helper's part (format 4): CTA_EXPECT_NAT's direction (-1:
# none), its saved tuple's proto and sport/dport, CTA_EXPECT_FN's length; then 6 addresses
# (master src, dst, expected src, dst, mask src, dst), 2 more with a NAT part (the saved
# tuple's src, dst), the helper name and the expectfn name.
EXP_RECORD = struct.Struct("!BBBBHHHHHHIIIHbBHHB")


def encode_entry(e: SnapshotEntry) -> bytes:
    """One record (without its length prefix)."""
    bits = 0
    vals = []
    for bit, v in (
        (HAS_STATE, e.tcp_state),
        (HAS_WS_O, e.wscale_orig),
        (HAS_WS_R, e.wscale_reply),
        (HAS_FL_O, e.flags_orig),
        (HAS_FL_R, e.flags_reply),
    ):
        if v is None:
            vals.append(0)
        else:
            bits |= bit
            vals.append(v & 0xFF)
    tail = b""
    if e.labels or e.helper or e.extra:
        bits |= HAS_TAIL
        helper = e.helper.encode()[:255]
        items = list(e.extra.items())[:255]
        tail = bytes((len(e.labels[:255]),)) + e.labels[:255] + bytes((len(helper),)) + helper
        tail += bytes((len(items),))
        for name, value in items:
            kb, vb = name.encode()[:255], value.encode()[:1024]
            tail += bytes((len(kb),)) + kb + len(vb).to_bytes(2, "big") + vb
    o, r = e.orig, e.reply
    return (
        RECORD.pack(
            len(o[1]),
            o[0],
            bits,
            *vals,
            o[3] & 0xFFFF,
            o[4] & 0xFFFF,
            r[3] & 0xFFFF,
            r[4] & 0xFFFF,
            e.status & 0xFFFFFFFF,
            max(0, min(e.timeout, 0xFFFFFFFF)),
            e.mark & 0xFFFFFFFF,
            e.zone & 0xFFFF,
        )
        + o[1]
        + o[2]
        + r[1]
        + r[2]
        + tail
    )


def encode_body(entries: Sequence[SnapshotEntry]) -> bytes:
    parts = []
    for e in entries:
        rec = encode_entry(e)
        parts.append(len(rec).to_bytes(2, "big"))
        parts.append(rec)
    return b"".join(parts)


def encode_expectation(x: SnapshotExpectation) -> bytes:
    """One expectation record (without its length prefix)."""
    m, t, k = x.master, x.tuple, x.mask
    alen = len(m[1])
    helper = x.helper.encode()[:255]
    fn = x.fn.encode()[:255]
    addrs: tuple[bytes, ...] = (m[1], m[2], t[1], t[2], k[1], k[2])
    n = x.nat_tuple if x.nat_dir >= 0 else None
    if n is not None:
        addrs += (n[1], n[2])
    elif x.nat_dir >= 0:
        raise ValueError("expectation with a NAT direction but no saved tuple")
    if any(len(a) != alen for a in addrs) or alen not in (4, 16) or not -1 <= x.nat_dir < 128:
        raise ValueError("expectation with mixed address lengths or a bad NAT direction")
    return (
        EXP_RECORD.pack(
            alen,
            m[0],
            t[0],
            len(helper),
            m[3] & 0xFFFF,
            m[4] & 0xFFFF,
            t[3] & 0xFFFF,
            t[4] & 0xFFFF,
            k[3] & 0xFFFF,
            k[4] & 0xFFFF,
            max(0, min(x.timeout, 0xFFFFFFFF)),
            x.flags & 0xFFFFFFFF,
            x.klass & 0xFFFFFFFF,
            x.zone & 0xFFFF,
            x.nat_dir,
            n[0] if n is not None else 0,
            n[3] & 0xFFFF if n is not None else 0,
            n[4] & 0xFFFF if n is not None else 0,
            len(fn),
        )
        + b"".join(addrs)
        + helper
        + fn
    )


def encode_expect_body(expectations: Sequence[SnapshotExpectation]) -> tuple[int, bytes]:
    """(record count, records); an expectation that cannot be represented (mixed address
    families: never from a kernel dump) is left out."""
    parts = []
    for x in expectations:
        try:
            rec = encode_expectation(x)
        except ValueError:
            continue
        parts.append(len(rec).to_bytes(2, "big") + rec)
    return len(parts), b"".join(parts)


def _framed(data: bytes, off: int, end: int, rsize: int, overrun: str) -> tuple[int, int]:
    """(start, length) of the record whose 2-byte length prefix is at ``off``; PrimeError if
    it runs past ``end`` or is shorter than its fixed part (``rsize``)."""
    n = int.from_bytes(data[off : off + 2], "big")
    s = off + 2
    if s + n > end or n < rsize:
        raise PrimeError(f"bad format: {overrun}")
    return s, n


def decode_expect_body(data: bytes, off: int, end: int, count: int) -> list[SnapshotExpectation]:
    """The expectation records in data[off:end]; PrimeError unless exactly ``count``."""
    out: list[SnapshotExpectation] = []
    rsize = EXP_RECORD.size
    try:
        for _ in range(count):
            s, n = _framed(data, off, end, rsize, "expectation record overruns the section")
            off = s + n
            (alen, mproto, proto, hlen, msp, mdp, tsp, tdp, ksp, kdp, tmo, flags, klass, zone,
             ndir, nproto, nsp, ndp, fnlen) = EXP_RECORD.unpack_from(data, s)  # fmt: skip
            naddrs = 8 if ndir >= 0 else 6
            if alen not in (4, 16) or rsize + naddrs * alen + hlen + fnlen != n:
                raise PrimeError("bad format: expectation record length mismatch")
            a = [data[s + rsize + i * alen : s + rsize + (i + 1) * alen] for i in range(naddrs)]
            h = s + rsize + naddrs * alen
            out.append(
                SnapshotExpectation(
                    (mproto, a[0], a[1], msp, mdp),
                    (proto, a[2], a[3], tsp, tdp),
                    (proto, a[4], a[5], ksp, kdp),
                    tmo,
                    data[h : h + hlen].decode(),
                    zone,
                    flags,
                    klass,
                    ndir,
                    (nproto, a[6], a[7], nsp, ndp) if ndir >= 0 else None,
                    data[h + hlen : h + hlen + fnlen].decode(),
                )
            )
    except (IndexError, ValueError, struct.error, UnicodeDecodeError) as exc:
        raise PrimeError(f"bad format: {exc}") from None
    if off != end:
        raise PrimeError("bad format: section length does not match the records")
    return out


def decode_body(data: bytes, off: int, end: int, count: int) -> list[SnapshotEntry]:
    out: list[SnapshotEntry] = []
    rec = RECORD.unpack_from
    rsize = RECORD.size
    try:
        for _ in range(count):
            s, n = _framed(data, off, end, rsize, "record overruns the body")
            off = s + n
            (
                alen,
                proto,
                bits,
                st,
                wso,
                wsr,
                flo,
                flr,
                osp,
                odp,
                rsp,
                rdp,
                status,
                tmo,
                mark,
                zone,
            ) = rec(data, s)
            if alen not in (4, 16) or rsize + 4 * alen > n:
                raise PrimeError("bad format: bad address length in record")
            a = s + rsize
            e = SnapshotEntry(
                (proto, data[a : a + alen], data[a + alen : a + 2 * alen], osp, odp),
                (
                    proto,
                    data[a + 2 * alen : a + 3 * alen],
                    data[a + 3 * alen : a + 4 * alen],
                    rsp,
                    rdp,
                ),
                status,
                tmo,
                st if bits & HAS_STATE else None,
                wso if bits & HAS_WS_O else None,
                wsr if bits & HAS_WS_R else None,
                flo if bits & HAS_FL_O else None,
                flr if bits & HAS_FL_R else None,
                mark,
                zone,
            )
            t = a + 4 * alen
            if bits & HAS_TAIL:
                _decode_tail(e, data, t, off)
            elif t != off:
                raise PrimeError("bad format: record length mismatch")
            out.append(e)
    except (IndexError, ValueError, struct.error, UnicodeDecodeError) as exc:
        raise PrimeError(f"bad format: {exc}") from None
    if off != end:
        raise PrimeError("bad format: body length does not match the records")
    return out


def _decode_tail(e: SnapshotEntry, data: bytes, t: int, end: int) -> None:
    n = data[t]
    e.labels = data[t + 1 : t + 1 + n]
    t += 1 + n
    n = data[t]
    e.helper = data[t + 1 : t + 1 + n].decode()
    t += 1 + n
    items = data[t]
    t += 1
    for _ in range(items):
        kn = data[t]
        k = data[t + 1 : t + 1 + kn].decode()
        t += 1 + kn
        vn = int.from_bytes(data[t : t + 2], "big")
        e.extra[k] = data[t + 2 : t + 2 + vn].decode()
        t += 2 + vn
    if t != end:
        raise PrimeError("bad format: record length mismatch")
