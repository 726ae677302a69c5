"""Sequence adjustment of a NATed helper master (the kernel's ``nf_conntrack_seqadj.c``).

With NAT, the FTP helper (``nf_nat_ftp``) rewrites the address in PORT/EPRT/227/229 and
the segment may grow or shrink. From then on the master shifts every later sequence
number of that direction by the difference, and every acknowledgement of it back, and
remembers how in the entry (``struct nf_ct_seqadj``, per direction: ``correction_pos``,
``offset_before``, ``offset_after``; ctnetlink ``CTA_SEQ_ADJ_ORIG`` / ``_REPLY``). A standby
without those numbers passes the unshifted sequence numbers after a takeover and the
peers see garbage (the server reads "OP" for "NOOP").

The standby sees both copies of the rewritten segment (going into the master and
leaving it, ``confirm.py``): the length difference is the offset, the sequence number of
the copy going in is the correction position (the helper runs on the packet before its
own sequence number is shifted). ``record`` applies them as ``nf_ct_seqadj_set`` does;
``offset`` is ``nf_ct_seq_offset`` (the tracker's window check takes the receiver's
offset off every acknowledgement, as ``tcp_in_window`` does); ``ingress_seqs`` /
``ingress_acks`` undo the master's shift on a copy leaving it, to pair it with the copy
that went in.

Pure: no I/O.
"""

from __future__ import annotations

U32 = 0xFFFFFFFF
H = 1 << 31


def _after(a: int, b: int) -> bool:
    """``after(a, b)``: a is later than b in sequence space (s32 difference > 0)."""
    return 0 < ((a - b) & U32) < H


def _s32(v: int) -> int:
    v &= U32
    return v - (1 << 32) if v & H else v


class SeqAdj:
    """``struct nf_conn_seqadj``: ``pos[d]``, ``before[d]``, ``after[d]`` for d = 0, 1."""

    __slots__ = ("pos", "before", "after")

    def __init__(self) -> None:
        self.pos = [0, 0]
        self.before = [0, 0]
        self.after = [0, 0]

    def record(self, direction: int, seq: int, off: int) -> bool:
        """``nf_ct_seqadj_set``: the segment of ``direction`` starting at ``seq`` (as its
        sender numbered it) was rewritten ``off`` bytes longer. Only the first rewrite, a
        later one or a retransmission of the last counts; returns whether it changed."""
        if not off:
            return False
        d = 1 if direction else 0
        if self.before[d] == self.after[d] or _after(seq, self.pos[d]):
            self.pos[d] = seq & U32
            self.before[d] = self.after[d]
            self.after[d] = _s32(self.after[d] + off)
            return True
        return False

    def offset(self, direction: int, seq: int) -> int:
        """``nf_ct_seq_offset``: the shift of sequence number ``seq`` of ``direction``."""
        d = 1 if direction else 0
        return self.after[d] if _after(seq, self.pos[d]) else self.before[d]

    def ingress_seqs(self, direction: int, seq: int) -> tuple[int, ...]:
        """The sequence numbers a copy leaving the master with ``seq`` may have had going
        in (``nf_ct_seq_adjust`` added ``offset`` of the original number; after a rewrite
        that shrank the segment two numbers map to one)."""
        d = 1 if direction else 0
        late = (seq - self.after[d]) & U32
        early = (seq - self.before[d]) & U32
        out = []
        if _after(late, self.pos[d]):
            out.append(late)
        if not _after(early, self.pos[d]) and early not in out:
            out.append(early)
        return tuple(out)

    def ingress_acks(self, direction: int, ack: int) -> tuple[int, ...]:
        """The acknowledgements a copy of ``direction`` leaving the master with ``ack`` may
        have had going in (``nf_ct_seq_adjust`` took the other direction's shift off)."""
        o = 0 if direction else 1
        late = (ack + self.after[o]) & U32
        early = (ack + self.before[o]) & U32
        out = []
        if _after((late - self.before[o]) & U32, self.pos[o]):
            out.append(late)
        if not _after((early - self.before[o]) & U32, self.pos[o]) and early not in out:
            out.append(early)
        return tuple(out)

    def values(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """((pos, before, after) ORIGINAL, (pos, before, after) REPLY), offsets as u32."""
        return (
            (self.pos[0], self.before[0] & U32, self.after[0] & U32),
            (self.pos[1], self.before[1] & U32, self.after[1] & U32),
        )

    def __bool__(self) -> bool:
        return any(self.before) or any(self.after)

    def __repr__(self) -> str:
        return f"<SeqAdj {self.values()}>"
