"""Forwarding confirmation: install only what the master was seen to forward.

Anyone on a shared segment can put frames on it. A flow whose packets only ever
went *towards* the master proves nothing: the master may have dropped them (its
ruleset, its own conntrack). What proves the master accepted a flow is a frame
of it *leaving* the master: its source MAC is the master's (``Packet.hw``).

* **One segment** (``two_segments=False``): a flow is confirmed by any frame of
  it sent from the master's MAC (the reply of a connection opened from the
  inside, the forwarded request of one opened from the outside). A host on the
  segment that forges the master's source MAC defeats this; one segment cannot
  tell the difference.
* **Two segments** (inside and outside both sniffed): every forwarded packet
  shows up twice, going into the master on one segment and leaving it on the
  other. The copy going in is tracked; the copy coming out confirms the flow
  (matched by tuple, IP ID, TCP sequence number and length within ``window``
  seconds) and is not tracked again. RST and FIN going into the master are
  held back until their outgoing copy proves the master let them through, so a
  forged teardown the master dropped never closes a connection here; held
  packets without a forwarded copy are discarded after ``window``. A forger
  would have to put the same packet on both segments, the outgoing copy with
  the master's MAC, at the right moment.

Once the master's MACs are known, frames that neither enter nor leave it (host to
host on the segment, or addressed to a MAC nobody has) are ignored: the master
never saw them, so they cannot change its state.

Pure logic over decoded packets and the table; the agent feeds it.
"""

from __future__ import annotations

from collections import Counter, deque

from .entry import Conn
from .packet import HW_FROM_MASTER, HW_TO_MASTER, PROTO_TCP, TH_FIN, TH_RST, Packet
from .table import EVENT_UPDATE, ConntrackTable

Key = tuple[int, bytes, bytes, int, int, int, int, int]


def copy_key(pkt: Packet) -> Key:
    """What two copies of one forwarded packet (without NAT) have in common."""
    return (pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.ipid, pkt.seq, pkt.l4len)


class ForwardingConfirmer:
    def __init__(
        self,
        table: ConntrackTable,
        two_segments: bool,
        window: float = 1.0,
        max_recent: int = 1 << 17,
    ) -> None:
        self.table = table
        self.two_segments = two_segments
        self.window = window
        self.max_recent = max_recent
        self.recent: dict[Key, float] = {}  # ingress copies: key -> ts
        self.order: deque[tuple[Key, float]] = deque()
        self.held: dict[Key, Packet] = {}  # RST/FIN waiting for their egress copy
        self.counters: Counter[str] = Counter()
        # Set once the master's MACs are known: from then on a frame that neither enters
        # nor leaves the master (host to host, or aimed at no one) is not forwarded traffic
        # and is ignored; before, everything is tracked (and nothing confirmed).
        self.master_known = False

    def _confirm(self, pkt: Packet) -> None:
        t = self.table
        found = t.get((pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport))
        if found is None:
            return
        conn: Conn = found[0]
        if not conn.forwarded:
            conn.forwarded = True
            self.counters["confirmed"] += 1
            if t.listener is not None:
                t.listener(EVENT_UPDATE, conn)

    def feed(self, pkt: Packet) -> None:
        """Track ``pkt`` as the confirmation rules say."""
        hw = pkt.hw
        if not hw and self.master_known:
            self.counters["not-via-master"] += 1
            return
        if not self.two_segments:
            self.table.process(pkt)
            if hw & HW_FROM_MASTER:
                self._confirm(pkt)
            return
        if hw & HW_TO_MASTER:
            key = copy_key(pkt)
            if pkt.proto == PROTO_TCP and pkt.tcp_flags & (TH_RST | TH_FIN):
                self.held[key] = pkt  # applied only once it is seen forwarded
                self.order.append((key, pkt.ts))
                return
            self.table.process(pkt)
            self.recent[key] = pkt.ts
            self.order.append((key, pkt.ts))
            if len(self.order) > self.max_recent:
                self._prune(pkt.ts)
            return
        if hw & HW_FROM_MASTER:
            key = copy_key(pkt)
            held = self.held.pop(key, None)
            if held is not None:
                self.table.process(held)
                self._confirm(pkt)
                self.counters["teardown-confirmed"] += 1
                return
            seen = self.recent.pop(key, None)
            if seen is not None and pkt.ts - seen <= self.window:
                self._confirm(pkt)  # the outgoing copy of a packet already tracked
                return
            self.counters["egress-unmatched"] += 1
        self.table.process(pkt)

    def expire(self, now: float) -> None:
        """Forget ingress copies older than the window; drop held RST/FIN never forwarded."""
        self._prune(now)

    def _prune(self, now: float) -> None:
        limit = now - self.window
        order, recent, held = self.order, self.recent, self.held
        while order and (order[0][1] < limit or len(order) > self.max_recent):
            key, ts = order.popleft()
            if recent.get(key) == ts:
                del recent[key]
            h = held.get(key)
            if h is not None and h.ts == ts:
                del held[key]
                self.counters["teardown-not-forwarded"] += 1
