"""Frames delivered twice by a switch mirror, dropped before decoding.

A SPAN session that mirrors a frame's way in on one port and its way out on another (or
both directions of two ports) hands the sniffer the same frame twice, microseconds apart.
The tracker would take the copy for a retransmission, which is harmless for data but not
for a FIN: a second FIN in FIN_WAIT moves the kernel's state machine to LAST_ACK (it cannot
tell a retransmission from a new FIN), and the standby ends in TIME_WAIT where the master
has CLOSE_WAIT (measured: the tcp_half_close golden capture, every frame doubled).

A frame is a duplicate when its captured bytes equal those of a frame seen on the same
capture less than ``window`` seconds before. Frames are remembered in two generations of a
window each, the older one forgotten as a whole (no per-frame expiry). A genuine
retransmission is never byte-equal that soon: IPv4 gives it a new IP ID, TCP timestamps a
new TSval, the earliest retransmission timer is milliseconds away (a router's own capture
holds byte-equal IPv6 multicast frames 12 ms apart: the window stays below that). Memory is
bounded: a generation ends early at ``max_frames`` / 2 frames (copies further apart than
that many frames are then missed).

``auto`` (the agent's default) checks only a sample of the batches (the first ``WARM``,
then one in ``SAMPLE``) until it finds a copy, and every batch from then on: a hub or a
mirror that delivers each frame once pays about 1/32 of the cost (~2,700 instructions per
frame compiled, a fifth of what tracking the frame costs).
"""

from __future__ import annotations

import struct
import sys
from typing import Final

DEDUP_WINDOW = 0.01  # seconds: a mirror's copies are microseconds apart
DEDUP_MAX = 32768  # frames remembered (both generations)
WARM = 64  # auto: batches checked at first
SAMPLE = 32  # auto: then one batch in SAMPLE, until a copy is found
_META = struct.Struct("=IIII").unpack_from  # ts s, ts us, offset in data, captured length
LITTLE_ENDIAN: Final = sys.byteorder == "little"


class FrameDedup:
    """Drops repeated frames from ``next_batch()`` results, one instance per capture;
    ``auto``: sampled until the first copy is found (``active`` then)."""

    def __init__(
        self, window: float = DEDUP_WINDOW, max_frames: int = DEDUP_MAX, auto: bool = False
    ) -> None:
        self.window_us = int(window * 1e6)
        self.half = max(1, max_frames // 2)
        self.current: dict[bytes, int] = {}  # frame -> time first seen (us), since ``since``
        self.previous: dict[bytes, int] = {}  # ... in the generation before
        self.since = -(1 << 40)
        self.dropped = 0
        self.active = not auto
        self.batches = 0

    def filter(self, data: bytes, meta: bytes) -> bytes:
        """``meta`` without the records of duplicate frames (``data`` is left as it is:
        the decoder reads frames through their records)."""
        if self.active:
            return self._filter(data, meta)
        self.batches += 1
        if self.batches > WARM and self.batches % SAMPLE:
            return meta
        out = self._filter(data, meta)
        if out is not meta:
            self.active = True
        return out

    def _filter(self, data: bytes, meta: bytes) -> bytes:
        current = self.current
        previous = self.previous
        window = self.window_us
        since = self.since
        little = LITTLE_ENDIAN
        drop: list[int] = []
        ts: int  # typed: compiled, these stay machine integers
        off: int
        caplen: int
        for i in range(0, len(meta) - 15, 16):
            if little:  # fields read by index, as in capture.decode
                ts = (meta[i] | meta[i + 1] << 8 | meta[i + 2] << 16 | meta[i + 3] << 24) * (
                    1000000
                ) + (meta[i + 4] | meta[i + 5] << 8 | meta[i + 6] << 16 | meta[i + 7] << 24)
                off = meta[i + 8] | meta[i + 9] << 8 | meta[i + 10] << 16 | meta[i + 11] << 24
                caplen = meta[i + 12] | meta[i + 13] << 8 | meta[i + 14] << 16 | meta[i + 15] << 24
            else:
                rec = _META(meta, i)
                ts = rec[0] * 1000000 + rec[1]
                off = rec[2]
                caplen = rec[3]
            age = ts - since
            if age >= window or len(current) >= self.half:
                # the generation ends; forgotten at once if already two windows old
                previous = self.previous = current if age < 2 * window else {}
                current = self.current = {}
                since = ts
            frame = data[off : off + caplen]
            first = current.get(frame)
            if first is None:
                first = previous.get(frame)
            if first is not None and ts - first < window:
                drop.append(i)
            else:
                current[frame] = ts
        self.since = since
        if not drop:
            return meta
        self.dropped += len(drop)
        parts: list[bytes] = []
        start = 0
        for at in drop:
            parts.append(meta[start:at])
            start = at + 16
        parts.append(meta[start:])
        return b"".join(parts)
