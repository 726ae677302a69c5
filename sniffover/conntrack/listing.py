"""The ``conntrack -L`` text format: print entries exactly like conntrack-tools, and read it back.

Printing matches conntrack-tools 1.4.7's default and ``-o extended`` output so
that ``diff`` against the real table works (after sorting: the kernel lists in
hash order). Parsing reads either form into ``ListedEntry`` records; it is used
to compare with the kernel's table and to load a saved dump. ``conntrack -L expect``
lines are read into ``SnapshotExpectation`` records (for priming from text).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .entry import IPS_ASSURED, IPS_SEEN_REPLY, Conn
from .packet import PROTO_GRE, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP
from .snapshot import SnapshotExpectation
from .states import SCTP_STATE_NAMES, TCP_STATE_NAMES
from .tuple import Tuple, addr_bytes, addr_text

PROTO_NAMES = {
    1: "icmp",
    6: "tcp",
    17: "udp",
    33: "dccp",
    47: "gre",
    58: "icmpv6",
    132: "sctp",
    136: "udplite",
}
PROTO_NUMBERS = {name: num for num, name in PROTO_NAMES.items()}
PORT_PROTOS = frozenset((6, 17, 132, 136))  # DCCP is generic on 6.18: no ports


def _tuple_text(t: Tuple) -> str:
    proto, src, dst, sport, dport = t
    text = f"src={addr_text(src)} dst={addr_text(dst)} "
    if proto in (PROTO_ICMP, PROTO_ICMPV6):
        text += f"type={dport >> 8} code={dport & 0xFF} id={sport} "
    elif proto == PROTO_GRE:
        text += f"srckey={sport:#x} dstkey={dport:#x} "
    elif proto in PORT_PROTOS:
        text += f"sport={sport} dport={dport} "
    return text


def remaining_seconds(conn: Conn, now: float) -> int:
    """Whole seconds left, as the kernel reports them (``nf_ct_expires / HZ``, rounded down)."""
    return max(0, math.floor(conn.expires - now))


def format_entry(conn: Conn, now: float, extended: bool = False) -> str:
    """One line of ``conntrack -L`` (or ``-o extended``) for ``conn`` as of ``now``."""
    proto = conn.orig[0]
    line = ""
    if extended:
        line = "ipv4     2 " if len(conn.orig[1]) == 4 else "ipv6     10 "
    line += f"{PROTO_NAMES.get(proto, 'unknown'):<8} {proto} {remaining_seconds(conn, now)} "
    if conn.tcp is not None:
        line += TCP_STATE_NAMES[conn.tcp.state] + " "
    elif conn.sctp is not None:
        line += SCTP_STATE_NAMES[conn.sctp.state] + " "
    line += _tuple_text(conn.orig)
    zone, zdir = conn.zone, conn.zone_dir
    if zone and zdir == 1:  # a directional zone follows its tuple (libnetfilter_conntrack)
        line += f"zone-orig={zone} "
    if not conn.status & IPS_SEEN_REPLY:
        line += "[UNREPLIED] "
    line += _tuple_text(conn.reply)
    if zone and zdir == 2:
        line += f"zone-reply={zone} "
    if conn.status & IPS_ASSURED:
        line += "[ASSURED] "
    line += f"mark={conn.mark} "
    if zone and zdir == 3:
        line += f"zone={zone} "
    return line + "use=1"


def format_table(conns: list[Conn], now: float, extended: bool = False) -> str:
    """Several entries, sorted by protocol and original tuple for stable output."""
    ordered = sorted(conns, key=lambda c: (len(c.orig[1]), c.orig))
    return "".join(format_entry(c, now, extended) + "\n" for c in ordered)


@dataclass
class ListedEntry:
    """One parsed line of ``conntrack -L``."""

    family: int
    proto: int
    timeout: int
    state: str | None
    orig: Tuple
    reply: Tuple
    flags: set[str] = field(default_factory=set)
    mark: int = 0
    zone: int = 0
    zone_dir: int = 3  # 1: zone-orig=, 2: zone-reply=, 3: zone= (both tuples)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def assured(self) -> bool:
        return "ASSURED" in self.flags

    @property
    def unreplied(self) -> bool:
        return "UNREPLIED" in self.flags


def build_tuple(proto: int, kv: dict[str, str]) -> Tuple:
    """The tuple a listing's ``src=``/``dst=``/ports (or ICMP, GRE keys) fields describe."""
    src = addr_bytes(kv["src"])
    dst = addr_bytes(kv["dst"])
    if "type" in kv:
        return (proto, src, dst, int(kv.get("id", "0")), int(kv["type"]) << 8 | int(kv["code"]))
    if "srckey" in kv:
        return (proto, src, dst, int(kv["srckey"], 0), int(kv["dstkey"], 0))
    return (proto, src, dst, int(kv.get("sport", "0")), int(kv.get("dport", "0")))


TUPLE_KEYS = frozenset(("src", "dst", "sport", "dport", "type", "code", "id", "srckey", "dstkey"))


class ListingError(ValueError):
    """A line that is not in ``conntrack -L`` format."""


def parse_line(line: str) -> ListedEntry:
    """Parse one line of ``conntrack -L`` or ``conntrack -L -o extended``."""
    tokens = line.split()
    try:
        i = 0
        family = 2
        if tokens[0] in ("ipv4", "ipv6"):
            family = int(tokens[1])
            i = 2
        proto = int(tokens[i + 1])
        timeout = int(tokens[i + 2])
        i += 3
        state = None
        if proto in (PROTO_TCP, PROTO_SCTP) and "=" not in tokens[i]:
            state = tokens[i]
            i += 1
        tuples: list[dict[str, str]] = []
        flags: set[str] = set()
        rest: dict[str, str] = {}
        for tok in tokens[i:]:
            if tok.startswith("[") and tok.endswith("]"):
                flags.add(tok[1:-1])
                continue
            key, sep, value = tok.partition("=")
            if not sep:
                continue  # e.g. "timeout=0," GRE noise is key=value; bare words ignored
            if key == "src" and len(tuples) < 2:
                tuples.append({})
            if key in (
                "src",
                "dst",
                "sport",
                "dport",
                "type",
                "code",
                "id",
                "srckey",
                "dstkey",
            ) and (tuples and len(tuples[-1]) < 5 and key not in tuples[-1]):
                tuples[-1][key] = value
            else:
                rest[key] = value
        if len(tuples) < 2:
            raise ListingError(f"expected two tuples in: {line.strip()}")
        zone, zone_dir = int(rest.pop("zone", "0"), 0), 3
        if "zone-orig" in rest:
            zone, zone_dir = int(rest.pop("zone-orig"), 0), 1
        elif "zone-reply" in rest:
            zone, zone_dir = int(rest.pop("zone-reply"), 0), 2
        return ListedEntry(
            family=family,
            proto=proto,
            timeout=timeout,
            state=state,
            orig=build_tuple(proto, tuples[0]),
            reply=build_tuple(proto, tuples[1]),
            flags=flags,
            mark=int(rest.pop("mark", "0"), 0),
            zone=zone,
            zone_dir=zone_dir,
            extra=rest,
        )
    except (IndexError, KeyError, ValueError) as exc:
        if isinstance(exc, ListingError):
            raise
        raise ListingError(f"not a conntrack -L line: {line.strip()!r}") from exc


def parse_listing(text: str) -> list[ListedEntry]:
    """Parse every entry line of a ``conntrack -L`` output (summary lines skipped)."""
    out = []
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("conntrack v"):
            continue
        out.append(parse_line(s))
    return out


# --- conntrack -L expect ----------------------------------------------------------------


def is_expect_line(line: str) -> bool:
    """A line of ``conntrack -L expect`` (``<timeout> proto=<n> ...``), not of ``-L``."""
    head, _, rest = line.strip().partition(" ")
    return head.isdigit() and rest.startswith("proto=")


def parse_expect_line(line: str) -> SnapshotExpectation:
    """One line of ``conntrack -L expect``: timeout, expected tuple, mask, master tuple,
    [zone], [PERMANENT,INACTIVE,USERSPACE], class, helper (libnetfilter_conntrack's
    default format). The master's protocol is not printed: the expected one is assumed
    (the prime client corrects it from the master entry). ``ListingError`` if it is not
    such a line."""
    tokens = line.split()
    try:
        timeout = int(tokens[0])
        proto = int(tokens[1].partition("=")[2])
        groups: list[dict[str, str]] = [{}, {}, {}]  # expected, mask, master
        g = 0
        x = SnapshotExpectation((0, b"", b"", 0, 0), (0, b"", b"", 0, 0), (0, b"", b"", 0, 0), 0)
        for tok in tokens[2:]:
            key, sep, value = tok.partition("=")
            if not sep:
                for word in tok.split(","):
                    x.flags |= {"PERMANENT": 1, "INACTIVE": 2, "USERSPACE": 4}.get(word, 0)
                continue
            for i, prefix in ((1, "mask-"), (2, "master-")):
                if key.startswith(prefix):
                    g, key = i, key[len(prefix) :]
            if key in TUPLE_KEYS and key not in groups[g]:
                groups[g][key] = value
            elif key == "zone":
                x.zone = int(value)
            elif key == "class":
                x.klass = int(value)
            elif key == "helper":
                x.helper = value
        x.tuple = build_tuple(proto, groups[0])
        x.mask = build_tuple(proto, groups[1])
        x.master = build_tuple(proto, groups[2])
        x.timeout = timeout
        return x
    except (IndexError, KeyError, ValueError) as exc:
        raise ListingError(f"not a conntrack -L expect line: {line.strip()!r}") from exc
