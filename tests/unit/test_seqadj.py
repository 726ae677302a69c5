"""NAT sequence adjustment (nf_nat_ftp rewrites PORT/227 and changes the length): learned
from the two copies of the rewritten segment, applied to the tracker's window check, and
the copies of later segments (shifted by the master) still paired."""

from __future__ import annotations

from sniffover.conntrack.confirm import ForwardingConfirmer
from sniffover.conntrack.entry import IPS_SEQ_ADJUST
from sniffover.conntrack.packet import HW_FROM_MASTER, HW_TO_MASTER
from sniffover.conntrack.seqadj import SeqAdj, _after
from sniffover.conntrack.states import TCP_ESTABLISHED
from sniffover.conntrack.table import ConntrackTable
from sniffover.conntrack.verdict import INVALID
from tests.helpers import ACK, FIN, SYN, A, B, syn_opts, tcp

IN, OUT = HW_TO_MASTER, HW_FROM_MASTER
N = bytes([198, 51, 100, 254])  # the SNAT address
PORT_IN = b"PORT 192,0,2,1,156,64\r\n"
PORT_OUT = b"PORT 198,51,100,254,156,64\r\n"  # 5 bytes longer


class Wire:
    """Client A:40000 -> server B:21 through a master that SNATs A to N and, like
    nf_nat_ftp + nf_ct_seq_adjust, shifts the client's later sequence numbers."""

    def __init__(self, feed, shift: int) -> None:
        self.feed = feed
        self.shift = shift  # applied to client seq after the PORT, server ack likewise
        self.ipid = 1
        self.t = 0.0

    def client(self, flags, seq, ack, data=b"", out_data=None, shifted=False, opts=b""):
        self._pair(flags, seq, ack, data, out_data, True, shifted, opts)

    def server(self, flags, seq, ack, data=b"", shifted=False, opts=b""):
        self._pair(flags, seq, ack, data, None, False, shifted, opts)

    def _pair(self, flags, seq, ack, data, out_data, from_client, shifted, opts):
        self.t += 0.01
        self.ipid += 1
        out_data = data if out_data is None else out_data
        if from_client:
            p_in = tcp(self.t, flags, seq, ack, sport=40000, dport=21, data=len(data), opts=opts)
            oseq = seq + self.shift if shifted else seq
            p_out = tcp(self.t + 1e-4, flags, oseq, ack, src=N, sport=40000, dport=21,
                        data=len(out_data), opts=opts)  # fmt: skip
        else:
            p_in = tcp(self.t, flags, seq, ack, src=B, dst=N, sport=21, dport=40000,
                       data=len(data), opts=opts)  # fmt: skip
            oack = ack - self.shift if shifted else ack
            p_out = tcp(self.t + 1e-4, flags, seq, oack, src=B, dst=A, sport=21, dport=40000,
                        data=len(data), opts=opts)  # fmt: skip
        for p, hw, d in ((p_in, IN, data), (p_out, OUT, out_data)):
            p.hw, p.ipid, p.payload = hw, self.ipid, d
            self.feed(p)


def ftp_session(feed, shift=5):
    w = Wire(feed, shift)
    w.client(SYN, 1000, 0, opts=syn_opts())
    w.server(SYN | ACK, 5000, 1001, opts=syn_opts())
    w.client(ACK, 1001, 5001)
    w.server(ACK, 5001, 1001, b"220 hi\r\n")
    w.client(ACK, 1001, 5009)
    w.client(ACK, 1001, 5009, PORT_IN, PORT_OUT)  # rewritten: 23 -> 28 bytes
    w.server(ACK, 5009, 1024 + 5, b"200 ok\r\n", shifted=True)
    w.client(ACK, 1024, 5017, b"NOOP\r\n", shifted=True)
    w.server(ACK, 5017, 1030 + 5, b"200 n\r\n", shifted=True)
    w.client(ACK, 1030, 5024, shifted=True)
    return w


def test_rewrite_is_learned_and_later_segments_stay_in_window():
    t = ConntrackTable()
    f = ForwardingConfirmer(t, two_segments=True, hold_teardowns=False)
    ftp_session(f.feed)
    (conn,) = t.entries(1.0)
    assert conn.reply == (6, B, N, 21, 40000)
    assert conn.seqadj is not None and conn.status & IPS_SEQ_ADJUST
    assert conn.seqadj.values() == ((1001, 0, 5), (0, 0, 0))  # as nf_ct_seqadj_set leaves it
    assert f.counters["seqadj-recorded"] == 1 and f.counters["egress-unmatched"] == 0
    assert f.counters["seqadj-paired"] >= 3
    assert t.verdicts[INVALID] == 0  # the server's acks count the 5 bytes: taken off
    assert conn.tcp.state == TCP_ESTABLISHED and conn.tcp.td_end0 == 1030
    assert conn.tcp.td_end1 == 5024


def test_a_teardown_after_the_rewrite_is_still_paired():
    t = ConntrackTable()
    f = ForwardingConfirmer(t, two_segments=True)  # FIN held until its copy is seen
    w = ftp_session(f.feed)
    w.client(FIN | ACK, 1030, 5024, shifted=True)
    (conn,) = t.entries(1.0)
    assert f.counters["teardown-confirmed"] == 1 and f.counters["egress-unmatched"] == 0
    assert conn.tcp.td_end0 == 1031


def test_without_the_adjustment_the_acks_are_out_of_window():
    """Control: the same session with the ack offset ignored is INVALID (the check bites)."""
    t = ConntrackTable()
    f = ForwardingConfirmer(t, two_segments=True, hold_teardowns=False)
    f.mangle_ports = frozenset()  # nothing learned: no adjustment
    ftp_session(f.feed)
    assert t.verdicts[INVALID] > 0 or f.counters["egress-unmatched"] > 0


def test_seqadj_set_semantics():
    sa = SeqAdj()
    assert not sa.record(0, 100, 0)  # no change in length: nothing
    assert sa.record(0, 100, 5) and sa.values()[0] == (100, 0, 5)
    assert not sa.record(0, 100, 5)  # retransmission of the same segment
    assert not sa.record(0, 90, 3)  # an older one
    assert sa.record(0, 200, -2) and sa.values()[0] == (200, 5, 3)
    assert sa.offset(0, 200) == 5 and sa.offset(0, 201) == 3
    # a copy leaving the master: seq + offset of the original number, undone
    for seq in (150, 200, 201, 400):
        assert seq in sa.ingress_seqs(0, (seq + sa.offset(0, seq)) & 0xFFFFFFFF)
    assert sa.ingress_seqs(0, 405) == (402,)  # unambiguous far from the rewrite
    # the other direction's ack: ack - offset(ack - before), undone
    for ack in (150, 204, 205, 206, 400):  # nf_ct_seq_adjust's ackoff, then undone
        off = sa.after[0] if _after(ack - sa.before[0], sa.pos[0]) else sa.before[0]
        assert ack in sa.ingress_acks(1, ack - off)
    # wrap-around: position near 2**32
    w = SeqAdj()
    w.record(1, 0xFFFFFFF0, 2)
    assert w.offset(1, 5) == 2 and w.offset(1, 0xFFFFFFF0) == 0


def test_other_segment_lengths_are_not_a_rewrite():
    """Copies of a helper segment that differ in length but are no PORT/EPRT/227/229 (a
    stream cut differently on the way out) record nothing."""
    t = ConntrackTable()
    f = ForwardingConfirmer(t, two_segments=True, hold_teardowns=False)
    w = Wire(f.feed, 0)
    w.client(SYN, 1000, 0, opts=syn_opts())
    w.server(SYN | ACK, 5000, 1001, opts=syn_opts())
    w.client(ACK, 1001, 5001)
    w.client(ACK, 1001, 5001, b"LIST something\r\n", b"LIST some")
    (conn,) = t.entries(1.0)
    assert conn.seqadj is None and f.counters["seqadj-recorded"] == 0
