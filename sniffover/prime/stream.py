"""The snapshot stream's framing: a header, then encrypted, authenticated frames as the dump goes.

Format version 4, what ``sniffover serve`` sends after the handshake and what a saved
pull holds (see ``server`` for the handshake, ``records`` for the records):

* header ``!4sHHd`` (in clear): ``b"SNFS"``, format version 4, flags (0), dump time
* frames, each ``!4sI`` (kind, sealed length) then the sealed bytes:
  ChaCha20-Poly1305 under the per-session stream key, nonce = the frame's sequence
  number (0, 1, ...), associated data = the stream header + this frame's header,
  plaintext = record count (u32) + body. Kinds: ``b"SNFC"`` a chunk of entries
  (u16-length-prefixed ``encode_entry`` records), ``b"SNFX"`` the master's expectations
  (records of ``encode_expectation``), ``b"SNFE"`` the end (count = entries in all
  chunks, no body).

What the sync link shows: the header, each frame's kind and size; no tuple, count or
state. The master sends each chunk as soon as its part of the kernel dump is read, so
the standby authenticates, decrypts, decodes and stages chunk *n* while the master still
dumps chunk *n + 1*. Nothing is applied before the end frame opens: a truncated stream
has no end frame; a tampered, dropped, repeated or moved frame fails to open (its tag or
its sequence number); a changed header fails the first frame; a stream recorded for
another session fails at once (the key is per session, from both nonces).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ..conntrack.snapshot import SnapshotEntry, SnapshotExpectation
from ..errors import PrimeError
from .records import RECORD, decode_body, decode_expect_body, encode_body, encode_expect_body

FORMAT_VERSION = 4  # 4: expectation records with their NAT part; 3: frames encrypted
# (ChaCha20-Poly1305); 2 was HMAC-chained plaintext
STREAM_MAGIC = b"SNFS"
HEADER = struct.Struct("!4sHHd")  # magic, format version, flags, taken_at
FRAME = struct.Struct("!4sI")  # kind, sealed length (count + body + tag)
COUNT = struct.Struct("!I")  # first 4 bytes of every plaintext: the record count
CHUNK, EXPECT, END = b"SNFC", b"SNFX", b"SNFE"
MAC_LEN = 32  # HMAC-SHA256 key proofs of the handshake (server.py)
TAG_LEN = 16  # the AEAD's tag, at the end of every sealed frame
KEY_LEN = 32
CHUNK_ENTRIES = 2048  # entries per chunk the server sends (~100 KB)
MAX_FRAME_BYTES = 16 << 20
MAX_STREAM_BYTES = 1 << 30  # 1 GiB: ~20M entries

Reader = Callable[[int, str], bytes]  # (n, what) -> exactly n bytes, or PrimeError


class StreamWriter:
    """Produces a stream piece by piece; each method returns the bytes to send."""

    def __init__(self, stream_key: bytes, taken_at: float) -> None:
        self._aead = _aead(stream_key)
        self._seq = 0
        self.taken_at = taken_at
        self._head = HEADER.pack(STREAM_MAGIC, FORMAT_VERSION, 0, taken_at)
        self.entries = 0

    def _seal(self, kind: bytes, count: int, body: bytes) -> bytes:
        fh = FRAME.pack(kind, COUNT.size + len(body) + TAG_LEN)
        nonce = _nonce(self._seq)
        self._seq += 1
        return fh + self._aead.encrypt(nonce, COUNT.pack(count) + body, self._head + fh)

    def header(self) -> bytes:
        return self._head

    def chunk(self, entries: Sequence[SnapshotEntry]) -> bytes:
        self.entries += len(entries)
        return self._seal(CHUNK, len(entries), encode_body(entries))

    def expectations(self, exps: Sequence[SnapshotExpectation]) -> bytes:
        count, body = encode_expect_body(exps)
        return self._seal(EXPECT, count, body)

    def end(self) -> bytes:
        return self._seal(END, self.entries, b"")


def _aead(stream_key: bytes) -> ChaCha20Poly1305:
    if len(stream_key) != KEY_LEN:
        raise PrimeError(f"bad stream key: {len(stream_key)} bytes, expected {KEY_LEN}")
    return ChaCha20Poly1305(stream_key)


def _nonce(seq: int) -> bytes:
    return b"\0\0\0\0" + seq.to_bytes(8, "big")


def chunked(
    entries: Iterable[SnapshotEntry], size: int = CHUNK_ENTRIES
) -> Iterator[list[SnapshotEntry]]:
    out: list[SnapshotEntry] = []
    for e in entries:
        out.append(e)
        if len(out) >= size:
            yield out
            out = []
    if out:
        yield out


def encode_stream(
    entries: Sequence[SnapshotEntry],
    taken_at: float,
    stream_key: bytes,
    expectations: Sequence[SnapshotExpectation] | None = None,
    chunk: int = CHUNK_ENTRIES,
) -> bytes:
    """A whole stream for ``entries`` (tests, saved files); with ``expectations``
    (even empty) also their frame."""
    w = StreamWriter(stream_key, taken_at)
    parts = [w.header()]
    parts += [w.chunk(c) for c in chunked(entries, chunk)]
    if expectations is not None:
        parts.append(w.expectations(expectations))
    parts.append(w.end())
    return b"".join(parts)


def read_stream(
    read: Reader, stream_key: bytes, on_entries: Callable[[float, list[SnapshotEntry]], None]
) -> tuple[float, int, list[SnapshotExpectation]]:
    """Read one stream through ``read``; each chunk's entries go to ``on_entries(taken_at,
    entries)`` as soon as it has opened (authentic, in sequence). Returns (dump time,
    entries in all, expectations) once the end frame opens; PrimeError otherwise (the
    caller must then drop whatever it staged)."""
    aead = _aead(stream_key)
    head = read(HEADER.size, "the stream header")
    magic, version, _flags, taken_at = HEADER.unpack(head)
    if magic != STREAM_MAGIC:
        raise PrimeError("bad format: not a sniffover snapshot stream")
    if version != FORMAT_VERSION:
        raise PrimeError(f"bad format: stream format version {version}, expected {FORMAT_VERSION}")
    if taken_at != taken_at or taken_at in (float("inf"), float("-inf")):
        raise PrimeError("bad format: dump time is not a number")
    total = len(head)
    entries = 0
    seq = 0
    exps: list[SnapshotExpectation] = []
    while True:
        fh = read(FRAME.size, "a frame header")
        kind, sealed = FRAME.unpack(fh)
        if kind not in (CHUNK, EXPECT, END):
            raise PrimeError("bad format: unknown frame")
        total += FRAME.size + sealed
        length = sealed - COUNT.size - TAG_LEN
        if length > MAX_FRAME_BYTES or total > MAX_STREAM_BYTES:
            raise PrimeError(f"bad format: frame of {length} bytes is over the limit")
        if length < 0:
            raise PrimeError("bad format: frame shorter than its tag")
        data = read(sealed, "the snapshot")
        try:
            plain = aead.decrypt(_nonce(seq), data, head + fh)
        except InvalidTag:
            raise PrimeError(
                "authentication failed: a frame does not open (tampered, reordered or wrong key)"
            ) from None
        seq += 1
        (count,) = COUNT.unpack_from(plain)
        if kind == CHUNK:
            if count * (RECORD.size + 10) > length:
                raise PrimeError("bad format: more records than the frame can hold")
            chunk = decode_body(plain, COUNT.size, len(plain), count)
            entries += count
            on_entries(taken_at, chunk)
        elif kind == EXPECT:
            exps += decode_expect_body(plain, COUNT.size, len(plain), count)
        else:
            if count != entries or length:
                raise PrimeError("bad format: the end frame does not match the chunks")
            return taken_at, entries, exps


def bytes_reader(data: bytes, start: int = 0) -> tuple[Reader, Callable[[], int]]:
    """A ``Reader`` over ``data`` (truncation is a PrimeError) and a function giving how
    many bytes it has read."""
    pos = start

    def read(n: int, what: str) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise PrimeError(f"truncated stream: {len(data) - start} bytes, ended in {what}")
        pos += n
        return data[pos - n : pos]

    return read, lambda: pos - start


def decode_stream_full(
    data: bytes, stream_key: bytes
) -> tuple[float, list[SnapshotEntry], list[SnapshotExpectation]]:
    """(dump time, entries, expectations) of a complete stream in memory; PrimeError
    unless intact and authentic (and nothing after the end frame)."""
    out: list[SnapshotEntry] = []
    read, used = bytes_reader(data)
    taken_at, _n, exps = read_stream(read, stream_key, lambda _t, chunk: out.extend(chunk))
    if used() != len(data):
        raise PrimeError(f"bad format: {len(data) - used()} bytes after the end frame")
    return taken_at, out, exps


def decode_stream(data: bytes, stream_key: bytes) -> tuple[float, list[SnapshotEntry]]:
    taken_at, entries, _exps = decode_stream_full(data, stream_key)
    return taken_at, entries
