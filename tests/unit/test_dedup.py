"""capture.dedup: a mirror's repeated frames dropped from next_batch() results."""

from __future__ import annotations

import struct

from sniffover.capture.dedup import FrameDedup


def batch(frames: list[tuple[float, bytes]]) -> tuple[bytes, bytes]:
    """(data, meta) as pcapy-ng's next_batch() gives them."""
    data = b""
    meta = b""
    for ts, frame in frames:
        sec = int(ts)
        meta += struct.pack("=IIII", sec, round((ts - sec) * 1e6), len(data), len(frame))
        data += frame
    return data, meta


def kept(data: bytes, meta: bytes) -> list[tuple[float, bytes]]:
    return [
        (round(s + u * 1e-6, 6), data[o : o + n])
        for s, u, o, n in struct.iter_unpack("=IIII", meta)
    ]


A, B, C = b"A" * 60, b"B" * 60, b"C" * 64


def test_copies_within_the_window_are_dropped_others_kept() -> None:
    d = FrameDedup(window=0.01)
    data, meta = batch([(1.0, A), (1.000002, A), (1.000003, B), (1.000004, A), (1.000005, C)])
    assert kept(data, d.filter(data, meta)) == [(1.0, A), (1.000003, B), (1.000005, C)]
    assert d.dropped == 2


def test_the_same_bytes_after_the_window_are_a_new_frame() -> None:
    d = FrameDedup(window=0.01)
    data, meta = batch([(1.0, A), (1.02, A), (1.025, A)])
    assert kept(data, d.filter(data, meta)) == [(1.0, A), (1.02, A)]
    # across batches too
    data, meta = batch([(1.0251, B), (1.0252, B), (1.0253, A)])
    assert kept(data, d.filter(data, meta)) == [(1.0251, B)]


def test_a_batch_without_copies_is_returned_as_it_is() -> None:
    d = FrameDedup()
    data, meta = batch([(1.0, A), (1.0, B), (1.0, C)])
    assert d.filter(data, meta) is meta and d.dropped == 0


def test_memory_is_bounded() -> None:
    d = FrameDedup(window=10.0, max_frames=100)
    frames = [(1.0 + i * 1e-6, i.to_bytes(4, "big") * 15) for i in range(1000)]
    data, meta = batch(frames)
    assert len(kept(data, d.filter(data, meta))) == 1000
    assert len(d.seen) <= 100 and len(d.order) <= 100
    # the newest are still remembered
    data, meta = batch([(1.01, frames[-1][1])])
    assert kept(data, d.filter(data, meta)) == []
