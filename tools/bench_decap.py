"""Replay cost of remote mirror decapsulation: the benchmark mix bare, in VXLAN, in ERSPAN III.

    python -m tools.bench_decap [--packets 300000] [--runs 5] [--dir /tmp]

Writes the mix (``sniffover.bench.replay.mix_frames``, 128-byte snap) and the same frames
wrapped in VXLAN (VNI 7, from 192.0.2.10, the inline path) and ERSPAN III (GRE with sequence
numbers, the frame walk), then replays each ``--runs`` times (median, one core). Wall time on
a shared machine is noisy: for a repeatable figure run one replay under
``valgrind --tool=callgrind`` and compare instruction counts (see README, Performance).
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import time
from collections.abc import Iterator

from sniffover.bench.replay import SNAPLEN, mix_frames
from sniffover.replay import replay

ETH = bytes.fromhex("020000000a14020000000a0a0800")
SRC, DST = bytes([192, 0, 2, 10]), bytes([192, 0, 2, 20])


def _ip(proto: int, i: int, body: bytes) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), i & 0xFFFF, 0x4000, 64, proto,
                       0, SRC, DST) + body  # fmt: skip


def vxlan(frames: Iterator[tuple[float, bytes]]) -> Iterator[tuple[float, bytes]]:
    for i, (ts, f) in enumerate(frames):
        body = struct.pack("!II", 0x08000000, 7 << 8) + f
        yield (
            ts,
            ETH + _ip(17, i, struct.pack("!HHHH", 50000 + i % 1000, 4789, 8 + len(body), 0) + body),
        )


def erspan3(frames: Iterator[tuple[float, bytes]]) -> Iterator[tuple[float, bytes]]:
    for i, (ts, f) in enumerate(frames):
        hdr = struct.pack("!HHI", 0x1000, 0x22EB, i + 1) + struct.pack("!III", 2 << 28 | 7, 0, 0)
        yield ts, ETH + _ip(47, i, hdr + f)


def cut(frames: Iterator[tuple[float, bytes]]) -> Iterator[tuple[float, bytes]]:
    """The mirrored frames as the bench stores them: the first SNAPLEN bytes."""
    for ts, f in frames:
        yield ts, f[:SNAPLEN]


def write(path: str, frames: Iterator[tuple[float, bytes]], snaplen: int) -> None:
    """The tunnel frames cut at ``snaplen`` (the inner 128 + the outer headers)."""
    with open(path, "wb") as f:
        f.write(struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1))
        for ts, frame in frames:
            sec = int(ts)
            f.write(struct.pack("=IIII", sec, round((ts - sec) * 1e6), len(frame), len(frame)))
            f.write(frame)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--packets", type=int, default=300_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--dir", default="/tmp")
    args = p.parse_args()
    n = args.packets
    cases = [
        ("bare", vxlan, None),  # (the generator is not used for the bare file)
        ("vxlan", vxlan, {"mode": "vxlan", "sessions": [7], "sources": [SRC]}),
        ("erspan3", erspan3, {"mode": "erspan"}),
    ]
    for name, wrap, decap in cases:
        path = os.path.join(args.dir, f"sniffover-decap-{name}-{n}.pcap")
        if not os.path.exists(path):
            frames = cut(mix_frames(n))
            write(path, frames if decap is None else wrap(frames), SNAPLEN + 128)
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            result = replay([path], decap=decap)
            times.append(time.perf_counter() - start)
        med = statistics.median(times)
        print(f"{name}: {result.packets} frames, {len(result.entries())} flows, median "
              f"{med:.3f} s of {args.runs} = {n / med:,.0f} frames/s")  # fmt: skip


if __name__ == "__main__":
    main()
