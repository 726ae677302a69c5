"""IP reassembly before tracking, as ``nf_defrag_ipv4`` / ``nf_defrag_ipv6`` do it.

The kernel's conntrack never sees a fragment: the defrag hooks (PRE_ROUTING, priority
-400) queue fragments and hand the tracker the whole datagram when its last piece
arrives; forwarding fragments it again on the way out. So a TCP segment fragmented in
flight is tracked once, with its full length (window tracking counts it to its end), at
the time its last fragment arrived; a datagram that never completes is never tracked.

This module owns the queues; the decoder feeds it the fragments it finds and decodes
what comes back. Time is the capture's (each fragment's timestamp), never a clock.

The rules follow ``ip_frag_queue`` / ``nf_ct_frag6_queue`` and ``inet_frag_queue_insert``:

* a queue is keyed by family, addresses, identification (and for IPv4 the protocol),
  plus what tells a sniffer's copies apart (VLAN, the frame's link-layer source, which
  side of the master): the copy of a datagram before and after the router is another
  queue, as it is another skb;
* a fragment wholly inside one already queued is a duplicate and dropped alone; any
  other overlap, a second "last" fragment that disagrees, data past a known end, or an
  empty fragment drops the whole queue (RFC 5722; the kernel's FragmentSmack fix);
* a non-last fragment whose length is not a multiple of 8 is cut down to one (IPv4) or
  drops the queue (IPv6);
* a queue lives ``timeout`` seconds from its first fragment (``ipfrag_time`` 30 s,
  ``nf_conntrack_frag6_timeout`` 60 s), then it is freed unfinished;
* memory is bounded like ``ipfrag_high_thresh`` / ``nf_conntrack_frag6_high_thresh``
  (4 MiB): above it new fragments are dropped until queues complete or expire. A
  fragment is charged its captured bytes plus ``FRAG_OVERHEAD`` (the kernel charges each
  skb's truesize), so endless tiny fragments hit the bound too;
* a datagram longer than 65535 bytes (IPv4 header included) is dropped.

Not reproduced: ``ipfrag_max_dist`` (the per-peer reordering check).
Imports only the standard library.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from typing import Final

HIGH_THRESH: Final = 4 * 1024 * 1024  # ipfrag_high_thresh, nf_conntrack_frag6_high_thresh
TIMEOUT_IPV4: Final = 30.0  # net.ipv4.ipfrag_time
TIMEOUT_IPV6: Final = 60.0  # net.netfilter.nf_conntrack_frag6_timeout
FRAG_OVERHEAD: Final = 256  # charged per fragment on top of its bytes (skb truesize)
IP_MAX_LEN: Final = 65535

FragKey = tuple[object, ...]


class _Queue:
    """One datagram's fragments: sorted, non-overlapping (start, end, captured bytes)."""

    __slots__ = ("created", "starts", "frags", "length", "last_in", "meat", "head", "mem")

    def __init__(self, created: float) -> None:
        self.created = created
        self.starts: list[int] = []
        self.frags: list[tuple[int, int, bytes]] = []
        self.length = 0  # the datagram's end as far as known
        self.last_in = False  # the fragment without "more fragments" arrived
        self.meat = 0  # bytes of fragment data queued
        self.head: tuple[int, ...] | None = None  # the offset-0 fragment's header fields
        self.mem = 0


class Reassembler:
    """Fragment queues of one capture, bounded in memory and time."""

    def __init__(
        self,
        high_thresh: int = HIGH_THRESH,
        timeout4: float = TIMEOUT_IPV4,
        timeout6: float = TIMEOUT_IPV6,
    ) -> None:
        self.high_thresh = high_thresh
        self.timeouts = {4: timeout4, 6: timeout6}
        # one dict per family, in creation order = expiry order (one timeout per family)
        self._queues: dict[int, dict[FragKey, _Queue]] = {4: {}, 6: {}}
        self.mem = 0
        self.counters: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._queues[4]) + len(self._queues[6])

    def expire(self, now: float) -> None:
        """Free every queue whose time is up at ``now`` (``ip_expire``)."""
        for family, queues in self._queues.items():
            limit = now - self.timeouts[family]
            while queues:
                key, q = next(iter(queues.items()))
                if q.created > limit:
                    break
                self._kill(family, key, "frag-timeout")

    def _kill(self, family: int, key: FragKey, reason: str) -> None:
        q = self._queues[family].pop(key)
        self.mem -= q.mem
        self.counters[reason] += 1

    def ipv4(
        self, now: float, buf: bytes, off: int, end: int, ihl: int, total: int,
        link: tuple[object, ...],
    ) -> tuple[bytes, int, tuple[int, ...]] | None:  # fmt: skip
        """``add`` for the IPv4 fragment at ``buf[off:end]`` (header length ``ihl``, total
        length ``total``); ``link`` tells a sniffer's copies apart. The head is (TTL,)."""
        stop = min(end, off + total)
        frag = buf[off + 6] << 8 | buf[off + 7]
        return self.add(
            now,
            4,
            (buf[off + 12 : off + 20], buf[off + 4 : off + 6], buf[off + 9], link),
            (frag & 0x1FFF) << 3,
            total - ihl,
            bool(frag & 0x2000),
            bytes(buf[off + ihl : stop]) if stop > off + ihl else b"",
            (buf[off + 8],),
        )

    def ipv6(
        self, now: float, buf: bytes, off: int, stop: int, frag: int, plen: int,
        link: tuple[object, ...],
    ) -> tuple[bytes, int, tuple[int, ...]] | None:  # fmt: skip
        """``add`` for the IPv6 packet at ``buf[off:stop]`` whose fragment header is at
        ``frag`` (payload length ``plen``). The head is (next header, hop limit)."""
        fo = buf[frag + 2] << 8 | buf[frag + 3]
        start = frag + 8
        return self.add(
            now,
            6,
            (buf[off + 8 : off + 40], buf[frag + 4 : frag + 8], link),
            fo & 0xFFF8,
            plen - (start - off - 40),
            bool(fo & 1),
            bytes(buf[start:stop]) if stop > start else b"",
            (buf[frag], buf[off + 7]),
        )

    def add(
        self,
        now: float,
        family: int,
        key: FragKey,
        offset: int,
        length: int,
        more: bool,
        data: bytes,
        head: tuple[int, ...],
    ) -> tuple[bytes, int, tuple[int, ...]] | None:
        """Queue one fragment: ``length`` bytes at ``offset`` of the datagram (from the IP
        header), of which ``data`` were captured; ``head`` is kept from the offset-0
        fragment. Returns (the captured bytes from offset 0 on, as far as they run without
        a gap, the datagram's length, the head) when this fragment completes it."""
        self.expire(now)
        if self.mem > self.high_thresh:
            self.counters["frag-mem-full"] += 1
            return None
        queues = self._queues[family]
        q = queues.get(key)
        if q is None:
            q = queues[key] = _Queue(now)
        end = offset + length
        if not more:
            if end < q.length or (q.last_in and end != q.length):
                self._kill(family, key, "frag-bad-end")
                return None
            q.last_in = True
            q.length = end
        else:
            if end & 7:
                if family == 6:
                    self._kill(family, key, "frag-unaligned")
                    return None
                end &= ~7
                data = data[: end - offset]
            if end > q.length:
                if q.last_in:
                    self._kill(family, key, "frag-past-end")
                    return None
                q.length = end
        if end <= offset:
            self._kill(family, key, "frag-empty")
            return None
        # inet_frag_queue_insert: inside one queued fragment = duplicate, else overlap
        i = bisect_right(q.starts, offset)
        if i and q.frags[i - 1][1] > offset:
            prev = q.frags[i - 1]
            if end <= prev[1]:
                self.counters["frag-duplicate"] += 1
                return None
            self._kill(family, key, "frag-overlap")
            return None
        if i < len(q.frags) and q.frags[i][0] < end:
            self._kill(family, key, "frag-overlap")
            return None
        q.starts.insert(i, offset)
        q.frags.insert(i, (offset, end, data))
        q.meat += end - offset
        charge = len(data) + FRAG_OVERHEAD
        q.mem += charge
        self.mem += charge
        if offset == 0:
            q.head = head
        if not (q.last_in and q.head is not None and q.meat == q.length):
            return None
        self._queues[family].pop(key)
        self.mem -= q.mem
        if q.length + (20 if family == 4 else 0) > IP_MAX_LEN:
            self.counters["frag-oversize"] += 1
            return None
        parts = []
        for start, stop, captured in q.frags:  # contiguous (meat == length, no overlaps)
            parts.append(captured)
            if len(captured) < stop - start:  # cut by the snap length: stop here
                break
        self.counters["reassembled"] += 1
        return b"".join(parts), q.length, q.head
