"""One conntrack entry (``struct nf_conn`` reduced to what a standby needs).

An entry owns its ORIGINAL and REPLY tuples, the ``IPS_*`` status bits, an
absolute expiry time (seconds, on the clock of the packets that fed it) and the
protocol's private state (``TcpState`` for TCP, ``SctpState`` for SCTP). It knows
nothing about how it was observed or where it will be installed.
"""

from __future__ import annotations

from typing import Final

from .seqadj import SeqAdj
from .tuple import Tuple

# enum ip_conntrack_status (include/uapi/linux/netfilter/nf_conntrack_common.h)
IPS_EXPECTED: Final = 1 << 0
IPS_SEEN_REPLY: Final = 1 << 1
IPS_ASSURED: Final = 1 << 2
IPS_CONFIRMED: Final = 1 << 3
IPS_SRC_NAT: Final = 1 << 4
IPS_DST_NAT: Final = 1 << 5
IPS_SEQ_ADJUST: Final = 1 << 6
IPS_SRC_NAT_DONE: Final = 1 << 7
IPS_DST_NAT_DONE: Final = 1 << 8
IPS_DYING: Final = 1 << 9
IPS_FIXED_TIMEOUT: Final = 1 << 10

# Per-direction TCP flags (CTA_PROTOINFO_TCP_FLAGS_*; nf_conntrack_tcp.h)
TCP_FLAG_WINDOW_SCALE: Final = 0x01
TCP_FLAG_SACK_PERM: Final = 0x02
TCP_FLAG_CLOSE_INIT: Final = 0x04
TCP_FLAG_BE_LIBERAL: Final = 0x08
TCP_FLAG_DATA_UNACKNOWLEDGED: Final = 0x10
TCP_FLAG_MAXACK_SET: Final = 0x20
# Kept only in last_flags:
TCP_EXP_CHALLENGE_ACK: Final = 0x40
TCP_SIMULTANEOUS_OPEN: Final = 0x80


class TcpSide:
    """One direction's window data (``struct ip_ct_tcp_state``): a view onto that
    direction's fields of a ``TcpState``, which stores both flat (two objects per entry
    fewer). The tracker's hot path reads the flat fields; everything else may use this."""

    __slots__ = ("st", "d")

    def __init__(self, st: TcpState, d: int) -> None:
        self.st = st
        self.d = d

    @property
    def td_end(self) -> int:
        return self.st.td_end1 if self.d else self.st.td_end0

    @td_end.setter
    def td_end(self, value: int) -> None:
        if self.d:
            self.st.td_end1 = value
        else:
            self.st.td_end0 = value

    @property
    def td_maxend(self) -> int:
        return self.st.td_maxend1 if self.d else self.st.td_maxend0

    @td_maxend.setter
    def td_maxend(self, value: int) -> None:
        if self.d:
            self.st.td_maxend1 = value
        else:
            self.st.td_maxend0 = value

    @property
    def td_maxwin(self) -> int:
        return self.st.td_maxwin1 if self.d else self.st.td_maxwin0

    @td_maxwin.setter
    def td_maxwin(self, value: int) -> None:
        if self.d:
            self.st.td_maxwin1 = value
        else:
            self.st.td_maxwin0 = value

    @property
    def td_maxack(self) -> int:
        return self.st.td_maxack1 if self.d else self.st.td_maxack0

    @td_maxack.setter
    def td_maxack(self, value: int) -> None:
        if self.d:
            self.st.td_maxack1 = value
        else:
            self.st.td_maxack0 = value

    @property
    def td_scale(self) -> int:
        return self.st.td_scale1 if self.d else self.st.td_scale0

    @td_scale.setter
    def td_scale(self, value: int) -> None:
        if self.d:
            self.st.td_scale1 = value
        else:
            self.st.td_scale0 = value

    @property
    def flags(self) -> int:
        return self.st.flags1 if self.d else self.st.flags0

    @flags.setter
    def flags(self, value: int) -> None:
        if self.d:
            self.st.flags1 = value
        else:
            self.st.flags0 = value

    def reset(self) -> None:
        """``nf_ct_tcp_state_reset``: forget the window, keep only BE_LIBERAL."""
        self.td_end = self.td_maxend = self.td_maxwin = self.td_maxack = 0
        self.td_scale = 0
        self.flags &= TCP_FLAG_BE_LIBERAL


class TcpState:
    """``struct ip_ct_tcp``: the TCP state plus what the tracker remembers of the last packet.

    ``seen[dir]`` of the kernel is stored flat: ``td_end0`` .. ``flags0`` for ORIGINAL,
    ``td_end1`` .. ``flags1`` for REPLY (``td_end``: highest seq + len sent; ``td_maxend``:
    highest ack + window the peer allowed; ``td_maxwin``: largest window seen, 0 = direction
    not initialised; ``td_maxack``: highest ack sent, valid with MAXACK_SET; ``td_scale``;
    ``flags``: TCP_FLAG_*). ``s0``/``s1``/``seen``/``side(d)`` give ``TcpSide`` views.
    """

    __slots__ = (
        "state",
        "last_dir",
        "last_index",
        "last_seq",
        "last_ack",
        "last_end",
        "last_win",
        "last_wscale",
        "last_flags",
        "retrans",
        "td_end0",
        "td_maxend0",
        "td_maxwin0",
        "td_maxack0",
        "td_scale0",
        "flags0",
        "td_end1",
        "td_maxend1",
        "td_maxwin1",
        "td_maxack1",
        "td_scale1",
        "flags1",
    )

    def __init__(self) -> None:
        self.state = 0
        self.last_dir = 0
        self.last_index = 0
        self.last_seq = 0
        self.last_ack = 0
        self.last_end = 0
        self.last_win = 0
        self.last_wscale = 0
        self.last_flags = 0
        self.retrans = 0
        self.td_end0 = self.td_maxend0 = self.td_maxwin0 = self.td_maxack0 = 0
        self.td_scale0 = self.flags0 = 0
        self.td_end1 = self.td_maxend1 = self.td_maxwin1 = self.td_maxack1 = 0
        self.td_scale1 = self.flags1 = 0

    @property
    def s0(self) -> TcpSide:
        return TcpSide(self, 0)

    @property
    def s1(self) -> TcpSide:
        return TcpSide(self, 1)

    @property
    def seen(self) -> tuple[TcpSide, TcpSide]:
        """Both directions, indexed like the kernel's ``seen[dir]``."""
        return TcpSide(self, 0), TcpSide(self, 1)

    def side(self, direction: int) -> TcpSide:
        return TcpSide(self, 1 if direction else 0)


class SctpState:
    """``struct ip_ct_sctp``: the association state and the verification tags.

    ``vtag[d]`` is the tag packets in direction ``d`` must carry; ``init[d]`` says an
    INIT was seen from ``d`` (cleared by COOKIE_ACK); ``flags`` holds
    HEARTBEAT_VTAG_FAILED and ``last_dir`` the direction that failed it.
    """

    __slots__ = ("state", "vtag", "init", "flags", "last_dir")

    def __init__(self) -> None:
        self.state = 0
        self.vtag = [0, 0]
        self.init = [False, False]
        self.flags = 0
        self.last_dir = 0


class ConnExtra:
    """What few entries carry (SCTP state, a zone, a mark, labels, NAT sequence
    adjustment): one object for those that do, instead of five fields in every entry."""

    __slots__ = ("sctp", "zone", "zone_dir", "mark", "labels", "seqadj")

    def __init__(self) -> None:
        self.sctp: SctpState | None = None
        self.zone = 0
        self.zone_dir = 3  # NF_CT_DEFAULT_ZONE_DIR; 1 = original tuple only, 2 = reply only
        self.mark = 0
        self.labels = b""  # ct labels (a primed entry's, as the master had them)
        self.seqadj: SeqAdj | None = None  # a NAT helper rewrote a segment's length


class Conn:
    """A tracked connection.

    ``sctp``, ``zone``, ``mark``, ``labels`` and ``seqadj`` read and write like fields;
    they live in a ``ConnExtra`` made on the first write of a value other than the default.
    """

    __slots__ = (
        "orig",
        "reply",
        "status",
        "expires",
        "created",
        "last_seen",
        "tcp",
        "forwarded",
        "extra",
    )

    def __init__(self, orig: Tuple, reply: Tuple, now: float) -> None:
        self.orig = orig
        self.reply = reply
        self.status = 0
        self.expires = now  # absolute time; refreshed by every accepted packet
        self.created = now  # also the UDP "stream_ts" reference (created + 2 s)
        self.last_seen = now
        self.tcp: TcpState | None = None
        self.forwarded = False  # seen leaving the master (see conntrack.confirm)
        self.extra: ConnExtra | None = None

    def _extra(self) -> ConnExtra:
        x = self.extra
        if x is None:
            x = self.extra = ConnExtra()
        return x

    @property
    def sctp(self) -> SctpState | None:
        x = self.extra
        return x.sctp if x is not None else None

    @sctp.setter
    def sctp(self, value: SctpState | None) -> None:
        if value is not None or self.extra is not None:
            self._extra().sctp = value

    @property
    def zone(self) -> int:
        x = self.extra
        return x.zone if x is not None else 0

    @zone.setter
    def zone(self, value: int) -> None:
        if value or self.extra is not None:
            self._extra().zone = value

    @property
    def zone_dir(self) -> int:
        x = self.extra
        return x.zone_dir if x is not None else 3

    @zone_dir.setter
    def zone_dir(self, value: int) -> None:
        if value != 3 or self.extra is not None:
            self._extra().zone_dir = value

    def zone_id(self, direction: int) -> int:
        """``nf_ct_zone_id``: the zone tuple ``direction`` (0 original, 1 reply) lives in."""
        x = self.extra
        if x is None or not x.zone or not x.zone_dir & (1 << direction):
            return 0
        return x.zone

    @property
    def mark(self) -> int:
        x = self.extra
        return x.mark if x is not None else 0

    @mark.setter
    def mark(self, value: int) -> None:
        if value or self.extra is not None:
            self._extra().mark = value

    @property
    def labels(self) -> bytes:
        x = self.extra
        return x.labels if x is not None else b""

    @labels.setter
    def labels(self, value: bytes) -> None:
        if value or self.extra is not None:
            self._extra().labels = value

    @property
    def seqadj(self) -> SeqAdj | None:
        x = self.extra
        return x.seqadj if x is not None else None

    @seqadj.setter
    def seqadj(self, value: SeqAdj | None) -> None:
        if value is not None or self.extra is not None:
            self._extra().seqadj = value

    @property
    def proto(self) -> int:
        return self.orig[0]

    def remaining(self, now: float) -> float:
        """Seconds left before expiry at ``now`` (may be negative)."""
        return self.expires - now

    def __repr__(self) -> str:
        # Self-contained: conntrack -L's line is listing.format_entry's (listing imports
        # this module, so using it here would tie the two in a cycle).
        return f"<Conn orig={self.orig!r} reply={self.reply!r} status={self.status:#x}>"
