"""A master's table as pulled at start-up (``--prime-from``), and how it seeds the tracker.

The prime adapters (``sniffover.prime.client``: the ``sniffover serve`` stream, ``conntrack
-L`` over ssh, a saved file) all produce ``SnapshotEntry`` records, and
``SnapshotExpectation`` records for the master's outstanding expectations. ``seed()``
turns an entry into a tracked ``Conn`` so that packets sniffed after the snapshot continue it:
the master's orientation, state and status are kept; the TCP window history is
unknown, so both directions are BE_LIBERAL (like a mid-stream pickup, and like
conntrackd's commits), with the window scales when the master reported them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .entry import (
    IPS_ASSURED,
    IPS_CONFIRMED,
    IPS_SEEN_REPLY,
    IPS_SEQ_ADJUST,
    TCP_FLAG_BE_LIBERAL,
    TCP_FLAG_SACK_PERM,
    Conn,
    TcpState,
)
from .packet import PROTO_TCP
from .seqadj import SeqAdj
from .states import TCP_STATE_NAMES
from .table import ConntrackTable
from .tcp import NONE as TCP_INDEX_NONE
from .tuple import Tuple, addr_text
from .zones import DIR_WORDS, NF_CT_DEFAULT_ZONE_DIR, ZONE_DIR_KEY

# Bits a snapshot's status may carry over to our entry (others are the kernel's business).
KEPT_STATUS = IPS_SEEN_REPLY | IPS_ASSURED


_ENTRY_FIELDS: Final = (
    "orig",
    "reply",
    "status",
    "timeout",
    "tcp_state",
    "wscale_orig",
    "wscale_reply",
    "flags_orig",
    "flags_reply",
    "mark",
    "zone",
    "labels",
    "helper",
    "extra",
)


class SnapshotEntry:
    """One entry of the master's table.

    A plain class, not a dataclass: a pull makes one per entry on both ends, and a
    compiled dataclass is built through the generated Python ``__init__`` (~1 us)."""

    def __init__(
        self,
        orig: Tuple,
        reply: Tuple,
        status: int,  # IPS_* bits as the master had them
        timeout: int,  # seconds left when the master dumped it
        tcp_state: int | None = None,  # TCP state number (states.TCP_*), None if not TCP
        wscale_orig: int | None = None,
        wscale_reply: int | None = None,
        flags_orig: int | None = None,  # CTA_PROTOINFO_TCP_FLAGS_* (TCP_FLAG_* bits)
        flags_reply: int | None = None,
        mark: int = 0,
        zone: int = 0,
        labels: bytes = b"",
        helper: str = "",
        extra: dict[str, str] | None = None,
    ) -> None:
        self.orig = orig
        self.reply = reply
        self.status = status
        self.timeout = timeout
        self.tcp_state = tcp_state
        self.wscale_orig = wscale_orig
        self.wscale_reply = wscale_reply
        self.flags_orig = flags_orig
        self.flags_reply = flags_reply
        self.mark = mark
        self.zone = zone
        self.labels = labels
        self.helper = helper
        self.extra: dict[str, str] = {} if extra is None else extra

    def _fields(self) -> tuple[object, ...]:
        return (
            self.orig,
            self.reply,
            self.status,
            self.timeout,
            self.tcp_state,
            self.wscale_orig,
            self.wscale_reply,
            self.flags_orig,
            self.flags_reply,
            self.mark,
            self.zone,
            self.labels,
            self.helper,
            self.extra,
        )

    def as_dict(self) -> dict[str, object]:
        return dict(zip(_ENTRY_FIELDS, self._fields(), strict=True))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SnapshotEntry):
            return NotImplemented
        return self._fields() == other._fields()

    def __repr__(self) -> str:
        pairs = zip(_ENTRY_FIELDS, self._fields(), strict=True)
        return "SnapshotEntry(" + ", ".join(f"{n}={v!r}" for n, v in pairs) + ")"


@dataclass
class SnapshotExpectation:
    """One expectation of the master's table (``conntrack -L expect``): a helper's note that
    a connection matching ``tuple`` under ``mask`` is RELATED to the entry ``master``."""

    master: Tuple  # ORIGINAL tuple of the master entry
    tuple: Tuple  # first packet of the expected connection
    mask: Tuple  # as the kernel dumps it: source address/port masks, the rest exact
    timeout: int  # seconds left when the master dumped it
    helper: str = ""  # the master's helper ("ftp", "tftp", ...)
    zone: int = 0
    flags: int = 0  # NF_CT_EXPECT_PERMANENT 1, INACTIVE 2, USERSPACE 4
    klass: int = 0  # expectation class (SIP: 0 signalling, 1 audio, ...)
    # a NAT helper's (CTA_EXPECT_NAT): direction and saved address/port as the source of
    # ``nat_tuple``; ``fn`` the expectfn ("nat-follow-master"). -1: none
    nat_dir: int = -1
    nat_tuple: Tuple | None = None
    fn: str = ""


TCP_STATE_BY_NAME = {name: i for i, name in enumerate(TCP_STATE_NAMES)}


def format_seqadj(values: tuple[tuple[int, int, int], tuple[int, int, int]]) -> str:
    """CTA_SEQ_ADJ_ORIG / _REPLY as one line: six u32, ORIGINAL's three then REPLY's."""
    return " ".join(str(v & 0xFFFFFFFF) for d in values for v in d)


def tuple_key(t: Tuple) -> str:
    """A tuple as one line of text ("6 192.0.2.1 198.51.100.1 40000 21"), for files."""
    return f"{t[0]} {addr_text(t[1])} {addr_text(t[2])} {t[3]} {t[4]}"


def parse_seqadj(text: str) -> SeqAdj | None:
    """``format_seqadj``'s line as a ``SeqAdj`` (None if it is not six numbers)."""
    try:
        v = [int(x) & 0xFFFFFFFF for x in text.split()]
    except ValueError:
        return None
    if len(v) != 6:
        return None
    sa = SeqAdj()
    for d in (0, 1):
        pos, before, after = v[3 * d : 3 * d + 3]
        sa.pos[d] = pos
        sa.before[d] = before - (1 << 32) if before >> 31 else before
        sa.after[d] = after - (1 << 32) if after >> 31 else after
    return sa if sa else None


def seed(entry: SnapshotEntry, taken_at: float) -> Conn:
    """A tracker entry continuing ``entry``; its timer runs from ``taken_at`` (epoch seconds)."""
    conn = Conn(entry.orig, entry.reply, taken_at)
    conn.status = IPS_CONFIRMED | (entry.status & KEPT_STATUS)
    conn.expires = taken_at + max(1, entry.timeout)
    conn.last_seen = taken_at
    conn.mark = entry.mark
    conn.zone = entry.zone
    if entry.zone and entry.extra:  # a directional zone (conntrack.zones)
        conn.zone_dir = DIR_WORDS.get(entry.extra.get(ZONE_DIR_KEY, ""), NF_CT_DEFAULT_ZONE_DIR)
    conn.forwarded = True  # the master's own table: no further proof needed
    conn.labels = entry.labels
    adj = entry.extra.get("seqadj")
    if adj:  # the master's CTA_SEQ_ADJ_* (kernel.dump): "pos before after" ORIGINAL, REPLY
        conn.seqadj = parse_seqadj(adj)
        conn.status |= IPS_SEQ_ADJUST
    if entry.orig[0] == PROTO_TCP:
        st = TcpState()
        st.state = entry.tcp_state or 0
        st.flags0 = (entry.flags_orig or TCP_FLAG_SACK_PERM) | TCP_FLAG_BE_LIBERAL
        st.td_scale0 = entry.wscale_orig or 0
        st.flags1 = (entry.flags_reply or TCP_FLAG_SACK_PERM) | TCP_FLAG_BE_LIBERAL
        st.td_scale1 = entry.wscale_reply or 0
        st.last_index = TCP_INDEX_NONE
        conn.tcp = st
    return conn


def seed_into(
    table: ConntrackTable, entries: list[SnapshotEntry], taken_at: float, now: float
) -> list[Conn]:
    """Seed ``entries`` into ``table``; returns those it took (not yet expired at ``now``,
    neither tuple already held)."""
    out: list[Conn] = []
    for entry in entries:
        conn = seed(entry, taken_at)
        if conn.expires > now and table.adopt(conn):
            out.append(conn)
    return out
