"""The self-audit's comparison: the master's table against this standby's kernel table.

Pure: three dumps in (``SnapshotEntry`` records), counts out. The caller (``sniffover.audit``)
takes them in this order, which is what makes the young-flow rule honest without creation
times (a dump carries none unless ct timestamps are on):

1. ``before``: this host's kernel table, just before the pull;
2. ``master``: the master's table (one dump, the prime pull);
3. ``after``: this host's table again, ``lag`` seconds after the pull ended.

The rule: *what the master held at its dump must be on the standby ``lag`` seconds later,
and what the standby held before the master's dump must have been on the master then.*

* missing: on the master, not on the standby ``lag`` s later; only entries the agent's
  install policy would hold (``expected``: TCP from ESTABLISHED on, SCTP and everything else
  once ASSURED / a reply was seen, no group destination) and not about to expire (more than
  ``window`` s left at the master's dump: it may have ended meanwhile, on both sides). A
  flow created on the master a moment before its dump had the whole lag to appear.
* extra: on the standby before the master's dump and still ``lag`` s after it, never on
  the master. An entry that appeared on the standby after the first dump is young (the
  master made it after or during its dump): not judged.
* state: both hold it and the standby is behind the master ``lag`` s later, or was ahead
  of it before the master's dump. TCP is compared by phase (``TCP_PHASE``): the pure-ACK
  steps inside a phase are not differences (a prefiltered capture does not see every ACK);
  other protocols by ASSURED. Timeouts are never compared (each kernel runs its own
  timers).
* nat: both hold it (by ORIGINAL tuple and zone) with different REPLY tuples, or the
  standby holds it reversed (its ORIGINAL is the master's REPLY).
* expectations: the master's (of an expected master entry) missing on the standby
  ``lag`` s later, and the standby's present before and after but never on the master.

Entries touching an address of either firewall (``local``) are the hosts' own traffic
(the sync link, management), never sniffed-and-installed: left out on both sides. The key
of an entry is its zone and ORIGINAL tuple, so zones never mix. This module imports
nothing outside ``sniffover.conntrack``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from .entry import IPS_ASSURED, IPS_SEEN_REPLY
from .install_policy import TCP_CLOSING, TCP_LIVE
from .packet import PROTO_SCTP, PROTO_TCP
from .snapshot import SnapshotEntry, SnapshotExpectation
from .states import (
    TCP_CLOSE,
    TCP_CLOSE_WAIT,
    TCP_ESTABLISHED,
    TCP_FIN_WAIT,
    TCP_LAST_ACK,
    TCP_STATE_NAMES,
    TCP_SYN_RECV,
    TCP_SYN_SENT,
    TCP_SYN_SENT2,
    TCP_TIME_WAIT,
)
from .tuple import Tuple, addr_text, is_group_destination

# The categories, in report order; each counts toward the total.
CATEGORIES: Final = ("missing", "extra", "state", "nat", "expect_missing", "expect_extra")

# TCP phases: handshake < established < one FIN < both FINs < reset. The steps inside a
# phase are driven by pure ACKs (FIN_WAIT -> CLOSE_WAIT, LAST_ACK -> TIME_WAIT).
TCP_PHASE: Final = {
    TCP_SYN_SENT: 0,
    TCP_SYN_SENT2: 0,
    TCP_SYN_RECV: 0,
    TCP_ESTABLISHED: 1,
    TCP_FIN_WAIT: 2,
    TCP_CLOSE_WAIT: 2,
    TCP_LAST_ACK: 3,
    TCP_TIME_WAIT: 3,
    TCP_CLOSE: 4,
}
# helpers whose masters the agent installs unreplied (helpers/tftp.py: install_unreplied)
UNREPLIED_HELPERS: Final = frozenset(("tftp",))
SAMPLES = 5  # examples kept per category

Key = tuple[int, Tuple]  # (zone, ORIGINAL tuple)
ExpKey = tuple[int, Tuple, Tuple]  # (zone, master ORIGINAL, expected tuple)


def key(e: SnapshotEntry) -> Key:
    return (e.zone, e.orig)


def expected(e: SnapshotEntry) -> bool:
    """Whether the agent's install policy holds this master entry on the standby (the
    rules of ``install_policy.desired``, as far as a dump shows them)."""
    if is_group_destination(e.orig[2]):
        return False
    if e.orig[0] == PROTO_TCP:
        st = e.tcp_state
        return st in TCP_LIVE or (st in TCP_CLOSING and bool(e.status & IPS_ASSURED))
    if e.orig[0] == PROTO_SCTP:  # the dump carries no SCTP state: ASSURED = established
        return bool(e.status & IPS_ASSURED)
    return bool(e.status & IPS_SEEN_REPLY) or e.helper in UNREPLIED_HELPERS


def phase(e: SnapshotEntry) -> int:
    if e.orig[0] == PROTO_TCP:
        return TCP_PHASE.get(e.tcp_state or 0, -1)
    return 1 if e.status & IPS_ASSURED else 0


def _same(x: SnapshotEntry, y: SnapshotEntry) -> bool:
    return x.tcp_state == y.tcp_state and not (x.status ^ y.status) & IPS_ASSURED


def state_text(e: SnapshotEntry) -> str:
    if e.orig[0] == PROTO_TCP and e.tcp_state is not None:
        return TCP_STATE_NAMES[e.tcp_state]
    return "ASSURED" if e.status & IPS_ASSURED else "UNASSURED"


def tuple_text(t: Tuple) -> str:
    return f"{t[0]} {addr_text(t[1])}:{t[3]} -> {addr_text(t[2])}:{t[4]}"


def is_local(e: SnapshotEntry, local: Collection[bytes]) -> bool:
    """An entry of a firewall's own traffic: one of its tuples' addresses is in ``local``."""
    o, r = e.orig, e.reply
    return o[1] in local or o[2] in local or r[1] in local or r[2] in local


@dataclass
class AuditResult:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    # left out, by reason: local, policy, expiring, young, expect-not-compared
    excluded: Counter[str] = field(default_factory=Counter)
    by_zone: dict[int, Counter[str]] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)
    master_entries: int = 0
    local_entries: int = 0
    compared: int = 0  # master entries the standby was expected to hold

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, category: str, zone: int, text: str) -> None:
        self.counts[category] += 1
        self.by_zone.setdefault(zone, Counter())[category] += 1
        shown = self.samples.setdefault(category, [])
        if len(shown) < SAMPLES:
            shown.append(text)

    def summary(self) -> str:
        parts = ", ".join(f"{self.counts[c]} {c.replace('_', ' ')}" for c in CATEGORIES)
        x = self.excluded
        left = x["local-master"] + x["policy"] + x["expiring"]
        return (
            f"audit: {self.total} differences ({parts}); {self.compared} of "
            f"{self.master_entries} master entries compared ({left} own traffic, not "
            f"installed by policy or expiring), {x['young']} young here"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "differences": self.total,
            **self.counts,
            "master_entries": self.master_entries,
            "local_entries": self.local_entries,
            "compared": self.compared,
            "excluded": dict(sorted(self.excluded.items())),
            "by_zone": {str(z): dict(c) for z, c in sorted(self.by_zone.items())},
            "samples": self.samples,
        }


def _index(
    entries: Iterable[SnapshotEntry], local: Collection[bytes], result: AuditResult, side: str
) -> dict[Key, SnapshotEntry]:
    if not local:
        return {(e.zone, e.orig): e for e in entries}
    out: dict[Key, SnapshotEntry] = {}
    dropped = 0
    for e in entries:
        o, r = e.orig, e.reply
        if o[1] in local or o[2] in local or r[1] in local or r[2] in local:
            dropped += 1
        else:
            out[(e.zone, o)] = e
    if dropped:
        result.excluded[f"local-{side}"] += dropped
    return out


def compare(
    master: Iterable[SnapshotEntry],
    before: Iterable[SnapshotEntry],
    after: Iterable[SnapshotEntry],
    *,
    local: Collection[bytes] = frozenset(),
    window: float = 0.0,
    master_exps: Iterable[SnapshotExpectation] | None = None,
    before_exps: Iterable[SnapshotExpectation] | None = None,
    after_exps: Iterable[SnapshotExpectation] | None = None,
) -> AuditResult:
    """The differences (see the module docstring). ``window``: seconds from the master's
    dump to the ``after`` dump (entries with no more than this left are not missing).
    Expectations are compared when all three lists are given."""
    r = AuditResult()
    m_all = list(master)
    r.master_entries = len(m_all)
    m = _index(m_all, local, r, "master")
    b = _index(before, local, r, "standby")
    a_list = list(after)
    r.local_entries = len(a_list)
    a = _index(a_list, local, r, "standby-after")
    a_by_reply: dict[Key, SnapshotEntry] | None = None  # made at the first missing entry
    reversed_seen: set[Key] = set()
    expected_masters: set[Key] = set()
    for k, me in m.items():
        ae = a.get(k)
        if ae is None:
            if not expected(me):
                r.excluded["policy"] += 1
                continue
            if me.timeout <= window:
                r.excluded["expiring"] += 1
                continue
            r.compared += 1
            expected_masters.add(k)
            if a_by_reply is None:
                a_by_reply = {(e.zone, e.reply): e for e in a.values()}
            rev = a_by_reply.get((me.zone, me.orig))
            if rev is not None and rev.orig == me.reply:
                reversed_seen.add(key(rev))
                r.add("nat", me.zone, f"{tuple_text(me.orig)} zone {me.zone}: held reversed")
            else:
                r.add("missing", me.zone, f"{tuple_text(me.orig)} zone {me.zone} {state_text(me)}")
            continue
        if expected(me):
            r.compared += 1
            expected_masters.add(k)
        if ae.reply != me.reply:
            where = f"{tuple_text(me.orig)} zone {me.zone}"
            r.add(
                "nat", me.zone, f"{where}: reply {tuple_text(me.reply)} vs {tuple_text(ae.reply)}"
            )
        be = b.get(k)
        if _same(me, ae) and (be is None or _same(me, be)):
            continue  # the common case, without the phase arithmetic
        where = f"{tuple_text(me.orig)} zone {me.zone}"
        pm, pa = phase(me), phase(ae)
        if pa < pm or (be is not None and phase(be) > pm):
            shown = f"{state_text(me)} vs {state_text(ae)}"
            if be is not None and phase(be) > pm:
                shown += f" (before: {state_text(be)})"
            r.add("state", me.zone, f"{where}: {shown}")
    for k, ae in a.items():
        if k in m or k in reversed_seen:
            continue
        if k not in b:
            r.excluded["young"] += 1  # appeared after the first dump
            continue
        r.add("extra", ae.zone, f"{tuple_text(ae.orig)} zone {ae.zone} {state_text(ae)}")
    if master_exps is not None and before_exps is not None and after_exps is not None:
        # the connections an expectation may have become (either side; walked only for
        # an expectation the standby lacks)
        opened = [*a, *m]
        _expectations(r, master_exps, before_exps, after_exps, expected_masters, window, opened)
    else:
        r.excluded["expect-not-compared"] += 1
    return r


def exp_key(x: SnapshotExpectation) -> ExpKey:
    return (x.zone, x.master, x.tuple)


def _fulfils(t: Tuple, x: SnapshotExpectation) -> bool:
    """Whether a connection with ORIGINAL ``t`` is the one ``x`` expects (the source port
    only where the mask keeps it)."""
    e = x.tuple
    return (
        t[0] == e[0]
        and t[1] == e[1]
        and t[2] == e[2]
        and t[4] == e[4]
        and (not x.mask[3] or t[3] == e[3])
    )


def _expectations(
    r: AuditResult,
    master: Iterable[SnapshotExpectation],
    before: Iterable[SnapshotExpectation],
    after: Iterable[SnapshotExpectation],
    masters: set[Key],
    window: float,
    opened: Collection[Key] = (),
) -> None:
    m = {exp_key(x): x for x in master}
    b = {exp_key(x) for x in before}
    a = {exp_key(x): x for x in after}
    for k, x in m.items():
        if k in a:
            continue
        if any(_fulfils(t, x) for _z, t in opened if _z == x.zone):
            r.excluded["expect-consumed"] += 1  # its connection came (on the standby)
        elif (x.zone, x.master) not in masters:
            r.excluded["expect-policy"] += 1  # its master is not one the standby holds
        elif x.timeout <= window:
            r.excluded["expect-expiring"] += 1
        else:
            r.add("expect_missing", x.zone, f"{tuple_text(x.tuple)} of {tuple_text(x.master)}")
    for k, x in a.items():
        if k not in m and k in b:
            r.add("expect_extra", x.zone, f"{tuple_text(x.tuple)} of {tuple_text(x.master)}")
