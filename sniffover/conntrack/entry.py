"""One conntrack entry (``struct nf_conn`` reduced to what a standby needs).

An entry owns its ORIGINAL and REPLY tuples, the ``IPS_*`` status bits, an
absolute expiry time (seconds, on the clock of the packets that fed it) and the
protocol's private state (``TcpState`` for TCP, ``SctpState`` for SCTP). It knows
nothing about how it was observed or where it will be installed.
"""

from __future__ import annotations

from typing import Final

from .tuple import Tuple

# enum ip_conntrack_status (include/uapi/linux/netfilter/nf_conntrack_common.h)
IPS_EXPECTED: Final = 1 << 0
IPS_SEEN_REPLY: Final = 1 << 1
IPS_ASSURED: Final = 1 << 2
IPS_CONFIRMED: Final = 1 << 3
IPS_SRC_NAT: Final = 1 << 4
IPS_DST_NAT: Final = 1 << 5
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
    """Window-tracking data of one direction (``struct ip_ct_tcp_state``)."""

    __slots__ = ("td_end", "td_maxend", "td_maxwin", "td_maxack", "td_scale", "flags")

    def __init__(self) -> None:
        self.td_end = 0  # highest seq + len sent
        self.td_maxend = 0  # highest ack + window the peer allowed
        self.td_maxwin = 0  # largest window seen (0 = direction not initialised)
        self.td_maxack = 0  # highest ack sent (valid with MAXACK_SET)
        self.td_scale = 0
        self.flags = 0

    def reset(self) -> None:
        """``nf_ct_tcp_state_reset``: forget the window, keep only BE_LIBERAL."""
        self.td_end = self.td_maxend = self.td_maxwin = self.td_maxack = 0
        self.td_scale = 0
        self.flags &= TCP_FLAG_BE_LIBERAL


class TcpState:
    """``struct ip_ct_tcp``: the TCP state plus what the tracker remembers of the last packet."""

    __slots__ = (
        "state",
        "s0",
        "s1",
        "last_dir",
        "last_index",
        "last_seq",
        "last_ack",
        "last_end",
        "last_win",
        "last_wscale",
        "last_flags",
        "retrans",
    )

    def __init__(self) -> None:
        self.state = 0
        self.s0 = TcpSide()  # ORIGINAL direction's window data
        self.s1 = TcpSide()  # REPLY direction's
        self.last_dir = 0
        self.last_index = 0
        self.last_seq = 0
        self.last_ack = 0
        self.last_end = 0
        self.last_win = 0
        self.last_wscale = 0
        self.last_flags = 0
        self.retrans = 0

    @property
    def seen(self) -> tuple[TcpSide, TcpSide]:
        """Both directions, indexed like the kernel's ``seen[dir]`` (read-only view)."""
        return self.s0, self.s1

    def side(self, direction: int) -> TcpSide:
        return self.s1 if direction else self.s0


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


class Conn:
    """A tracked connection."""

    __slots__ = (
        "orig",
        "reply",
        "status",
        "expires",
        "created",
        "last_seen",
        "tcp",
        "sctp",
        "zone",
        "mark",
        "forwarded",
        "labels",
    )

    def __init__(self, orig: Tuple, reply: Tuple, now: float) -> None:
        self.orig = orig
        self.reply = reply
        self.status = 0
        self.expires = now  # absolute time; refreshed by every accepted packet
        self.created = now  # also the UDP "stream_ts" reference (created + 2 s)
        self.last_seen = now
        self.tcp: TcpState | None = None
        self.sctp: SctpState | None = None
        self.zone = 0
        self.mark = 0
        self.forwarded = False  # seen leaving the master (see conntrack.confirm)
        self.labels = b""  # ct labels (a primed entry's, as the master had them)

    @property
    def proto(self) -> int:
        return self.orig[0]

    def remaining(self, now: float) -> float:
        """Seconds left before expiry at ``now`` (may be negative)."""
        return self.expires - now

    def __repr__(self) -> str:
        from .listing import format_entry  # local: listing imports this module

        return f"<Conn {format_entry(self, self.last_seen)}>"
