"""Compare a reconstructed table with a kernel's table (``conntrack -L`` text).

Used by the golden tests and by the benchmarks' coverage figure. Entries are
matched by their ORIGINAL tuple; for each match the reply tuple, TCP state,
[ASSURED]/[UNREPLIED] and the remaining timeout (within a tolerance) must agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sniffover.conntrack.entry import IPS_ASSURED, IPS_SEEN_REPLY, Conn
from sniffover.conntrack.listing import ListedEntry, format_entry, remaining_seconds
from sniffover.conntrack.states import SCTP_STATE_NAMES, TCP_STATE_NAMES
from sniffover.conntrack.tuple import Tuple


@dataclass
class Comparison:
    matched: int = 0
    missing: list[ListedEntry] = field(default_factory=list)  # in the kernel, not in ours
    extra: list[Conn] = field(default_factory=list)  # in ours, not in the kernel
    different: list[str] = field(default_factory=list)  # same tuple, other details

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def report(self, ours_at: float) -> str:
        lines = [f"matched {self.matched}"]
        lines += [
            f"missing (kernel only): {e.orig} zone={e.zone} state={e.state} {sorted(e.flags)}"
            for e in self.missing
        ]
        lines += [f"extra (ours only): {format_entry(c, ours_at)}" for c in self.extra]
        lines += [f"different: {d}" for d in self.different]
        return "\n".join(lines)


def _key(t: Tuple, zone: int, zone_dir: int) -> Tuple:
    """Entries are told apart by their original tuple and zone (two VRFs may reuse one
    tuple in two zones)."""
    return (t, zone, zone_dir if zone else 3)


def compare_tables(
    kernel: list[ListedEntry], ours: list[Conn], at: float, timeout_tolerance: float = 2.0
) -> Comparison:
    """Compare ``ours`` (reported as of ``at``) with the kernel's listed entries."""
    result = Comparison()
    mine = {_key(c.orig, c.zone, c.zone_dir): c for c in ours}
    for k in kernel:
        conn = mine.pop(_key(k.orig, k.zone, k.zone_dir), None)
        if conn is None:
            result.missing.append(k)
            continue
        result.matched += 1
        problems = []
        if conn.reply != k.reply:
            problems.append(f"reply {conn.reply} != kernel {k.reply}")
        state = TCP_STATE_NAMES[conn.tcp.state] if conn.tcp is not None else None
        if conn.sctp is not None:
            state = SCTP_STATE_NAMES[conn.sctp.state]
        if k.state is not None and state != k.state:
            problems.append(f"state {state} != kernel {k.state}")
        if bool(conn.status & IPS_ASSURED) != k.assured:
            problems.append(f"assured {bool(conn.status & IPS_ASSURED)} != kernel {k.assured}")
        if (not conn.status & IPS_SEEN_REPLY) != k.unreplied:
            problems.append(f"unreplied {not conn.status & IPS_SEEN_REPLY} != kernel {k.unreplied}")
        timeout = remaining_seconds(conn, at)
        if abs(timeout - k.timeout) > timeout_tolerance:
            problems.append(f"timeout {timeout} != kernel {k.timeout}")
        if problems:
            result.different.append(f"{format_entry(conn, at)}: " + "; ".join(problems))
    result.extra = list(mine.values())
    return result
