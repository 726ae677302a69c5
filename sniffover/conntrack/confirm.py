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
  packets without a forwarded copy are discarded after ``window``. The capture
  timestamps of two segments can invert: an outgoing copy that matches nothing is
  tracked and remembered for ``window``, and an ingress copy arriving after it (same
  key and TCP flags) is paired with it then. A forger
  would have to put the same packet on both segments, the outgoing copy with
  the master's MAC, at the right moment.

NAT: the two copies of a translated packet differ in the addresses/ports the
master rewrote, so copies are also paired on what NAT leaves alone (protocol, IP
ID, sequence and acknowledgement numbers, length, and the untranslated side's
address and port). IPv6 has no IP ID: its flow label stands in (``Packet.ipid``;
Linux labels every flow's packets with a hash of its tuple unless told not to,
and 0 from a stack that does not label is merely no help). UDP and echo, which
have no sequence numbers, add a digest of their first payload bytes
(``Packet.digest``; echo's without the identifier, which NAT may rewrite); TCP's
sequence and acknowledgement numbers suffice.
A translated pair rebinds the entry: the copy leaving the master shows what the
reply (or, for a connection picked up mid-stream from a reply, the original) really
looks like, as the master's own entry has it.

Both sides rewritten at once (DNAT to a server plus SNAT to the master's address, as a
load balancer or a hairpin does) leaves only the packet itself: such copies are paired on
the "both" key, without addresses or ports, when the packet carries enough to be told
apart by it alone (TCP's sequence numbers, a payload digest). Other protocols (GRE,
SCTP, ICMP errors) stay unpaired there rather than risk a wrong translation.

A key that survives NAT can be shared by several flows: a UDP server answering from
an unconnected socket sends every datagram with IP ID 0 (Linux, DF set), so answers of
the same length and first bytes from one server port all have the same key. When a
second flow's ingress copy takes a key still in the window, the key is marked ambiguous
and pairs nothing (counted as ``copy-ambiguous``): the binding is learned from the other
direction (a connected client numbers its datagrams) rather than guessed, since a wrong
guess would rebind one flow onto another's tuples.

NAT helpers (``seqadj.py``): with NAT the master's FTP helper rewrites the address in
PORT/EPRT/227/229, which may change the segment's length and from then on shifts the
sequence numbers of that direction (and the acknowledgements of the other). A payload
segment on a helper port is therefore also keyed without its length (IP ID, sequence and
acknowledgement numbers, the untranslated side); a pair whose lengths differ records the
adjustment on the entry, as the master's ``nf_ct_seqadj_set`` did, if the copy leaving
is one the NAT helper rewrites (PORT, EPRT, 227, 229: a stream merely cut into other
segments is no rewrite). A copy leaving the master that pairs with nothing is tried once
more with the entry's shift undone.

With two segments an entry counts as forwarded (and goes into the kernel) only once
its mapping is *known*: a pair of copies showed it (identical copies: untranslated;
differing copies: the rebind succeeded). A wrong mapping in the kernel is worse than
no entry (the client's next connection from that port meets it after a takeover), so
nothing is guessed. A tuple the master was seen sending before its MAC was known
(``confirm``: copies not told apart then) is paired after the fact with the one other
tuple sharing its packets' NAT-surviving key (the frames read meanwhile are kept a
few seconds); failing that it proves only that one direction left the master as it
is, and the entry is confirmed once *both* its tuples were seen leaving the master
unchanged (no NAT on it), else it waits for its next pair of copies. A rebind that
clashes with another confirmed entry leaves the entry unconfirmed. This matters most
for connections picked up mid-stream at start-up, whose copies were tracked as two
separate entries while the master was unknown, often with only a few closing segments
left to pair.

Once the master's MACs are known, frames that neither enter nor leave it (host to
host on the segment, or addressed to a MAC nobody has) are ignored: the master
never saw them, so they cannot change its state.

Pure logic over decoded packets and the table; the agent feeds it.
"""

from __future__ import annotations

from collections import Counter, deque

from .entry import IPS_SEQ_ADJUST, Conn
from .helpers import payload_ports
from .helpers.ftp import REWRITTEN
from .packet import HW_FROM_MASTER, HW_TO_MASTER, PROTO_TCP, TH_FIN, TH_RST, Packet
from .seqadj import SeqAdj
from .table import EVENT_UPDATE, ConntrackTable
from .tuple import Tuple, invert

Key = tuple[object, ...]
AMBIGUOUS: Tuple = ()  # in ``recent``: ingress copies of different flows share the key
BLIND_KEEP = 5.0  # seconds the packets read before the master was known are kept after
# ... and how many at most (about 1 kB each): flows that go on talking are paired live anyway
BLIND_MAX = 1 << 15
BLIND_TRIES = 8  # a tuple's last packets tried for a pair (bounded work per tuple) ...
BLIND_SHARED = 8  # ... and keys shared by more packets than this are not looked into


def copy_keys(pkt: Packet) -> tuple[Key, ...]:
    """Exact key, and the keys that survive source NAT, destination NAT and both at once
    (the last only where the packet alone tells it apart: TCP, or a payload digest).

    A TCP segment's 64 bits of sequence and acknowledgement numbers tell it apart without
    any address: its "both" key serves SNAT and DNAT too (two keys a segment, not three)."""
    proto, ipid, seq, ack, n, dg = pkt.proto, pkt.ipid, pkt.seq, pkt.ack, pkt.l4len, pkt.digest
    exact = (proto, pkt.src, pkt.dst, pkt.sport, pkt.dport, ipid, seq, n, dg)
    if proto == PROTO_TCP:
        return exact, ("both", proto, ipid, seq, ack, n)
    snat = ("snat", proto, ipid, seq, ack, n, dg, pkt.dst, pkt.dport)
    dnat = ("dnat", proto, ipid, seq, ack, n, dg, pkt.src, pkt.sport)
    if dg:
        return exact, snat, dnat, ("both", proto, ipid, seq, ack, n, dg)
    return exact, snat, dnat


def mangle_keys(pkt: Packet, seq: int, ack: int) -> tuple[Key, Key]:
    """Keys of a helper's TCP segment that survive NAT and a NAT helper's rewrite of its
    payload (its length changes; sequence numbers as they were going in)."""
    return (
        ("msnat", pkt.ipid, seq, ack, pkt.dst, pkt.dport),
        ("mdnat", pkt.ipid, seq, ack, pkt.src, pkt.sport),
    )


class _Held:
    __slots__ = ("pkt", "done")

    def __init__(self, pkt: Packet) -> None:
        self.pkt = pkt
        self.done = False


class ForwardingConfirmer:
    def __init__(
        self,
        table: ConntrackTable,
        two_segments: bool,
        window: float = 1.0,
        max_recent: int = 1 << 17,
        hold_teardowns: bool = True,
    ) -> None:
        self.table = table
        self.two_segments = two_segments
        self.window = window
        self.max_recent = max_recent
        # Live, RST/FIN into the master wait for proof it let them through. Replaying a
        # router's own capture there is nothing to defend against, and a router that is
        # itself the endpoint never forwards the teardowns it receives.
        self.hold_teardowns = hold_teardowns
        # ingress copies: key -> (ts, the packet's tuple); three keys per packet
        # (the zone is the ingress copy's: the master set it where the packet came in, and
        # the egress copy, captured elsewhere, still belongs to that entry)
        self.recent: dict[Key, tuple[float, Tuple, int, int]] = {}
        self.order: deque[tuple[Key, float]] = deque()
        self.held: dict[Key, _Held] = {}  # RST/FIN waiting for their egress copy
        # egress copies that came before their ingress copy (None: several share the key)
        self.early: dict[Key, tuple[float, Packet | None]] = {}
        self.counters: Counter[str] = Counter()
        # helper segments going in, keyed without their length: key -> (ts, tuple, length)
        self.mangle_ports = payload_ports(PROTO_TCP)
        self.mangled: dict[Key, tuple[float, Tuple, int, int, int]] = {}  # + zone, zone dir
        # Set once the master's MACs are known: from then on a frame that neither enters
        # nor leaves the master (host to host, or aimed at no one) is not forwarded traffic
        # and is ignored; before, everything is tracked (and nothing confirmed).
        self.master_known = False
        # Frames captured before that moment may have been decoded without the MACs (a
        # reorder buffer still holds them): they are tracked as before, not ignored.
        self.known_since = float("inf")
        # two segments: entries one of whose tuples the master was seen sending before its
        # MAC was known (``confirm``): id -> (entry, bit per direction seen)
        self.sent: dict[int, tuple[Conn, int]] = {}
        # two segments, every packet read before the master's MACs were known (copies not
        # told apart then), by NAT-surviving key and by tuple: a tuple the master turns out
        # to have sent is paired afterwards with the other copy of its packets
        self.blind: dict[Key, list[Packet]] = {}
        self.blind_sent: dict[Tuple, list[Packet]] = {}
        self.blind_count = 0

    def master_learned(self, at: float) -> None:
        """Every segment's decoder knows the master's MACs from ``at`` (capture time) on."""
        if not self.master_known:
            self.master_known = True
            self.known_since = at

    def _confirm(self, t: Tuple, zone: int = 0, zdir: int = 3) -> Conn | None:
        found = self.table.get(t, zone, zdir)
        return None if found is None else self._forwarded(found[0])

    def _forwarded(self, conn: Conn) -> Conn:
        table = self.table
        if not conn.forwarded:
            conn.forwarded = True
            self.counters["confirmed"] += 1
            if table.listener is not None:
                table.listener(EVENT_UPDATE, conn)
        return conn

    def confirm(self, t: Tuple) -> None:
        """The master was seen sending a packet with tuple ``t`` (before its MAC was known,
        copies not paired). One segment: the flow, if tracked, counts as forwarded. Two
        segments: only once both of its tuples were seen so (see the module doc)."""
        if not self.two_segments:
            self._confirm(t)
            return
        found = self.table.get(t)
        if found is None or found[0].forwarded:
            return
        if self.blind_sent and self._blind_pair(t):
            return
        conn, direction = found
        sent = self.sent
        key = id(conn)
        got = sent.get(key)
        seen = (got[1] if got is not None and got[0] is conn else 0) | (1 << direction)
        if seen == 3:  # both directions left the master unchanged: no NAT on this flow
            del sent[key]
            self.counters["identity-confirmed"] += 1
            self._forwarded(conn)
            return
        if len(sent) >= self.max_recent:
            sent.clear()  # bounded; what is lost here waits for its next pair of copies
        sent[key] = (conn, seen)

    def _blind_pair(self, t: Tuple) -> bool:
        """Pair, after the fact, a packet the master sent with tuple ``t`` while its MACs
        were unknown and the one other tuple sharing its NAT-surviving key and flags (its
        copy going in): the entry is bound as by a live pair. Several tuples on one key
        (IP ID 0 answers) pair nothing."""
        window = self.window
        for p in self.blind_sent.get(t, ())[-BLIND_TRIES:]:
            for k in copy_keys(p)[1:]:
                copies = self.blind.get(k, ())
                if len(copies) > BLIND_SHARED:
                    continue  # many packets on one key (IP ID 0 answers): ambiguous anyway
                other = {  # (tuple, zone, zone dir): a copy's zone is where it went in
                    ((o.proto, o.src, o.dst, o.sport, o.dport), o.zone, o.zone_dir)
                    for o in copies
                    if abs(o.ts - p.ts) <= window and o.tcp_flags == p.tcp_flags
                }
                seen = self.recent.get(k)  # an ingress copy where the master was known
                if seen is not None and abs(seen[0] - p.ts) <= window:
                    if not seen[1]:
                        continue  # several flows on this key
                    other.add((seen[1], seen[2], seen[3]))
                other = {x for x in other if x[0] != t}
                if len(other) == 1:
                    t_in, zone, zdir = other.pop()
                    if self._translated(t_in, p, zone, zdir):
                        self.counters["blind-paired"] += 1
                        return True
        return False

    def _remember_blind(self, pkt: Packet) -> None:
        self.blind_count += 1
        t = (pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport)
        self.blind_sent.setdefault(t, []).append(pkt)
        for k in copy_keys(pkt)[1:]:
            self.blind.setdefault(k, []).append(pkt)

    def _translated(self, t_in: Tuple, pkt: Packet, zone: int = 0, zdir: int = 3) -> bool:
        """The master rewrote this packet (``t_in`` going in, in that zone): bind the entry
        to what it really looks like and confirm it; False if the mapping cannot be bound."""
        found = self.table.get(t_in, zone, zdir)
        if found is None:
            return False
        conn, direction = found
        t_out = (pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport)
        other = invert(t_out)
        if other is None:
            return False
        if other != (conn.reply if direction == 0 else conn.orig):
            bound = (
                self.table.rebind(conn, reply=other)
                if direction == 0
                else self.table.rebind(conn, orig=other)
            )
            if not bound:  # another confirmed entry holds that tuple: mapping unknown
                self.counters["nat-unbound"] += 1
                return False
            self.counters["nat-bound"] += 1
        self._forwarded(conn)
        return True

    def feed(self, pkt: Packet) -> None:
        """Track ``pkt`` as the confirmation rules say."""
        hw = pkt.hw
        if not hw and self.master_known and pkt.ts >= self.known_since:
            self.counters["not-via-master"] += 1
            return
        if not self.two_segments:
            self.table.process(pkt)
            if hw & HW_FROM_MASTER:
                t = (pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport)
                self._confirm(t, pkt.zone, pkt.zone_dir)
            return
        if not hw and pkt.ts < self.known_since and self.blind_count < BLIND_MAX:
            self._remember_blind(pkt)  # read before its segment's master was known
        if hw & HW_TO_MASTER:
            keys = copy_keys(pkt)
            ts = pkt.ts
            order = self.order
            if self.early and self._after_its_copy(pkt, keys):
                return
            if self.hold_teardowns and pkt.proto == PROTO_TCP and pkt.tcp_flags & (TH_RST | TH_FIN):
                h = _Held(pkt)  # applied only once it is seen forwarded
                for k in keys:
                    self.held[k] = h
                    order.append((k, ts))
                return
            self.table.process(pkt)
            t = (pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport)
            recent = self.recent
            window = self.window
            zone, zdir = pkt.zone, pkt.zone_dir
            for k in keys:
                prev = recent.get(k)
                if (
                    prev is not None
                    and (prev[1] != t or prev[2] != zone)
                    and ts - prev[0] <= window
                ):
                    recent[k] = (ts, AMBIGUOUS, 0, 3)  # two flows, one key: pair nothing by it
                else:
                    recent[k] = (ts, t, zone, zdir)
                order.append((k, ts))
            if pkt.l4len and pkt.proto == PROTO_TCP and self._helper_port(pkt):
                for k in mangle_keys(pkt, pkt.seq, pkt.ack):
                    m = self.mangled.get(k)
                    if m is not None and (m[1] != t or m[3] != zone) and ts - m[0] <= window:
                        self.mangled[k] = (ts, AMBIGUOUS, 0, 0, 3)
                    else:
                        self.mangled[k] = (ts, t, pkt.l4len, zone, zdir)
                    order.append((k, ts))
            if len(order) > self.max_recent:
                self._prune(ts)
            return
        if hw & HW_FROM_MASTER:
            keys = copy_keys(pkt)
            if self._egress(pkt, keys) or (pkt.proto == PROTO_TCP and self._egress_adjusted(pkt)):
                return
            self.counters["egress-unmatched"] += 1
            # its ingress copy may still come: the capture timestamps of two segments
            # can invert (mirror ports, rings read on their own timers)
            early, ts, recent = self.early, pkt.ts, self.recent
            for k in keys:
                went_in = recent.get(k)
                if went_in is not None and ts - went_in[0] <= self.window:
                    # copies going in hold this key already (it was ambiguous): one
                    # coming later proves nothing either
                    continue
                before = early.get(k)
                alone = before is None or ts - before[0] > self.window
                early[k] = (ts, pkt if alone else None)
                self.order.append((k, ts))
            if len(self.order) > self.max_recent:
                self._prune(ts)
        self.table.process(pkt)

    def _helper_port(self, pkt: Packet) -> bool:
        ports = self.mangle_ports
        return pkt.dport in ports or pkt.sport in ports

    def _egress(self, pkt: Packet, keys: tuple[Key, ...]) -> bool:
        """Pair a copy leaving the master with a held or recent one that went in; the
        entry is confirmed only with its mapping known (identical copies, or a rebind)."""
        t_out = (pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport)
        for k in keys:
            waiting = self.held.get(k)
            if waiting is not None and not waiting.done:
                waiting.done = True
                held = waiting.pkt
                t_in = (held.proto, held.src, held.dst, held.sport, held.dport)
                zone, zdir = held.zone, held.zone_dir
                known = t_out == t_in or self._translated(t_in, pkt, zone, zdir)
                self.table.process(held)
                if not known:
                    # the teardown may have created the entry (a server's FIN picked up
                    # mid-stream): bind it now, as an ingress copy's entry is
                    known = self._translated(t_in, pkt, zone, zdir)
                if known:
                    self._confirm(t_in, zone, zdir)
                self.counters["teardown-confirmed"] += 1
                return True
        for k in keys:
            seen = self.recent.get(k)
            if seen is not None and pkt.ts - seen[0] <= self.window:
                if not seen[1]:
                    self.counters["copy-ambiguous"] += 1
                    continue
                if seen[1] == t_out:  # the outgoing copy of a tracked packet
                    self._confirm(seen[1], seen[2], seen[3])
                else:
                    self._translated(seen[1], pkt, seen[2], seen[3])
                return True
        return False

    def _egress_adjusted(self, pkt: Packet) -> bool:
        """A TCP copy leaving the master that paired with nothing: undo the master's
        sequence adjustment of its entry (if any) and try again; a helper segment is also
        tried without its length, and if the lengths differ the rewrite is recorded."""
        t_out = (pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport)
        table = self.table
        zone, zdir = pkt.zone, pkt.zone_dir  # the segment it leaves by (best effort)
        found = table.get(t_out, zone, zdir)
        if found is not None:
            conn, d = found
        else:
            inv = invert(t_out)
            found = table.get(inv, zone, zdir) if inv is not None else None
            if found is None:
                return False
            conn, d = found[0], 1 - found[1]  # the copy is translated: the other side's
        sa = conn.seqadj
        pairs = [(pkt.seq, pkt.ack)]
        if sa is not None:
            pairs = [
                (s, a) for s in sa.ingress_seqs(d, pkt.seq) for a in sa.ingress_acks(d, pkt.ack)
            ]
            proto, ipid, n = pkt.proto, pkt.ipid, pkt.l4len
            # copy_keys' TCP key with the shift undone (no addresses: any NAT)
            keys = tuple(("both", proto, ipid, s, a, n) for s, a in pairs)
            if self._egress(pkt, keys):
                self.counters["seqadj-paired"] += 1
                return True
        if not pkt.l4len or not self._helper_port(pkt):
            return False
        return any(self._rewrite_pair(pkt, conn, t_out, seq, ack) for seq, ack in pairs)

    def _rewrite_pair(self, pkt: Packet, conn: Conn, t_out: Tuple, seq: int, ack: int) -> bool:
        """A helper segment paired without its length (going in at ``seq``/``ack``)."""
        for k in mangle_keys(pkt, seq, ack):
            m = self.mangled.get(k)
            if m is None or pkt.ts - m[0] > self.window:
                continue
            if not m[1]:
                self.counters["copy-ambiguous"] += 1
                continue
            t_in, n_in, zone, zdir = m[1], m[2], m[3], m[4]
            if t_in == t_out:
                self._confirm(t_in, zone, zdir)
            else:
                self._translated(t_in, pkt, zone, zdir)
            if pkt.l4len != n_in and pkt.payload[:4].upper() in REWRITTEN:
                self._rewritten(conn, t_in, seq, pkt.l4len - n_in, zone, zdir)
            return True
        return False

    def _rewritten(
        self, conn: Conn, t_in: Tuple, seq: int, off: int, zone: int = 0, zdir: int = 3
    ) -> None:
        """The master's helper rewrote the segment of ``t_in`` at ``seq`` ``off`` bytes
        longer: the entry's sequence adjustment, as the master's."""
        found = self.table.get(t_in, zone, zdir)
        if found is None or found[0] is not conn:
            return
        sa = conn.seqadj
        if sa is None:
            sa = SeqAdj()
        if sa.record(found[1], seq, off):
            conn.seqadj = sa
            conn.status |= IPS_SEQ_ADJUST
            self.counters["seqadj-recorded"] += 1
            if self.table.listener is not None:
                self.table.listener(EVENT_UPDATE, conn)

    def _after_its_copy(self, pkt: Packet, keys: tuple[Key, ...]) -> bool:
        """``pkt`` went into the master and its copy leaving it was seen first (tracked
        then as unmatched): pair them now. False if no such copy waits."""
        early = self.early
        for i, k in enumerate(keys):
            got = early.get(k)
            if got is None or pkt.ts - got[0] > self.window:
                continue
            out = got[1]
            if out is None:
                self.counters["copy-ambiguous"] += 1
                continue
            if out.tcp_flags != pkt.tcp_flags:
                continue  # NAT leaves the flags alone: not its copy (a forged RST, say)
            went_in = self.recent.get(k)
            if went_in is not None and pkt.ts - went_in[0] <= self.window:
                # another copy going in shares the key (flows without IP ID or flow label
                # sending the same bytes): which one left is unknown
                self.counters["copy-ambiguous"] += 1
                continue
            for k2 in copy_keys(out):
                early.pop(k2, None)  # one pair per copy
            t_in = (pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport)
            t_out = (out.proto, out.src, out.dst, out.sport, out.dport)
            self.counters["egress-first"] += 1
            if i == 0 or t_out == t_in:
                # the same packet, tracked already as its egress copy: not twice
                self._confirm(t_in, pkt.zone, pkt.zone_dir)
                return True
            self.table.process(pkt)
            self._translated(t_in, out, pkt.zone, pkt.zone_dir)
            return True
        return False

    def expire(self, now: float) -> None:
        """Forget copies older than the window; drop held RST/FIN never forwarded."""
        self._prune(now)
        if self.blind_count and now - self.known_since > BLIND_KEEP:
            # the tuples the master sent meanwhile have been confirmed (twice) by now
            self.blind, self.blind_sent, self.blind_count = {}, {}, 0

    def _prune(self, now: float) -> None:
        limit = now - self.window
        order, recent, held, early = self.order, self.recent, self.held, self.early
        while order and (order[0][1] < limit or len(order) > self.max_recent):
            key, ts = order.popleft()
            got = recent.get(key)
            if got is not None and got[0] == ts:
                del recent[key]
            m = self.mangled.get(key)
            if m is not None and m[0] == ts:
                del self.mangled[key]
            e = early.get(key)
            if e is not None and e[0] == ts:
                del early[key]
            h = held.get(key)
            if h is not None and h.pkt.ts == ts:
                del held[key]
                if not h.done:
                    h.done = True
                    self.counters["teardown-not-forwarded"] += 1
