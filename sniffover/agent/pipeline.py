"""The agent's pipeline: sniffed packets -> forwarding confirmation -> tracker -> installer.

Owns the composition (``Installer``, the helpers' ``Expectations``, ``ExpectInstaller``,
``ConntrackTable``, ``ForwardingConfirmer`` and the listener that fans table events out
to the installer and the helpers), the tracking dispatch, the packets held while the
first prime runs, and the two-segment reorder merge (a pure function of the held frames
and a cutoff time)."""

from __future__ import annotations

import bisect
import heapq
import logging
from collections import Counter
from collections.abc import Callable, Hashable
from typing import TypeVar

from ..conntrack.confirm import ForwardingConfirmer
from ..conntrack.entry import Conn
from ..conntrack.expect import Expectations
from ..conntrack.helpers import HELPER_PORTS, HelperFollower
from ..conntrack.packet import Packet
from ..conntrack.table import ConntrackTable
from ..conntrack.timeouts import Timeouts
from ..conntrack.tuple import invert
from ..conntrack.zones import orig_key
from ..kernel.ctnetlink import CtnlSocket
from ..kernel.expect import ExpectInstaller
from ..kernel.installer import Installer
from .config import AgentConfig
from .util import RateLimited

log = logging.getLogger("sniffover.agent")

# Two segments: each interface's capture ring hands frames over on its own timer, so the
# copy of a packet leaving the master can be read before the copy that entered it. Frames
# wait this long and are then tracked in timestamp order across interfaces.
REORDER = 0.02
PRIME_BUFFER_MAX = 2_000_000  # packets held while the first pull runs

K = TypeVar("K", bound=Hashable)


def _ts(p: Packet) -> float:
    return p.ts


def merge_in_order(batches: list[list[Packet]]) -> list[Packet]:
    """Batches each in timestamp order (one per segment) as one list in wire order."""
    if len(batches) == 1:
        return batches[0]
    return list(heapq.merge(*batches, key=_ts))


def release_held(held: dict[K, list[Packet]], cutoff: float) -> list[Packet]:
    """The reorder merge: take every held frame up to ``cutoff`` out of ``held`` (per
    segment, each in timestamp order) and return them in timestamp order across segments."""
    parts = []
    for frames in held.values():
        if frames:
            i = bisect.bisect_right(frames, cutoff, key=_ts)
            if i:
                parts.append(frames[:i])
                del frames[:i]
    return merge_in_order(parts) if parts else []


def timeouts_for(cfg: AgentConfig) -> Timeouts:
    """The tracker's timeouts and TCP tolerances as the agent's options want them."""
    timeouts = cfg.timeouts
    if cfg.pickup:
        timeouts.tcp_loose = 1  # we mirror the master, whatever our own kernel's setting
    if cfg.prefilter:
        timeouts.tcp_be_liberal = 1  # most segments are filtered out: windows are unknowable
    return timeouts


def helper_listener(
    inst: Installer, helpers: Expectations, expect: ExpectInstaller
) -> Callable[[str, Conn], None]:
    """Table events to the installer, and to the helpers' expectations they consume or end."""
    on_event = inst.on_event

    def listener(kind: str, conn: Conn) -> None:
        on_event(kind, conn)
        if expect.waiting:  # an event may get a waiting expectation's master installed
            expect.touched(orig_key(conn))
        if kind == "new":
            if helpers.by_master:
                exp = helpers.on_new(conn)
                if exp is not None:
                    expect.consumed(exp)
        elif kind == "destroy" and conn.orig[4] in HELPER_PORTS:
            helpers.on_destroy(conn)
            expect.master_gone(orig_key(conn))

    return listener


class Pipeline:
    """The tracker and what hangs off it; ``reset()`` builds a fresh one (demotion)."""

    def __init__(
        self,
        cfg: AgentConfig,
        timeouts: Timeouts,
        sock: CtnlSocket | None,
        counters: Counter[str],
        ratelog: RateLimited,
    ) -> None:
        self.cfg = cfg
        self.timeouts = timeouts
        self.sock = sock
        self.ratelog = ratelog
        self.installer: Installer | None = None
        self.confirmer: ForwardingConfirmer | None = None
        self.helpers: Expectations | None = None  # the helpers' outstanding expectations
        self.expect: ExpectInstaller | None = None
        self.counters = counters  # the agent's
        self.packets = 0
        self.last_packet = 0.0
        self.hold: list[Packet] | None = None  # packets held while the first pull runs
        self.reorder: dict[object, list[Packet]] = {}
        self.reordering = len(cfg.ifaces) >= 2
        self.table = self.reset()

    def reset(self) -> ConntrackTable:
        """A new, empty tracker with its installer, helpers and confirmer."""
        cfg = self.cfg
        confirm = cfg.confirm != "off"
        if self.sock is not None:
            self.installer = Installer(
                self.sock,
                zone=cfg.zone,
                mark=cfg.mark,
                assume_handshake=cfg.prefilter,
                require_forwarded=confirm,
                helpers=cfg.helpers,
            )
            listener: Callable[[str, Conn], None] = self.installer.on_event
            if cfg.helpers:
                self.helpers = HelperFollower(names=cfg.helpers)
                self.expect = ExpectInstaller(self.sock, self.installer, cfg.zone)
                listener = helper_listener(self.installer, self.helpers, self.expect)
            table = ConntrackTable(
                self.timeouts,
                listener=listener,
                max_entries=cfg.max_flows,
                multicast=cfg.multicast,
            )
        else:
            table = ConntrackTable(
                self.timeouts, max_entries=cfg.max_flows, multicast=cfg.multicast
            )
        self.confirmer = None
        if confirm:
            self.confirmer = ForwardingConfirmer(table, two_segments=cfg.two_segments)
            if cfg.master_macs:
                self.confirmer.master_learned(0.0)
        self.table = table
        return table

    # --- tracking -------------------------------------------------------------------

    def track(self, packets: list[Packet]) -> None:
        buf = self.hold
        if buf is not None:  # the first pull is running: apply these after its snapshot
            if len(buf) < PRIME_BUFFER_MAX:
                buf += packets
            else:
                self.counters["prime-buffer-overflow"] += len(packets)
            self.packets += len(packets)
            self.last_packet = packets[-1].ts
            return
        process = self.confirmer.feed if self.confirmer is not None else self.table.process
        if self.helpers is None:
            for p in packets:
                process(p)
        else:
            for p in packets:
                process(p)
                if p.payload:
                    self._helper_segment(p)
        self.packets += len(packets)
        self.last_packet = packets[-1].ts

    def track_held(self, held: list[Packet]) -> None:
        """Packets held during a pull, now applied over its snapshot (counted already)."""
        held.sort(key=_ts)
        n = self.packets
        self.track(held)
        self.packets = n

    def _helper_segment(self, p: Packet) -> None:
        """A segment with payload (a helper's master): the expectation the helper makes of it."""
        assert self.helpers is not None
        t = (p.proto, p.src, p.dst, p.sport, p.dport)
        found = self.table.get(t, p.zone, p.zone_dir)
        if found is None:
            # a translated copy leaving the master (NAT): its entry is the one it answers.
            # A TFTP request's entry is rebound by this very copy, so its expectation is
            # made again from the translated reply tuple.
            inv = invert(t)
            back = self.table.get(inv, p.zone, p.zone_dir) if inv is not None else None
            if back is None:
                return
            found = (back[0], 1 - back[1])
        exp = self.helpers.feed(found[0], found[1], p.payload, p.ts)
        if exp is not None and self.expect is not None:
            self.expect.add(exp)

    def feed(self, keys: list[object], batches: list[list[Packet]], now: float) -> None:
        """Batches read from the segments (``keys``: which capture each came from): tracked
        in wire order; with two segments or more held ``REORDER`` seconds first."""
        if self.reordering:
            for key, got in zip(keys, batches, strict=True):
                if got:
                    self.reorder.setdefault(key, []).extend(got)
            self.release(now - REORDER)
            return
        batches = [b for b in batches if b]
        if batches:
            self.track(merge_in_order(batches))

    def release(self, cutoff: float) -> None:
        """Track the held frames of every segment up to ``cutoff``, in timestamp order."""
        out = release_held(self.reorder, cutoff)
        if out:
            self.track(out)

    def held(self) -> int:
        return sum(len(h) for h in self.reorder.values())

    # --- the kernel -----------------------------------------------------------------

    @property
    def flush_due(self) -> bool:
        """Whether a flush has something to send: entries, or expectations."""
        inst, expect = self.installer, self.expect
        return inst is not None and bool(inst.pending or (expect is not None and expect.due))

    def flush(self, now: float) -> None:
        inst = self.installer
        if inst is None:
            return
        try:
            inst.flush(now)
            if self.expect is not None:
                self.expect.flush(now)
        except OSError as exc:
            self.ratelog("netlink", logging.ERROR, "ctnetlink write failed: %s", exc)

    def install_all(self, now: float) -> int:
        """Promotion: every entry the tracker knows, and the expectations, to the kernel."""
        if self.installer is None:
            return 0
        sent = self.installer.install_all(self.table.entries(now), now)
        if self.expect is not None:
            sent += self.expect.flush(now, everything=True)
        return sent

    def expire(self, now: float) -> None:
        """Once a second: sweep expired entries and expectations, re-arm kernel timers."""
        self.table.expire(now)
        if self.helpers is not None:
            self.helpers.expire(now)
        if self.installer is not None:
            try:
                self.installer.refresh(now, self.table.conn)
            except OSError as exc:
                self.ratelog("netlink", logging.ERROR, "ctnetlink refresh failed: %s", exc)
