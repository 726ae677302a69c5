"""Issue 13 point 3 without root: key files, the source type, the encrypted stream, and a
``serve`` that an unauthenticated crowd cannot starve (loopback)."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import pytest

from sniffover.conntrack.snapshot import SnapshotEntry
from sniffover.errors import CliError
from sniffover.prime import handshake
from sniffover.prime import stream as snapstream
from sniffover.prime.admission import Admission, LogLimiter
from sniffover.prime.client import PrimeError, fetch, parse_prime_source
from sniffover.prime.handshake import read_key
from sniffover.prime.server import Server
from sniffover.prime.stream import decode_stream, encode_stream

A, B = bytes([192, 0, 2, 77]), bytes([198, 51, 100, 88])
KEY = b"a pre-shared key of 32 bytes...."


def entries(n: int = 6) -> list[SnapshotEntry]:
    return [
        SnapshotEntry((6, A, B, 40000 + i, 443), (6, B, A, 443, 40000 + i), 0xE, 3600, tcp_state=3)
        for i in range(n)
    ]


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    p = tmp_path / "key"
    p.write_bytes(KEY + b"\n")
    p.chmod(0o600)
    return str(p)


# --- key files -----------------------------------------------------------------------------


def test_key_file_symlink_is_refused(key_file: str, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(key_file)
    with pytest.raises(CliError, match="symbolic link"):
        read_key(str(link))
    assert read_key(key_file) == KEY


def test_key_file_short_key_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "k"
    for short in (b"a", b"qz", b"x" * 15):
        p.write_bytes(short + b"\n")
        p.chmod(0o600)
        with pytest.raises(CliError, match="at least 16"):
            read_key(str(p))
    p.write_bytes(b"x" * 16)
    assert read_key(str(p)) == b"x" * 16


def test_key_file_wrong_owner_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "k"
    p.write_bytes(KEY)
    p.chmod(0o600)
    try:
        os.chown(p, 65534, 65534)
    except PermissionError:  # not root, or an earlier test dropped CAP_CHOWN in-process
        real = os.fstat

        def fstat(fd: int) -> os.stat_result:
            st = list(real(fd))
            st[4] = 65534  # st_uid
            return os.stat_result(st)

        monkeypatch.setattr(os, "fstat", fstat)
    with pytest.raises(CliError, match="owned by uid 65534"):
        read_key(str(p))


# --- the source type -----------------------------------------------------------------------

LISTING = (
    "tcp 6 431999 ESTABLISHED src=203.0.113.66 dst=192.0.2.66 sport=4444 dport=22 "
    "src=192.0.2.66 dst=203.0.113.66 sport=22 dport=4444 [ASSURED] mark=0 use=1\n"
)


def test_source_type_comes_from_the_text() -> None:
    assert parse_prime_source("203.0.113.1") == ("serve", "203.0.113.1")
    assert parse_prime_source("[2001:db8::1]:7445") == ("serve", "[2001:db8::1]:7445")
    assert parse_prime_source("ssh://root@fw1") == ("ssh", "ssh://root@fw1")
    assert parse_prime_source("/var/lib/snap.txt") == ("file", "/var/lib/snap.txt")
    assert parse_prime_source("file:snap.txt") == ("file", "snap.txt")
    for old in ("dumps/snap.txt", "./snap.txt", "../x"):
        with pytest.raises(PrimeError, match=f"relative path; write file:{old}"):
            parse_prime_source(old)
    with pytest.raises(PrimeError, match="needs a path"):
        parse_prime_source("file:")


def test_file_named_like_the_host_is_never_read(
    tmp_path: Path, key_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file named like the source in the working directory (the review's reproduction):
    the pull goes to the host (refused here), the file is not opened."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    port = lsock.getsockname()[1]
    lsock.close()  # nothing listens there: a pull is refused at once
    monkeypatch.chdir(tmp_path)
    for name in ("203.0.113.1", f"127.0.0.1:{port}"):
        (tmp_path / name).write_text(LISTING)
    opened: list[str] = []
    real_open = open

    def spy(path: object, *a: object, **kw: object) -> object:
        opened.append(str(path))
        return real_open(path, *a, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", spy)
    with pytest.raises(PrimeError, match="needs a key file"):
        fetch("203.0.113.1", None, timeout=1, retries=0)
    with pytest.raises(PrimeError, match="refused"):
        fetch(f"127.0.0.1:{port}", key_file, timeout=1, retries=0)
    assert not [p for p in opened if "203.0.113.1" in p or "127.0.0.1" in p]
    # the explicit form still reads it
    (e,) = fetch("file:203.0.113.1", None).entries
    assert e.orig[3] == 4444


# --- the encrypted stream ------------------------------------------------------------------


def sk(name: bytes) -> bytes:
    return hashlib.sha256(name).digest()


def frames(data: bytes) -> tuple[bytes, list[bytes]]:
    head, out, off = data[: snapstream.HEADER.size], [], snapstream.HEADER.size
    while off < len(data):
        size = snapstream.FRAME.size + snapstream.FRAME.unpack_from(data, off)[1]
        out.append(data[off : off + size])
        off += size
    return head, out


def test_stream_has_no_plaintext_tuple() -> None:
    es = entries(300)
    data = encode_stream(es, 5.0, sk(b"s"), chunk=100)
    for needle in (A, B, A + B, (40007).to_bytes(2, "big") + (443).to_bytes(2, "big")):
        assert needle not in data
    assert decode_stream(data, sk(b"s")) == (5.0, es)


def test_tampered_reordered_truncated_frames_fail() -> None:
    data = encode_stream(entries(9), 3.0, sk(b"s"), chunk=3)
    head, (c1, c2, c3, end) = frames(data)
    forged = [
        head + c2 + c1 + c3 + end,  # reordered
        head + c1 + c3 + end,  # one dropped
        head + c1 + c1 + c2 + c3 + end,  # one repeated
        head + c1 + c2 + c3 + end[:-1] + bytes([end[-1] ^ 1]),  # tag changed
        head + c1[:12] + bytes([c1[12] ^ 0x80]) + c1[13:] + c2 + c3 + end,  # body changed
        snapstream.HEADER.pack(b"SNFS", snapstream.FORMAT_VERSION, 0, 4.0)
        + c1
        + c2
        + c3
        + end,  # dump time changed
    ]
    for bad in forged:
        with pytest.raises(PrimeError, match="authentication failed"):
            decode_stream(bad, sk(b"s"))
    for cut in (len(head) + len(c1), len(data) - len(end), len(data) - 1):
        with pytest.raises(PrimeError, match="truncated"):
            decode_stream(data[:cut], sk(b"s"))
    with pytest.raises(PrimeError, match="authentication failed"):
        decode_stream(data, sk(b"another session"))


def test_old_stream_version_is_one_clear_error() -> None:
    data = bytearray(encode_stream(entries(2), 1.0, sk(b"s")))
    data[4:6] = (3).to_bytes(2, "big")  # format 3: expectations without NAT
    with pytest.raises(PrimeError, match="stream format version 3, expected 4"):
        decode_stream(bytes(data), sk(b"s"))


def test_old_serve_is_one_clear_protocol_error(key_file: str) -> None:
    lsock = socket.create_server(("127.0.0.1", 0))

    def old_serve() -> None:
        with suppress(OSError):
            conn, _ = lsock.accept()
            with conn:
                conn.sendall(handshake.HELLO.pack(handshake.MAGIC, 3, bytes(32)))
                conn.recv(64)

    threading.Thread(target=old_serve, daemon=True).start()
    try:
        with pytest.raises(PrimeError, match=r"^bad format: protocol version 3, expected 4$"):
            fetch(f"127.0.0.1:{lsock.getsockname()[1]}", key_file, timeout=2, retries=0)
    finally:
        lsock.close()


# --- serve before authentication ---------------------------------------------------------


@contextmanager
def running(srv: Server) -> Iterator[Server]:
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.close()
        t.join(5)


def crowd(port: int, n: int, stop: threading.Event, sources: list[str]) -> threading.Thread:
    """``n`` connections that read the greeting and never authenticate, each renewed as
    soon as the server closes it, from ``sources`` in turn, until ``stop``."""

    def one(i: int) -> None:
        src = sources[i % len(sources)]
        while not stop.is_set():
            with suppress(OSError), socket.socket() as c:
                c.settimeout(3)
                c.bind((src, 0))
                c.connect(("127.0.0.1", port))
                while not stop.is_set() and c.recv(64):
                    pass

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    starter = threading.Thread(target=lambda: [t.join() for t in threads], daemon=True)
    starter.start()
    return starter


@pytest.mark.parametrize("sources", [1, 64], ids=["one-source", "64-sources"])
def test_64_unauthenticated_connections_do_not_starve_a_pull(key_file: str, sources: int) -> None:
    """64 parallel connections that never authenticate (from one address, or from 64
    loopback addresses so the pool's oldest is evicted): an authenticated pull still
    completes within its timeout."""
    es = entries(50)
    srv = Server("127.0.0.1:0", KEY, timeout=5, dump=lambda: es)
    stop = threading.Event()
    with running(srv), ExitStack() as stack:
        stack.callback(stop.set)
        addrs = [f"127.0.0.{2 + i}" for i in range(sources)]
        crowd(srv.address[1], 64, stop, addrs)
        deadline = time.monotonic() + 5
        while srv.admission.pending() < srv.admission.max_pending // 4:
            assert time.monotonic() < deadline, "the crowd never connected"
            time.sleep(0.05)
        assert srv.admission.pending() <= srv.admission.max_pending
        for addr in addrs:
            assert srv.admission.pending(addr) <= srv.admission.per_source
        t0 = time.monotonic()
        snap = fetch(f"127.0.0.1:{srv.address[1]}", key_file, timeout=3, retries=0)
        assert snap.entries == es
        assert time.monotonic() - t0 < 3


def test_failed_authentications_are_throttled_per_source(
    key_file: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"this is not the key at all\n")
    wrong.chmod(0o600)
    srv = Server("127.0.0.1:0", KEY, timeout=5, dump=lambda: entries(3))
    src = f"127.0.0.1:{srv.address[1]}"
    with running(srv), caplog.at_level(logging.INFO, logger="sniffover.serve"):
        tries, refused, t_end = 0, 0, time.monotonic() + 1.0
        while time.monotonic() < t_end:
            with pytest.raises(PrimeError) as info:
                fetch(src, str(wrong), timeout=2, retries=0)
            tries += 1
            refused += "authentication failed" not in str(info.value)
        # the old server answered ~2000 guesses a second
        assert tries - refused <= 4, (tries, refused)
        assert refused > 0
        # once the throttle has lapsed, the right key gets through
        deadline = time.monotonic() + srv.admission.throttle_cap + 2
        while True:
            try:
                assert fetch(src, key_file, timeout=2, retries=0).count == 3
                break
            except PrimeError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) <= 2 * srv.limited.burst + 2, len(lines)


def test_dribbler_loses_its_place_within_the_auth_deadline(key_file: str) -> None:
    """One byte of the request every 0.1 s: closed at the 2 s pre-authentication
    deadline, not at the pull timeout (10 s)."""
    from sniffover.prime.server import AUTH_TIMEOUT

    srv = Server("127.0.0.1:0", KEY, timeout=10, dump=list)
    with running(srv), socket.create_connection(("127.0.0.1", srv.address[1]), 5) as c:
        assert len(c.recv(64)) == handshake.HELLO.size
        t0 = time.monotonic()
        with suppress(OSError):
            for _ in range(50):  # 5 s at most
                c.sendall(b"x")
                time.sleep(0.1)
        assert time.monotonic() - t0 < AUTH_TIMEOUT + 1.0


# --- the bookkeeping on its own ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_admission_pool_and_throttle() -> None:
    clock = Clock()
    adm = Admission(max_pending=4, per_source=2, clock=clock, throttle_base=1, throttle_cap=8)
    a1, ev, _ = adm.admit("a1", "A")
    a2, ev, _ = adm.admit("a2", "A")
    assert a1 and a2 and ev == []
    a3, ev, _ = adm.admit("a3", "A")  # A at its limit: its own oldest goes
    assert ev == [a1] and a1.evicted and adm.pending("A") == 2
    b1, _, _ = adm.admit("b1", "B")
    c1, ev, _ = adm.admit("c1", "C")
    assert ev == [] and adm.pending() == 4
    e1, ev, _ = adm.admit("e1", "E")  # the pool is full: the oldest of all goes
    assert ev == [a2] and adm.pending() == 4
    assert not adm.authenticated(a2)  # evicted first: not let through
    assert b1 is not None and adm.authenticated(b1)
    assert adm.failed("D") == 1 and adm.failed("D") == 2 and adm.failed("D") == 4
    d, _, why = adm.admit("d", "D")
    assert d is None and "3 failed" in why
    clock.now += 4.1
    d, _, _ = adm.admit("d", "D")
    assert d is not None
    assert [adm.failed("E") for _ in range(6)][-1] == 8  # capped


def test_admission_evicts_a_silent_connection_before_one_whose_proof_waits() -> None:
    """A crowd from the standby's own address connects and stays silent: the pull that
    has sent its proof (unread yet) is not the one pushed out, however old it is."""
    spoken = {"pull"}
    adm = Admission(max_pending=8, per_source=3, clock=Clock(), spoke=lambda s: s in spoken)
    pull, _, _ = adm.admit("pull", "S")
    crowd = [adm.admit(f"c{i}", "S")[0] for i in range(2)]
    for i in range(2, 10):  # the crowd reconnects as it is evicted
        _, ev, _ = adm.admit(f"c{i}", "S")
        assert ev and ev[0] is not pull
    assert pull is not None and adm.authenticated(pull)
    assert all(c is not None and c.evicted for c in crowd)
    # and when every candidate has spoken, the oldest goes as before
    spoken.update(f"c{i}" for i in range(20))
    old = adm.admit("c10", "S")[0]
    _, ev, _ = adm.admit("c11", "S")
    _, ev2, _ = adm.admit("c12", "S")
    assert old is not None and old not in ev and (ev + ev2)[0].sock == "c8"


def test_has_spoken_peeks_without_waiting() -> None:
    import socket
    import time

    from sniffover.prime.server import _has_spoken

    a, b = socket.socketpair()
    with a, b:
        b.settimeout(5.0)  # a handler's timeout must not make the peek wait
        t0 = time.monotonic()
        assert not _has_spoken(b) and time.monotonic() - t0 < 0.5
        a.sendall(b"proof")
        assert _has_spoken(b) and b.recv(5) == b"proof"  # peeked, not consumed


def test_log_limiter() -> None:
    clock = Clock()
    got: list[str] = []

    class Sink(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record.getMessage())

    log = logging.getLogger("test.limiter")
    log.addHandler(Sink())
    lim = LogLimiter(log, burst=3, interval=10, clock=clock)
    assert [lim.warning("x", "line %d", i) for i in range(5)] == [True] * 3 + [False] * 2
    clock.now += 11
    assert lim.warning("x", "again")
    assert got == ["line 0", "line 1", "line 2", "2 more x lines suppressed in 11 s", "again"]


def test_ssh_user_and_host_never_become_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review's finding 11: ``ssh://-oProxyCommand=...`` reached ssh as an option."""
    import subprocess

    from sniffover.prime import client

    argvs: list[list[str]] = []

    def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
        argvs.append(argv)
        return subprocess.CompletedProcess(argv, 0, LISTING.encode(), b"")

    monkeypatch.setattr(client.subprocess, "run", run)
    monkeypatch.setattr(client.shutil, "which", lambda _n: "/usr/bin/ssh")
    for bad in (
        f"ssh://-oProxyCommand=touch {tmp_path}/pwned",
        "ssh://-E/tmp/x@fw1",
        "ssh://root@fw1\tx",
    ):
        with pytest.raises(PrimeError, match=r"bad source .*(blank or control|unsafe ssh)"):
            fetch(bad, None, timeout=1, retries=0)
    assert argvs == []
    assert fetch("ssh://root@fw1:2222", None, timeout=1, retries=0).count == 1
    (argv,) = argvs
    assert argv[argv.index("--") + 1] == "root@fw1"
