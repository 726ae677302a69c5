"""A general decoder of one ctnetlink conntrack message, for the benchmarks' event listener.

``bench/live.py`` timestamps the kernel's NEW events with it. The product's dump decoder is
``kernel/dump.py`` (faster, into ``SnapshotEntry``); this one stays simple and off the
product's path.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..kernel.ctnetlink import (
    CTA_ID,
    CTA_MARK,
    CTA_PROTOINFO,
    CTA_PROTOINFO_TCP,
    CTA_PROTOINFO_TCP_STATE,
    CTA_STATUS,
    CTA_TIMEOUT,
    CTA_TUPLE_ORIG,
    CTA_TUPLE_REPLY,
    CTA_ZONE,
    Tuple,
)
from ..kernel.dump import decode_tuple, iter_attrs


@dataclass
class DumpedEntry:
    """An entry as the kernel reports it over ctnetlink."""

    orig: Tuple
    reply: Tuple
    status: int = 0
    timeout: int = 0
    mark: int = 0
    zone: int = 0
    tcp_state: int | None = None
    conn_id: int = 0


def decode_ct_message(buf: bytes, start: int, end: int) -> DumpedEntry:
    """Decode one IPCTNL_MSG_CT_NEW/DELETE message body (after the nlmsghdr)."""
    entry = DumpedEntry(orig=(0, b"", b"", 0, 0), reply=(0, b"", b"", 0, 0))
    for kind, s, e in iter_attrs(buf, start + 4, end):
        if kind == CTA_TUPLE_ORIG:
            entry.orig = decode_tuple(buf, s, e)
        elif kind == CTA_TUPLE_REPLY:
            entry.reply = decode_tuple(buf, s, e)
        elif kind == CTA_STATUS:
            entry.status = int.from_bytes(buf[s:e], "big")
        elif kind == CTA_TIMEOUT:
            entry.timeout = int.from_bytes(buf[s:e], "big")
        elif kind == CTA_MARK:
            entry.mark = int.from_bytes(buf[s:e], "big")
        elif kind == CTA_ZONE:
            entry.zone = int.from_bytes(buf[s:e], "big")
        elif kind == CTA_ID:
            entry.conn_id = int.from_bytes(buf[s:e], "big")
        elif kind == CTA_PROTOINFO:
            for k, s2, e2 in iter_attrs(buf, s, e):
                if k == CTA_PROTOINFO_TCP:
                    for k3, s3, _e3 in iter_attrs(buf, s2, e2):
                        if k3 == CTA_PROTOINFO_TCP_STATE:
                            entry.tcp_state = buf[s3]
    return entry
