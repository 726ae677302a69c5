"""TCP connection tracking: the kernel's state table and everything around it.

Theory of operation (after ``net/netfilter/nf_conntrack_proto_tcp.c``, Linux 6.18):

* This module owns every TCP transition. It knows two directions only,
  ORIGINAL (the side whose packet created the entry) and REPLY, never
  "client" or "server".
* A packet is first classified (``tcp_index``): RST, SYN, SYN/ACK, FIN, ACK or
  NONE. ``TCP_CONNTRACKS[dir][index][old_state]`` gives the candidate new state:
  a real state, ``sIV`` (invalid) or ``sIG`` (ignore: let it pass, change
  nothing, but remember it in case a SYN/ACK later proves it right).
* What the table cannot express is small named code around it: reopening a
  closed connection on a new SYN, resynchronising on an ignored SYN, the
  simultaneous-open special case, RFC 5961 challenge ACKs and RST sequence
  validation.
* The new state is stored only if the packet passes the window checks
  (``tcp_in_window``: van Rooij's four bounds on seq/ack per direction).
* The timeout is then chosen from the state, shortened for retransmissions,
  unacknowledged data and zero windows; ASSURED is set when an entry that has
  seen a reply moves SYN_RECV/ESTABLISHED -> ESTABLISHED.

Sequence numbers are u32 and compared with the kernel's wrap-around
``before()``/``after()``.
"""

from __future__ import annotations

from typing import Final

from .entry import (
    IPS_ASSURED,
    IPS_FIXED_TIMEOUT,
    IPS_SEEN_REPLY,
    TCP_EXP_CHALLENGE_ACK,
    TCP_FLAG_BE_LIBERAL,
    TCP_FLAG_CLOSE_INIT,
    TCP_FLAG_DATA_UNACKNOWLEDGED,
    TCP_FLAG_MAXACK_SET,
    TCP_FLAG_SACK_PERM,
    TCP_FLAG_WINDOW_SCALE,
    TCP_SIMULTANEOUS_OPEN,
    Conn,
    ConnExtra,
    TcpState,
)
from .packet import TH_ACK, TH_FIN, TH_RST, TH_SYN, TH_URG, Packet, tcp_sack_edge, tcp_syn_options
from .states import (
    TCP_CLOSE,
    TCP_CLOSE_WAIT,
    TCP_ESTABLISHED,
    TCP_FIN_WAIT,
    TCP_IGNORE,
    TCP_LAST_ACK,
    TCP_MAX,
    TCP_NONE,
    TCP_RETRANS,
    TCP_SYN_RECV,
    TCP_SYN_SENT,
    TCP_SYN_SENT2,
    TCP_TIME_WAIT,
    TCP_UNACK,
)
from .timeouts import Timeouts
from .verdict import ACCEPT, IGNORE, INVALID, KILL, REPEAT

# Packet classes (enum tcp_bit_set), in the order the kernel checks them.
SYN: Final = 0
SYNACK: Final = 1
FIN: Final = 2
ACK: Final = 3
RST: Final = 4
NONE: Final = 5
INDEX_NAMES = ("SYN", "SYNACK", "FIN", "ACK", "RST", "NONE")

sNO: Final = 0
sSS: Final = 1
sSR: Final = 2
sES: Final = 3
sFW: Final = 4
sCW: Final = 5
sLA: Final = 6
sTW: Final = 7
sCL: Final = 8
sS2: Final = 9
sIV: Final = TCP_MAX
sIG: Final = TCP_IGNORE

# tcp_conntracks[dir][index][state] -- the kernel's table, row for row.
# Columns:       sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2
TCP_CONNTRACKS: tuple[tuple[tuple[int, ...], ...], ...] = (
    (  # ORIGINAL
        (sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2),  # syn
        (sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR),  # synack
        (sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV),  # fin
        (sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV),  # ack
        (sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL),  # rst
        (sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV),  # none
    ),
    (  # REPLY
        (sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2),  # syn
        (sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR),  # synack
        (sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV),  # fin
        (sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG),  # ack
        (sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL),  # rst
        (sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV),  # none
    ),
)

# tcp_valid_flags: allowed FIN/SYN/RST/ACK/URG combinations (PSH, ECE, CWR ignored).
_VALID = (TH_SYN, TH_SYN | TH_URG, TH_SYN | TH_ACK, TH_RST, TH_RST | TH_ACK,
          TH_FIN | TH_ACK, TH_FIN | TH_ACK | TH_URG, TH_ACK, TH_ACK | TH_URG)  # fmt: skip
VALID_FLAGS = tuple(i in _VALID for i in range(64))

# Class of every flag byte, precomputed (get_conntrack_index).
_INDEX = []
for _f in range(256):
    if _f & TH_RST:
        _INDEX.append(RST)
    elif _f & TH_SYN:
        _INDEX.append(SYNACK if _f & TH_ACK else SYN)
    elif _f & TH_FIN:
        _INDEX.append(FIN)
    elif _f & TH_ACK:
        _INDEX.append(ACK)
    else:
        _INDEX.append(NONE)
TCP_INDEX: tuple[int, ...] = tuple(_INDEX)

U32: Final = 0xFFFFFFFF
MAXACKWINCONST: Final = 66000


def before(a: int, b: int) -> bool:
    """``(s32)(a - b) < 0``"""
    return ((a - b) & U32) >= 0x80000000


def after(a: int, b: int) -> bool:
    """``(s32)(b - a) < 0``"""
    return ((b - a) & U32) >= 0x80000000


def segment_end(pkt: Packet) -> int:
    """seq + payload length (+1 for SYN, +1 for FIN), mod 2**32."""
    f = pkt.tcp_flags
    return (pkt.seq + pkt.l4len + (1 if f & TH_SYN else 0) + (1 if f & TH_FIN else 0)) & U32


def syn_options(pkt: Packet, scale: int, flags: int) -> tuple[int, int]:
    """(td_scale, flags) of a direction after its SYN's options (kernel ``tcp_options``)."""
    if not pkt.tcp_opts:
        return scale, flags  # no options: the kernel returns before touching scale or flags
    wscale, sack_perm = tcp_syn_options(pkt.tcp_opts)
    scale = 0
    flags &= TCP_FLAG_BE_LIBERAL
    if sack_perm:
        flags |= TCP_FLAG_SACK_PERM
    if wscale is not None:
        scale = wscale
        flags |= TCP_FLAG_WINDOW_SCALE
    return scale, flags


def tcp_new(conn: Conn, pkt: Packet, timeouts: Timeouts) -> bool:
    """Set up the TCP state of a brand-new entry; False if the packet cannot create one."""
    index = TCP_INDEX[pkt.tcp_flags]
    new_state = TCP_CONNTRACKS[0][index][TCP_NONE]
    if new_state >= TCP_MAX:
        return False
    st = TcpState()
    st.td_end0 = segment_end(pkt)
    st.td_maxwin0 = pkt.win or 1
    if new_state == TCP_SYN_SENT:
        st.td_maxend0 = st.td_end0
        st.td_scale0, st.flags0 = syn_options(pkt, st.td_scale0, st.flags0)
    elif not timeouts.tcp_loose:
        return False  # don't pick up connections mid-stream
    else:
        # Mid-stream pickup: history lost; assume SACK and be liberal about windows.
        st.td_maxend0 = (st.td_end0 + st.td_maxwin0) & U32
        st.flags0 = st.flags1 = TCP_FLAG_SACK_PERM | TCP_FLAG_BE_LIBERAL
    st.last_index = NONE
    conn.tcp = st
    return True


def tcp_in_window(
    st: TcpState,
    direction: int,
    index: int,
    pkt: Packet,
    liberal_sysctl: int,
    extra: ConnExtra | None = None,
) -> int:
    """The four window bounds; returns ACCEPT, IGNORE or INVALID (``tcp_in_window``).

    Runs for every segment: the two directions' fields are read into locals (``s_*`` the
    sender's, ``r_*`` the receiver's), the kernel's logic runs on those, and they are
    written back once at the end.
    """
    if direction:
        s_end, s_maxend, s_maxwin, s_maxack, s_scale, s_flags = (
            st.td_end1,
            st.td_maxend1,
            st.td_maxwin1,
            st.td_maxack1,
            st.td_scale1,
            st.flags1,
        )
        r_end, r_maxend, r_maxwin, r_scale, r_flags = (
            st.td_end0,
            st.td_maxend0,
            st.td_maxwin0,
            st.td_scale0,
            st.flags0,
        )
    else:
        s_end, s_maxend, s_maxwin, s_maxack, s_scale, s_flags = (
            st.td_end0,
            st.td_maxend0,
            st.td_maxwin0,
            st.td_maxack0,
            st.td_scale0,
            st.flags0,
        )
        r_end, r_maxend, r_maxwin, r_scale, r_flags = (
            st.td_end1, st.td_maxend1, st.td_maxwin1, st.td_scale1, st.flags1,
        )  # fmt: skip
    flags = pkt.tcp_flags
    seq = pkt.seq
    ack = sack = pkt.ack
    win_raw = pkt.win
    win = win_raw
    end = (seq + pkt.l4len + (1 if flags & TH_SYN else 0) + (1 if flags & TH_FIN else 0)) & U32

    if r_flags & TCP_FLAG_SACK_PERM and pkt.tcp_opts:
        sack = tcp_sack_edge(pkt.tcp_opts, ack)
    seqadj = extra.seqadj if extra is not None else None  # few entries have an extra
    if seqadj is not None:
        # NAT helper mangling: the ack counts the receiver's bytes as the master shifted
        # them, the receiver's td_end as it sent them (nf_ct_seq_offset of !dir, ack - 1)
        off = seqadj.offset(1 - direction, (ack - 1) & U32)
        ack = (ack - off) & U32
        sack = (sack - off) & U32

    res = -1  # decided: ACCEPT / IGNORE / INVALID; the fields are written back below
    init = False
    if s_maxwin == 0:
        if flags & TH_SYN:
            init = True
            if not flags & TH_ACK:
                res = ACCEPT  # simultaneous open
        else:
            # Mid-stream: take what the packet tells us.
            s_end = end
            swin = (win << s_scale) & U32
            s_maxwin = swin or 1
            s_maxend = (end + s_maxwin) & U32
            if r_maxwin == 0:
                # Other direction unseen: make checks III and IV pass until it speaks.
                r_end = r_maxend = sack
            elif sack == (r_end + 1) & U32:
                r_end = sack  # likely the answer to a keepalive
    elif flags & TH_SYN and after(end, s_end) and st.state in (TCP_SYN_SENT, TCP_SYN_RECV):
        # A re-initialised SYN(/ACK) with a higher sequence: restart this direction.
        init = True
        if direction == 1 and not flags & TH_ACK:
            res = ACCEPT
    if init:
        # SYN/ACK in reply to a SYN, or a reply-direction SYN (simultaneous open)
        s_end = s_maxend = end
        s_maxwin = win_raw or 1
        s_scale, s_flags = syn_options(pkt, s_scale, s_flags)
        # RFC 7323: window scaling only if both sides sent the option.
        if direction == 1 and not (
            s_flags & TCP_FLAG_WINDOW_SCALE and r_flags & TCP_FLAG_WINDOW_SCALE
        ):
            s_scale = 0
            r_scale = 0

    if res < 0:
        if not flags & TH_ACK:
            ack = sack = r_end  # no ACK: pretend it acked what was sent
        elif flags & TH_RST and ack == 0:
            ack = sack = r_end  # broken stacks: RST+ACK with ack 0

        if flags & TH_RST and seq == 0 and st.state == TCP_SYN_SENT:
            seq = end = s_end  # RST answering a SYN

        liberal = liberal_sysctl or s_flags & TCP_FLAG_BE_LIBERAL
        maxackwindow = s_maxwin if s_maxwin > MAXACKWINCONST else MAXACKWINCONST

        # The checks below inline before(a, b) as ``(a - b) & U32 >= H`` and after(a, b)
        # as ``(b - a) & U32 >= H``.
        H = 0x80000000
        if (seq - s_maxend - 1) & U32 < H:  # not before(seq, td_maxend + 1)
            # I. SEQ over the upper bound.
            overshot = (end - s_maxend + 1) & U32
            ack_ok = after(sack, (r_end - maxackwindow - 1) & U32)
            in_recv_win = r_maxwin and after(end, (s_end - r_maxwin - 1) & U32)
            if in_recv_win and ack_ok and overshot <= r_maxwin and before(sack, (r_end + 1) & U32):
                # Sender overran the window: let the ack for this data be accepted later.
                s_end = end
                s_flags |= TCP_FLAG_DATA_UNACKNOWLEDGED
                res = ACCEPT if liberal else IGNORE
            else:
                res = ACCEPT if liberal else INVALID
        elif (sack - r_end - 1) & U32 < H:  # not before(sack, receiver.td_end + 1)
            res = ACCEPT if liberal else INVALID  # III. ACK of data never seen
        # not after(end, sender.td_end - receiver.td_maxwin - 1)
        elif r_maxwin and (s_end - r_maxwin - 1 - end) & U32 < H:
            res = ACCEPT if liberal else IGNORE  # II. old data retransmitted
        # not after(sack, td_end - MAXACKWINDOW - 1)
        elif (r_end - maxackwindow - 1 - sack) & U32 < H:
            res = ACCEPT if liberal else IGNORE  # IV. very old ack
        else:
            res = ACCEPT
            if not flags & TH_SYN:
                win = (win << s_scale) & U32

            # Update sender data.
            swin = (win + sack - ack) & U32
            if s_maxwin < swin:
                s_maxwin = swin
            if (s_end - end) & U32 >= H:  # after(end, sender.td_end)
                s_end = end
                s_flags |= TCP_FLAG_DATA_UNACKNOWLEDGED
            if flags & TH_ACK:
                if not s_flags & TCP_FLAG_MAXACK_SET:
                    s_maxack = ack
                    s_flags |= TCP_FLAG_MAXACK_SET
                elif (s_maxack - ack) & U32 >= H:  # after(ack, sender.td_maxack)
                    s_maxack = ack

            # Update receiver data.
            if r_maxwin != 0 and (s_maxend - end) & U32 >= H:  # after(end, td_maxend)
                r_maxwin = (r_maxwin + end - s_maxend) & U32
            if (r_maxend - 1 - sack - win) & U32 >= H:  # after(sack + win, td_maxend - 1)
                r_maxend = (sack + win) & U32
                if win == 0:
                    r_maxend = (r_maxend + 1) & U32
            if ack == r_end:
                r_flags &= ~TCP_FLAG_DATA_UNACKNOWLEDGED

            # Retransmission counter: identical ACK-class segments in a row.
            if index == ACK:
                if (
                    st.last_dir == direction
                    and st.last_seq == seq
                    and st.last_ack == ack
                    and st.last_end == end
                    and st.last_win == win_raw
                ):
                    st.retrans += 1
                else:
                    st.last_dir = direction
                    st.last_seq = seq
                    st.last_ack = ack
                    st.last_end = end
                    st.last_win = win_raw
                    st.retrans = 0

    if direction:
        st.td_end1 = s_end
        st.td_maxend1 = s_maxend
        st.td_maxwin1 = s_maxwin
        st.td_maxack1 = s_maxack
        st.td_scale1 = s_scale
        st.flags1 = s_flags
        st.td_end0 = r_end
        st.td_maxend0 = r_maxend
        st.td_maxwin0 = r_maxwin
        st.td_scale0 = r_scale
        st.flags0 = r_flags
    else:
        st.td_end0 = s_end
        st.td_maxend0 = s_maxend
        st.td_maxwin0 = s_maxwin
        st.td_maxack0 = s_maxack
        st.td_scale0 = s_scale
        st.flags0 = s_flags
        st.td_end1 = r_end
        st.td_maxend1 = r_maxend
        st.td_maxwin1 = r_maxwin
        st.td_scale1 = r_scale
        st.flags1 = r_flags
    return res


def _handle_invalid(conn: Conn, direction: int, index: int, now: float, t: Timeouts) -> None:
    """Shorten an ASSURED entry's timeout when FIN/RST answer each other out of window."""
    st = conn.tcp
    assert st is not None
    if not conn.status & IPS_ASSURED or conn.status & IPS_FIXED_TIMEOUT:
        return
    if index not in (RST, FIN):
        return
    if st.last_dir != direction and st.last_index in (FIN, RST):
        expires = conn.expires - now
        if expires < 120:
            return
        unack = t.tcp[TCP_UNACK]
        if expires > unack:
            conn.expires = now + unack
    else:
        st.last_index = index
        st.last_dir = direction


def _established(conn: Conn) -> bool:
    """``nf_conntrack_tcp_established``: ESTABLISHED and ASSURED."""
    st = conn.tcp
    return st is not None and st.state == TCP_ESTABLISHED and bool(conn.status & IPS_ASSURED)


def _can_early_drop(state: int) -> bool:
    return state in (TCP_FIN_WAIT, TCP_LAST_ACK, TCP_TIME_WAIT, TCP_CLOSE, TCP_CLOSE_WAIT)


def tcp_packet(conn: Conn, direction: int, pkt: Packet, t: Timeouts) -> int:
    """Process one segment on ``conn`` (``nf_conntrack_tcp_packet``).

    Returns ACCEPT, IGNORE, INVALID, KILL (accepted, delete the entry now) or
    REPEAT (delete the entry and process the packet again as a new one).
    The caller has already created ``conn.tcp`` for new entries (``tcp_new``).
    """
    st = conn.tcp
    assert st is not None
    now = pkt.ts
    flags = pkt.tcp_flags
    old_state = st.state
    index = TCP_INDEX[flags]
    new_state = TCP_CONNTRACKS[direction][index][old_state]

    if new_state != TCP_ESTABLISHED:  # the common case needs none of this
        if new_state == TCP_SYN_SENT and old_state >= TCP_TIME_WAIT:
            # Reopen after close (RFC 1122) if a side closed or we saw its RST.
            if (st.flags0 | st.flags1) & TCP_FLAG_CLOSE_INIT or (
                st.last_dir == direction and st.last_index == RST
            ):
                return REPEAT
            new_state = TCP_IGNORE  # otherwise handled like an ignored packet
        if new_state == TCP_IGNORE:
            if (
                index == SYNACK
                and st.last_index == SYN
                and st.last_dir != direction
                and pkt.ack == st.last_end
            ):
                # This SYN/ACK answers a SYN we ignored: both ends are in sync, we are not.
                old_state = TCP_SYN_SENT
                new_state = TCP_SYN_RECV
                last = st.s1 if st.last_dir else st.s0
                last.td_end = st.last_end
                last.td_maxend = st.last_end
                last.td_maxwin = st.last_win or 1
                last.td_scale = st.last_wscale
                st.last_flags &= ~TCP_EXP_CHALLENGE_ACK
                last.flags = st.last_flags
                st.side(direction).reset()
            else:
                st.last_index = index
                st.last_dir = direction
                st.last_seq = pkt.seq
                st.last_end = segment_end(pkt)
                st.last_win = pkt.win
                if index == SYN and direction == 0:
                    # Remember its options: a SYN/ACK may prove this SYN right.
                    st.last_flags = st.last_wscale = 0
                    scale, sflags = syn_options(pkt, 0, 0)
                    if sflags & TCP_FLAG_WINDOW_SCALE:
                        st.last_flags |= TCP_FLAG_WINDOW_SCALE
                        st.last_wscale = scale
                    if sflags & TCP_FLAG_SACK_PERM:
                        st.last_flags |= TCP_FLAG_SACK_PERM
                    if old_state == TCP_LAST_ACK:
                        st.last_flags |= TCP_EXP_CHALLENGE_ACK  # RFC 5961 challenge ACK expected
                if old_state == TCP_SYN_SENT and index == ACK and direction == 1:
                    st.last_ack = pkt.ack  # possible challenge ACK to our SYN
                return IGNORE
        elif new_state == TCP_MAX:
            return INVALID
        elif new_state == TCP_TIME_WAIT:
            if (
                old_state == TCP_LAST_ACK
                and index == ACK
                and st.last_dir != direction
                and st.last_index == SYN
                and st.last_flags & TCP_EXP_CHALLENGE_ACK
            ):
                # An RFC 5961 challenge ACK, not the final ACK of the close.
                st.last_flags &= ~TCP_EXP_CHALLENGE_ACK
                return IGNORE
        elif new_state == TCP_SYN_SENT2:
            st.last_flags |= TCP_SIMULTANEOUS_OPEN
        elif new_state == TCP_SYN_RECV:
            if direction == 1 and index == ACK and st.last_flags & TCP_SIMULTANEOUS_OPEN:
                new_state = TCP_ESTABLISHED
        elif new_state == TCP_CLOSE and index == RST:
            skip_window = _can_early_drop(old_state)
            if not skip_window:
                peer = st.s0 if direction else st.s1
                if peer.flags & TCP_FLAG_MAXACK_SET and st.last_index != SYN:
                    seq = pkt.seq
                    if seq == 0 and not _established(conn):
                        pass  # answer to a SYN we let through: normal window check
                    elif before(seq, peer.td_maxack) and not t.tcp_ignore_invalid_rst:
                        return INVALID
                    elif not _established(conn) or seq == peer.td_maxack:
                        pass
                    elif st.last_index == ACK and st.last_dir == direction and seq == st.last_end:
                        pass  # RST right after a data train
                    else:
                        new_state = old_state  # inexact: keep state, wait for a challenge ACK
                if (
                    (conn.status & IPS_SEEN_REPLY and st.last_index == SYN)
                    or (not conn.status & IPS_ASSURED and st.last_index == ACK)
                ) and pkt.ack == st.last_end:
                    skip_window = True  # RST to a SYN/ACK we let through out of sync
                elif (
                    old_state == TCP_SYN_SENT
                    and st.last_index == ACK
                    and st.last_dir == 1
                    and pkt.seq == st.last_ack
                ):
                    skip_window = True  # RST answering a challenge ACK
            if not skip_window:
                res = tcp_in_window(st, direction, index, pkt, t.tcp_be_liberal, conn.extra)
                if res != ACCEPT:
                    if res == INVALID:
                        _handle_invalid(conn, direction, index, now, t)
                    return res
            return _in_window(conn, st, direction, index, old_state, new_state, pkt, t)

    res = tcp_in_window(st, direction, index, pkt, t.tcp_be_liberal, conn.extra)
    if res != ACCEPT:
        if res == INVALID:
            _handle_invalid(conn, direction, index, now, t)
        return res
    return _in_window(conn, st, direction, index, old_state, new_state, pkt, t)


def _in_window(
    conn: Conn,
    st: TcpState,
    direction: int,
    index: int,
    old_state: int,
    new_state: int,
    pkt: Packet,
    t: Timeouts,
) -> int:
    """An in-window packet: store the state, pick the timeout, set ASSURED."""
    st.last_index = index
    st.last_dir = direction
    st.state = new_state
    if old_state != new_state and new_state == TCP_FIN_WAIT:
        if direction:
            st.flags1 |= TCP_FLAG_CLOSE_INIT
        else:
            st.flags0 |= TCP_FLAG_CLOSE_INIT

    tt = t.tcp
    state_timeout = tt[new_state]
    if st.retrans >= t.tcp_max_retrans and state_timeout > tt[TCP_RETRANS]:
        timeout = tt[TCP_RETRANS]
    elif index == RST:
        timeout = tt[TCP_CLOSE]
    elif (st.flags0 | st.flags1) & TCP_FLAG_DATA_UNACKNOWLEDGED and state_timeout > tt[TCP_UNACK]:
        timeout = tt[TCP_UNACK]
    elif st.last_win == 0 and state_timeout > tt[TCP_RETRANS]:
        timeout = tt[TCP_RETRANS]
    else:
        timeout = state_timeout

    status = conn.status
    if not status & IPS_SEEN_REPLY:
        if pkt.tcp_flags & TH_RST:
            return KILL  # the only answer was a RST: not a connection
        if index == SYN and old_state == TCP_SYN_SENT:
            return ACCEPT  # retransmitted SYN: don't renew the timer
        if new_state == TCP_ESTABLISHED and timeout > tt[TCP_UNACK]:
            timeout = tt[TCP_UNACK]  # picked up mid-stream, never answered
    elif (
        not status & IPS_ASSURED
        and old_state in (TCP_SYN_RECV, TCP_ESTABLISHED)
        and new_state == TCP_ESTABLISHED
    ):
        conn.status = status | IPS_ASSURED
    if not conn.status & IPS_FIXED_TIMEOUT:
        conn.expires = pkt.ts + timeout
    return ACCEPT


def tcp_error(pkt: Packet) -> bool:
    """True if the kernel's ``tcp_error`` would reject the segment (bad flag combination)."""
    return not VALID_FLAGS[pkt.tcp_flags & 0x37]  # PSH (0x08) and the ECN bits do not count
