"""What of the tracked table goes into the standby's kernel, and how (pure policy, no I/O).

The installer (``sniffover.kernel.installer``) asks ``desired(conn, now)`` for every entry
that changed and compares the answer with its shadow of what the kernel holds.
The rules come from how the kernel treats injected entries
(conntrack-semantics §5.7, verified on 6.18):

* TCP is installed once the handshake has completed (state ESTABLISHED or a
  later state reached from it): a SYN flood must not become an install flood,
  and an injected SYN_SENT entry turns the SYN/ACK INVALID. A connection that
  closed is installed (or updated) in its closing state, TIME_WAIT or CLOSE, as
  the master holds it: never resurrected as ESTABLISHED.
* The window scales and the per-direction WINDOW_SCALE/SACK_PERM flags seen in
  the SYNs go with the entry; without them the kernel mis-scales windows and
  drops most segments after takeover. Connections picked up mid-stream carry
  SACK_PERM|BE_LIBERAL instead (no SYN, no scale: let the kernel be liberal).
  TIME_WAIT and CLOSE add CLOSE_INIT so a reused port reopens cleanly.
* SCTP is installed once ESTABLISHED, with its state and both verification tags
  (CTA_PROTOINFO_SCTP: the kernel checks the tags on every chunk, and an entry
  without them would turn the association's DATA INVALID); its closing states go in
  only for an association that was established.
* UDP, UDP-Lite, ICMP echo, GRE and generic entries are installed once a reply
  was seen (SEEN_REPLY): unreplied traffic is allowed as NEW from the inside by
  any sane ruleset, and one-way floods stay out of the kernel. Exception
  (``unreplied``): the master of a helper with ``install_unreplied`` goes in unreplied.
  That is a TFTP request's flow: the server answers from another port (the request's
  flow never sees a reply) and the kernel accepts the expectation for that answer
  (``conntrack.helpers.tftp``) only on a master it holds.
* Never an entry whose destination is a multicast group or the limited broadcast (the
  master's are its own deliveries; the standby's kernel makes its own from its copy).
* A NATed helper master whose segments the master rewrote to another length carries
  its sequence adjustment (``conntrack.seqadj``, CTA_SEQ_ADJ_*): without it every later
  segment of that control connection is shifted wrongly after a takeover.
* Status is CONFIRMED (which ctnetlink demands) | SEEN_REPLY | ASSURED as the
  tracker has them; the timeout is what remains of the tracker's timer.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .entry import (
    IPS_ASSURED,
    IPS_CONFIRMED,
    IPS_SEEN_REPLY,
    TCP_FLAG_BE_LIBERAL,
    TCP_FLAG_CLOSE_INIT,
    TCP_FLAG_SACK_PERM,
    TCP_FLAG_WINDOW_SCALE,
    Conn,
)
from .packet import PROTO_SCTP, PROTO_TCP
from .states import (
    SCTP_CONNTRACK_CLOSED,
    SCTP_CONNTRACK_ESTABLISHED,
    SCTP_CONNTRACK_SHUTDOWN_ACK_SENT,
    SCTP_CONNTRACK_SHUTDOWN_RECD,
    SCTP_CONNTRACK_SHUTDOWN_SENT,
    TCP_CLOSE,
    TCP_CLOSE_WAIT,
    TCP_ESTABLISHED,
    TCP_FIN_WAIT,
    TCP_LAST_ACK,
    TCP_SYN_RECV,
    TCP_TIME_WAIT,
)
from .tuple import is_group_destination

# TCP states worth installing; the closing ones only as updates of an installed entry.
TCP_LIVE = frozenset((TCP_ESTABLISHED, TCP_FIN_WAIT, TCP_CLOSE_WAIT, TCP_LAST_ACK))
TCP_CLOSING = frozenset((TCP_TIME_WAIT, TCP_CLOSE))
# SCTP: installed once ESTABLISHED (with its vtags: the kernel checks them on every chunk);
# the closing states only for an association that was established.
SCTP_CLOSING = frozenset(
    (
        SCTP_CONNTRACK_SHUTDOWN_SENT,
        SCTP_CONNTRACK_SHUTDOWN_RECD,
        SCTP_CONNTRACK_SHUTDOWN_ACK_SENT,
        SCTP_CONNTRACK_CLOSED,
    )
)
SIDE_FLAGS = TCP_FLAG_WINDOW_SCALE | TCP_FLAG_SACK_PERM | TCP_FLAG_BE_LIBERAL
SIDE_MASK = SIDE_FLAGS | TCP_FLAG_CLOSE_INIT


class Desired(NamedTuple):
    """The kernel entry we want for a tracked connection (a tuple: cheap to make and compare)."""

    status: int
    state: int = -1  # TCP state, -1 for other protocols
    wscale_orig: int = 0
    wscale_reply: int = 0
    flags_orig: int = 0
    flags_reply: int = 0
    sctp_state: int = -1  # SCTP state, -1 for other protocols
    vtag_orig: int = 0
    vtag_reply: int = 0
    # CTA_SEQ_ADJ_ORIG / _REPLY: (correction_pos, offset_before, offset_after) each
    seqadj: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None


def remaining_timeout(conn: Conn, now: float) -> int:
    """Whole seconds left on the tracker's timer (at least 1), for CTA_TIMEOUT."""
    return max(1, math.ceil(conn.expires - now))


def desired(
    conn: Conn,
    now: float,
    installed: bool,
    assume_handshake: bool = False,
    require_forwarded: bool = False,
    unreplied: frozenset[tuple[int, int]] = frozenset(),
) -> Desired | None:
    """The entry to hold in the kernel for ``conn``, or None if it should not be there.

    ``installed`` says whether the kernel already holds our copy: a closing TCP
    state goes in for an entry that exists or a connection that had completed
    (ASSURED); a SYN answered by RST never does. ``assume_handshake``
    (capture prefiltered to control segments, so the handshake's final ACK is
    never seen) installs a SYN_RECV entry that has seen the SYN/ACK as the
    ESTABLISHED, ASSURED entry the master makes of it one round trip later.
    ``require_forwarded``: only entries the master was seen forwarding
    (``conntrack.confirm``); anything else on the segment may be forged. With two
    segments that also means the NAT mapping is known from paired copies: an entry
    picked up mid-stream with a guessed (identity) reply tuple is not forwarded yet.
    ``unreplied``: the ``(l4proto, port)`` of helper masters that go in unreplied
    (``Helper.install_unreplied``: the flow of a TFTP request).
    """
    if conn.expires <= now or (require_forwarded and not conn.forwarded):
        return None
    if is_group_destination(conn.orig[2]):
        return None  # multicast / broadcast: each router delivers or routes its own copy
    status = IPS_CONFIRMED | (conn.status & (IPS_SEEN_REPLY | IPS_ASSURED))
    st = conn.tcp
    if conn.orig[0] == PROTO_TCP:
        if st is None:
            return None
        state = st.state
        if assume_handshake and state == TCP_SYN_RECV and conn.status & IPS_SEEN_REPLY:
            state = TCP_ESTABLISHED
            status |= IPS_ASSURED
        if state in TCP_LIVE:
            extra = 0
        elif state in TCP_CLOSING and (installed or conn.status & IPS_ASSURED):
            # the master keeps closed connections for a while (TIME_WAIT 120 s): so do we,
            # with CLOSE_INIT so a new SYN on the same ports reopens cleanly
            extra = TCP_FLAG_CLOSE_INIT
        else:
            return None
        scale = st.flags0 & st.flags1 & TCP_FLAG_WINDOW_SCALE
        sa = conn.seqadj
        return Desired(
            status,
            state,
            st.td_scale0 if scale else 0,
            st.td_scale1 if scale else 0,
            (st.flags0 & SIDE_FLAGS) | extra,
            (st.flags1 & SIDE_FLAGS) | extra,
            seqadj=sa.values() if sa else None,
        )
    if conn.orig[0] == PROTO_SCTP:
        sc = conn.sctp
        if sc is None:
            return None
        if sc.state == SCTP_CONNTRACK_ESTABLISHED or (
            sc.state in SCTP_CLOSING and (installed or conn.status & IPS_ASSURED)
        ):
            return Desired(status, -1, 0, 0, 0, 0, sc.state, sc.vtag[0], sc.vtag[1])
        return None
    if not conn.status & IPS_SEEN_REPLY and not (
        unreplied and (conn.orig[0], conn.orig[4]) in unreplied
    ):
        return None
    return Desired(status)
