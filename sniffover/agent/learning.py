"""Which MAC addresses are the master's: learned from the traffic, or the host's own.

``MasterLearner`` learns on one segment; ``MasterLearning`` is the agent's glue across
segments (the known MACs, ingress copy keys shared by the segments, the flows to confirm
once the master is known)."""

from __future__ import annotations

import ipaddress
import logging
import os
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

from ..capture.bpf import mac_bytes, mac_text
from ..conntrack.packet import HW_TO_MASTER, Packet

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


class MasterLearner:
    """Find the master firewall's MAC on a segment from the traffic it routes.

    A frame whose destination IP is not on the segment's subnets is addressed to
    the router's MAC; one whose source IP is not on them was sent by the router.
    With the standby's own subnets known (its addresses on the interface), a few
    routed frames name the master. Without them (a bare mirror port) the on-link
    hosts are the ones seen in ARP, and a frame whose TTL is one below a usual
    initial value (63, 127, 254) was routed by the MAC that sent it
    (``--master-mac`` avoids any guessing). Behind source NAT, where every address on
    a segment looks local, copies of packets that entered the master on another
    segment give it away (``match``).
    """

    NEEDED = 8
    SHARE = 0.9
    MAX_SOURCES = 200_000  # frames remembered while learning (bounded)

    def __init__(self, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        self.nets = nets
        self.votes: Counter[bytes] = Counter()
        self.learned: bytes | None = None
        self.recent: dict[tuple[int, ...], bytes] = {}  # frames here: copy key -> source MAC
        # Without addresses of our own on the segment (a bare mirror port), the hosts that
        # answer or send ARP here are the on-link ones: everything else is routed.
        self.arp_local: set[bytes] = set()
        self.sources: list[tuple[tuple[int, bytes, bytes, int, int], bytes]] = []

    def match(self, keys: Sequence[tuple[int, ...]]) -> bytes | None:
        """Packets just seen entering the master elsewhere: their copies already seen here
        came out of it."""
        for k in keys:
            smac = self.recent.pop(k, None)
            if smac is not None:
                self.votes[smac] += 4
        return self._decide()

    def _local(self, addr: bytes) -> bool:
        if not self.nets:
            return addr in self.arp_local
        ip = ipaddress.ip_address(addr)
        return any(ip in n for n in self.nets)

    def feed(
        self, data: bytes, meta: bytes, ingress: set[tuple[int, ...]] | None = None
    ) -> bytes | None:
        """Vote on a batch. ``ingress``: packets seen going into the master on a segment
        where it is already known, as (proto, IP ID, seq, ack, L4 length); a frame here
        that is the copy of one of them came out of the master (this finds the master
        behind source NAT, where every address on the segment looks local)."""
        for _sec, _usec, off, caplen in struct.iter_unpack("=IIII", meta):
            if caplen < 34:
                continue
            etype = data[off + 12] << 8 | data[off + 13]
            if etype == 0x0800 and ingress is not None and caplen >= 42:
                proto = data[off + 23]
                ihl = (data[off + 14] & 0x0F) << 2
                total = data[off + 16] << 8 | data[off + 17]
                l4 = off + 14 + ihl
                key = None
                if proto == 6 and caplen >= 14 + ihl + 20:
                    seq, ack = struct.unpack_from("!II", data, l4 + 4)
                    hlen = (data[l4 + 12] >> 4) << 2
                    key = (6, data[off + 18] << 8 | data[off + 19], seq, ack, total - ihl - hlen)
                elif proto == 17:
                    key = (17, data[off + 18] << 8 | data[off + 19], 0, 0, total - ihl - 8)
                if key is not None:
                    if key in ingress:
                        self.votes[data[off + 6 : off + 12]] += 4
                    else:  # its ingress copy may be noted later (see match)
                        if len(self.recent) > 8192:
                            self.recent.clear()
                        self.recent[key] = data[off + 6 : off + 12]
            if etype == 0x0800:
                src, dst = data[off + 26 : off + 30], data[off + 30 : off + 34]
                proto, l4 = data[off + 23], off + 14 + ((data[off + 14] & 0x0F) << 2)
            elif etype == 0x86DD and caplen >= 54:
                src, dst = data[off + 22 : off + 38], data[off + 38 : off + 54]
                proto, l4 = data[off + 20], off + 54
            else:
                if etype == 0x0806 and caplen >= 42 and not self.nets:
                    self.arp_local.add(data[off + 28 : off + 32])  # ARP sender address
                continue
            if l4 + 8 <= off + caplen and len(self.sources) < self.MAX_SOURCES:
                # who sent what, so flows seen before the master was known can be
                # confirmed once it is (``confirmed_before``)
                if proto in (6, 17, 132, 136):
                    sport, dport = struct.unpack_from("!HH", data, l4)
                elif proto in (1, 58):
                    sport, dport = data[l4 + 4] << 8 | data[l4 + 5], data[l4] << 8 | data[l4 + 1]
                else:
                    sport = dport = 0
                self.sources.append(((proto, src, dst, sport, dport), data[off + 6 : off + 12]))
            if not self.nets:
                # a hop limit one below the usual initial values (64, 128, 255): routed
                # once, and the MAC it came from is the router's
                ttl = data[off + 22] if etype == 0x0800 else data[off + 21]
                if ttl in (63, 127, 254):
                    self.votes[data[off + 6 : off + 12]] += 1
                if not self.arp_local:
                    continue  # nothing else tells on-link from routed yet
            dmac, smac = data[off : off + 6], data[off + 6 : off + 12]
            if not dmac[0] & 1 and not self._local(dst):
                self.votes[dmac] += 1
            if not self._local(src):
                self.votes[smac] += 1
        return self._decide()

    def confirmed_before(self) -> list[tuple[int, bytes, bytes, int, int]]:
        """Tuples of the frames the (now learned) master sent while it was still unknown."""
        mac = self.learned
        return [t for t, smac in self.sources if smac == mac]

    def _decide(self) -> bytes | None:
        total = sum(self.votes.values())
        if self.learned is None and total >= self.NEEDED:
            mac, n = self.votes.most_common(1)[0]
            if n >= self.SHARE * total:
                self.learned = mac
        return self.learned


def _learner(c: Capture) -> MasterLearner | None:
    """The learner the agent hooked into this capture (the handle knows only its feed())."""
    return cast("MasterLearner | None", c.learner)


class MasterLearning:
    """The master's MACs across the agent's segments: configured (``--master-mac``) or
    learned per segment, then given to every decoder so the master's frames are flagged."""

    def __init__(self, master_macs: list[str], confirm: bool) -> None:
        self.configured = bool(master_macs)
        self.enabled = confirm  # forwarding confirmation on: MACs matter
        self.master: set[bytes] = {mac_bytes(m) for m in master_macs}
        self.ingress_keys: set[tuple[int, ...]] = set()
        # flows the master forwarded before its MAC was known: confirmed again at the next
        # tick (some may still wait in the reorder buffer when it is learned)
        self.confirm_later: list[tuple[int, bytes, bytes, int, int]] = []

    def attach(self, cap: Capture, nets: Callable[[str], list[Net]]) -> None:
        """A capture just opened: flag the known MACs, learn the rest from its traffic."""
        if not self.enabled:
            return
        cap.decoder.master = frozenset(self.master)
        if not self.configured:
            cap.learner = MasterLearner(nets(cap.iface))
            cap.ingress_keys = self.ingress_keys

    def learning(self, captures: Sequence[Capture]) -> list[str]:
        """The interfaces still learning the master's MAC."""
        return [c.iface for c in captures if c.learner is not None]

    def note_ingress(self, captures: Sequence[Capture], packets: list[Packet]) -> None:
        """Remember packets entering the master where it is known, so a segment where it is
        not can recognise their copies coming out (see MasterLearner.feed)."""
        keys = self.ingress_keys
        if len(keys) > 65536:
            keys.clear()
        new = [
            (p.proto, p.ipid, p.seq, p.ack, p.l4len)
            for p in packets
            if p.hw & HW_TO_MASTER and p.family == 2
        ]
        keys.update(new)
        for c in captures:
            ln = _learner(c)
            mac = ln.match(new) if ln is not None else None
            if mac is not None:
                c.decoder.master = c.decoder.master | {mac}

    def learned(
        self, captures: Sequence[Capture], confirmer: ForwardingConfirmer | None, now: float
    ) -> None:
        """Collect MACs the learners found; every decoder then flags the master's frames."""
        changed = False
        for c in captures:
            ln = _learner(c)
            if ln is not None and ln.learned is not None:
                if ln.learned not in self.master:
                    self.master.add(ln.learned)
                    changed = True
                    log.warning(
                        "master firewall on %s: %s (learned from routed traffic)",
                        c.iface,
                        mac_text(ln.learned),
                    )
                if confirmer is not None:
                    # flows it forwarded before we knew its MAC are proven all the same
                    # (again at the next tick: some may still wait in the reorder buffer)
                    before = ln.confirmed_before()
                    for t in before:
                        confirmer.confirm(t)
                    self.confirm_later += before
                c.learner = None
        if changed:
            master = frozenset(self.master)
            for c in captures:
                c.decoder.master = master
        # every segment must know the master before host-to-host frames can be told apart
        if (
            confirmer is not None
            and self.master
            and not confirmer.master_known
            and all(c.learner is None for c in captures)
        ):
            # frames already read (decoded without the MACs, some still held for
            # reordering) keep being tracked: only later ones are judged by their MACs
            confirmer.master_learned(now)

    def confirm_pending(self, confirmer: ForwardingConfirmer) -> None:
        """Confirm again the flows found when the master was learned (see ``learned``)."""
        later, self.confirm_later = self.confirm_later, []
        for t in later:
            confirmer.confirm(t)
