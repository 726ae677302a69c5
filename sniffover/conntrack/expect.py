"""Expectations and the helper record: the kernel's ``nf_conntrack_expect.c`` for a sniffer.

A *helper* (``struct nf_conntrack_helper``) is attached to a master connection by its
L4 protocol and ORIGINAL destination port; it reads the master's payload and may
register an *expectation*: the first packet of a connection to come, which is then
RELATED. This module owns what is common to every helper:

* ``Helper``: the record each helper module fills (``helpers/ftp.py``, ...), with its
  ``ExpectPolicy`` (``struct nf_conntrack_expect_policy``: max expected, timeout);
* ``Expectation``: one expectation as ctnetlink takes it;
* ``Expectations``: the outstanding set (pure bookkeeping). ``feed`` hands a payload to
  the helper of its master, found by ``(l4proto, port)``; ``on_new`` lets an expected
  flow consume its expectation (one dict lookup: a TFTP request needs no handshake, so a
  flood of spoofed requests may leave many outstanding, and every new flow is looked up);
  ``on_destroy`` drops a master's expectation with it; ``expire`` times them out.

``nat_of`` gives what a NAT helper adds to the expectation of a translated master.

Zones (``nf_conntrack_expect.c``): an expectation belongs to its master's zone. A new
connection finds it only when the zone template it was created with has the master's
zone id (``nf_ct_exp_equal``: ``nf_ct_zone_equal_any``, the direction ignored), so the
expected-flow index is keyed with that id, and the masters by their table key
(``zones.orig_key``: their ORIGINAL tuple with the zone it is hashed in). Two VRFs that
reuse addresses then hold an FTP session each, with its own expectation.

Which helpers exist is the registry's business (``helpers/__init__.py``), not this one's.
Pure: no I/O, no clock (``now`` comes from the packets).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from .entry import Conn
from .tuple import Tuple
from .zones import orig_key


class ExpectPolicy(NamedTuple):
    """``struct nf_conntrack_expect_policy``."""

    max_expected: int  # per master; the bookkeeping here keeps one (all helpers so far)
    timeout: float  # seconds an expectation lives unless consumed


DEFAULT_EXPECT_TIMEOUT = 300.0  # a primed expectation whose master has no helper here


NatSaved = tuple[int, Tuple]  # (exp->dir, tuple whose source is the saved address/port)


class Expectation(NamedTuple):
    """One expectation as ctnetlink takes it (CTA_EXPECT_MASTER / TUPLE / MASK)."""

    master: Tuple  # ORIGINAL tuple of the master (control) connection
    tuple: Tuple  # first packet of the expected connection: (proto, src, dst, 0, port)
    mask: Tuple  # (proto, src mask, dst mask, sport mask 0, dport mask 0xffff)
    created: float  # capture time of the packet that registered it
    kind: str  # what registered it: "PORT" | "EPRT" | "227" | "229" | "RRQ" | "WRQ" | ...
    # The registering helper's policy timeout (FTP's and TFTP's are both 300 s).
    timeout: float = DEFAULT_EXPECT_TIMEOUT
    # A NATed master's: (direction, saved tuple) as the NAT helper leaves it (exp->dir and
    # exp->saved_proto as the source port of the tuple): the expected connection is
    # translated to follow its master ("nat-follow-master").
    nat: NatSaved | None = None
    # the master's zone id (nf_ct_zone(master)->id): a new connection matches only with a
    # zone template of this id; and the id its ORIGINAL tuple is hashed in
    # (nf_ct_zone_id(zone, ORIGINAL): CTA_EXPECT_ZONE that finds the master on create)
    zone: int = 0
    master_zid: int = 0

    @property
    def expires(self) -> float:
        return self.created + self.timeout

    @property
    def master_key(self) -> Tuple:
        """The master's table key (``zones.orig_key``): its ORIGINAL tuple, zone appended."""
        return self.master if not self.master_zid else (*self.master, self.master_zid)

    def matches(self, t: Tuple) -> bool:
        """Whether a new connection with ORIGINAL tuple ``t`` is the one expected."""
        e = self.tuple
        return t[0] == e[0] and t[1] == e[1] and t[2] == e[2] and t[4] == e[4]


def nat_of(conn: Conn, direction: int, port: int) -> NatSaved | None:
    """What ``nf_nat_ftp`` / ``nf_nat_tftp`` record on an expectation of a translated
    master (they run only then: ``ct->status & IPS_NAT_MASK``): ``exp->dir`` (the
    expected connection's direction, the opposite of the announcing packet's) and
    ``exp->saved_proto`` (``port``, where the connection goes after translation); the
    saved address stays zero."""
    o, r = conn.orig, conn.reply
    if r[1] == o[2] and r[2] == o[1] and r[3] == o[4] and r[4] == o[3]:
        return None  # not translated
    zero = bytes(len(o[1]))
    return (1 - direction, (o[0], zero, zero, port, 0))


# help(): the master, the payload's direction in it, the payload, the capture time.
ExpectFn = Callable[[Conn, int, bytes, float], "Expectation | None"]


class Helper(NamedTuple):
    """One helper, as the kernel's ``struct nf_conntrack_helper`` describes it."""

    name: str  # the kernel's helper name (CTA_HELP on the master: "ftp", "tftp")
    l4proto: int  # the master's L4 protocol ...
    port: int  # ... and ORIGINAL destination port (the helper's default ``ports=``)
    expectation: ExpectFn  # help(): the expectation a payload registers, or None
    policy: ExpectPolicy
    # the master goes into the kernel before it saw a reply (a TFTP server answers from
    # another port: the request's flow is never replied, yet must hold the expectation)
    install_unreplied: bool
    payload: bool  # the decoder keeps the master's payload (Packet.payload) for help()

    @property
    def key(self) -> tuple[int, int]:
        return (self.l4proto, self.port)


Key = tuple[int, bytes, bytes, int, int]  # (proto, src, dst, dport, zone id) of an expected flow


def _key(t: Tuple, zone: int) -> Key:
    return (t[0], t[1], t[2], t[4], zone)


class Outstanding(dict[Tuple, Expectation]):
    """``by_master`` (keyed by the master's table key) that indexes what is put in it by
    expected flow and zone id, whoever puts it there
    (``feed``, or primed expectations written straight in). Entries whose expectation
    went (consumed, replaced, expired, master gone) leave the index lazily."""

    def __init__(self) -> None:
        super().__init__()
        self.by_key: dict[Key, Tuple] = {}

    def __setitem__(self, master: Tuple, exp: Expectation) -> None:
        super().__setitem__(master, exp)
        self.by_key[_key(exp.tuple, exp.zone)] = master
        if len(self.by_key) > 2 * len(self) + 64:
            self.by_key = {_key(e.tuple, e.zone): m for m, e in self.items()}


class Expectations:
    """Outstanding expectations of the tracked masters, registered by ``helpers``.

    ``feed`` is given every packet that carries a payload with the entry it belongs to;
    ``on_new`` every new entry (an expected connection consumes its expectation);
    ``on_destroy`` every destroyed one (a master takes its expectations with it). The
    caller installs what ``feed`` returns and removes what ``on_new`` returns.
    """

    def __init__(self, helpers: Iterable[Helper]) -> None:
        self.helpers: dict[tuple[int, int], Helper] = {}
        for h in helpers:
            if h.policy.max_expected != 1:  # by_master holds one per master
                raise ValueError(f"helper {h.name}: max_expected {h.policy.max_expected}")
            self.helpers[h.key] = h
        self.outstanding = Outstanding()
        self.by_master: dict[Tuple, Expectation] = self.outstanding
        self.counters: dict[str, int] = {}

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def feed(self, conn: Conn, direction: int, payload: bytes, now: float) -> Expectation | None:
        """The expectation ``conn``'s helper registers for this payload, if any."""
        o = conn.orig
        helper = self.helpers.get((o[0], o[4]))
        if helper is None:
            return None
        exp = helper.expectation(conn, direction, payload, now)
        if exp is not None:
            mkey = o
            if conn.zone:  # the master's zone is the expectation's (nf_ct_expect_init)
                exp = exp._replace(zone=conn.zone, master_zid=conn.zone_id(0))
                mkey = exp.master_key
            other = self.outstanding.by_key.get(_key(exp.tuple, exp.zone))
            if other is not None and other != mkey:
                old = self.outstanding.get(other)
                if old is not None and old.tuple == exp.tuple:
                    # another master expects the same flow: the kernel refuses the new one
                    # (expect_clash, -EBUSY) and keeps the old
                    self._count("expect-clash")
                    return None
            self.outstanding[mkey] = exp  # one per master: a new one evicts the old
            self._count("expect-" + exp.kind)
        return exp

    def on_new(self, conn: Conn) -> Expectation | None:
        """The expectation ``conn`` consumes, if it is an expected flow (one dict lookup):
        its zone template's id (the entry's zone) must be the master's."""
        o = conn.orig
        key = _key(o, conn.zone)
        by_key = self.outstanding.by_key
        master = by_key.get(key)
        if master is None:
            return None
        del by_key[key]
        exp = self.outstanding.get(master)
        if exp is None or not exp.matches(o):
            return None  # a stale index entry
        del self.outstanding[master]
        self._count("expect-consumed")
        return exp

    def on_destroy(self, conn: Conn) -> None:
        if self.outstanding.pop(orig_key(conn), None) is not None:
            self._count("expect-master-gone")

    def adopt(
        self,
        master: Tuple,
        tuple_: Tuple,
        mask: Tuple,
        remaining: float,
        taken_at: float,
        now: float,
        nat: NatSaved | None = None,
        zone: tuple[int, int] = (0, 0),
    ) -> Expectation | None:
        """An expectation the master's kernel held (a prime), ``remaining`` seconds before
        it expired at ``taken_at``, with its NAT helper's part if it had one and its
        master's ``zone`` (id, id its ORIGINAL tuple is hashed in). It takes the master's
        slot unless it has run out by ``now`` or a sniffed one registered after the
        snapshot holds the slot. Returns it when adopted: the caller installs it."""
        helper = self.helpers.get((master[0], master[4]))
        timeout = helper.policy.timeout if helper is not None else DEFAULT_EXPECT_TIMEOUT
        created = taken_at + remaining - timeout
        exp = Expectation(master, tuple_, mask, created, "prime", timeout, nat, *zone)
        old = self.outstanding.get(exp.master_key)
        if exp.expires <= now or (old is not None and old.created > taken_at):
            return None
        self.outstanding[exp.master_key] = exp
        return exp

    def expire(self, now: float) -> None:
        for master in [m for m, e in self.outstanding.items() if e.expires <= now]:
            del self.outstanding[master]
            self._count("expect-timeout")
