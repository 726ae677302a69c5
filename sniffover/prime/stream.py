"""The snapshot stream's framing: a header, then authenticated frames as the dump goes.

Format version 2, what ``sniffover serve`` sends after the handshake and what a saved
pull holds (see ``serve`` for the handshake, ``snapwire`` for the records):

* header ``!4sHHd``: ``b"SNFS"``, format version 2, flags (0), dump time (epoch float)
* frames, each ``!4sII`` (kind, record count, body length), the body, then 32 bytes of
  MAC: ``HMAC(stream key, every byte of the stream before it)``, earlier MACs included.
  Kinds: ``b"SNFC"`` a chunk of entries (u16-length-prefixed ``encode_entry``
  records), ``b"SNFX"`` the master's expectations (records of ``encode_expectation``),
  ``b"SNFE"`` the end (count = entries in all chunks, no body).

The master sends each chunk as soon as its part of the kernel dump is read, so the
standby authenticates, decodes and stages chunk *n* while the master still dumps chunk
*n + 1*. Nothing is applied before the end frame's MAC checks out: a truncated stream
has no end frame, a tampered one fails the first MAC after the change, and a stream
recorded for another session fails at the header (the key is per session).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence

from ..conntrack.snapshot import SnapshotEntry, SnapshotExpectation
from ..errors import PrimeError
from .records import RECORD, decode_body, decode_expect_body, encode_body, encode_expect_body

FORMAT_VERSION = 2
STREAM_MAGIC = b"SNFS"
HEADER = struct.Struct("!4sHHd")  # magic, format version, flags, taken_at
FRAME = struct.Struct("!4sII")  # kind, count, body length; then the body and the MAC
CHUNK, EXPECT, END = b"SNFC", b"SNFX", b"SNFE"
MAC_LEN = 32  # HMAC-SHA256, here and in the handshake (serve)
CHUNK_ENTRIES = 2048  # entries per chunk the server sends (~100 KB)
MAX_FRAME_BYTES = 16 << 20
MAX_STREAM_BYTES = 1 << 30  # 1 GiB: ~20M entries

Reader = Callable[[int, str], bytes]  # (n, what) -> exactly n bytes, or PrimeError


class StreamWriter:
    """Produces a stream piece by piece; each method returns the bytes to send."""

    def __init__(self, mac_key: bytes, taken_at: float) -> None:
        self._mac = hmac.new(mac_key, digestmod=hashlib.sha256)
        self.taken_at = taken_at
        self.entries = 0

    def _seal(self, data: bytes) -> bytes:
        self._mac.update(data)
        mac = self._mac.copy().digest()
        self._mac.update(mac)
        return data + mac

    def header(self) -> bytes:
        head = HEADER.pack(STREAM_MAGIC, FORMAT_VERSION, 0, self.taken_at)
        self._mac.update(head)
        return head

    def chunk(self, entries: Sequence[SnapshotEntry]) -> bytes:
        body = encode_body(entries)
        self.entries += len(entries)
        return self._seal(FRAME.pack(CHUNK, len(entries), len(body)) + body)

    def expectations(self, exps: Sequence[SnapshotExpectation]) -> bytes:
        count, body = encode_expect_body(exps)
        return self._seal(FRAME.pack(EXPECT, count, len(body)) + body)

    def end(self) -> bytes:
        return self._seal(FRAME.pack(END, self.entries, 0))


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
    mac_key: bytes,
    expectations: Sequence[SnapshotExpectation] | None = None,
    chunk: int = CHUNK_ENTRIES,
) -> bytes:
    """A whole stream for ``entries`` (tests, saved files); with ``expectations``
    (even empty) also their frame."""
    w = StreamWriter(mac_key, taken_at)
    parts = [w.header()]
    parts += [w.chunk(c) for c in chunked(entries, chunk)]
    if expectations is not None:
        parts.append(w.expectations(expectations))
    parts.append(w.end())
    return b"".join(parts)


def read_stream(
    read: Reader, mac_key: bytes, on_entries: Callable[[float, list[SnapshotEntry]], None]
) -> tuple[float, int, list[SnapshotExpectation]]:
    """Read one stream through ``read``; each authenticated chunk's entries go to
    ``on_entries(taken_at, entries)`` as it arrives. Returns (dump time, entries in all,
    expectations) once the end frame is authentic; PrimeError otherwise (the caller
    must then drop whatever it staged)."""
    mac = hmac.new(mac_key, digestmod=hashlib.sha256)
    head = read(HEADER.size, "the stream header")
    magic, version, _flags, taken_at = HEADER.unpack(head)
    if magic != STREAM_MAGIC:
        raise PrimeError("bad format: not a sniffover snapshot stream")
    if version != FORMAT_VERSION:
        raise PrimeError(f"bad format: stream format version {version}, expected {FORMAT_VERSION}")
    if taken_at != taken_at or taken_at in (float("inf"), float("-inf")):
        raise PrimeError("bad format: dump time is not a number")
    mac.update(head)
    total = len(head)
    entries = 0
    exps: list[SnapshotExpectation] = []
    while True:
        fh = read(FRAME.size, "a frame header")
        kind, count, length = FRAME.unpack(fh)
        if kind not in (CHUNK, EXPECT, END):
            raise PrimeError("bad format: unknown frame")
        total += FRAME.size + length + MAC_LEN
        if length > MAX_FRAME_BYTES or total > MAX_STREAM_BYTES:
            raise PrimeError(f"bad format: frame of {length} bytes is over the limit")
        if kind == CHUNK and count * (RECORD.size + 10) > length:
            raise PrimeError("bad format: more records than the frame can hold")
        body = read(length, "the snapshot") if length else b""
        got = read(MAC_LEN, "a frame MAC")
        mac.update(fh)
        mac.update(body)
        want = mac.copy().digest()
        if not hmac.compare_digest(want, got):
            raise PrimeError("authentication failed: stream MAC mismatch (tampered or wrong key)")
        mac.update(got)
        if kind == CHUNK:
            chunk = decode_body(body, 0, length, count)
            entries += count
            on_entries(taken_at, chunk)
        elif kind == EXPECT:
            exps += decode_expect_body(body, 0, length, count)
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
    data: bytes, mac_key: bytes
) -> tuple[float, list[SnapshotEntry], list[SnapshotExpectation]]:
    """(dump time, entries, expectations) of a complete stream in memory; PrimeError
    unless intact and authentic (and nothing after the end frame)."""
    out: list[SnapshotEntry] = []
    read, used = bytes_reader(data)
    taken_at, _n, exps = read_stream(read, mac_key, lambda _t, chunk: out.extend(chunk))
    if used() != len(data):
        raise PrimeError(f"bad format: {len(data) - used()} bytes after the end frame")
    return taken_at, out, exps


def decode_stream(data: bytes, mac_key: bytes) -> tuple[float, list[SnapshotEntry]]:
    taken_at, entries, _exps = decode_stream_full(data, mac_key)
    return taken_at, entries
