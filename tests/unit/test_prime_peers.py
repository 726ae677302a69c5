"""Hostile prime peers (issue 6): a fake ``sniffover serve`` on localhost sends garbage,
oversized lengths and counts, dribbles, refuses our key or closes mid-stream; ``fetch``
raises ``PrimeError`` quickly, with one clear line, and yields nothing. And a dribbling
client cannot hold a real server's slot.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from sniffover.prime.client import PrimeError, fetch
from sniffover.prime.handshake import (
    HELLO,
    MAGIC,
    PROTOCOL_VERSION,
    STATUS_AUTH_FAILED,
    STATUS_OK,
    server_proof,
    stream_key,
)
from sniffover.prime.stream import (
    CHUNK,
    END,
    FORMAT_VERSION,
    FRAME,
    HEADER,
    STREAM_MAGIC,
    encode_stream,
)

KEY = b"hostile-segment-test-key"


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    p = tmp_path / "key"
    p.write_bytes(KEY + b"\n")
    p.chmod(0o600)
    return str(p)


Behaviour = Callable[[socket.socket], None]


@contextmanager
def hostile(behaviour: Behaviour, connections: int = 1) -> Iterator[str]:
    """A one-shot TCP server on 127.0.0.1 running ``behaviour`` on each connection."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    lsock.settimeout(10)
    port = lsock.getsockname()[1]

    def run() -> None:
        for _ in range(connections):
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                with suppress(OSError):
                    behaviour(conn)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        lsock.close()
        t.join(10)


def recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def authenticate(conn: socket.socket) -> tuple[bytes, bytes]:
    """The genuine handshake (a peer that knows the key); returns (sn, cn)."""
    sn = os.urandom(32)
    conn.sendall(HELLO.pack(MAGIC, PROTOCOL_VERSION, sn))
    cn = recv_exact(conn, 64)[:32]
    conn.sendall(bytes((STATUS_OK,)) + server_proof(KEY, sn, cn))
    return sn, cn


def expect_failure(
    source: str,
    key_file: str,
    match: str,
    tmp_path: Path,
    *,
    timeout: float = 2.0,
    within: float = 3.0,
) -> str:
    saved = tmp_path / "saved"
    t0 = time.monotonic()
    with pytest.raises(PrimeError, match=match) as info:
        fetch(source, key_file, timeout=timeout, retries=0, save_to=str(saved))
    elapsed = time.monotonic() - t0
    assert elapsed < within, f"took {elapsed:.1f} s"
    msg = str(info.value)
    assert msg and "\n" not in msg
    assert not saved.exists()  # nothing kept
    return msg


def test_garbage_greeting(key_file: str, tmp_path: Path) -> None:
    with hostile(lambda c: c.sendall(os.urandom(200))) as src:
        expect_failure(src, key_file, "is not a sniffover serve", tmp_path)


def test_http_server_instead(key_file: str, tmp_path: Path) -> None:
    def http(c: socket.socket) -> None:
        c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" + b" " * 64)

    with hostile(http) as src:
        expect_failure(src, key_file, "is not a sniffover serve", tmp_path)


def test_wrong_protocol_version(key_file: str, tmp_path: Path) -> None:
    with hostile(lambda c: c.sendall(HELLO.pack(MAGIC, 99, bytes(32)))) as src:
        expect_failure(src, key_file, "protocol version 99", tmp_path)


def test_short_greeting_then_close(key_file: str, tmp_path: Path) -> None:
    with hostile(lambda c: c.sendall(MAGIC)) as src:
        expect_failure(src, key_file, "connection closed during the greeting", tmp_path)


def test_silent_server_times_out(key_file: str, tmp_path: Path) -> None:
    with hostile(lambda c: time.sleep(0.8)) as src:
        expect_failure(src, key_file, "timed out reading the greeting", tmp_path, timeout=0.5)


def test_server_refuses_our_key(key_file: str, tmp_path: Path) -> None:
    def refuse(c: socket.socket) -> None:
        c.sendall(HELLO.pack(MAGIC, PROTOCOL_VERSION, bytes(32)))
        recv_exact(c, 64)
        c.sendall(bytes((STATUS_AUTH_FAILED,)) + bytes(32))

    with hostile(refuse) as src:
        expect_failure(src, key_file, r"authentication failed at .* \(wrong key\?\)", tmp_path)


def test_server_without_the_key(key_file: str, tmp_path: Path) -> None:
    def impostor(c: socket.socket) -> None:
        c.sendall(HELLO.pack(MAGIC, PROTOCOL_VERSION, os.urandom(32)))
        recv_exact(c, 64)
        c.sendall(bytes((STATUS_OK,)) + os.urandom(32))  # cannot prove the key
        c.sendall(encode_stream([], time.time(), os.urandom(32)))

    with hostile(impostor) as src:
        expect_failure(src, key_file, "does not know the key", tmp_path)


def sealed(sn: bytes, cn: bytes, *frames: tuple[bytes, int, bytes]) -> bytes:
    """A stream from a peer that knows the key: header, then each (kind, count, body)
    frame genuinely sealed (the AEAD, in sequence); whatever it says."""
    aead = ChaCha20Poly1305(stream_key(KEY, sn, cn))
    head = HEADER.pack(STREAM_MAGIC, FORMAT_VERSION, 0, time.time())
    out = head
    for seq, (kind, count, body) in enumerate(frames):
        fh = FRAME.pack(kind, 4 + len(body) + 16)
        nonce = bytes(4) + seq.to_bytes(8, "big")
        out += fh + aead.encrypt(nonce, struct.pack("!I", count) + body, head + fh)
    return out


def test_oversized_body_length(key_file: str, tmp_path: Path) -> None:
    def huge(c: socket.socket) -> None:
        authenticate(c)
        head = HEADER.pack(STREAM_MAGIC, FORMAT_VERSION, 0, time.time())
        c.sendall(head + FRAME.pack(CHUNK, (1 << 32) - 1))

    with hostile(huge) as src:
        expect_failure(src, key_file, "over the limit", tmp_path)


def test_oversized_entry_count(key_file: str, tmp_path: Path) -> None:
    """A count far beyond the body (MAC valid: the peer knows the key) is a format error."""

    def count(c: socket.socket) -> None:
        sn, cn = authenticate(c)
        c.sendall(sealed(sn, cn, (CHUNK, (1 << 32) - 1, bytes(64)), (END, (1 << 32) - 1, b"")))

    with hostile(count) as src:
        expect_failure(src, key_file, "bad format", tmp_path)


def test_end_frame_claiming_more_than_was_sent(key_file: str, tmp_path: Path) -> None:
    def short(c: socket.socket) -> None:
        sn, cn = authenticate(c)
        c.sendall(sealed(sn, cn, (END, 5, b"")))

    with hostile(short) as src:
        expect_failure(src, key_file, "end frame does not match", tmp_path)


def test_garbage_body_with_valid_mac(key_file: str, tmp_path: Path) -> None:
    def garbage(c: socket.socket) -> None:
        sn, cn = authenticate(c)
        c.sendall(sealed(sn, cn, (CHUNK, 5, os.urandom(300)), (END, 5, b"")))

    with hostile(garbage) as src:
        expect_failure(src, key_file, "bad format", tmp_path)


def test_close_mid_stream(key_file: str, tmp_path: Path) -> None:
    def cut(c: socket.socket) -> None:
        authenticate(c)
        head = HEADER.pack(STREAM_MAGIC, FORMAT_VERSION, 0, time.time())
        c.sendall(head + FRAME.pack(CHUNK, 520) + bytes(100))

    with hostile(cut) as src:
        expect_failure(src, key_file, "connection closed during the snapshot", tmp_path)


def test_close_mid_stream_retried_then_fails(key_file: str, tmp_path: Path) -> None:
    def cut(c: socket.socket) -> None:
        authenticate(c)
        c.sendall(HEADER.pack(STREAM_MAGIC, FORMAT_VERSION, 0, time.time())[:10])

    with hostile(cut, connections=2) as src:
        t0 = time.monotonic()
        with pytest.raises(PrimeError, match="truncated stream"):
            fetch(src, key_file, timeout=2, retries=1, backoff=0.05)
        assert time.monotonic() - t0 < 3


def dribble(data: bytes, every: float, budget: float) -> Behaviour:
    def run(c: socket.socket) -> None:
        end = time.monotonic() + budget
        for i in range(len(data)):
            if time.monotonic() > end:
                return
            c.sendall(data[i : i + 1])
            time.sleep(every)

    return run


def test_slow_writer_is_bounded_by_the_timeout(key_file: str, tmp_path: Path) -> None:
    """A peer dribbling its greeting one byte per 0.15 s, client timeout 0.5 s: the pull
    should fail within about the timeout, not when the peer gives up (1.5 s)."""
    greeting = HELLO.pack(MAGIC, PROTOCOL_VERSION, bytes(32))
    with hostile(dribble(greeting, 0.15, 1.5)) as src:
        expect_failure(src, key_file, "timed out", tmp_path, timeout=0.5, within=1.2)


def test_slow_writer_fails_eventually(key_file: str, tmp_path: Path) -> None:
    """What holds today: a dribbled, never-completed greeting ends in PrimeError."""
    greeting = HELLO.pack(MAGIC, PROTOCOL_VERSION, bytes(32))
    with hostile(dribble(greeting[:20], 0.1, 1.0)) as src:
        expect_failure(src, key_file, "truncated stream", tmp_path, timeout=0.5, within=3.0)


def test_serve_slot_not_held_by_a_dribbling_client(key_file: str, tmp_path: Path) -> None:
    """An unauthenticated client dribbling its 64-byte request one byte per 0.2 s must
    lose its slot after the server's timeout (0.5 s), so a standby can pull after it."""
    from sniffover.prime.server import Server

    srv = Server("127.0.0.1:0", KEY, max_clients=1, timeout=0.5, dump=list)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    attacker = socket.create_connection(("127.0.0.1", srv.address[1]), timeout=5)
    stop = threading.Event()

    def drip() -> None:
        with suppress(OSError):
            recv_exact(attacker, HELLO.size)
            for _ in range(15):  # at most 3 s
                if stop.is_set():
                    return
                attacker.sendall(b"x")
                time.sleep(0.2)

    d = threading.Thread(target=drip, daemon=True)
    d.start()
    try:
        time.sleep(1.0)  # twice the server's timeout
        snap = fetch(f"127.0.0.1:{srv.address[1]}", key_file, timeout=2, retries=0)
        assert snap.entries == []
    finally:
        stop.set()
        d.join(5)
        attacker.close()
        srv.close()
        t.join(5)
