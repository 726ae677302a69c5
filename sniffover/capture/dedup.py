"""Frames delivered twice by a switch mirror, dropped before decoding.

A SPAN session that mirrors a frame's way in on one port and its way out on another (or
both directions of two ports) hands the sniffer the same frame twice, microseconds apart.
The tracker would take the copy for a retransmission, which is harmless for data but not
for a FIN: a second FIN in FIN_WAIT moves the kernel's state machine to LAST_ACK (it cannot
tell a retransmission from a new FIN), and the standby ends in TIME_WAIT where the master
has CLOSE_WAIT (measured: the tcp_half_close golden capture, every frame doubled).

A frame is a duplicate when its captured bytes equal those of a frame seen on the same
capture less than ``window`` seconds before. A genuine retransmission is never byte-equal
that soon: IPv4 gives it a new IP ID, TCP timestamps a new TSval, and the earliest
retransmission timer is milliseconds away. Memory is bounded (``max_frames`` remembered;
past that the oldest are forgotten early).
"""

from __future__ import annotations

import struct
from collections import deque

DEDUP_WINDOW = 0.01  # seconds: a mirror's copies are microseconds apart
DEDUP_MAX = 16384  # frames remembered (about 10 ms at 1.6 Mpps)
_META = struct.Struct("=IIII")  # ts seconds, ts microseconds, offset in data, captured length


class FrameDedup:
    """Drops repeated frames from ``next_batch()`` results, one instance per capture."""

    def __init__(self, window: float = DEDUP_WINDOW, max_frames: int = DEDUP_MAX) -> None:
        self.window = window
        self.max_frames = max_frames
        self.seen: dict[bytes, float] = {}  # frame -> time of its first copy
        self.order: deque[tuple[float, bytes]] = deque()  # the same, oldest first
        self.dropped = 0

    def filter(self, data: bytes, meta: bytes) -> bytes:
        """``meta`` without the records of duplicate frames (``data`` is left as it is:
        the decoder reads frames through their records)."""
        seen = self.seen
        order = self.order
        window = self.window
        drop: list[int] = []
        i = 0
        for sec, usec, off, caplen in _META.iter_unpack(meta):
            ts = sec + usec * 1e-6
            # forget what is older than the window (and the oldest beyond the bound)
            while order and (order[0][0] < ts - window or len(order) >= self.max_frames):
                old = order.popleft()
                if seen.get(old[1]) == old[0]:
                    del seen[old[1]]
            frame = data[off : off + caplen]
            first = seen.get(frame)
            if first is not None and ts - first < window:
                drop.append(i)
            else:
                seen[frame] = ts
                order.append((ts, frame))
            i += 16
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
