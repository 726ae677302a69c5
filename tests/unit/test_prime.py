"""Priming without root: the serve stream (auth, framing, truncation, fuzz) and file sources."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sniffover.conntrack.entry import IPS_ASSURED, IPS_CONFIRMED, IPS_SEEN_REPLY
from sniffover.conntrack.listing import ListingError, parse_expect_line, parse_listing
from sniffover.conntrack.snapshot import TCP_STATE_BY_NAME, SnapshotEntry, SnapshotExpectation
from sniffover.errors import CliError
from sniffover.prime import handshake
from sniffover.prime import server as serve_mod
from sniffover.prime import stream as snapstream
from sniffover.prime.client import (
    PrimeError,
    decode_stream,
    decode_stream_full,
    fetch,
    listing_snapshot,
    parse_source,
)
from sniffover.prime.handshake import parse_listen, read_key
from sniffover.prime.records import decode_body, decode_expect_body, encode_body
from sniffover.prime.server import Server
from sniffover.prime.stream import CHUNK_ENTRIES, bytes_reader, encode_stream, read_stream

PCAPS = Path(__file__).resolve().parents[2] / "pcaps"
A, B = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 1])
A6 = bytes.fromhex("20010db8000100000000000000000001")
B6 = bytes.fromhex("20010db8000200000000000000000001")


def sk(name: bytes) -> bytes:
    """A 32-byte stream key named ``name`` (the AEAD's key length)."""
    return hashlib.sha256(name).digest()


def sample_entries(n: int = 50) -> list[SnapshotEntry]:
    out = []
    for i in range(n):
        if i % 3 == 0:
            e = SnapshotEntry(
                (6, A, B, 40000 + i, 443),
                (6, B, A, 443, 40000 + i),
                0xE,
                431999 - i,
                tcp_state=3,
                wscale_orig=7,
                wscale_reply=9,
                flags_orig=0x23,
                flags_reply=0x03,
                mark=i,
            )
        elif i % 3 == 1:
            e = SnapshotEntry((17, A6, B6, 5000 + i, 53), (17, B6, A6, 53, 5000 + i), 0x8, 29)
        else:
            e = SnapshotEntry((1, A, B, i, 8 << 8), (1, B, A, i, 0), 0xA, 30, zone=7)
        out.append(e)
    out[0].labels = bytes([8, 0, 0, 0])
    out[0].helper = "ftp"
    out[0].extra = {"state": "x", "k": "v"}
    return out


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    p = tmp_path / "key"
    p.write_bytes(b"correct horse battery staple\n")
    p.chmod(0o600)
    return str(p)


@pytest.fixture
def wrong_key_file(tmp_path: Path) -> str:
    p = tmp_path / "wrong"
    p.write_bytes(b"not the key, though long enough\n")
    p.chmod(0o600)
    return str(p)


@pytest.fixture
def server(key_file: str) -> Iterator[Server]:
    entries = sample_entries()
    srv = Server("127.0.0.1:0", read_key(key_file), timeout=5, dump=lambda: entries)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.close()
    t.join(5)


def addr(srv: Server) -> str:
    return f"127.0.0.1:{srv.address[1]}"


def test_round_trip(server: Server, key_file: str) -> None:
    before = time.time()
    snap = fetch(addr(server), key_file, timeout=5, retries=0)
    assert snap.entries == sample_entries()
    assert before - 1 <= snap.taken_at <= time.time()
    assert snap.bytes > 0 and snap.seconds >= 0 and snap.source == addr(server)
    deadline = time.monotonic() + 5  # the server logs its pull after the client has it
    while not server.stats and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.stats[-1].ok and server.stats[-1].entries == 50


def test_wrong_key_is_authentication_failure_without_retry(
    server: Server, wrong_key_file: str
) -> None:
    t0 = time.monotonic()
    with pytest.raises(PrimeError, match="authentication failed"):
        fetch(addr(server), wrong_key_file, timeout=5, retries=3, backoff=1.0)
    assert time.monotonic() - t0 < 1.0  # not retried
    deadline = time.monotonic() + 5
    while not server.stats and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not server.stats[-1].ok


class Recorder:
    """A sink that keeps what ``fetch`` staged in it, and how."""

    def __init__(self) -> None:
        self.begun = 0
        self.chunks: list[list[SnapshotEntry]] = []

    def begin(self) -> None:
        self.begun += 1
        self.chunks = []

    def add(self, taken_at: float, entries: list[SnapshotEntry]) -> None:
        self.chunks.append(entries)


def dying_server(key_file: str, entries: list[SnapshotEntry], die_after: int) -> Server:
    """A master whose dump fails after ``die_after`` entries (it crashed mid-pull)."""

    def dump() -> Iterator[SnapshotEntry]:
        for i, e in enumerate(entries):
            if i == die_after:
                raise OSError("master went away")
            yield e

    srv = Server("127.0.0.1:0", read_key(key_file), timeout=5, dump=dump)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_truncated_stream(key_file: str) -> None:
    """The master dies after sending one whole chunk: the chunk was staged as it came,
    the pull still fails (every attempt starts the staging over), so nothing is applied."""
    entries = sample_entries(CHUNK_ENTRIES + 500)
    srv = dying_server(key_file, entries, CHUNK_ENTRIES + 100)
    sink = Recorder()
    try:
        with pytest.raises(PrimeError, match="truncated"):
            fetch(addr(srv), key_file, timeout=5, retries=1, backoff=0.01, sink=sink)
    finally:
        srv.close()
    assert sink.begun == 2 and [len(c) for c in sink.chunks] == [CHUNK_ENTRIES]


def test_streamed_pull_goes_to_the_sink_chunk_by_chunk(key_file: str) -> None:
    entries = sample_entries(2 * CHUNK_ENTRIES + 7)
    srv = Server("127.0.0.1:0", read_key(key_file), timeout=5, dump=lambda: iter(entries))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    sink = Recorder()
    try:
        snap = fetch(addr(srv), key_file, timeout=5, retries=0, sink=sink)
    finally:
        srv.close()
    assert [len(c) for c in sink.chunks] == [CHUNK_ENTRIES, CHUNK_ENTRIES, 7]
    assert [e for c in sink.chunks for e in c] == entries
    assert snap.entries == [] and snap.count == len(entries)


def test_abandoned_pull_ends_the_dump(key_file: str) -> None:
    """The standby goes away in the middle of the stream: the server closes the dump (for
    the kernel's dump that closes its netlink socket) instead of leaving it suspended."""
    gone, closed = threading.Event(), threading.Event()
    entries = sample_entries(10)

    def dump() -> Iterator[SnapshotEntry]:
        try:
            for i in range(CHUNK_ENTRIES * 50):
                if i == CHUNK_ENTRIES + 1:
                    gone.wait(5)  # the first chunk is out; the client hangs up now
                yield entries[i % 10]
        finally:
            closed.set()

    key = read_key(key_file)
    srv = Server("127.0.0.1:0", key, timeout=5, dump=dump)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        c = socket.create_connection(("127.0.0.1", srv.address[1]), timeout=5)
        hello = c.recv(handshake.HELLO.size, socket.MSG_WAITALL)
        sn = handshake.HELLO.unpack(hello)[2]
        cn = os.urandom(32)
        c.sendall(cn + handshake.client_proof(key, sn, cn))
        assert c.recv(33, socket.MSG_WAITALL)[0] == handshake.STATUS_OK
        assert c.recv(100)  # the stream has begun
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # reset
        gone.set()
        assert closed.wait(5)
        deadline = time.monotonic() + 5
        while not srv.stats and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.stats and not srv.stats[-1].ok
    finally:
        srv.close()


def test_tampered_stream(server: Server, key_file: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = snapstream.StreamWriter.chunk

    def flip(self: snapstream.StreamWriter, entries: list[SnapshotEntry]) -> bytes:
        data = bytearray(real(self, entries))  # sealed: changed on the way, as on the wire
        data[40] ^= 1
        return bytes(data)

    monkeypatch.setattr(snapstream.StreamWriter, "chunk", flip)
    sink = Recorder()
    with pytest.raises(PrimeError, match="authentication failed"):
        fetch(addr(server), key_file, timeout=5, retries=0, sink=sink)
    assert sink.chunks == []  # the chunk failed its MAC: never decoded, never staged


def test_refused_is_retried_then_fails(key_file: str) -> None:
    srv = Server("127.0.0.1:0", b"k" * 32, dump=list)
    port = srv.address[1]
    srv.close()  # nothing listens there now
    t0 = time.monotonic()
    with pytest.raises(PrimeError, match="refused"):
        fetch(f"127.0.0.1:{port}", key_file, timeout=2, retries=2, backoff=0.1)
    assert 0.25 < time.monotonic() - t0 < 3


def test_saved_stream_file(server: Server, key_file: str, tmp_path: Path) -> None:
    saved = tmp_path / "snap.bin"
    snap = fetch(addr(server), key_file, timeout=5, retries=0, save_to=str(saved))
    again = fetch(str(saved), key_file)
    assert again.entries == snap.entries and again.taken_at == snap.taken_at
    with pytest.raises(PrimeError, match="key"):
        fetch(str(saved), None)
    data = bytearray(saved.read_bytes())
    (tmp_path / "short.bin").write_bytes(bytes(data[:-1]))
    with pytest.raises(PrimeError, match="truncated"):
        fetch(str(tmp_path / "short.bin"), key_file)


def test_stream_is_bound_to_the_session() -> None:
    entries = sample_entries(5)
    data = encode_stream(entries, 1000.5, sk(b"session-a"))
    assert decode_stream(data, sk(b"session-a")) == (1000.5, entries)
    with pytest.raises(PrimeError, match="authentication"):
        decode_stream(data, sk(b"session-b"))
    for cut in (0, 10, len(data) // 2, len(data) - 1):
        with pytest.raises(PrimeError, match="truncated"):
            decode_stream(data[:cut], sk(b"session-a"))


def test_key_file_checks(tmp_path: Path) -> None:
    p = tmp_path / "k"
    p.write_bytes(b"a secret of 16+ bytes")
    p.chmod(0o644)
    with pytest.raises(CliError, match="group/others"):
        read_key(str(p))
    p.chmod(0o600)
    assert read_key(str(p)) == b"a secret of 16+ bytes"
    p.write_bytes(b"\n")
    with pytest.raises(CliError, match="empty"):
        read_key(str(p))
    with pytest.raises(CliError, match="No such file"):
        read_key(str(tmp_path / "missing"))
    with pytest.raises(CliError, match="empty"):
        serve_mod.serve("127.0.0.1:0", str(p))


def test_listen_and_source_parsing() -> None:
    assert parse_listen("0.0.0.0") == ("0.0.0.0", 7445)
    assert parse_listen("192.0.2.1:9000") == ("192.0.2.1", 9000)
    assert parse_listen("[2001:db8::1]:9000") == ("2001:db8::1", 9000)
    assert parse_listen("::") == ("::", 7445)
    assert parse_source("[::1]") == ("::1", 7445)
    assert parse_source("fw1:22", 7445) == ("fw1", 22)
    with pytest.raises(CliError):
        parse_listen("192.0.2.1:http")
    with pytest.raises(PrimeError):
        parse_source("fw1:0")


def test_metrics_listen_parsing() -> None:
    """``--metrics`` goes through the same parser, with its own rules: a port is required
    and follows the last colon, ``:PORT`` is this host only (issue 13: it was every
    address); every address only when asked."""
    from sniffover.agent.metrics import parse_listen as metrics_listen

    assert metrics_listen("127.0.0.1:9477") == ("127.0.0.1", 9477)
    assert metrics_listen(":9477") == ("127.0.0.1", 9477)
    assert metrics_listen("[]:9477") == ("127.0.0.1", 9477)
    assert metrics_listen("0.0.0.0:9477") == ("0.0.0.0", 9477)
    assert metrics_listen("[::]:9477") == ("::", 9477)
    assert metrics_listen("[2001:db8::1]:9477") == ("2001:db8::1", 9477)
    assert metrics_listen("2001:db8::1:9477") == ("2001:db8::1", 9477)
    for bad in ("127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "[::1]", "host:http"):
        with pytest.raises(ValueError, match=r"^--metrics .*: expected ADDR:PORT$"):
            metrics_listen(bad)


def test_server_logs_why_a_request_failed(key_file: str, caplog: pytest.LogCaptureFixture) -> None:
    """A client that closes within its request, or sends none in time: one failure line
    naming the error as the server has always logged it."""
    srv = Server("127.0.0.1:0", read_key(key_file), timeout=0.3, dump=list)
    try:
        with caplog.at_level("INFO", logger="sniffover.serve"):
            ours, theirs = socket.socketpair()
            with theirs:
                theirs.sendall(bytes(10))
                theirs.shutdown(socket.SHUT_WR)
                assert not srv.handle(ours, "peer1").ok
            ours, theirs = socket.socketpair()
            with theirs:
                assert not srv.handle(ours, "peer2").ok
    finally:
        srv.close()
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        ln.startswith("pull from peer1 failed: ConnectionError: peer closed the connection (")
        for ln in lines
    ), lines
    assert any(ln.startswith("pull from peer2 failed: TimeoutError: ") for ln in lines), lines


CONNTRACK_FILES = sorted(PCAPS.glob("*.conntrack"))


@pytest.mark.parametrize("path", CONNTRACK_FILES, ids=lambda p: p.stem)
def test_conntrack_files(path: Path) -> None:
    snap = fetch(str(path), None)
    listed = parse_listing(path.read_text())
    assert len(snap.entries) == len(listed)
    assert snap.taken_at == os.stat(path).st_mtime
    for e, le in zip(snap.entries, listed, strict=True):
        assert (e.orig, e.reply, e.timeout, e.mark, e.zone) == (
            le.orig,
            le.reply,
            le.timeout,
            le.mark,
            le.zone,
        )
        assert e.status & IPS_CONFIRMED
        assert bool(e.status & IPS_ASSURED) == le.assured
        assert bool(e.status & IPS_SEEN_REPLY) == (not le.unreplied)
        if e.orig[0] == 6:
            assert e.tcp_state == TCP_STATE_BY_NAME[le.state or ""]
        else:
            assert e.tcp_state is None


def test_known_file_contents() -> None:
    snap = fetch(str(PCAPS / "tcp_midstream.conntrack"), None)
    assert {e.tcp_state for e in snap.entries} == {3}
    assert all(e.status == IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED for e in snap.entries)
    snap = fetch(str(PCAPS / "mixed_many.conntrack"), None)
    udp_unreplied = [e for e in snap.entries if e.orig[0] == 17 and not e.status & IPS_SEEN_REPLY]
    assert udp_unreplied
    states = {e.tcp_state for e in snap.entries if e.orig[0] == 6}
    assert {3, 7, 8} <= states  # ESTABLISHED, TIME_WAIT, CLOSE


def test_default_listing_form(tmp_path: Path) -> None:
    p = tmp_path / "plain.conntrack"
    p.write_text(
        "tcp      6 431999 ESTABLISHED src=192.0.2.1 dst=198.51.100.1 sport=1 dport=2 "
        "src=198.51.100.1 dst=192.0.2.1 sport=2 dport=1 [ASSURED] mark=5 zone=3 use=1\n"
        "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.\n"
    )
    (e,) = fetch(str(p), None).entries
    assert e.tcp_state == 3 and e.mark == 5 and e.zone == 3 and e.extra == {}
    p.write_text("garbage line\n")
    with pytest.raises(PrimeError, match="bad format"):
        fetch(str(p), None)
    p.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PrimeError, match="bad format"):
        fetch(str(p), None)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 5))
def test_fuzz_body_parser(data: bytes, count: int) -> None:
    with contextlib.suppress(PrimeError):
        decode_body(data, 0, len(data), count)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_mutated_valid_bodies(data: st.DataObject) -> None:
    body = bytearray(encode_body(sample_entries(4)))
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(body)))
    with contextlib.suppress(PrimeError):
        decode_body(bytes(body[:cut]), 0, cut, 4)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_stream(data: bytes) -> None:
    valid = encode_stream(sample_entries(2), 1.0, sk(b"k"))
    for blob in (data, valid[: len(data)], valid[:32] + data):
        with contextlib.suppress(PrimeError):
            decode_stream(blob, sk(b"k"))


# --- expectations ------------------------------------------------------------------------

FULL4 = b"\xff" * 4


def sample_expectations() -> list[SnapshotExpectation]:
    return [
        SnapshotExpectation(
            (6, A, B, 40000, 21), (6, A, B, 0, 40001), (6, FULL4, FULL4, 0, 0xFFFF), 299, "ftp"
        ),
        SnapshotExpectation(
            (6, A6, B6, 40002, 21),
            (6, B6, A6, 0, 50000),
            (6, b"\xff" * 16, b"\xff" * 16, 0, 0xFFFF),
            12,
            "ftp",
            zone=3,
            flags=1,
            klass=0,
        ),
        SnapshotExpectation(  # a master of another protocol than the expected connection
            (6, A, B, 1720, 1720),
            (17, B, A, 0, 5004),
            (17, FULL4, FULL4, 0, 0xFFFF),
            170,
            "RAS",
            klass=1,
        ),
        *nat_expectations(),
    ]


def nat_expectations() -> list[SnapshotExpectation]:
    """nf_nat_ftp's: a PORT through SNAT (the server's connection to the NAT address is
    translated back in the REPLY direction), and an IPv6 227 in a zone (ORIGINAL)."""
    n, z6 = bytes([198, 51, 100, 254]), bytes(16)
    return [
        SnapshotExpectation(
            (6, A, B, 40004, 21),
            (6, B, n, 0, 40100),
            (6, FULL4, FULL4, 0, 0xFFFF),
            250,
            "ftp",
            nat_dir=1,
            nat_tuple=(6, bytes(4), bytes(4), 40100, 0),
            fn="nat-follow-master",
        ),
        SnapshotExpectation(
            (6, A6, B6, 40006, 21),
            (6, A6, B6, 0, 40101),
            (6, b"\xff" * 16, b"\xff" * 16, 0, 0xFFFF),
            30,
            "ftp",
            zone=7,
            nat_dir=0,
            nat_tuple=(6, z6, z6, 40101, 0),
            fn="nat-follow-master",
        ),
    ]


def test_stream_with_expectations_round_trip() -> None:
    entries, exps = sample_entries(5), sample_expectations()
    data = encode_stream(entries, 7.0, sk(b"s"), exps)
    assert decode_stream_full(data, sk(b"s")) == (7.0, entries, exps)
    # an empty section is carried; no section at all gives no expectations
    assert decode_stream_full(encode_stream(entries, 7.0, sk(b"s"), []), sk(b"s"))[2] == []
    assert decode_stream_full(encode_stream(entries, 7.0, sk(b"s")), sk(b"s"))[2] == []
    for cut in (len(data) // 2, len(data) - 40, len(data) - 1):
        with pytest.raises(PrimeError, match="truncated"):
            decode_stream_full(data[:cut], sk(b"s"))
    for i in (len(data) // 2, len(data) - 45, len(data) - 1):
        bad = bytearray(data)
        bad[i] ^= 0x20
        with pytest.raises(PrimeError, match="authentication failed|bad format"):
            decode_stream_full(bytes(bad), sk(b"s"))
    with pytest.raises(PrimeError, match="authentication"):
        decode_stream_full(data, sk(b"other"))


def test_chunks_are_chained() -> None:
    """Each chunk's MAC covers everything before it: a chunk dropped, repeated or moved
    fails, though each one on its own was genuine."""
    entries = sample_entries(9)
    data = encode_stream(entries, 3.0, sk(b"s"), chunk=3)
    got: list[int] = []
    read, used = bytes_reader(data)
    assert read_stream(read, sk(b"s"), lambda _t, c: got.append(len(c))) == (3.0, 9, [])
    assert got == [3, 3, 3] and used() == len(data)
    frames, off = [], snapstream.HEADER.size
    while off < len(data):
        size = snapstream.FRAME.size + snapstream.FRAME.unpack_from(data, off)[1]
        frames.append(data[off : off + size])
        off += size
    c1, c2, c3, end = frames
    head = data[: snapstream.HEADER.size]
    tail = c3 + end
    for forged in (
        head + c1 + tail,
        head + c2 + c1 + tail,
        head + c1 + c1 + tail,
    ):
        with pytest.raises(PrimeError, match="authentication failed"):
            decode_stream_full(forged, sk(b"s"))


def test_serve_pull_carries_expectations(key_file: str) -> None:
    entries, exps = sample_entries(6), sample_expectations()
    srv = Server(
        "127.0.0.1:0", read_key(key_file), timeout=5, dump=lambda: entries, dump_expect=lambda: exps
    )
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        snap = fetch(addr(srv), key_file, timeout=5, retries=0)
        assert snap.entries == entries and snap.expectations == exps
        deadline = time.monotonic() + 5
        while not srv.stats and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.stats[-1].ok and srv.stats[-1].expectations == len(exps)
    finally:
        srv.close()
        t.join(5)


def test_server_without_expectations_gives_none(server: Server, key_file: str) -> None:
    assert fetch(addr(server), key_file, timeout=5, retries=0).expectations == []


EXPECT_TEXT = (
    "ipv4     2 tcp      6 431999 ESTABLISHED src=192.0.2.10 dst=198.51.100.10 sport=41000 "
    "dport=21 src=198.51.100.10 dst=192.0.2.10 sport=21 dport=41000 [ASSURED] mark=0 zone=4 "
    "helper=ftp use=1\n"
    "299 proto=6 src=192.0.2.10 dst=198.51.100.10 sport=0 dport=40001 mask-src=255.255.255.255 "
    "mask-dst=255.255.255.255 sport=0 dport=65535 master-src=192.0.2.10 "
    "master-dst=198.51.100.10 sport=41000 dport=21 class=0 helper=ftp\n"
    "conntrack v1.4.7 (conntrack-tools): 1 expectations have been shown.\n"
    "120 proto=6 src=2001:db8:2::10 dst=2001:db8:1::10 sport=0 dport=40002 "
    "mask-src=ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
    "mask-dst=ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
    "sport=0 dport=65535 master-src=2001:db8:1::10 master-dst=2001:db8:2::10 sport=41001 "
    "dport=21 PERMANENT,INACTIVE class=2 helper=ftp\n"
)


def test_listing_with_expectation_lines(tmp_path: Path) -> None:
    p = tmp_path / "with-expect.conntrack"
    p.write_text(EXPECT_TEXT)
    snap = fetch(str(p), None)
    (e,) = snap.entries
    x4, x6 = snap.expectations
    a, b = bytes([192, 0, 2, 10]), bytes([198, 51, 100, 10])
    assert x4 == SnapshotExpectation(
        e.orig, (6, a, b, 0, 40001), (6, FULL4, FULL4, 0, 65535), 299, "ftp", zone=4
    )  # zone from the master entry (the text does not show it)
    assert x6.master[3:] == (41001, 21) and x6.tuple[4] == 40002 and x6.timeout == 120
    assert (x6.flags, x6.klass, x6.zone) == (3, 2, 0) and x6.mask[1] == b"\xff" * 16
    assert parse_expect_line(EXPECT_TEXT.splitlines()[1]) == SnapshotExpectation(
        e.orig, (6, a, b, 0, 40001), (6, FULL4, FULL4, 0, 65535), 299, "ftp"
    )
    with pytest.raises(ListingError, match="not a conntrack -L expect line"):
        parse_expect_line("12 proto=6 src=nonsense")
    with pytest.raises(PrimeError, match="^bad format: not a conntrack -L expect line: '12 pro"):
        listing_snapshot("12 proto=6 src=nonsense")


def test_listing_expectation_of_a_snat_master_gets_the_nat_part() -> None:
    """``conntrack -L expect`` does not show CTA_EXPECT_NAT: of a translated FTP master
    it is what nf_nat_ftp records (fw1's in test_prime_expect_lab: REPLY, the port)."""
    text = (
        "tcp      6 431999 ESTABLISHED src=192.0.2.10 dst=198.51.100.10 sport=41000 dport=21 "
        "src=198.51.100.10 dst=198.51.100.1 sport=21 dport=41000 [ASSURED] mark=0 use=1\n"
        "296 proto=6 src=198.51.100.10 dst=198.51.100.1 sport=0 dport=35589 "
        "mask-src=255.255.255.255 mask-dst=255.255.255.255 sport=0 dport=65535 "
        "master-src=192.0.2.10 master-dst=198.51.100.10 sport=41000 dport=21 class=0 "
        "helper=ftp\n"
    )
    _, (x,) = listing_snapshot(text)
    assert (x.nat_dir, x.nat_tuple, x.fn) == (
        1, (6, bytes(4), bytes(4), 35589, 0), "nat-follow-master",
    )  # fmt: skip
    # an untranslated master's (EXPECT_TEXT) has none
    assert all(x.nat_dir == -1 and x.fn == "" for x in listing_snapshot(EXPECT_TEXT)[1])


def test_expectation_message_decoder() -> None:
    from sniffover.kernel.ctnetlink import encode_exp_new
    from sniffover.kernel.dump import decode_expectation

    x = sample_expectations()[1]
    msg = encode_exp_new(x.master, x.tuple, x.mask, timeout=77, zone=3, seq=5)
    got = decode_expectation(msg, 0, len(msg))
    assert (got.master, got.tuple, got.mask, got.timeout, got.zone) == (
        x.master,
        x.tuple,
        x.mask,
        77,
        3,
    )


def test_expectation_nat_part_round_trip_and_dumped() -> None:
    """CTA_EXPECT_NAT and CTA_EXPECT_FN through the record (format 4) and back out of the
    message the installer sends, as the master's dump decodes it."""
    from sniffover.kernel.ctnetlink import encode_exp_new
    from sniffover.kernel.dump import decode_expectation
    from sniffover.prime.records import encode_expect_body

    exps = nat_expectations()
    count, body = encode_expect_body(exps)
    assert count == 2 and decode_expect_body(body, 0, len(body), 2) == exps
    for x in exps:
        assert x.nat_tuple is not None
        nat = (x.nat_dir, x.nat_tuple)
        msg = encode_exp_new(x.master, x.tuple, x.mask, timeout=9, zone=x.zone, nat=nat)
        got = decode_expectation(msg, 0, len(msg))
        assert (got.nat_dir, got.nat_tuple, got.fn, got.zone) == (*nat, x.fn, x.zone)
    # a record cut inside its NAT addresses or names is one bad-format error
    for cut in (1, 5, 17):
        short = (int.from_bytes(body[:2], "big") - cut).to_bytes(2, "big") + body[2:]
        with pytest.raises(PrimeError, match="^bad format"):
            decode_expect_body(short, 0, len(short), 2)


def test_expectation_nat_without_saved_tuple_is_left_out() -> None:
    from sniffover.prime.records import encode_expect_body

    bad = nat_expectations()[0]
    bad.nat_tuple = None
    assert encode_expect_body([bad, *nat_expectations()[1:]])[0] == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 5))
def test_fuzz_expect_body_parser(data: bytes, count: int) -> None:
    with contextlib.suppress(PrimeError):
        decode_expect_body(data, 0, len(data), count)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_stream_with_expectations(data: st.DataObject) -> None:
    blob = bytearray(encode_stream(sample_entries(2), 1.0, sk(b"k"), sample_expectations()))
    for _ in range(data.draw(st.integers(0, 4))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    with contextlib.suppress(PrimeError):
        decode_stream_full(bytes(blob[:cut]), sk(b"k"))
