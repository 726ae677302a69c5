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


def test_the_same_bytes_a_window_later_are_a_new_frame() -> None:
    d = FrameDedup(window=0.01)
    data, meta = batch([(1.0, A), (1.0099, A), (1.0101, A), (1.015, A), (1.0202, A)])
    assert kept(data, d.filter(data, meta)) == [(1.0, A), (1.0101, A), (1.0202, A)]
    # across batches too, and after a silence
    data, meta = batch([(1.0203, B), (1.0204, B), (1.0205, A), (7.0, B)])
    assert kept(data, d.filter(data, meta)) == [(1.0203, B), (7.0, B)]


def test_a_batch_without_copies_is_returned_as_it_is() -> None:
    d = FrameDedup()
    data, meta = batch([(1.0, A), (1.0, B), (1.0, C)])
    assert d.filter(data, meta) is meta and d.dropped == 0


def test_memory_is_bounded() -> None:
    d = FrameDedup(window=10.0, max_frames=100)
    frames = [(1.0 + i * 1e-6, i.to_bytes(4, "big") * 15) for i in range(1000)]
    data, meta = batch(frames)
    assert len(kept(data, d.filter(data, meta))) == 1000
    assert len(d.current) + len(d.previous) <= 100
    # the newest are still remembered
    data, meta = batch([(1.01, frames[-1][1])])
    assert kept(data, d.filter(data, meta)) == []


def test_auto_samples_until_the_first_copy_then_checks_everything() -> None:
    from sniffover.capture.dedup import SAMPLE, WARM

    d = FrameDedup(auto=True)
    t = 1.0
    for n in range(WARM + SAMPLE - 2):  # distinct frames; the warm-up checks them all
        t += 0.001
        data, meta = batch([(t, n.to_bytes(4, "big") * 15)])
        assert d.filter(data, meta) is meta
    assert not d.active
    t += 0.001
    data, meta = batch([(t, A), (t, A)])  # a batch that is not sampled: both kept
    assert len(kept(data, d.filter(data, meta))) == 2
    t += 0.001
    data, meta = batch([(t, B), (t, B)])  # the next one is: the copy dropped, now active
    assert len(kept(data, d.filter(data, meta))) == 1 and d.active
    t += 0.001
    data, meta = batch([(t, C), (t, C)])
    assert len(kept(data, d.filter(data, meta))) == 1


def test_the_agent_gives_each_capture_its_dedup() -> None:
    from collections import Counter

    from sniffover.agent.captures import CaptureSet
    from sniffover.agent.config import AgentConfig
    from sniffover.agent.learning import MasterLearning
    from tests.unit.test_agent_parts import FakeCapture

    got = {}
    for mode in ("auto", "on", "off"):
        cfg = AgentConfig(ifaces=["in0", "out0"], confirm="off", exclude_self=False, dedup=mode)
        cs = CaptureSet(
            cfg,
            MasterLearning([], confirm=False),
            Counter(),
            open_capture=lambda i, s, r, b: FakeCapture(i, b),  # type: ignore[arg-type,return-value]
        )
        cs.open(0.0)
        dd = [c.dedup for c in cs.captures]
        assert len(dd) == 2 and (dd[0] is not dd[1] or mode == "off")  # one per interface
        got[mode] = None if dd[0] is None else dd[0].active
    assert got == {"auto": False, "on": True, "off": None}


def test_reassembly_drops_are_reported_with_the_skipped_frames() -> None:
    """What defrag dropped (status "skipped", metric sniffover_skipped_frames{reason})."""
    from collections import Counter

    from sniffover.agent.captures import CaptureSet
    from sniffover.agent.config import AgentConfig
    from sniffover.agent.learning import MasterLearning
    from tests.unit.test_agent_parts import FakeCapture

    cfg = AgentConfig(ifaces=["in0"], confirm="off", exclude_self=False)
    cs = CaptureSet(
        cfg,
        MasterLearning([], confirm=False),
        Counter(),
        open_capture=lambda i, s, r, b: FakeCapture(i, b),  # type: ignore[arg-type,return-value]
    )
    cs.open(0.0)
    dec = cs.captures[0].decoder
    dec.skipped["ip-fragment"] += 3
    dec.defrag.counters.update({"frag-timeout": 2, "reassembled": 5})
    assert cs.skipped() == {"ip-fragment": 3, "frag-timeout": 2}
