"""Which MAC addresses are the master's (configured, or anchored per segment by ARP: see
``anchors``), and the host's own.

``MasterLearning`` is the agent's glue across segments: the known MACs, one
``SegmentAnchor`` (and its ARP prober) per capture, the flows to confirm once the master
is known, and the readiness condition (every segment's master known)."""

from __future__ import annotations

import ipaddress
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

from ..capture.bpf import mac_bytes, mac_text
from ..conntrack.packet import Packet
from .anchors import ArpProber, SegmentAnchor, iface_ipv4

if TYPE_CHECKING:
    from ..conntrack.confirm import ForwardingConfirmer
    from .captures import Capture

log = logging.getLogger("sniffover.agent")
Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def local_macs() -> list[str]:
    """MAC addresses of this namespace's interfaces (sysfs reflects the current netns)."""
    macs = set()
    base = "/sys/class/net"
    try:
        names = os.listdir(base)
    except OSError:
        return []
    for name in names:
        try:
            with open(os.path.join(base, name, "address")) as f:
                mac = f.read().strip()
        except OSError:
            continue
        if mac and mac != "00:00:00:00:00:00":
            macs.add(mac)
    return sorted(macs)


def local_prefixes(iface: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The networks of this host's addresses on ``iface`` (its segment's local subnets)."""
    from pyroute2 import IPRoute

    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    try:
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=iface)
            if not idx:
                return nets
            for msg in ipr.get_addr(index=idx[0]):
                addr = msg.get_attr("IFA_ADDRESS")
                if addr:
                    nets.append(ipaddress.ip_network(f"{addr}/{msg['prefixlen']}", strict=False))
    except OSError:
        pass
    return nets


def _anchor(c: Capture) -> SegmentAnchor | None:
    """The anchor the agent hooked into this capture (the handle knows only its feed())."""
    return cast("SegmentAnchor | None", c.learner)


class MasterLearning:
    """The master's MACs across the agent's segments: configured (``--master-mac``) or
    anchored per segment (ARP for ``addrs``), then given to every decoder so the master's
    frames are flagged."""

    def __init__(self, master_macs: list[str], confirm: bool, addrs: list[bytes] | None = None):
        self.configured = bool(master_macs)
        self.enabled = confirm  # forwarding confirmation on: MACs matter
        self.master: set[bytes] = {mac_bytes(m) for m in master_macs}
        self.addrs: list[bytes] = list(addrs or [])  # the master's own addresses
        self.probers: dict[str, ArpProber] = {}
        self.open_prober: Callable[[str, list[bytes], bytes | None], ArpProber] = ArpProber
        self.counters: Counter[str] = Counter()
        # flows the master forwarded before its MAC was known: confirmed again at the next
        # tick (some may still wait in the reorder buffer when it is learned)
        self.confirm_later: list[tuple[int, bytes, bytes, int, int]] = []

    def attach(self, cap: Capture, nets: Callable[[str], list[Net]], probe: bool = True) -> None:
        """A capture just opened: flag the known MACs, anchor the rest by ARP (asking on the
        interface unless ``probe`` is off: a remote mirror's port is not the master's
        segment, where only the mirrored ARP answers tell)."""
        if not self.enabled:
            return
        cap.decoder.master = frozenset(self.master)
        if self.configured:
            return
        anchor = SegmentAnchor(cap.iface, self.addrs, nets(cap.iface))
        cap.learner = anchor
        old = self.probers.pop(cap.iface, None)
        if old is not None:
            old.close()
        if not probe:
            return
        try:
            mine = iface_ipv4(cap.iface)
            sender = mine[0] if mine else None
            self.probers[cap.iface] = self.open_prober(cap.iface, self.addrs, sender)
        except OSError as exc:  # the capture's own ARP watch still works
            log.warning("%s: cannot send ARP requests for the master: %s", cap.iface, exc)

    def learning(self, captures: Sequence[Capture]) -> list[str]:
        """The interfaces whose master is not known yet."""
        out = []
        for c in captures:
            a = _anchor(c)
            if a is not None and a.master is None:
                out.append(c.iface)
        return out

    def unknown(self, captures: Sequence[Capture]) -> bool:
        """Some segment's master is unknown: nothing from it can be installed (not ready)."""
        return self.enabled and (not self.master or bool(self.learning(captures)))

    def note_ingress(self, captures: Sequence[Capture], packets: list[Packet]) -> None:
        """Kept for the daemon's loop: anchors need no copies (see ``anchors``)."""

    def learned(
        self, captures: Sequence[Capture], confirmer: ForwardingConfirmer | None, now: float
    ) -> None:
        """Ask and hear ARP; collect the MACs the anchors found, log what changed."""
        changed = False
        for c in captures:
            a = _anchor(c)
            if a is None:
                continue
            p = self.probers.get(c.iface)
            if p is not None:
                p.poll(a, now)
            events, a.events = a.events, []
            for kind, mac in events:
                self.counters[f"master-{kind}"] += 1
                shown = mac_text(mac) if mac else ""
                if kind == "conflict":
                    log.warning(
                        "%s: several MACs claim the master's addresses (%s): ARP spoofing? "
                        "the master's MAC there stays %s",
                        c.iface,
                        ", ".join(mac_text(m) for m in sorted(a.claims)),
                        mac_text(a.master) if a.master else "unknown (nothing installed)",
                    )
                elif kind == "routed-moved":
                    log.warning(
                        "%s: routed traffic now mostly from %s, not from the master %s "
                        "(not trusted; check the master's addresses)",
                        c.iface,
                        shown,
                        mac_text(a.master) if a.master else "?",
                    )
                else:
                    log.warning(
                        "master firewall on %s: %s (answers ARP for %s)%s",
                        c.iface,
                        shown,
                        ", ".join(str(ipaddress.ip_address(x)) for x in a.addrs),
                        " (moved)" if kind == "moved" else "",
                    )
            if a.master is not None and a.master not in self.master:
                self.master.add(a.master)
                changed = True
                if confirmer is not None:
                    # flows it forwarded before we knew its MAC are proven all the same
                    # (again at the next tick: some may still wait in the reorder buffer)
                    before = a.confirmed_before()
                    for t in before:
                        confirmer.confirm(t)
                    self.confirm_later += before
        if changed:
            master = frozenset(self.master)
            for c in captures:
                c.decoder.master = master
        # every segment must know the master before host-to-host frames can be told apart
        if (
            confirmer is not None
            and self.master
            and not confirmer.master_known
            and not self.learning(captures)
        ):
            # frames already read (decoded without the MACs, some still held for
            # reordering) keep being tracked: only later ones are judged by their MACs
            confirmer.master_learned(now)

    def confirm_pending(self, confirmer: ForwardingConfirmer) -> None:
        """Confirm again the flows found when the master was learned (see ``learned``)."""
        later, self.confirm_later = self.confirm_later, []
        for t in later:
            confirmer.confirm(t)

    def info(self, captures: Sequence[Capture]) -> dict[str, object]:
        """For the status document: each segment's anchor."""
        out: dict[str, object] = {}
        for c in captures:
            a = _anchor(c)
            if a is not None:
                out[c.iface] = {
                    "master": mac_text(a.master) if a.master else None,
                    "conflict": a.conflict,
                    "routed_macs": len(a.routed.votes),
                    "routed_moved_to": mac_text(a.moved_to) if a.moved_to else None,
                }
        return out
