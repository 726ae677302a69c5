"""SCTP: the decoder's chunk walk and the tracker's rules on crafted packets.

Each tracker expectation is a behaviour of the 6.18 kernel seen in the golden captures
(``pcaps/sctp_*``, recorded through a router namespace) or in conntrack-semantics §3.6.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sniffover.capture.decode import Decoder
from sniffover.capture.headers import LINKTYPE_RAW
from sniffover.conntrack.entry import IPS_ASSURED, IPS_SEEN_REPLY
from sniffover.conntrack.listing import format_entry, parse_line
from sniffover.conntrack.sctp import SCTP_TRANSITIONS
from sniffover.conntrack.states import (
    SCTP_CONNTRACK_CLOSED,
    SCTP_CONNTRACK_COOKIE_ECHOED,
    SCTP_CONNTRACK_COOKIE_WAIT,
    SCTP_CONNTRACK_ESTABLISHED,
    SCTP_CONNTRACK_HEARTBEAT_SENT,
    SCTP_CONNTRACK_SHUTDOWN_ACK_SENT,
    SCTP_CONNTRACK_SHUTDOWN_RECD,
    SCTP_CONNTRACK_SHUTDOWN_SENT,
)
from sniffover.conntrack.table import ConntrackTable
from sniffover.conntrack.timeouts import Timeouts
from sniffover.conntrack.verdict import ACCEPT, INVALID
from sniffover.lab.frames import (
    SC_COOKIE_ACK,
    SC_SHUTDOWN_ACK,
    crc32c,
    sc_abort,
    sc_cookie_echo,
    sc_data,
    sc_heartbeat,
    sc_heartbeat_ack,
    sc_init,
    sc_init_ack,
    sc_sack,
    sc_shutdown,
    sc_shutdown_complete,
    sctp_chunk,
    sctp_packet,
)

C, S = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 1])
TC, TS = 0x11111111, 0x22222222


def ip4(payload: bytes, src: bytes = C, dst: bytes = S) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, 132, 0, src, dst)
    return hdr + payload


class Flow:
    """Client 192.0.2.1:40000 <-> server 198.51.100.1:5000 through a table, with a clock."""

    def __init__(self, timeouts: Timeouts | None = None) -> None:
        self.table = ConntrackTable(timeouts)
        self.dec = Decoder(LINKTYPE_RAW)
        self.now = 100.0

    def c(self, *chunks: bytes, vtag: int = TS, dt: float = 0.1) -> int:
        return self._send(ip4(sctp_packet(40000, 5000, vtag, *chunks)), dt)

    def s(self, *chunks: bytes, vtag: int = TC, dt: float = 0.1) -> int:
        return self._send(ip4(sctp_packet(5000, 40000, vtag, *chunks), S, C), dt)

    def _send(self, frame: bytes, dt: float) -> int:
        self.now += dt
        pkt = self.dec.decode(self.now, frame)
        assert pkt is not None
        return self.table.process(pkt)

    def entry(self):  # type: ignore[no-untyped-def]
        got = self.table.get((132, C, S, 40000, 5000))
        assert got is not None
        conn = got[0]
        assert conn.sctp is not None
        return conn

    def missing(self) -> bool:
        return self.table.get((132, C, S, 40000, 5000)) is None

    def left(self) -> float:
        return self.entry().expires - self.now

    def handshake(self) -> None:
        assert self.c(sc_init(TC), vtag=0) == ACCEPT
        assert self.s(sc_init_ack(TS)) == ACCEPT
        assert self.c(sc_cookie_echo()) == ACCEPT
        assert self.s(SC_COOKIE_ACK) == ACCEPT


# --- crafting and decoding ---------------------------------------------------------------


def test_crc32c_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283


def test_decoder_reads_vtag_chunks_and_init_tag() -> None:
    dec = Decoder(LINKTYPE_RAW)
    pkt = dec.decode(0.0, ip4(sctp_packet(40000, 5000, 0, sc_init(0xCAFEBABE))))
    assert pkt is not None
    assert (pkt.sport, pkt.dport, pkt.sctp_vtag) == (40000, 5000, 0)
    assert pkt.sctp_chunks == b"\x01" and pkt.sctp_init_tag == 0xCAFEBABE
    pkt = dec.decode(0.0, ip4(sctp_packet(1, 2, 7, sc_data(1, 5), sc_sack(3), sc_abort(True))))
    assert pkt is not None
    assert pkt.sctp_chunks == bytes([0, 3, 6]) and pkt.sctp_flags == bytes([3, 0, 1])
    assert pkt.sctp_init_tag == -1 and pkt.sctp_vtag == 7
    # a zero-length chunk: the kernel rejects the packet; "no chunks"
    pkt = dec.decode(0.0, ip4(sctp_packet(1, 2, 7, sc_sack(3), b"\x00\x00\x00\x00")))
    assert pkt is not None and pkt.sctp_chunks == b""
    # an INIT cut short: no initiate tag
    pkt = dec.decode(0.0, ip4(sctp_packet(1, 2, 0, b"\x01\x00\x00\x14\x00\x00")))
    assert pkt is not None and pkt.sctp_chunks == b"\x01" and pkt.sctp_init_tag == -1


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300), vtag=st.integers(0, 2**32 - 1), cut=st.integers(0, 400))
def test_garbage_sctp_never_raises(body: bytes, vtag: int, cut: int) -> None:
    frame = ip4(struct.pack("!HHII", 40000, 5000, vtag, 0) + body)
    dec = Decoder(LINKTYPE_RAW)
    table = ConntrackTable()
    for f in (frame, frame[: 20 + cut]):
        pkt = dec.decode(1.0, f)
        if pkt is None:
            continue
        assert len(pkt.sctp_chunks) == len(pkt.sctp_flags) <= len(body) // 4
        assert table.process(pkt) in (ACCEPT, INVALID)
        swapped = dec.decode(2.0, ip4(f[20:], S, C)[: len(f)])
        if swapped is not None:
            assert table.process(swapped) in (ACCEPT, INVALID)


# --- the tracker -------------------------------------------------------------------------


def test_transition_table_shape() -> None:
    assert len(SCTP_TRANSITIONS) == 2
    assert all(len(rows) == 11 and all(len(r) == 9 for r in rows) for rows in SCTP_TRANSITIONS)


def test_handshake_states_timeouts_and_assured() -> None:
    f = Flow()
    assert f.c(sc_init(TC), vtag=0) == ACCEPT
    e = f.entry()
    assert e.sctp.state == SCTP_CONNTRACK_CLOSED and f.left() == pytest.approx(10)
    assert not e.status & IPS_SEEN_REPLY
    assert f.s(sc_init_ack(TS)) == ACCEPT
    assert e.sctp.state == SCTP_CONNTRACK_COOKIE_WAIT and f.left() == pytest.approx(3)
    assert e.sctp.vtag == [TS, TC]
    assert f.c(sc_cookie_echo(), sc_data(1000)) == ACCEPT
    assert e.sctp.state == SCTP_CONNTRACK_COOKIE_ECHOED and not e.status & IPS_ASSURED
    assert f.s(SC_COOKIE_ACK, sc_sack(1000)) == ACCEPT
    assert e.sctp.state == SCTP_CONNTRACK_ESTABLISHED and e.status & IPS_ASSURED
    assert f.left() == pytest.approx(210)
    line = format_entry(e, f.now + 0.5)
    assert "sctp     132 209 ESTABLISHED src=192.0.2.1" in line and "[ASSURED]" in line
    listed = parse_line(line)
    assert listed.state == "ESTABLISHED" and listed.orig == e.orig and listed.assured


def test_wrong_vtag_is_invalid_and_does_not_refresh() -> None:
    f = Flow()
    f.handshake()
    before = f.entry().expires
    assert f.c(sc_data(1001), vtag=0xDEADBEEF) == INVALID
    assert f.s(sc_data(5000), vtag=TS) == INVALID  # the server must use the client's tag
    assert f.entry().expires == before
    assert f.c(sc_data(1001)) == ACCEPT and f.s(sc_sack(1001)) == ACCEPT


@pytest.mark.parametrize(
    "chunks, vtag",
    [
        ((sc_data(1),), TS),  # DATA: no transition out of NONE
        ((SC_COOKIE_ACK,), TS),  # out of the blue
        ((sc_abort(),), TS),
        ((sc_shutdown_complete(),), TS),
        ((sc_init(TC),), 5),  # INIT with a non-zero vtag
        ((sc_init(TC), sc_data(1)), 0),  # INIT not alone
        ((sc_data(1), sc_cookie_echo()), TS),  # COOKIE_ECHO not first
        ((sc_cookie_echo(), sc_data(1)), 0),  # every chunk must leave NONE
        ((sc_init_ack(TS),), TC),  # INIT_ACK: plain vtag check against 0
    ],
)
def test_what_creates_no_entry(chunks: tuple[bytes, ...], vtag: int) -> None:
    f = Flow()
    assert f.c(*chunks, vtag=vtag) == INVALID
    assert f.missing()


def test_init_sent_again_does_not_renew_the_timer() -> None:
    f = Flow()
    f.c(sc_init(TC), vtag=0)
    f.c(sc_init(TC), vtag=0, dt=3.0)
    assert f.left() == pytest.approx(7)
    f.c(sc_init(0x0BADCAFE), vtag=0, dt=1.0)  # another tag: still CLOSED, not renewed
    assert f.left() == pytest.approx(6) and f.entry().sctp.vtag[1] == 0x0BADCAFE


def test_shutdown_sequences() -> None:
    f = Flow()
    f.handshake()
    e = f.entry()
    assert f.c(sc_shutdown(5000)) == ACCEPT and e.sctp.state == SCTP_CONNTRACK_SHUTDOWN_SENT
    assert f.left() == pytest.approx(3)
    assert f.s(SC_SHUTDOWN_ACK) == ACCEPT and e.sctp.state == SCTP_CONNTRACK_SHUTDOWN_ACK_SENT
    assert f.c(sc_shutdown_complete()) == ACCEPT and e.sctp.state == SCTP_CONNTRACK_CLOSED
    assert f.left() == pytest.approx(10) and e.status & IPS_ASSURED
    g = Flow()
    g.handshake()
    assert g.s(sc_shutdown(1000)) == ACCEPT
    assert g.entry().sctp.state == SCTP_CONNTRACK_SHUTDOWN_RECD


def test_abort_vtag_rules() -> None:
    f = Flow()
    f.handshake()
    assert f.c(sc_abort(), vtag=0x0BADF00D) == INVALID
    assert f.entry().sctp.state == SCTP_CONNTRACK_ESTABLISHED
    assert f.s(sc_abort(t_flag=True), vtag=TS) == ACCEPT  # T: the sender's own tag
    assert f.entry().sctp.state == SCTP_CONNTRACK_CLOSED


def test_heartbeat_creates_heartbeat_sent_then_established() -> None:
    f = Flow()
    assert f.c(sc_heartbeat(), vtag=TS) == ACCEPT
    e = f.entry()
    assert e.sctp.state == SCTP_CONNTRACK_HEARTBEAT_SENT and f.left() == pytest.approx(30)
    assert f.s(sc_heartbeat_ack(), vtag=TC) == ACCEPT
    assert e.sctp.state == SCTP_CONNTRACK_ESTABLISHED and e.status & IPS_ASSURED
    assert e.sctp.vtag == [TS, TC]
    assert f.c(sc_data(1)) == ACCEPT


def test_heartbeat_with_new_tags_after_a_restart() -> None:
    f = Flow()
    f.handshake()
    e = f.entry()
    before = e.expires
    # a HEARTBEAT with an unknown tag passes without refreshing; the answer with a new
    # tag from the other side replaces the tags
    assert f.c(sc_heartbeat(), vtag=0x33333333) == ACCEPT and e.expires == before
    assert f.c(sc_heartbeat(), sc_data(1), vtag=0x33333333) == INVALID
    assert f.s(sc_heartbeat_ack(), vtag=0x44444444) == ACCEPT
    assert e.sctp.vtag == [0, 0x44444444]
    assert f.c(sc_heartbeat(), vtag=0x33333333) == ACCEPT and e.sctp.vtag[0] == 0x33333333
    assert f.c(sc_data(2), vtag=0x33333333) == ACCEPT


def test_unknown_chunk_types_keep_the_state() -> None:
    f = Flow()
    f.handshake()
    assert f.c(sctp_chunk(0xC0, 0, b"xx")) == ACCEPT  # e.g. FORWARD_TSN
    assert f.entry().sctp.state == SCTP_CONNTRACK_ESTABLISHED


def test_timeouts_from_sysctl() -> None:
    t = Timeouts.from_sysctl(
        {"nf_conntrack_sctp_timeout_established": "100", "nf_conntrack_sctp_timeout_closed": "4"}
    )
    assert t.sctp[SCTP_CONNTRACK_ESTABLISHED] == 100 and t.sctp[0] == t.sctp[1] == 4
    assert "nf_conntrack_sctp_timeout_heartbeat_sent" in Timeouts.sysctl_names()
    f = Flow(t)
    f.handshake()
    assert f.left() == pytest.approx(100)


def test_sync_installs_established_sctp_with_its_vtags() -> None:
    from sniffover.conntrack.install_policy import desired
    from sniffover.kernel.ctnetlink import encode_ct_new

    f = Flow()
    f.c(sc_init(TC), vtag=0)
    f.s(sc_init_ack(TS))
    assert desired(f.entry(), f.now, installed=False) is None  # not before ESTABLISHED
    f.c(sc_cookie_echo())
    f.s(SC_COOKIE_ACK)
    want = desired(f.entry(), f.now, installed=False)
    assert want is not None and want.state == -1
    assert (want.sctp_state, want.vtag_orig, want.vtag_reply) == (4, TS, TC)
    msg = encode_ct_new(
        f.entry().orig,
        f.entry().reply,
        status=want.status,
        timeout=200,
        sctp=(want.sctp_state, want.vtag_orig, want.vtag_reply),
    )
    # CTA_PROTOINFO { CTA_PROTOINFO_SCTP { STATE 4, VTAG_ORIGINAL, VTAG_REPLY } }
    assert struct.pack("!I", TS) + struct.pack("=HH", 8, 3) + struct.pack("!I", TC) in msg
    f.c(sc_shutdown(5000))
    assert desired(f.entry(), f.now, installed=True) is not None  # closing: as an update
    g = Flow()
    g.c(sc_init(TC), vtag=0)
    g.s(sc_abort())
    assert desired(g.entry(), g.now, installed=False) is None  # never established


# --- CRC32c (sctp_error with nf_conntrack_checksum=1) ----------------------------------


def _bad_crc(frame: bytes) -> bytes:
    return frame[:28] + bytes(b ^ 0xFF for b in frame[28:32]) + frame[32:]


def test_decoder_verifies_the_crc_when_the_packet_is_whole() -> None:
    dec = Decoder(LINKTYPE_RAW)
    good = ip4(sctp_packet(40000, 5000, 0, sc_init(TC)))
    assert dec.decode(0.0, good).sctp_bad_crc is False  # type: ignore[union-attr]
    assert dec.decode(0.0, _bad_crc(good)).sctp_bad_crc is True  # type: ignore[union-attr]
    # cut by the snap length: cannot tell, taken as good (the kernel saw the whole packet)
    cut = dec.decode(0.0, _bad_crc(good)[:-4])
    assert cut is not None and cut.sctp_bad_crc is False and cut.sctp_chunks == b"\x01"


def test_bad_crc_creates_nothing_and_changes_nothing() -> None:
    f = Flow()
    assert f._send(_bad_crc(ip4(sctp_packet(40000, 5000, 0, sc_init(TC)))), 0.1) == INVALID
    assert f.missing()
    f.handshake()
    e = f.entry()
    before = e.expires
    bad = [
        ip4(sctp_packet(40000, 5000, TS, sc_shutdown(5000))),
        ip4(sctp_packet(40000, 5000, TS, sc_abort())),
        ip4(sctp_packet(5000, 40000, TC, sc_heartbeat()), S, C),
        ip4(sctp_packet(40000, 5000, TS, sc_data(1001))),
    ]
    for frame in bad:
        assert f._send(_bad_crc(frame), 1.0) == INVALID
    assert e.sctp.state == SCTP_CONNTRACK_ESTABLISHED and e.expires == before
    assert f.c(sc_shutdown(5000)) == ACCEPT  # the same chunk with its CRC right: SHUTDOWN_SENT
    assert e.sctp.state != SCTP_CONNTRACK_ESTABLISHED


def test_bad_crc_accepted_with_checksum_off() -> None:
    f = Flow(Timeouts.from_sysctl({"nf_conntrack_checksum": "0"}))
    assert f._send(_bad_crc(ip4(sctp_packet(40000, 5000, 0, sc_init(TC)))), 0.1) == ACCEPT
    assert not f.missing()


def test_decoder_crc32c_equals_the_reference_for_every_length() -> None:
    from sniffover.capture.checksum import crc32c as fast

    data = bytes((i * 37 + 11) & 0xFF for i in range(70))
    for n in range(3, len(data) + 1):  # every tail length of the 8-byte steps
        for start in (0, 3):
            assert fast(data, start, n) == crc32c(data[start:n])
    assert fast(b"123456789") == 0xE3069283
