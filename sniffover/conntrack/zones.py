"""Conntrack zones: which zone the master's ruleset gives a packet, and the lookup keys.

A zone is a 16-bit id that is part of the conntrack lookup key, so two VRFs (or two
customers behind one firewall) may reuse the same addresses without their entries
colliding. The master's ruleset sets it per packet before conntrack runs, from where the
packet came in (``iif "vrf-a" ct zone set 1``, or one VLAN subinterface per zone). The
sniffer cannot see the ruleset; ``--zone-map`` tells it the same thing in the terms a
sniffer has: the capture interface and the VLAN tag of the frame.

Directional zones (``ct original zone set`` / ``ct reply zone set``; kernel
``struct nf_conntrack_zone`` with ``dir`` = NF_CT_ZONE_DIR_ORIG or _REPL) put only one of
an entry's two tuples in the zone; the other is hashed in the default zone 0. As in
``nf_conntrack_core.c``:

* an entry's tuple of direction ``d`` is keyed by ``nf_ct_zone_id(zone, d)``: the zone id
  if the zone's ``dir`` covers ``d``, else 0;
* a packet carrying zone template P is looked up with ``nf_ct_zone_id(P, ORIGINAL)`` and,
  if that differs, again with ``nf_ct_zone_id(P, REPLY)`` (``resolve_normal_ct``); a node
  found for tuple direction ``d`` matches only if ``nf_ct_zone_id(P, d)`` equals the id it
  was found under (``nf_ct_key_equal``);
* a new entry takes the packet's zone (id and dir) as it is.

The table keys a tuple in zone 0 by the tuple itself (the common case costs nothing) and
a tuple in zone Z by the tuple with Z appended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .entry import Conn
from .packet import Packet
from .tuple import Tuple

NF_CT_ZONE_DIR_ORIG: Final = 1  # 1 << IP_CT_DIR_ORIGINAL
NF_CT_ZONE_DIR_REPL: Final = 2  # 1 << IP_CT_DIR_REPLY
NF_CT_DEFAULT_ZONE_DIR: Final = NF_CT_ZONE_DIR_ORIG | NF_CT_ZONE_DIR_REPL
ZONE_MAX: Final = 0xFFFF

# --zone-map's direction suffix -> the kernel's zone dir
DIR_WORDS: Final = {
    "orig": NF_CT_ZONE_DIR_ORIG,
    "original": NF_CT_ZONE_DIR_ORIG,
    "reply": NF_CT_ZONE_DIR_REPL,
    "both": NF_CT_DEFAULT_ZONE_DIR,
}
VLAN_MAX: Final = 4094
# A snapshot entry's ``extra`` key for a directional zone ("orig" / "reply"): the prime's
# record carries the zone id only
ZONE_DIR_KEY: Final = "zone-dir"

Zone = tuple[int, int]  # (id, dir); (0, NF_CT_DEFAULT_ZONE_DIR) is the default zone
DEFAULT_ZONE: Final[Zone] = (0, NF_CT_DEFAULT_ZONE_DIR)


def zone_id(zone: int, zdir: int, direction: int) -> int:
    """``nf_ct_zone_id``: the id that tuple ``direction`` (0 original, 1 reply) is keyed by."""
    return zone if zdir & (1 << direction) else 0


def zone_key(t: Tuple, zid: int) -> Tuple:
    """The table's key for tuple ``t`` hashed in zone ``zid``."""
    return t if not zid else (*t, zid)


def orig_key(conn: Conn) -> Tuple:
    """The table's key of the entry's ORIGINAL tuple (its zone appended if not 0)."""
    if conn.extra is None:
        return conn.orig
    zid = conn.zone_id(0)
    return conn.orig if not zid else (*conn.orig, zid)


def reply_key(conn: Conn) -> Tuple:
    if conn.extra is None:
        return conn.reply
    zid = conn.zone_id(1)
    return conn.reply if not zid else (*conn.reply, zid)


def direction_of(conn: Conn, t: Tuple, zid: int) -> int:
    """Which of ``conn``'s tuples is ``t`` keyed in zone ``zid`` (REPLY first, as the
    kernel's hash chain finds it first when both tuples are equal)."""
    return 1 if t == conn.reply and conn.zone_id(1) == zid else 0


def find_zoned(m: dict[Tuple, Conn], t: Tuple, zone: int, zdir: int) -> tuple[Conn, int] | None:
    """``resolve_normal_ct`` with a zone template over the table's map ``m``: the id of the
    ORIGINAL direction first, then the REPLY one if it differs; a node found under id Z
    must be of a direction d for which the packet's zone also gives Z (``nf_ct_key_equal``).
    """
    zo = zone if zdir & 1 else 0
    zr = zone if zdir & 2 else 0
    for zid in (zo, zr) if zo != zr else (zo,):
        conn = m.get(t if not zid else (*t, zid))
        if conn is not None:
            d = direction_of(conn, t, zid)
            if zone_id(zone, zdir, d) == zid:
                return conn, d
    return None


def lookup(m: dict[Tuple, Conn], t: Tuple, zone: int, zdir: int) -> tuple[Conn | None, int]:
    """The table's lookup of a packet with tuple ``t`` and zone template (``zone``, ``zdir``):
    its entry (None if none) and its direction."""
    if zone:
        found = find_zoned(m, t, zone, zdir)
        return found if found is not None else (None, 0)
    conn = m.get(t)
    if conn is None:
        return None, 0
    # Reply first: if both tuples are equal (a host talking to itself on one port) the
    # kernel's hash chain finds the REPLY node first (direction_of, inlined for zone 0).
    return conn, int(t == conn.reply and (conn.extra is None or not conn.zone_id(1)))


class CaptureZones:
    """The rules for one capture: its interface's zone, and the VLAN rules before it."""

    def __init__(self, default: Zone, vlans: dict[int, Zone]) -> None:
        self.default = default
        self.vlans = vlans

    def apply(self, pkts: list[Packet]) -> None:
        """Give each decoded packet its zone (``Packet.zone``/``zone_dir``)."""
        vlans, default = self.vlans, self.default
        for p in pkts:
            z = vlans.get(p.vlan, default) if p.vlan else default
            if z[0]:
                p.zone, p.zone_dir = z


class ZoneMapError(ValueError):
    """A ``--zone-map`` value that cannot be used; the message is one line."""


@dataclass(frozen=True)
class ZoneRule:
    kind: str  # "vlan" or "iface"
    match: str  # VLAN id as text, or an interface name
    zone: int
    zdir: int

    def text(self) -> str:
        suffix = "" if self.zdir == NF_CT_DEFAULT_ZONE_DIR else (
            "/orig" if self.zdir == NF_CT_ZONE_DIR_ORIG else "/reply"
        )  # fmt: skip
        return f"{self.kind}:{self.match}={self.zone}{suffix}"


def parse_rule(spec: str) -> ZoneRule:
    """``vlan:ID=ZONE[/DIR]`` or ``iface:NAME=ZONE[/DIR]`` (DIR: orig, reply, both)."""
    where, eq, target = spec.partition("=")
    kind, colon, match = where.partition(":")
    if not eq or not colon or kind not in ("vlan", "iface") or not match:
        raise ZoneMapError(
            f"zone map {spec!r}: expected vlan:ID=ZONE or iface:NAME=ZONE "
            "(optionally /orig or /reply after ZONE)"
        )
    number, slash, word = target.partition("/")
    zdir = DIR_WORDS.get(word) if slash else NF_CT_DEFAULT_ZONE_DIR
    if zdir is None:
        raise ZoneMapError(f"zone map {spec!r}: direction {word!r} is not orig, reply or both")
    if not number.isdigit() or not 0 <= int(number) <= ZONE_MAX:
        raise ZoneMapError(f"zone map {spec!r}: zone {number!r} is not a number 0-{ZONE_MAX}")
    if kind == "vlan":
        if not match.isdigit() or not 1 <= int(match) <= VLAN_MAX:
            raise ZoneMapError(f"zone map {spec!r}: VLAN id {match!r} is not 1-{VLAN_MAX}")
        match = str(int(match))
    elif len(match) > 15 or "/" in match or any(c.isspace() for c in match):
        raise ZoneMapError(f"zone map {spec!r}: {match!r} is not an interface name")
    return ZoneRule(kind, match, int(number), zdir)


class ZoneMap:
    """Rules from ``--zone-map``: a frame's zone from its VLAN tag, else from the interface
    it was captured on, else the default zone. A VLAN rule wins over an interface rule:
    on the master a tagged frame comes in on its VLAN's subinterface, the narrower match.
    """

    def __init__(self, rules: list[ZoneRule] | None = None) -> None:
        self.rules = list(rules or [])
        self.vlans: dict[int, Zone] = {}
        self.ifaces: dict[str, Zone] = {}
        for r in self.rules:
            table: dict = self.vlans if r.kind == "vlan" else self.ifaces
            key: int | str = int(r.match) if r.kind == "vlan" else r.match
            if key in table and table[key] != (r.zone, r.zdir):
                raise ZoneMapError(f"zone map {r.text()!r}: {r.kind} {r.match} is mapped twice")
            table[key] = (r.zone, r.zdir)

    @classmethod
    def parse(cls, specs: list[str] | tuple[str, ...]) -> ZoneMap:
        return cls([parse_rule(s.strip()) for s in specs])

    def __bool__(self) -> bool:
        return bool(self.rules)

    def for_capture(self, iface: str | None) -> CaptureZones | None:
        """What one capture handle needs (None: every packet it reads is in zone 0)."""
        default = self.ifaces.get(iface or "", DEFAULT_ZONE)
        return CaptureZones(default, self.vlans) if default[0] or self.vlans else None

    def specs(self) -> list[str]:
        return [r.text() for r in self.rules]
