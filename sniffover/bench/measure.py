"""What the suite measures: fw1's table against the standby's (coverage), a process's CPU and
memory, a link's bytes."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..conntrack.states import TCP_STATE_NAMES
from ..lab.hub import (
    FW_INSIDE,
    FW_OUTSIDE,
    FW_SYNC,
    INSIDE_VIP,
    OUTSIDE_VIP,
    SYNC_IF,
    Lab,
)

Key = tuple[str, str, str, int, int]

TCP_STATES = frozenset(TCP_STATE_NAMES)
CLOSED_STATES = frozenset({"TIME_WAIT", "CLOSE"})
PROTOS = frozenset({"tcp", "udp", "icmp", "udplite", "sctp", "dccp", "gre", "icmpv6"})
# addresses of the firewalls themselves: their own traffic (sync link, pulls) is not state
# the standby needs, and each kernel tracks it itself
FW_ADDRS = frozenset(
    {
        *FW_INSIDE.values(),
        *FW_OUTSIDE.values(),
        *FW_SYNC.values(),
        INSIDE_VIP,
        OUTSIDE_VIP,
        "127.0.0.1",
    }
)


_FIELD = re.compile(r"(src|dst|sport|dport|type|code|id)=(\S+)")


def parse_ct(text: str) -> dict[Key, str]:
    """Entries of a ``conntrack -L`` (or ``conntrackd -i/-e``) listing: ORIGINAL tuple -> state.

    The key is (protocol, src, dst, sport, dport) of the first (ORIGINAL) tuple; for ICMP the
    ports are (id, type). The state is the TCP state, '' for other protocols. Lines that are
    not entries (summaries, headers) are ignored; ``-o extended``'s family columns too.
    Not ``conntrack.listing.parse_listing``: that parser is strict (it raises on any line
    that is not ``conntrack -L``), and conntrackd's cache dumps are not written for it.
    """
    out: dict[Key, str] = {}
    for line in text.splitlines():
        words = line.split()
        proto = next((w for w in words[:4] if w in PROTOS), None)
        if proto is None:
            continue
        state = ""
        fields: dict[str, str] = {}
        for w in words:
            if "=" not in w:
                if proto == "tcp" and not state and w in TCP_STATES:
                    state = w
                continue
            m = _FIELD.fullmatch(w)
            if m and m[1] not in fields:
                fields[m[1]] = m[2]
        if "src" not in fields or "dst" not in fields:
            continue
        try:
            if proto.startswith("icmp"):
                a, b = int(fields.get("id", 0)), int(fields.get("type", 0))
            else:
                a, b = int(fields.get("sport", 0)), int(fields.get("dport", 0))
        except ValueError:
            continue
        out[(proto, fields["src"], fields["dst"], a, b)] = state
    return out


def forwarded(table: dict[Key, str]) -> dict[Key, str]:
    """Only the entries of forwarded traffic (neither end a firewall address)."""
    return {k: v for k, v in table.items() if k[1] not in FW_ADDRS and k[2] not in FW_ADDRS}


def coverage(master: str | dict[Key, str], standby: str | dict[Key, str]) -> dict[str, Any]:
    """How well the standby's state covers the master's (forwarded traffic only).

    ``coverage``: fraction of the master's entries present on the standby with the same TCP
    state (presence for other protocols); ``present``: fraction present at all;
    ``established_coverage``: the same over the master's ESTABLISHED TCP entries (what a
    takeover needs); ``wrong_state``: present with another TCP state; ``extra``: on the
    standby, not on the master.
    """
    m = forwarded(parse_ct(master) if isinstance(master, str) else master)
    s = forwarded(parse_ct(standby) if isinstance(standby, str) else standby)
    present = [k for k in m if k in s]
    same = sum(1 for k in present if s[k] == m[k])
    est = [k for k, v in m.items() if k[0] == "tcp" and v == "ESTABLISHED"]
    live = [k for k, v in m.items() if v not in CLOSED_STATES]
    live_same = sum(1 for k in live if k in s and s[k] == m[k])
    est_same = sum(1 for k in est if s.get(k) == "ESTABLISHED")
    by_proto: dict[str, list[int]] = {}
    for k, v in m.items():
        row = by_proto.setdefault(k[0], [0, 0])
        row[1] += 1
        row[0] += s.get(k) == v
    return {
        "master": len(m),
        "standby": len(s),
        "coverage": round(same / len(m), 4) if m else 1.0,
        "present": round(len(present) / len(m), 4) if m else 1.0,
        "open_coverage": round(live_same / len(live), 4) if live else 1.0,
        "established": len(est),
        "established_coverage": round(est_same / len(est), 4) if est else 1.0,
        "wrong_state": len(present) - same,
        "extra": sum(1 for k in s if k not in m),
        "by_proto": {p: {"same": a, "total": b} for p, (a, b) in sorted(by_proto.items())},
    }


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (and its reaped children: cutime + cstime), in seconds."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid: int) -> dict[str, int] | None:
    """VmRSS and VmHWM (peak) of ``pid`` in KiB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(val.split()[0])
    return out


def link_bytes(lab: Lab, node: str, dev: str = SYNC_IF) -> dict[str, int]:
    """tx/rx bytes and packets of ``dev`` in ``node`` (its /sys statistics, read in the netns)."""
    names = ("tx_bytes", "rx_bytes", "tx_packets", "rx_packets")
    files = " ".join(f"/sys/class/net/{dev}/statistics/{n}" for n in names)
    out = lab.run(node, "sh", "-c", f"cat {files}", check=False).stdout.split()
    if len(out) != len(names):
        return dict.fromkeys(names, 0)
    return {n: int(v) for n, v in zip(names, out, strict=True)}


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}
