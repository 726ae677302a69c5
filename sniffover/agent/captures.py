"""The agent's capture set: one live capture per interface, their BPF filters (exclude
our own frames, the prefilter after a warm-up), reopening interfaces that went away, and
drop statistics.

The capture handle comes from an injected factory (``LiveCapture`` by default), so the
set's policy runs in unit tests without root."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Protocol, TypedDict

from ..capture.bpf import exclude_self_filter, prefilter_bpf
from ..capture.decap import HEADROOM, Decapsulator, decap_options, outer_bpf
from ..capture.dedup import FrameDedup
from ..capture.defrag import Reassembler
from ..capture.files import CaptureError
from ..capture.live import LiveCapture, RawFrameHook
from ..conntrack.helpers import select
from ..conntrack.packet import Packet
from ..conntrack.zones import CaptureZones, ZoneMap
from .anchors import parse_addrs, prime_host
from .config import AgentConfig
from .learning import MasterLearning, Net, local_macs, local_prefixes

log = logging.getLogger("sniffover.agent")


class CaptureStats(TypedDict):
    frames: int
    received: int
    dropped: int
    ifdropped: int
    tunnel_dropped: int  # lost in the mirror tunnel (its sequence numbers; capture.decap)


class Decoding(Protocol):
    linktype: int
    master: frozenset[bytes]
    skipped: Counter[str]
    digests: bool
    defrag: Reassembler

    zones: CaptureZones | None


class Capture(Protocol):
    """What the agent needs of a capture handle (``capture.live.LiveCapture``)."""

    iface: str
    frames: int
    learner: RawFrameHook | None
    ingress_keys: set[tuple[int, ...]] | None
    dedup: FrameDedup | None

    @property
    def decoder(self) -> Decoding: ...

    def set_filter(self, bpf: str) -> None: ...

    def fileno(self) -> int: ...

    def read(self) -> list[Packet]: ...

    def stats(self) -> tuple[int, int, int]: ...

    def close(self) -> None: ...

    def set_decap(self, decap: Decapsulator) -> None: ...


# (iface, snaplen, ring bytes, bpf) -> an open capture; raises CaptureError
CaptureFactory = Callable[[str, int, int, str], Capture]


def open_live(iface: str, snaplen: int, ring_bytes: int, bpf: str) -> Capture:
    return LiveCapture(iface, snaplen=snaplen, ring_bytes=ring_bytes, bpf=bpf)


class CaptureSet:
    def __init__(
        self,
        cfg: AgentConfig,
        learning: MasterLearning,
        counters: Counter[str],
        open_capture: CaptureFactory = open_live,
        own_macs: Callable[[], list[str]] = local_macs,
        nets: Callable[[str], list[Net]] = local_prefixes,
    ) -> None:
        self.cfg = cfg
        self.learning = learning
        if not learning.addrs:  # the master's own addresses: its MAC answers ARP for them
            learning.addrs = parse_addrs(cfg.master_addrs) or prime_host(cfg.prime_from)
        self.counters = counters  # the agent's
        self.open_capture = open_capture
        self.own_macs = own_macs
        self.nets = nets
        self.captures: list[Capture] = []
        self.lost: dict[str, Counter[str]] = {}  # interfaces to reopen -> their skip counters
        self.bpf = self.bpf_full = self.bpf_pre = ""
        self.prefilter_at: float | None = None  # monotonic end of the warm-up
        self.zones = ZoneMap.parse(cfg.zone_map)  # checked with the options
        # --decap: the Decapsulator keywords (checked with the options), else None
        self.decap = decap_options(cfg.decap, cfg.vxlan_port, cfg.mirror_sessions, cfg.mirror_from)
        self.decaps: dict[str, Decapsulator] = {}
        self.tunnel_lost: dict[str, int] = {}  # tunnel drops of captures closed since

    def open(self, mono: float) -> None:
        """Open every interface (all or none); ``mono`` starts the prefilter's warm-up."""
        cfg = self.cfg
        bpf = cfg.bpf
        if self.decap is not None:
            # The tunnel is addressed to this host: excluding its own MACs would cut the
            # mirror itself. Only the tunnel's frames reach Python (from any sender: those
            # not selected are counted there).
            outer = outer_bpf(cfg.decap, (cfg.vxlan_port,))
            bpf = f"({bpf}) and {outer}" if bpf else outer
        elif cfg.exclude_self:
            own = exclude_self_filter(self.own_macs())
            bpf = f"({bpf}) and {own}" if bpf and own else (bpf or own)
        self.bpf = self.bpf_full = bpf
        if cfg.prefilter:
            # Warm-up: everything for a while, so every active connection is picked up
            # mid-stream; then only control segments and a sample.
            pre = prefilter_bpf(cfg.pickup_sample, select(cfg.helpers))
            self.bpf_pre = f"({bpf}) and {pre}" if bpf else pre
            self.prefilter_at = mono + cfg.warmup
        caps = []
        try:
            for iface in cfg.ifaces:
                caps.append(self.open_one(iface))
        except CaptureError:
            for c in caps:
                c.close()
            raise
        if cfg.prefilter:  # compile both filters now: a bad one is a start-up error
            for c in caps:
                c.set_filter(self.bpf_pre)
                c.set_filter(self.bpf_full)
        self.captures = caps
        if self.decap is not None:
            log.info(
                "remote mirror: reading the frames inside %s tunnels%s%s; everything else "
                "on %s is counted and dropped%s",
                cfg.decap,
                f" from {', '.join(cfg.mirror_from)}" if cfg.mirror_from else " from any sender",
                f", sessions {', '.join(cfg.mirror_sessions)}" if cfg.mirror_sessions else "",
                ", ".join(cfg.ifaces),
                "" if cfg.two_segments or cfg.confirm == "off"
                else " (one mirror of both sides of a NAT master: give --confirm both)",
            )  # fmt: skip
        log.info(
            "capturing on %s (promiscuous, snaplen %d, ring %d MiB)%s",
            ", ".join(cfg.ifaces),
            cfg.snaplen,
            cfg.ring_mb,
            f", filter: {bpf}" if bpf else "",
        )

    def close(self) -> None:
        for c in self.captures:
            c.close()
        self.captures = []
        self.lost.clear()

    def open_one(self, iface: str) -> Capture:
        snaplen = self.cfg.snaplen + (HEADROOM if self.decap is not None else 0)
        cap = self.open_capture(iface, snaplen, self.cfg.ring_mb << 20, self.bpf)
        if self.decap is not None:  # first: it gives the capture an Ethernet decoder
            try:
                decap = Decapsulator(linktype=cap.decoder.linktype, **self.decap)
            except ValueError as exc:
                cap.close()
                raise CaptureError(f"interface {iface}: {exc}") from None
            cap.set_decap(decap)
            old = self.decaps.get(iface)
            if old is not None:
                self.tunnel_lost[iface] = self.tunnel_lost.get(iface, 0) + old.tunnel_dropped
            self.decaps[iface] = decap
        if self.zones:  # the zone of every packet read from here: VLAN rule, else iface's
            cap.decoder.zones = self.zones.for_capture(iface)
        # payload digests pair copies (conntrack.confirm); unpaired, they only cost time
        cap.decoder.digests = self.cfg.confirm != "off" and self.cfg.two_segments
        dedup = self.cfg.dedup
        cap.dedup = FrameDedup(auto=dedup == "auto") if dedup != "off" else None
        if self.decap is None:
            self.learning.attach(cap, self.nets)
        else:  # the tunnel port's own subnets and ARP say nothing of the mirrored segment
            self.learning.attach(cap, lambda _iface: [], probe=False)
        return cap

    def read(self, ready: list[Capture]) -> tuple[list[Capture], list[list[Packet]]]:
        """Read the ready captures: those read and what each gave (lost ones left out)."""
        read: list[Capture] = []
        batches: list[list[Packet]] = []
        for c in ready:
            try:
                got = c.read()
            except CaptureError as exc:
                self.lost_one(c, str(exc))
                continue
            read.append(c)
            batches.append(got)
        return read, batches

    def lost_one(self, cap: Capture, why: str) -> None:
        """An interface went away or down: keep going on the others, reopen it later."""
        log.warning("%s; reopening it every second", why)
        cap.close()
        self.captures = [c for c in self.captures if c is not cap]
        self.lost[cap.iface] = cap.decoder.skipped
        self.counters["capture-lost"] += 1

    def reopen_lost(self) -> None:
        for iface in list(self.lost):
            try:
                cap = self.open_one(iface)
            except CaptureError:
                continue
            cap.decoder.skipped = self.lost.pop(iface)
            self.captures.append(cap)
            self.counters["capture-reopened"] += 1
            log.warning("%s: capturing again", iface)

    def warm_up(self, mono: float) -> None:
        """Once the warm-up is over, switch every capture to the prefilter. It counts from
        the moment every segment's master is known (pickup before that may be cut short)."""
        if self.prefilter_at is not None and self.learning.unknown(self.captures):
            self.prefilter_at = max(self.prefilter_at, mono + self.cfg.warmup)
        if self.prefilter_at is not None and mono >= self.prefilter_at:
            self.prefilter_at = None
            self.bpf = self.bpf_pre
            for c in self.captures:
                c.set_filter(self.bpf)
            log.info(
                "warm-up over: prefilter on (control segments + 1/%d sample)",
                self.cfg.pickup_sample,
            )

    def prefilter_state(self) -> str:
        if not self.cfg.prefilter:
            return "off"
        return "warm-up" if self.prefilter_at is not None else "on"

    def drops(self) -> dict[str, CaptureStats]:
        out: dict[str, CaptureStats] = {}
        for c in self.captures:
            recv, drop, ifdrop = c.stats()
            out[c.iface] = {
                "frames": c.frames,
                "received": recv,
                "dropped": drop,
                "ifdropped": ifdrop,
                "tunnel_dropped": self.tunnel_dropped(c.iface),
            }
        return out

    def tunnel_dropped(self, iface: str) -> int:
        d = self.decaps.get(iface)
        return self.tunnel_lost.get(iface, 0) + (d.tunnel_dropped if d is not None else 0)

    def skipped(self) -> dict[str, int]:
        """Frames dropped undecoded, by reason, and the datagrams reassembly dropped
        (``frag-*``: timed out, memory full, overlapping, oversized; capture.defrag)."""
        out: Counter[str] = Counter()
        for c in self.captures:
            out.update(c.decoder.skipped)
            out.update({k: n for k, n in c.decoder.defrag.counters.items() if k != "reassembled"})
        return dict(out)
