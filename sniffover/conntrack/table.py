"""The flow table: lookup, creation, confirmation, expiry and events.

This is ``nf_conntrack_in`` for a sniffer. Decoded packets come in with their
capture timestamps (``Packet.ts`` is "now": the table never reads a clock),
verdicts come out, and an optional listener hears NEW / UPDATE / DESTROY events.

How a packet is handled:

1. ICMP/ICMPv6 errors are matched through the header they quote to the entry
   they are about (RELATED) and never create entries; neighbour discovery and
   MLD are untracked.
2. The packet's tuple is looked up; the dict holds both tuples of every entry,
   each with its direction, so one lookup answers "which entry, which way".
   An entry whose timeout has passed is destroyed on the way, as the kernel's
   lookup does, and the packet is then treated as new.
3. A miss creates a candidate entry (ORIGINAL = this packet) which the
   protocol may refuse (TCP only from SYN, or ACK with ``tcp_loose``; ICMP
   only from requests). It is confirmed into the table after the protocol
   accepted the packet. SCTP entries are made by ``sctp.sctp_new``.
4. A reply-direction packet that was not INVALID sets SEEN_REPLY after the
   protocol handler ran, as the core does.

Mid-stream pickup: the kernel makes ORIGINAL whatever packet it saw first. A
sniffer that joins late wants the *master's* orientation, which came from the
SYN it did not see. With ``infer_direction`` (default on) a TCP entry picked
up from a non-SYN segment is oriented client -> server by ports
(``server_side``): a port below 1024 against one above it is the server; else
a port inside Linux's ephemeral range (32768-60999) is the client; else the
lower port is the server; a tie keeps the first sender as client. The
segment is then processed as the REPLY-direction packet it is.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Final

from .entry import (
    IPS_ASSURED,
    IPS_CONFIRMED,
    IPS_SEEN_REPLY,
    TCP_FLAG_BE_LIBERAL,
    TCP_FLAG_SACK_PERM,
    Conn,
    TcpState,
)
from .packet import (
    HW_FROM_MASTER,
    PROTO_GRE,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
    PROTO_UDPLITE,
    Packet,
)
from .protocols import generic_packet, gre_packet, icmp_new, icmp_packet, udp_packet, udplite_packet
from .sctp import sctp_can_early_drop, sctp_new, sctp_packet
from .states import TCP_CLOSE, TCP_ESTABLISHED, TCP_FIN_WAIT
from .tcp import NONE as TCP_INDEX_NONE
from .tcp import SYN as TCP_INDEX_SYN
from .tcp import TCP_INDEX, VALID_FLAGS, tcp_new, tcp_packet
from .timeouts import Timeouts
from .tuple import (
    ICMP_ERRORS,
    ICMPV6_UNTRACKED,
    JOINED_GROUPS,
    MULTICAST_MODES,
    Tuple,
    invert,
    is_multicast,
)
from .verdict import ACCEPT, IGNORE, INVALID, KILL, RELATED, REPEAT, UNTRACKED
from .zones import lookup, orig_key, reply_key, zone_key

EVENT_NEW = "new"
EVENT_UPDATE = "update"
EVENT_DESTROY = "destroy"
# The entry stays but its tuples change (NAT seen on the wire): for a kernel copy this is
# another entry (its NAT binding cannot be changed), so listeners replace it.
EVENT_REPLACE = "replace"

Listener = Callable[[str, Conn], None]
Handler = Callable[[Conn, int, Packet, Timeouts], int]

HANDLERS: dict[int, Handler] = {
    PROTO_TCP: tcp_packet,
    PROTO_UDP: udp_packet,
    PROTO_UDPLITE: udplite_packet,
    PROTO_ICMP: icmp_packet,
    PROTO_ICMPV6: icmp_packet,
    PROTO_GRE: gre_packet,
    PROTO_SCTP: sctp_packet,
}

EPHEMERAL_LOW: Final = 32768
EPHEMERAL_HIGH: Final = 60999

# ICMP "time exceeded in transit" (type << 8 | code) per protocol, and how many entries
# created by TTL-1 packets are remembered for it (see ConntrackTable._icmp_error).
TIME_EXCEEDED = {PROTO_ICMP: 11 << 8, PROTO_ICMPV6: 3 << 8}
TTL_PROBES_MAX: Final = 4096

# Shared tuple parts (see ConntrackTable._shared): every port value as one object, and up
# to ADDR_CACHE_MAX distinct addresses (then the cache starts afresh).
PORT_OBJECTS: Final[tuple[object, ...]] = tuple(range(0x10000))
ADDR_CACHE_MAX: Final = 1 << 16

# Early drop (nf_conntrack_core.c): how many ASSURED entries one new entry may look at.
EVICTION_RANGE: Final = 8


def server_side(sport: int, dport: int) -> bool:
    """True if the packet's *source* port looks like the server's (see module docstring)."""
    if (sport < 1024) != (dport < 1024):
        return sport < 1024
    s_eph = EPHEMERAL_LOW <= sport <= EPHEMERAL_HIGH
    d_eph = EPHEMERAL_LOW <= dport <= EPHEMERAL_HIGH
    if s_eph != d_eph:
        return d_eph
    return sport < dport


class ConntrackTable:
    """A user-space conntrack table fed with decoded packets."""

    def __init__(
        self,
        timeouts: Timeouts | None = None,
        *,
        infer_direction: bool = True,
        listener: Listener | None = None,
        max_entries: int | None = None,
        multicast: str = "drop",
    ) -> None:
        self.timeouts = timeouts or Timeouts()
        # "drop": a router that joined no group and routes no multicast: a datagram to any
        # other group than JOINED_GROUPS dies in routing, its entry never confirmed.
        # "track": a firewall that listens to or routes multicast: tracked like unicast.
        if multicast not in MULTICAST_MODES:
            raise ValueError(f"multicast must be one of {', '.join(MULTICAST_MODES)}")
        self.drop_multicast = multicast == "drop"
        # nf_conntrack_max: at the limit a new entry early-drops an old one or is refused.
        self.max_entries = max_entries
        # Eviction candidates in insertion order (only with max_entries), and the entries
        # found ASSURED among them; destroyed ones are skipped lazily and compacted away.
        self._early: deque[Conn] | None = deque() if max_entries is not None else None
        self._assured: deque[Conn] = deque()
        self.infer_direction = infer_direction
        self.listener = listener
        # Both tuples of every entry -> the entry; the direction is "is it the ORIGINAL".
        # A tuple in a zone other than 0 is keyed with its zone appended (conntrack.zones).
        self._map: dict[Tuple, Conn] = {}
        self._entries = 0
        self.verdicts = [0] * 7  # indexed by verdict
        self.counters: Counter[str] = Counter()
        # Entries created by a packet arriving with TTL / hop limit 1 and not seen since
        # with another TTL (ORIGINAL tuple -> entry; bounded, oldest dropped): see
        # _icmp_error for why.
        self._ttl_probes: dict[Tuple, Conn] = {}
        # Hosts whose TTL-1 packets a router here was seen to drop, and that router's
        # addresses (insertion-ordered sets, bounded): see _learn_first_hop.
        self._dying: dict[bytes, None] = {}
        self._routers: dict[bytes, None] = {}
        self._addrs: dict[bytes, bytes] = {}  # see _shared

    # --- lookup ---------------------------------------------------------------------

    def __len__(self) -> int:
        return self._entries

    def conn(self, t: Tuple, zone: int = 0, zone_dir: int = 3) -> Conn | None:
        """The entry holding tuple ``t`` in either direction (for a packet in ``zone``)."""
        found = self.get(t, zone, zone_dir)
        return found[0] if found is not None else None

    def get(self, t: Tuple, zone: int = 0, zone_dir: int = 3) -> tuple[Conn, int] | None:
        """The entry holding ``t`` and that direction, for a packet of that zone template."""
        conn, direction = lookup(self._map, t, zone, zone_dir)
        return None if conn is None else (conn, direction)

    def conns(self) -> Iterator[Conn]:
        """Every entry, expired or not (each once)."""
        for key, conn in self._map.items():  # the key of its ORIGINAL tuple (zone appended)
            if key is conn.orig if conn.extra is None else key == orig_key(conn):
                yield conn

    def entries(self, now: float) -> list[Conn]:
        """Entries still alive at ``now`` (what ``conntrack -L`` would list)."""
        return [c for c in self.conns() if c.expires > now]

    # --- packets --------------------------------------------------------------------

    def process(self, pkt: Packet) -> int:
        """Track one packet; returns its verdict (see ``verdict``)."""
        proto = pkt.proto
        if proto == PROTO_ICMP:
            if (pkt.dport >> 8) in ICMP_ERRORS:
                return self._count(self._icmp_error(pkt))
        elif proto == PROTO_ICMPV6:
            icmp_type = pkt.dport >> 8
            if icmp_type < 128 or icmp_type == 137:
                return self._count(self._icmp_error(pkt))
            if icmp_type in ICMPV6_UNTRACKED:
                return self._count(UNTRACKED)
        elif proto == PROTO_TCP and not VALID_FLAGS[pkt.tcp_flags & 0x37]:  # tcp_error()
            self.counters["tcp-bad-flags"] += 1
            return self._count(INVALID)

        key = (proto, pkt.src, pkt.dst, pkt.sport, pkt.dport)
        conn, direction = lookup(self._map, key, pkt.zone, pkt.zone_dir)
        if conn is not None:
            if conn.expires > pkt.ts:
                verdict = self._existing(conn, direction, pkt, key)
                self.verdicts[verdict] += 1
                return verdict
            self._destroy(conn, "timeout")
        return self._count(self._new(pkt, key))

    def _count(self, verdict: int) -> int:
        self.verdicts[verdict] += 1
        return verdict

    def _existing(self, conn: Conn, direction: int, pkt: Packet, key: Tuple) -> int:
        if self._ttl_probes and pkt.ttl != 1:
            self._ttl_probes.pop(orig_key(conn), None)  # a packet that can live on: keep it
        status0 = conn.status
        st = conn.tcp or conn.sctp
        state0 = st.state if st is not None else 0
        res = self._handle(conn, direction, pkt)
        if res == INVALID:
            return INVALID
        if res == REPEAT:
            self._destroy(conn, "reopen")
            return self._new(pkt, key)
        if res == KILL:
            self._destroy(conn, "rst-unreplied")
            return ACCEPT
        if direction == 1 and not conn.status & IPS_SEEN_REPLY:
            conn.status |= IPS_SEEN_REPLY
        conn.last_seen = pkt.ts
        if self.listener is not None and (
            conn.status != status0 or (st is not None and st.state != state0)
        ):
            self.listener(EVENT_UPDATE, conn)
        return res

    def _handle(self, conn: Conn, direction: int, pkt: Packet) -> int:
        """The protocol's handler; TCP and UDP called directly (compiled: native calls)."""
        proto = pkt.proto
        if proto == PROTO_TCP:
            return tcp_packet(conn, direction, pkt, self.timeouts)
        if proto == PROTO_UDP:
            return udp_packet(conn, direction, pkt, self.timeouts)
        return HANDLERS.get(proto, generic_packet)(conn, direction, pkt, self.timeouts)

    def _new(self, pkt: Packet, key: Tuple) -> int:
        dst = pkt.dst
        if is_multicast(dst):
            if len(dst) == 16 and dst[1] & 0x0E == 0:
                # scope 0 or interface-local: ip6_rcv_core() drops it before conntrack
                self.counters["multicast-bad-scope"] += 1
                return IGNORE
            if self.drop_multicast and dst not in JOINED_GROUPS and not pkt.hw & HW_FROM_MASTER:
                # NEW, then dropped by the router's routing: never confirmed. What leaves the
                # master (its own VRRP adverts, IGMP reports) went through its OUTPUT path.
                self.counters["multicast-not-joined"] += 1
                return IGNORE
        if (
            pkt.ttl == 1
            and pkt.src in self._dying
            and pkt.dst not in self._routers
            and pkt.dst[0] < (224 if len(pkt.dst) == 4 else 0xFF)  # multicast: delivered here
            and not pkt.hw & HW_FROM_MASTER  # it left the master with TTL 1: forwarded
        ):  # dies in the first hop's ip_forward(), never confirmed (_learn_first_hop)
            self.counters["ttl-expired"] += 1
            return INVALID
        reply = invert(key)
        if reply is None:
            return INVALID
        key, reply = self._shared(key, reply)
        proto = pkt.proto
        now = pkt.ts
        direction = 0
        if proto == PROTO_TCP:
            index = TCP_INDEX[pkt.tcp_flags]
            if (
                self.infer_direction
                and index != TCP_INDEX_SYN
                and self.timeouts.tcp_loose
                and server_side(pkt.sport, pkt.dport)
            ):
                conn = self._picked_up_reversed(key, reply, now)
                direction = 1
            else:
                conn = Conn(key, reply, now)
                if not tcp_new(conn, pkt, self.timeouts):
                    return INVALID
        elif (proto in (PROTO_ICMP, PROTO_ICMPV6)) and not icmp_new(pkt):
            return INVALID
        elif proto == PROTO_SCTP:
            conn = Conn(key, reply, now)
            if not sctp_new(conn, pkt, self.timeouts):
                return INVALID
        else:
            conn = Conn(key, reply, now)
        if pkt.zone:  # the entry takes the packet's zone template as it is
            conn.zone, conn.zone_dir = pkt.zone, pkt.zone_dir
        res = self._handle(conn, direction, pkt)
        if res == INVALID:
            return INVALID
        if res == KILL:
            return ACCEPT  # never confirmed
        okey, rkey = orig_key(conn), reply_key(conn)
        if okey in self._map or rkey in self._map:
            # Both tuples must be unique (nf_conntrack_confirm): the packet is dropped.
            self.counters["insert-clash"] += 1
            return INVALID
        if self._early is not None and not self._admit(now):
            return INVALID
        conn.status |= IPS_CONFIRMED
        if direction == 1:
            conn.status |= IPS_SEEN_REPLY
        conn.last_seen = now
        self._map[okey] = conn
        self._map[rkey] = conn
        self._entries += 1
        if self._early is not None:
            self._enqueue(conn)
        self.counters["created"] += 1
        if pkt.ttl == 1:  # 0 = not known (crafted packets)
            probes = self._ttl_probes
            probes[okey] = conn
            if len(probes) > TTL_PROBES_MAX:
                del probes[next(iter(probes))]
        if self.listener is not None:
            self.listener(EVENT_NEW, conn)
        return res

    def rebind(self, conn: Conn, orig: Tuple | None = None, reply: Tuple | None = None) -> bool:
        """Give ``conn`` other tuples (NAT seen on the wire: the translated copy of a packet
        says what the reply, or for a mid-stream pickup the original, really looks like).

        Listeners hear REPLACE (with the old tuples) then NEW: for the kernel this is
        another entry (NAT cannot be changed on an existing one). False if a new tuple
        belongs to another entry.
        """
        m = self._map
        new_orig = orig if orig is not None else conn.orig
        new_reply = reply if reply is not None else conn.reply
        if new_orig == conn.orig and new_reply == conn.reply:
            return True
        new_okey, new_rkey = (
            zone_key(new_orig, conn.zone_id(0)),
            zone_key(new_reply, conn.zone_id(1)),
        )
        for t in (new_okey, new_rkey):
            other = m.get(t)
            if other is not None and other is not conn:
                if other.forwarded:
                    self.counters["nat-clash"] += 1
                    return False
                # the other copy of this very flow, tracked on its own before the master's
                # MACs were known: this entry replaces it
                self._destroy(other, "nat-duplicate")
        if self.listener is not None:
            self.listener(EVENT_REPLACE, conn)
        for t in (orig_key(conn), reply_key(conn)):
            if m.get(t) is conn:
                del m[t]
        conn.orig, conn.reply = new_orig, new_reply
        m[new_okey] = conn
        m[new_rkey] = conn
        self.counters["nat-rebound"] += 1
        if self.listener is not None:
            self.listener(EVENT_NEW, conn)
        return True

    def adopt(self, conn: Conn) -> bool:
        """Insert an entry made elsewhere (a primed one); False if either tuple is taken.

        What the tracker already holds wins: it was sniffed, so it is at least as new.
        """
        m = self._map
        old = m.get(orig_key(conn)) or m.get(reply_key(conn))
        if old is not None:
            if old.expires > conn.last_seen:
                self.counters["adopt-known"] += 1
                return False
            self._destroy(old, "timeout")
        if self._early is not None and not self._admit(conn.last_seen):
            return False
        conn.orig, conn.reply = self._shared(conn.orig, conn.reply)
        m[orig_key(conn)] = conn
        m[reply_key(conn)] = conn
        self._entries += 1
        if self._early is not None:
            self._enqueue(conn)
        self.counters["adopted"] += 1
        if self.listener is not None:
            self.listener(EVENT_NEW, conn)
        return True

    def absorb(self, staged: ConntrackTable) -> bool:
        """Take over every entry of ``staged`` (a prime staged aside) if this table is
        empty; no events (the caller installs them its own way). False if not empty."""
        if self._entries or self._map:
            return False
        self._map, staged._map = staged._map, {}
        self._entries, staged._entries = staged._entries, 0
        self._addrs, staged._addrs = staged._addrs, {}
        if self._early is not None:  # eviction order: the staged table's, if it kept one
            self._early = staged._early if staged._early is not None else deque(staged.conns())
            self._assured, staged._assured = staged._assured, deque()
        self.counters["adopted"] += staged.counters["adopted"]
        return True

    def _shared(self, orig: Tuple, reply: Tuple) -> tuple[Tuple, Tuple]:
        """The tuples of a new entry rebuilt from shared parts: one object per address
        (a bounded cache: hosts recur across flows) and per port value (all 65,536 made
        once). Each packet's tuple carries objects of its own; an entry keeps two tuples
        for as long as it lives, so sharing their parts saves ~140 bytes per entry."""
        addrs = self._addrs
        if len(addrs) >= ADDR_CACHE_MAX:
            addrs.clear()  # older entries keep the objects they share
        ports = PORT_OBJECTS
        src = addrs.setdefault(orig[1], orig[1])
        dst = addrs.setdefault(orig[2], orig[2])
        o3, o4, r3, r4 = orig[3], orig[4], reply[3], reply[4]
        if 0 <= o3 <= 0xFFFF and 0 <= o4 <= 0xFFFF and 0 <= r3 <= 0xFFFF and 0 <= r4 <= 0xFFFF:
            shared_orig = (orig[0], src, dst, ports[o3], ports[o4])
            shared_reply = (
                reply[0],
                addrs.setdefault(reply[1], reply[1]),
                addrs.setdefault(reply[2], reply[2]),
                ports[r3],
                ports[r4],
            )
            return shared_orig, shared_reply
        return orig, reply  # crafted out-of-range ports (tests): as they are

    def _picked_up_reversed(self, key: Tuple, reply: Tuple, now: float) -> Conn:
        """A mid-stream segment from the server: make the entry client -> server."""
        conn = Conn(reply, key, now)
        st = TcpState()
        st.state = TCP_ESTABLISHED
        st.flags0 = st.flags1 = TCP_FLAG_SACK_PERM | TCP_FLAG_BE_LIBERAL
        st.last_index = TCP_INDEX_NONE
        conn.tcp = st
        return conn

    def _icmp_error(self, pkt: Packet) -> int:
        """RELATED if the error quotes a tracked flow and is addressed to its sender."""
        inner = pkt.inner
        if inner is None:
            return INVALID
        quoted = invert((inner.proto, inner.src, inner.dst, inner.sport, inner.dport))
        if quoted is None:
            return INVALID
        found = self.get(quoted, pkt.zone, pkt.zone_dir)  # the error's own zone template
        if found is None or found[0].expires <= pkt.ts:
            return INVALID
        conn = found[0]
        tup = conn.reply if found[1] else conn.orig
        if pkt.dst != tup[2]:
            return INVALID  # anti-spoofing: the error must go to the quoted packet's sender
        if pkt.dport == TIME_EXCEEDED[pkt.proto] and self._ttl_probes.get(orig_key(conn)) is conn:
            # "TTL exceeded in transit" about an entry whose every packet so far arrived
            # with TTL 1: the capture point's router dropped them in ip_forward() (ttl <= 1)
            # and sent this error itself. In the kernel the entry made in PRE_ROUTING is
            # only inserted by nf_conntrack_confirm() at POSTROUTING / LOCAL_IN, which such
            # a packet never reaches, so the router's table has no entry for it
            # (traceroute's first hop; verified: pcaps/icmp_ttl_exceeded). The error
            # itself finds nothing in the kernel's hash either.
            del self._ttl_probes[orig_key(conn)]
            if not conn.status & IPS_SEEN_REPLY:
                self._destroy(conn, "ttl-expired")
                self._learn_first_hop(conn.orig[1], pkt.src)
                return INVALID
        return RELATED

    def _learn_first_hop(self, host: bytes, router: bytes) -> None:
        """The router at ``router`` dropped a TTL-1 packet of ``host`` as captured here: from
        now on every TTL-1 packet of ``host`` that is not addressed to a known router address
        dies there too, whether or not the router's ICMP rate limit (a burst of 6, then one
        a second per peer) lets its error out (verified: pcaps/ttl_probes). Probes of
        ``host`` made into entries before this was known, with no answer, go now."""
        routers, dying = self._routers, self._dying
        routers[router] = None
        if len(routers) > TTL_PROBES_MAX:
            del routers[next(iter(routers))]
        if host in dying:
            return
        dying[host] = None
        if len(dying) > TTL_PROBES_MAX:
            del dying[next(iter(dying))]
        for orig, conn in list(self._ttl_probes.items()):
            if orig[1] == host and orig[2] not in routers and not conn.status & IPS_SEEN_REPLY:
                del self._ttl_probes[orig]
                self._destroy(conn, "ttl-expired")

    # --- resource bound (early drop) ------------------------------------------------

    def _enqueue(self, conn: Conn) -> None:
        early = self._early
        assert early is not None
        early.append(conn)
        if len(early) + len(self._assured) > 2 * self._entries + 64:
            # mostly destroyed entries: compact (O(1) amortised)
            m = self._map
            self._early = deque(c for c in early if m.get(orig_key(c)) is c)
            self._assured = deque(c for c in self._assured if m.get(orig_key(c)) is c)

    def _admit(self, now: float) -> bool:
        """Room for one more entry under ``max_entries``: True, else count "table-full"."""
        assert self.max_entries is not None
        if self._entries < self.max_entries or self._make_room(now):
            return True
        self.counters["table-full"] += 1
        return False

    def _make_room(self, now: float) -> bool:
        """``early_drop``: free one slot, O(1) amortised; False if nothing may go.

        What may go is ``gc_worker_can_early_drop``'s rule: an entry that is not ASSURED,
        or a TCP one in a closing state (FIN_WAIT .. CLOSE). First up to EVICTION_RANGE
        ASSURED entries are looked at (oldest first, rotating) for an expired or closing
        one; then the candidate queue up to EVICTION_RANGE unassured entries, an expired
        or closing one preferred, else the oldest unassured one goes. Either emits DESTROY
        ("timeout" for an expired entry, else "early-drop"). An entry found ASSURED in the
        candidate queue moves to the ASSURED queue (once: ASSURED is never cleared).
        """
        early, assured = self._early, self._assured
        assert early is not None
        m = self._map
        chosen: Conn | None = None
        reason = "early-drop"
        for _ in range(min(EVICTION_RANGE, len(assured))):
            conn = assured.popleft()
            if m.get(orig_key(conn)) is not conn:
                continue  # destroyed since: stale
            st = conn.tcp
            if conn.expires <= now:
                chosen, reason = conn, "timeout"
                break
            if (st is not None and TCP_FIN_WAIT <= st.state <= TCP_CLOSE) or (
                conn.sctp is not None and sctp_can_early_drop(conn)
            ):
                chosen = conn
                break
            assured.append(conn)
        unassured: list[Conn] = []  # looked at, oldest first
        while chosen is None and early and len(unassured) < EVICTION_RANGE:
            conn = early.popleft()
            if m.get(orig_key(conn)) is not conn:
                continue
            st = conn.tcp
            if conn.expires <= now:
                chosen, reason = conn, "timeout"
            elif (st is not None and TCP_FIN_WAIT <= st.state <= TCP_CLOSE) or (
                conn.sctp is not None and sctp_can_early_drop(conn)
            ):
                chosen = conn
            elif conn.status & IPS_ASSURED:
                assured.append(conn)
            else:
                unassured.append(conn)
        if chosen is None:
            if not unassured:
                return False
            chosen = unassured.pop(0)
        early.extendleft(reversed(unassured))
        self._destroy(chosen, reason)
        return True

    # --- expiry ---------------------------------------------------------------------

    def _destroy(self, conn: Conn, reason: str) -> None:
        m = self._map
        if m.get(okey := orig_key(conn)) is not conn:
            return  # already gone
        del m[okey]
        if m.get(rkey := reply_key(conn)) is conn:
            del m[rkey]
        self._entries -= 1
        self.counters["destroyed-" + reason] += 1
        if self.listener is not None:
            self.listener(EVENT_DESTROY, conn)

    def expire(self, now: float) -> int:
        """Destroy every entry whose timeout has passed at ``now``; returns how many."""
        dead = [c for c in self.conns() if c.expires <= now]
        for conn in dead:
            self._destroy(conn, "timeout")
        return len(dead)

    def ignore_count(self) -> int:
        return self.verdicts[IGNORE]
