"""A master's table as pulled at start-up (``--prime-from``), and how it seeds the tracker.

The prime adapters (``sniffover.prime``: the ``sniffover serve`` stream, ``conntrack
-L`` over ssh, a saved file) all produce ``SnapshotEntry`` records, and
``SnapshotExpectation`` records for the master's outstanding expectations. ``seed()``
turns an entry into a tracked ``Conn`` so that packets sniffed after the snapshot continue it:
the master's orientation, state and status are kept; the TCP window history is
unknown, so both directions are BE_LIBERAL (like a mid-stream pickup, and like
conntrackd's commits), with the window scales when the master reported them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .entry import (
    IPS_ASSURED,
    IPS_CONFIRMED,
    IPS_SEEN_REPLY,
    TCP_FLAG_BE_LIBERAL,
    TCP_FLAG_SACK_PERM,
    Conn,
    TcpState,
)
from .packet import PROTO_TCP
from .tcp import NONE as TCP_INDEX_NONE
from .timeouts import TCP_STATE_NAMES
from .tuple import Tuple

# Bits a snapshot's status may carry over to our entry (others are the kernel's business).
KEPT_STATUS = IPS_SEEN_REPLY | IPS_ASSURED


@dataclass
class SnapshotEntry:
    """One entry of the master's table."""

    orig: Tuple
    reply: Tuple
    status: int  # IPS_* bits as the master had them
    timeout: int  # seconds left when the master dumped it
    tcp_state: int | None = None  # TCP state number (timeouts.TCP_*), None for other protocols
    wscale_orig: int | None = None
    wscale_reply: int | None = None
    flags_orig: int | None = None  # CTA_PROTOINFO_TCP_FLAGS_* (TCP_FLAG_* bits)
    flags_reply: int | None = None
    mark: int = 0
    zone: int = 0
    labels: bytes = b""
    helper: str = ""
    extra: dict[str, str] = field(default_factory=dict)


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


TCP_STATE_BY_NAME = {name: i for i, name in enumerate(TCP_STATE_NAMES)}


def seed(entry: SnapshotEntry, taken_at: float) -> Conn:
    """A tracker entry continuing ``entry``; its timer runs from ``taken_at`` (epoch seconds)."""
    conn = Conn(entry.orig, entry.reply, taken_at)
    conn.status = IPS_CONFIRMED | (entry.status & KEPT_STATUS)
    conn.expires = taken_at + max(1, entry.timeout)
    conn.last_seen = taken_at
    conn.mark = entry.mark
    conn.zone = entry.zone
    conn.forwarded = True  # the master's own table: no further proof needed
    conn.labels = entry.labels
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
