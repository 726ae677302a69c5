"""SCTP tracking as Linux 6.18's ``nf_conntrack_proto_sctp.c`` does it (pure, table-driven).

The kernel tracks an association, not an endpoint: a state per entry driven by the
chunk types each packet carries, plus one verification tag per direction.

* **Chunk checks** (``do_basic_checks``): a packet needs at least one chunk, no
  zero-length chunk, COOKIE_ECHO / COOKIE_ACK only as the first chunk and INIT /
  INIT_ACK / SHUTDOWN_COMPLETE only alone; otherwise INVALID.
* **New entries** (``sctp_new``): a packet carrying ABORT, SHUTDOWN_COMPLETE or
  COOKIE_ACK never creates one (out of the blue, RFC 9260 8.4); every chunk must have
  a transition out of NONE in the ORIGINAL direction (so DATA, SACK... create nothing).
  An INIT (common-header vtag must be 0) stores its initiate tag as the REPLY vtag, a
  HEARTBEAT its vtag as the ORIGINAL one (a secondary path of a multi-homed
  association), an out-of-the-blue SHUTDOWN_ACK its vtag as the REPLY one.
* **Vtag checks** (RFC 9260 8.5): a packet without INIT, SHUTDOWN_COMPLETE,
  COOKIE_ECHO, ABORT, SHUTDOWN_ACK, HEARTBEAT or HEARTBEAT_ACK must carry its
  direction's tag. Per chunk: INIT needs vtag 0; ABORT and SHUTDOWN_COMPLETE carry the
  direction's tag, or with the T flag the other direction's; COOKIE_ECHO the
  direction's; HEARTBEAT / HEARTBEAT_ACK learn a missing tag, and a mismatching
  HEARTBEAT (no DATA bundled) is let through without touching the state or the timer,
  the next HEARTBEAT_ACK with a new tag from the other side then replaces both tags
  (a peer restarted). INIT and INIT_ACK record their initiate tags for the other
  direction; an INIT_ACK whose tag contradicts a known one is INVALID (also on an INIT
  collision); COOKIE_ACK forgets which sides sent INIT.
* **States** follow ``SCTP_TRANSITIONS[direction][chunk class][state]`` chunk by chunk;
  chunks outside the eleven classes (DATA, SACK, ...) leave the state alone.
  Entering ESTABLISHED sets ASSURED. 6.x starts an association in CLOSED (the INIT),
  COOKIE_WAIT comes with the INIT_ACK.
* **Timeouts**: each accepted packet refreshes to the per-state timeout of the state
  it left the entry in (``nf_conntrack_sctp_timeout_*``; 6.18 defaults CLOSED 10 s,
  COOKIE_WAIT / COOKIE_ECHOED 3 s, ESTABLISHED 210 s, SHUTDOWN_* 3 s, HEARTBEAT_SENT
  30 s), except an INIT that leaves a confirmed entry CLOSED (an unanswered INIT sent
  again): accepted, timer not renewed.

* **CRC32c** (``sctp_error``): with ``nf_conntrack_checksum=1`` the kernel verifies it in
  PRE_ROUTING on a packet nobody verified yet and makes a bad one INVALID before any
  other check: no entry, no state or timer change (verified: pcaps/sctp_bad_crc). The
  decoder computes it when the whole packet was captured.

Not reproduced: chunks past the capture's snap length (the kernel walks the whole packet;
a cut packet's CRC is taken as good).
"""

from __future__ import annotations

from typing import Final

from .entry import IPS_ASSURED, IPS_CONFIRMED, IPS_FIXED_TIMEOUT, Conn, SctpState
from .packet import Packet
from .states import (
    SCTP_CONNTRACK_CLOSED,
    SCTP_CONNTRACK_ESTABLISHED,
    SCTP_CONNTRACK_MAX,
    SCTP_CONNTRACK_NONE,
    SCTP_CONNTRACK_SHUTDOWN_ACK_SENT,
    SCTP_CONNTRACK_SHUTDOWN_SENT,
)
from .timeouts import Timeouts
from .verdict import ACCEPT, INVALID

# Chunk types (SCTP_CID_*)
SCTP_CID_DATA: Final = 0
SCTP_CID_INIT: Final = 1
SCTP_CID_INIT_ACK: Final = 2
SCTP_CID_SACK: Final = 3
SCTP_CID_HEARTBEAT: Final = 4
SCTP_CID_HEARTBEAT_ACK: Final = 5
SCTP_CID_ABORT: Final = 6
SCTP_CID_SHUTDOWN: Final = 7
SCTP_CID_SHUTDOWN_ACK: Final = 8
SCTP_CID_ERROR: Final = 9
SCTP_CID_COOKIE_ECHO: Final = 10
SCTP_CID_COOKIE_ACK: Final = 11
SCTP_CID_SHUTDOWN_COMPLETE: Final = 14

SCTP_CHUNK_FLAG_T: Final = 0x01  # ABORT / SHUTDOWN_COMPLETE: the tag is the sender's own
SCTP_FLAG_HEARTBEAT_VTAG_FAILED: Final = 1

# The chunk classes of the transition table, in its row order; other chunk types keep
# the state as it is.
CHUNK_CLASSES = (
    SCTP_CID_INIT,
    SCTP_CID_INIT_ACK,
    SCTP_CID_ABORT,
    SCTP_CID_SHUTDOWN,
    SCTP_CID_SHUTDOWN_ACK,
    SCTP_CID_ERROR,
    SCTP_CID_COOKIE_ECHO,
    SCTP_CID_COOKIE_ACK,
    SCTP_CID_SHUTDOWN_COMPLETE,
    SCTP_CID_HEARTBEAT,
    SCTP_CID_HEARTBEAT_ACK,
)
CHUNK_CLASS = {cid: i for i, cid in enumerate(CHUNK_CLASSES)}


def _row(text: str) -> tuple[int, ...]:
    """A table row written with the kernel's two-letter state names."""
    abbrev = {"NO": 0, "CL": 1, "CW": 2, "CE": 3, "ES": 4, "SS": 5, "SR": 6, "SA": 7, "HS": 8,
              "IV": SCTP_CONNTRACK_MAX}  # fmt: skip
    cells = tuple(abbrev[c] for c in text.split())
    assert len(cells) == SCTP_CONNTRACK_MAX
    return cells


# SCTP_TRANSITIONS[dir][chunk class][state]: the new state (sctp_conntracks in 6.18).
# Columns: NO CL CW CE ES SS SR SA HS.
SCTP_TRANSITIONS = (
    (  # ORIGINAL
        _row("CL CL CW CE ES CL CL SA CW"),  # INIT
        _row("CL CL CW CE ES SS SR SA CL"),  # INIT_ACK
        _row("CL CL CL CL CL CL CL CL CL"),  # ABORT
        _row("CL CL CW CE SS SS SR SA CL"),  # SHUTDOWN
        _row("SA CL CW CE ES SA SA SA SA"),  # SHUTDOWN_ACK
        _row("CL CL CW CE ES SS SR SA CL"),  # ERROR
        _row("CL CL CE CE ES SS SR SA CL"),  # COOKIE_ECHO
        _row("CL CL CW ES ES SS SR SA CL"),  # COOKIE_ACK
        _row("CL CL CW CE ES SS SR CL CL"),  # SHUTDOWN_COMPLETE
        _row("HS CL CW CE ES SS SR SA HS"),  # HEARTBEAT
        _row("CL CL CW CE ES SS SR SA HS"),  # HEARTBEAT_ACK
    ),
    (  # REPLY
        _row("IV CL CW CE ES SS SR SA IV"),  # INIT
        _row("IV CW CW CE ES SS SR SA IV"),  # INIT_ACK
        _row("IV CL CL CL CL CL CL CL IV"),  # ABORT
        _row("IV CL CW CE SR SS SR SA IV"),  # SHUTDOWN
        _row("IV CL CW CE ES SA SA SA IV"),  # SHUTDOWN_ACK
        _row("IV CL CW CL ES SS SR SA IV"),  # ERROR
        _row("IV CL CE CE ES SS SR SA IV"),  # COOKIE_ECHO
        _row("IV CL CW ES ES SS SR SA IV"),  # COOKIE_ACK
        _row("IV CL CW CE ES SS SR CL IV"),  # SHUTDOWN_COMPLETE
        _row("IV CL CW CE ES SS SR SA HS"),  # HEARTBEAT
        _row("IV CL CW CE ES SS SR SA ES"),  # HEARTBEAT_ACK
    ),
)

# A packet carrying any of these is exempt from the plain vtag check (their own rules apply).
_VTAG_EXEMPT = frozenset(
    (
        SCTP_CID_INIT,
        SCTP_CID_SHUTDOWN_COMPLETE,
        SCTP_CID_COOKIE_ECHO,
        SCTP_CID_ABORT,
        SCTP_CID_SHUTDOWN_ACK,
        SCTP_CID_HEARTBEAT,
        SCTP_CID_HEARTBEAT_ACK,
    )
)
# Out-of-the-blue chunks that never create an entry.
_OOTB_NO_NEW = frozenset((SCTP_CID_ABORT, SCTP_CID_SHUTDOWN_COMPLETE, SCTP_CID_COOKIE_ACK))
_FIRST_ONLY = frozenset((SCTP_CID_COOKIE_ACK, SCTP_CID_COOKIE_ECHO))
_ALONE = frozenset((SCTP_CID_INIT, SCTP_CID_INIT_ACK, SCTP_CID_SHUTDOWN_COMPLETE))


def sctp_new_state(direction: int, state: int, chunk_type: int) -> int:
    """The state after one chunk (``SCTP_CONNTRACK_MAX``: invalid)."""
    cls = CHUNK_CLASS.get(chunk_type)
    if cls is None:
        return state  # DATA, SACK, ... do not change the state
    return SCTP_TRANSITIONS[direction][cls][state]


def basic_checks(chunks: bytes) -> bool:
    """``do_basic_checks`` (True = the chunks are fine); the decoder already turned a
    zero-length chunk into "no chunks"."""
    if not chunks:
        return False
    if len(chunks) > 1:
        if chunks[0] in _ALONE:
            return False
        for t in chunks[1:]:
            if t in _FIRST_ONLY or t in _ALONE:
                return False
    return True


def sctp_new(conn: Conn, pkt: Packet, t: Timeouts) -> bool:
    """May this packet create an entry? Sets up ``conn.sctp`` if so (``sctp_new`` plus the
    checks the kernel makes before it on an unconfirmed entry)."""
    chunks: bytes | None = getattr(pkt, "sctp_chunks", None)
    if chunks is None or not basic_checks(chunks):
        return False
    if any(c in _OOTB_NO_NEW for c in chunks):
        return False
    st = SctpState()
    vtag = pkt.sctp_vtag
    for c in chunks:
        new = sctp_new_state(0, SCTP_CONNTRACK_NONE, c)
        if new in (SCTP_CONNTRACK_NONE, SCTP_CONNTRACK_MAX):
            return False
        if c == SCTP_CID_INIT:
            if vtag or pkt.sctp_init_tag < 0:
                return False
            st.vtag[1] = pkt.sctp_init_tag
        elif c == SCTP_CID_HEARTBEAT:
            st.vtag[0] = vtag
        elif c == SCTP_CID_SHUTDOWN_ACK:
            st.vtag[1] = vtag
    conn.sctp = st
    return True


def sctp_packet(conn: Conn, direction: int, pkt: Packet, t: Timeouts) -> int:
    """``nf_conntrack_sctp_packet`` on an entry that ``sctp_new`` set up (or a primed one)."""
    chunks: bytes | None = getattr(pkt, "sctp_chunks", None)
    if chunks is None or not basic_checks(chunks):
        return INVALID
    if t.checksum and pkt.sctp_bad_crc:  # sctp_error(): "bad CRC", before anything else
        return INVALID
    st = conn.sctp
    if st is None:  # made elsewhere without protocol info: state NONE, no tags yet
        st = conn.sctp = SctpState()
    vtag = pkt.sctp_vtag
    vtags = st.vtag
    other = 1 - direction
    present = set(chunks)
    if present.isdisjoint(_VTAG_EXEMPT) and vtag != vtags[direction]:
        return INVALID
    flags = pkt.sctp_flags
    old_state = new_state = SCTP_CONNTRACK_NONE
    ignore = False
    for i, c in enumerate(chunks):
        if c == SCTP_CID_INIT:
            if vtag:
                return INVALID
        elif c in (SCTP_CID_ABORT, SCTP_CID_SHUTDOWN_COMPLETE):
            if vtag != vtags[other if flags[i] & SCTP_CHUNK_FLAG_T else direction]:
                return INVALID
        elif c == SCTP_CID_COOKIE_ECHO:
            if vtag != vtags[direction]:
                return INVALID
        elif c == SCTP_CID_COOKIE_ACK:
            st.init[0] = st.init[1] = False
        elif c in (SCTP_CID_HEARTBEAT, SCTP_CID_HEARTBEAT_ACK):
            if vtags[direction] == 0:
                vtags[direction] = vtag
            elif vtag != vtags[direction]:
                if SCTP_CID_DATA in present or ignore:
                    return INVALID
                if c == SCTP_CID_HEARTBEAT:
                    # maybe the peer restarted: let it through, see whether the other
                    # side answers with a new tag
                    st.flags |= SCTP_FLAG_HEARTBEAT_VTAG_FAILED
                    st.last_dir = direction
                    ignore = True
                    continue
                if not st.flags & SCTP_FLAG_HEARTBEAT_VTAG_FAILED or st.last_dir == direction:
                    return INVALID
                st.flags &= ~SCTP_FLAG_HEARTBEAT_VTAG_FAILED
                vtags[direction] = vtag
                vtags[other] = 0
            else:
                st.flags &= ~SCTP_FLAG_HEARTBEAT_VTAG_FAILED

        old_state = st.state
        new_state = sctp_new_state(direction, old_state, c)
        if new_state == SCTP_CONNTRACK_MAX:
            return INVALID

        if c == SCTP_CID_INIT:
            init_tag = pkt.sctp_init_tag
            if init_tag < 0:
                return INVALID
            # an INIT carrying the tag already known is a retransmission: not a new INIT
            if old_state == SCTP_CONNTRACK_NONE or vtags[other] != init_tag:
                if st.init[direction] and st.init[other]:
                    st.init[other] = False
                st.init[direction] = True
            vtags[other] = init_tag
            if (
                new_state == SCTP_CONNTRACK_CLOSED
                and old_state == SCTP_CONNTRACK_CLOSED
                and conn.status & IPS_CONFIRMED
            ):
                ignore = True  # INIT sent again: the timer is not renewed
        elif c == SCTP_CID_INIT_ACK:
            init_tag = pkt.sctp_init_tag
            if init_tag < 0:
                return INVALID
            known = vtags[other]
            if not st.init[other] and known and known != init_tag:
                return INVALID
            if st.init[direction] and st.init[other] and known != init_tag:
                return INVALID  # INIT collision
            vtags[other] = init_tag

        st.state = new_state
        if new_state != old_state and new_state == SCTP_CONNTRACK_ESTABLISHED:
            conn.status |= IPS_ASSURED

    if not ignore and not conn.status & IPS_FIXED_TIMEOUT:
        conn.expires = pkt.ts + t.sctp[new_state]
    return ACCEPT


def sctp_can_early_drop(conn: Conn) -> bool:
    """The shutdown states may be early-dropped even when ASSURED."""
    st = conn.sctp
    return st is not None and (
        SCTP_CONNTRACK_SHUTDOWN_SENT <= st.state <= SCTP_CONNTRACK_SHUTDOWN_ACK_SENT
    )
