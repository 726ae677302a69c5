"""Offline reconstruction: feed recorded captures through the tracker and report the table.

Wires the offline capture source to the conntrack core. The table "as of" a
moment is what ``conntrack -L`` would have printed then: entries alive at that
time, with the remaining timeout counted from the packets' own clock.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .capture.files import iter_pcap_packets, split_iface
from .capture.headers import LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2
from .conntrack.confirm import ForwardingConfirmer
from .conntrack.entry import IPS_ASSURED, IPS_SEEN_REPLY, Conn
from .conntrack.listing import PROTO_NAMES, remaining_seconds
from .conntrack.packet import Packet
from .conntrack.states import TCP_STATE_NAMES
from .conntrack.table import ConntrackTable
from .conntrack.timeouts import Timeouts
from .conntrack.tuple import Tuple, addr_text
from .conntrack.verdict import NAMES as VERDICT_NAMES
from .conntrack.zones import ZoneMap

COOKED = (LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2)
EXPIRE_EVERY = 60.0  # seconds of capture time between sweeps of expired entries


@dataclass
class ReplayResult:
    table: ConntrackTable
    at: float  # the moment the table is reported for
    packets: int = 0
    last_ts: float | None = None
    wall_seconds: float = 0.0
    skipped: Counter[str] = field(default_factory=Counter)
    tunnel_dropped: int = 0  # lost in a mirror tunnel, by its sequence numbers

    def entries(self) -> list[Conn]:
        return self.table.entries(self.at)

    def stats(self) -> dict[str, Any]:
        verdicts = {VERDICT_NAMES[i]: n for i, n in enumerate(self.table.verdicts[:5])}
        return {
            "packets": self.packets,
            "decoded": sum(self.table.verdicts),
            "skipped": dict(sorted(self.skipped.items())),
            "tunnel_dropped": self.tunnel_dropped,
            "verdicts": verdicts,
            "flows_created": self.table.counters.get("created", 0),
            "flows_listed": len(self.entries()),
            "counters": dict(sorted(self.table.counters.items())),
            "wall_seconds": round(self.wall_seconds, 3),
            "packets_per_second": round(self.packets / self.wall_seconds)
            if self.wall_seconds
            else 0,
        }


def replay(
    paths: list[str],
    at: float | None = None,
    timeouts: Timeouts | None = None,
    infer_direction: bool = True,
    multicast: str = "drop",
    zones: ZoneMap | None = None,
    decap: dict[str, Any] | None = None,
    master_macs: list[bytes] | None = None,
) -> ReplayResult:
    """Replay ``paths`` in order, up to ``at`` (epoch seconds) or to the last packet.

    A path may be given as ``IFACE=FILE``: captured on IFACE (for ``zones``' iface rules).
    ``decap``: the captures hold a remote mirror; the ``capture.decap.Decapsulator``
    keywords (mode, vxlan_ports, sessions, sources) of its tunnel. ``master_macs``: the
    router's MAC addresses in Ethernet captures of both its sides (a switch mirror of its
    ports): its frames are flagged and each packet's two copies paired, as the agent does.
    """
    table = ConntrackTable(timeouts, infer_direction=infer_direction, multicast=multicast)
    split = [split_iface(p) for p in paths]
    source = iter_pcap_packets(
        [p for _, p in split],
        sll_direction=True,
        zones=zones,
        ifaces=[i for i, _ in split],
        decap=decap,
        master=frozenset(master_macs or ()),
    )
    packets = 0
    last_ts: float | None = None
    next_sweep = None
    process: Callable[[Packet], object] = table.process
    confirmer = None
    if master_macs or (decap is None and any(lt in COOKED for lt in source.linktypes)):
        # A cooked capture may hold every packet twice (``tcpdump -i any`` on a router: in
        # on one interface, out of another, translated if the router does NAT): pair the
        # copies like the agent does with two segments, track each packet once.
        confirmer = ForwardingConfirmer(table, two_segments=True, hold_teardowns=False)
        process = confirmer.feed
    gc_was_enabled = gc.isenabled()
    gc.freeze()  # entries live long: spare them the cyclic collector's scans
    gc.disable()
    start = time.perf_counter()
    try:
        for pkt in source:
            ts = pkt.ts
            if at is not None and ts > at:
                break
            packets += 1
            last_ts = ts
            process(pkt)
            if next_sweep is None:
                next_sweep = ts + EXPIRE_EVERY
            elif ts >= next_sweep:
                table.expire(ts)
                if confirmer is not None:
                    confirmer.expire(ts)
                next_sweep = ts + EXPIRE_EVERY
    finally:
        wall = time.perf_counter() - start
        if gc_was_enabled:
            gc.enable()
        gc.unfreeze()
    when = at if at is not None else (last_ts if last_ts is not None else 0.0)
    skipped = getattr(source, "skipped", None)
    result = ReplayResult(table, when, packets, last_ts, wall)
    if skipped is not None:
        result.skipped = Counter(skipped)
        result.packets += sum(skipped.values())
    result.tunnel_dropped = source.tunnel_dropped
    return result


def _tuple_json(t: Tuple) -> dict[str, Any]:
    proto, src, dst, sport, dport = t
    out: dict[str, Any] = {"src": addr_text(src), "dst": addr_text(dst)}
    if proto in (1, 58):
        out.update(type=dport >> 8, code=dport & 0xFF, id=sport)
    else:
        out.update(sport=sport, dport=dport)
    return out


def conn_json(conn: Conn, now: float) -> dict[str, Any]:
    """A machine-readable view of an entry (``--json``)."""
    proto = conn.orig[0]
    out: dict[str, Any] = {
        "family": "ipv4" if len(conn.orig[1]) == 4 else "ipv6",
        "proto": PROTO_NAMES.get(proto, "unknown"),
        "protonum": proto,
        "timeout": remaining_seconds(conn, now),
        "orig": _tuple_json(conn.orig),
        "reply": _tuple_json(conn.reply),
        "seen_reply": bool(conn.status & IPS_SEEN_REPLY),
        "assured": bool(conn.status & IPS_ASSURED),
        "status": conn.status,
        "last_seen": conn.last_seen,
        "mark": conn.mark,
        "zone": conn.zone,
    }
    if conn.zone and conn.zone_dir != 3:
        out["zone_dir"] = "orig" if conn.zone_dir == 1 else "reply"
    st = conn.tcp
    if st is not None:
        out["state"] = TCP_STATE_NAMES[st.state]
        out["tcp"] = {
            "wscale_orig": st.seen[0].td_scale,
            "wscale_reply": st.seen[1].td_scale,
            "flags_orig": st.seen[0].flags,
            "flags_reply": st.seen[1].flags,
        }
    return out
