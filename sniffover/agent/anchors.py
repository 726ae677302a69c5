"""Trust anchors: the master's MAC on a segment, from evidence a bystander cannot produce.

A host on a sniffed segment can send any frame from its own MAC, "routed-looking" ones
included (off-subnet source addresses, a decremented TTL): counting who sends routed
traffic elects whoever sends most of it. So the master's MAC is taken only from

* ``--master-mac`` (configured), or
* the MAC that answers ARP on that segment for one of the master's own addresses
  (``--master-addr``, else the ``--prime-from`` peer's address). The agent asks (an ARP
  request from the capture interface, every 0.5 s until answered, every 30 s after)
  and watches every ARP frame claiming those addresses. Linux answers ARP for any of its
  addresses on any interface (``arp_ignore=0``, the default), so the master's sync
  address works too. Two MACs claiming the master's addresses within ``CONFLICT_WINDOW``
  resolve nothing (someone is spoofing ARP: the segment's master stays unknown, logged),
  so a forger gets at most a standby that is not ready, never an election.

Routed traffic is still watched (``RoutedWatch``, bounded, with a running total): when
most of it comes from a MAC that is not the anchored master, that is logged and counted
(``routed-moved``), never trusted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
ETH_P_ARP = 0x0806
CONFLICT_WINDOW = 10.0  # seconds: two MACs claiming the master's addresses within it
ASK_UNRESOLVED = 0.5  # seconds between ARP requests while the master is unknown
ASK_RESOLVED = 30.0  # ... and once it is known (re-check)
SETTLE = 0.5  # seconds a MAC must claim them, alone, before it is believed
MAX_CLAIMS = 16  # distinct MACs remembered claiming the master's addresses
SAMPLE = 32  # once resolved, the raw hook looks at 1 batch in SAMPLE (routed watch)


def parse_addrs(values: Iterable[str]) -> list[bytes]:
    """``--master-addr`` values (each may hold several, comma-separated) -> packed IPv4
    addresses; ValueError with a one-line reason."""
    out: list[bytes] = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                ip = ipaddress.ip_address(part)
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address") from None
            if ip.version != 4:
                raise ValueError(f"{part}: IPv6 addresses are not supported yet (ARP only)")
            if ip.packed not in out:
                out.append(ip.packed)
    return out


class RoutedWatch:
    """Which MACs send routed-looking frames: a bounded counter with a running total."""

    MAX_MACS = 64

    def __init__(self) -> None:
        self.votes: dict[bytes, int] = {}
        self.total = 0

    def add(self, mac: bytes) -> None:
        votes = self.votes
        if mac not in votes and len(votes) >= self.MAX_MACS:
            # the long tail goes: halve everything, forget what falls to zero
            for m in list(votes):
                n = votes[m] >> 1
                self.total -= votes[m] - n
                if n:
                    votes[m] = n
                else:
                    del votes[m]
            if len(votes) >= self.MAX_MACS:  # 64 MACs with equal counts: make room
                m = min(votes, key=votes.__getitem__)
                self.total -= votes.pop(m)
        votes[mac] = votes.get(mac, 0) + 1
        self.total += 1

    def top(self) -> tuple[bytes | None, float]:
        """The MAC sending most routed frames, and its share."""
        if not self.total:
            return None, 0.0
        mac = max(self.votes, key=self.votes.__getitem__)
        return mac, self.votes[mac] / self.total


class SegmentAnchor:
    """The master's MAC on one segment (see the module doc). It is also the capture's raw
    frame hook (``capture.live.RawFrameHook``): ARP claims, routed frames, and who sent what
    while the master was unknown (so those flows can be confirmed once it is)."""

    MAX_SOURCES = 200_000  # frames remembered while unresolved (bounded)
    MOVED_SHARE = 0.8  # routed traffic mostly from another MAC ...
    MOVED_MIN = 256  # ... over at least this many routed frames

    def __init__(self, iface: str, addrs: list[bytes], nets: list[Net]) -> None:
        self.iface = iface
        self.addrs = frozenset(addrs)
        self.nets = nets
        self.claims: dict[bytes, float] = {}  # MAC -> last time it claimed a master address
        self.since: dict[bytes, float] = {}  # MAC -> first claim of its current run
        self.master: bytes | None = None
        self.conflict = False  # two MACs claim the master's addresses right now
        self.conflict_end = float("-inf")  # last time they did
        self.routed = RoutedWatch()
        self.sources: list[tuple[tuple[int, bytes, bytes, int, int], bytes]] = []
        self.moved_to: bytes | None = None  # routed traffic mostly from this other MAC
        self.events: list[tuple[str, bytes | None]] = []  # for the glue to log and count
        self.batches = 0

    # --- evidence ------------------------------------------------------------------

    def arp(self, frame: bytes | memoryview, off: int, caplen: int, ts: float) -> None:
        """One ARP frame: does its sender claim one of the master's addresses?"""
        if caplen < 42:
            return
        sha = bytes(frame[off + 22 : off + 28])
        spa = bytes(frame[off + 28 : off + 32])
        if spa not in self.addrs or sha != bytes(frame[off + 6 : off + 12]):
            return  # not about the master, or sender and Ethernet source disagree
        claims = self.claims
        if sha not in claims and len(claims) >= MAX_CLAIMS:
            gone = min(claims, key=claims.__getitem__)
            del claims[gone]
            self.since.pop(gone, None)
        last = claims.get(sha)
        if last is None or ts - last > CONFLICT_WINDOW:
            self.since[sha] = ts  # a new run of claims
        claims[sha] = ts
        self.resolve(ts)

    def resolve(self, now: float) -> None:
        """One MAC alone claimed the master's addresses for ``SETTLE`` seconds: it is the
        master here (a spoofer answering first is caught by the master's own answers)."""
        recent = [m for m, t in self.claims.items() if now - t <= CONFLICT_WINDOW]
        if len(recent) > 1:
            if not self.conflict:
                self.conflict = True
                self.events.append(("conflict", None))
            self.conflict_end = now
            return
        self.conflict = False
        if (
            len(recent) == 1
            and recent[0] != self.master
            and now - max(self.since[recent[0]], self.conflict_end) >= SETTLE
        ):
            self.events.append(("moved" if self.master is not None else "resolved", recent[0]))
            self.master = recent[0]

    def feed(
        self, data: bytes, meta: bytes, ingress: set[tuple[int, ...]] | None = None
    ) -> bytes | None:
        """A raw batch (``RawFrameHook``); returns the master's MAC once known."""
        self.batches += 1
        if self.master is not None and self.batches % SAMPLE:
            return self.master  # resolved: sample the routed watch only
        remember = self.master is None
        for sec, usec, off, caplen in struct.iter_unpack("=IIII", meta):
            if caplen < 34:
                continue
            etype = data[off + 12] << 8 | data[off + 13]
            if etype == 0x0800:
                src, dst = data[off + 26 : off + 30], data[off + 30 : off + 34]
                proto, l4 = data[off + 23], off + 14 + ((data[off + 14] & 0x0F) << 2)
            elif etype == 0x86DD and caplen >= 54:
                src, dst = data[off + 22 : off + 38], data[off + 38 : off + 54]
                proto, l4 = data[off + 20], off + 54
            else:
                if etype == ETH_P_ARP:
                    self.arp(data, off, caplen, sec + usec / 1e6)
                continue
            smac = data[off + 6 : off + 12]
            if remember and l4 + 8 <= off + caplen and len(self.sources) < self.MAX_SOURCES:
                if proto in (6, 17, 132, 136):
                    sport, dport = struct.unpack_from("!HH", data, l4)
                elif proto in (1, 58):
                    sport, dport = data[l4 + 4] << 8 | data[l4 + 5], data[l4] << 8 | data[l4 + 1]
                else:
                    sport = dport = 0
                self.sources.append(((proto, src, dst, sport, dport), smac))
            if self.nets and not self._local(src):
                self.routed.add(smac)
        self._check_routed()
        return self.master

    def _local(self, addr: bytes) -> bool:
        ip = ipaddress.ip_address(addr)
        return any(ip in n for n in self.nets)

    def _check_routed(self) -> None:
        if self.master is None or self.routed.total < self.MOVED_MIN:
            return
        mac, share = self.routed.top()
        moved = mac if mac != self.master and share >= self.MOVED_SHARE else None
        if moved is not None and moved != self.moved_to:
            self.events.append(("routed-moved", moved))
        self.moved_to = moved

    def confirmed_before(self) -> list[tuple[int, bytes, bytes, int, int]]:
        """Tuples of the frames the (now known) master sent while it was unknown."""
        mac = self.master
        out = [t for t, smac in self.sources if smac == mac]
        self.sources = []
        return out


class ArpProber:
    """Asks the segment who has the master's addresses, and hears every ARP answer (a
    packet socket on the capture interface: replies to our own MAC never reach the capture,
    whose filter cuts our frames)."""

    def __init__(self, iface: str, addrs: list[bytes], sender: bytes | None) -> None:
        self.iface = iface
        self.addrs = addrs
        self.sender = sender or bytes(4)  # no address here: an ARP probe (sender 0.0.0.0)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        self.sock.setblocking(False)
        self.sock.bind((iface, ETH_P_ARP))
        with open(f"/sys/class/net/{iface}/address") as f:
            self.mac = bytes.fromhex(f.read().strip().replace(":", ""))
        self.next_ask = 0.0

    def ask(self) -> None:
        for target in self.addrs:
            arp = struct.pack(
                "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, self.mac, self.sender, bytes(6), target
            )
            with contextlib.suppress(OSError):  # the interface is down: asked again later
                self.sock.send(b"\xff" * 6 + self.mac + b"\x08\x06" + arp)

    def poll(self, anchor: SegmentAnchor, now: float) -> None:
        """Hear what came, ask again when due."""
        for _ in range(256):
            try:
                frame = self.sock.recv(128)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            anchor.arp(frame, 0, len(frame), now)
        anchor.resolve(now)
        if now >= self.next_ask:
            self.ask()
            self.next_ask = now + (ASK_UNRESOLVED if anchor.master is None else ASK_RESOLVED)

    def close(self) -> None:
        self.sock.close()


def iface_ipv4(iface: str) -> list[bytes]:
    """This host's IPv4 addresses on ``iface``."""
    from pyroute2 import IPRoute

    out: list[bytes] = []
    try:
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=iface)
            if idx:
                for msg in ipr.get_addr(index=idx[0], family=socket.AF_INET):
                    addr = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
                    if addr:
                        out.append(ipaddress.ip_address(addr).packed)
    except OSError:
        pass
    return out


def prime_host(source: str | None) -> list[bytes]:
    """The ``--prime-from`` peer's address when it is an IPv4 literal (serve or ssh)."""
    if not source or os.sep in source and not source.startswith("ssh://"):
        return []
    host = source
    if host.startswith("ssh://"):
        host = host[len("ssh://") :].rstrip("/").rpartition("@")[2]
    elif host.startswith("file:"):
        return []
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return []
    return [ip.packed] if ip.version == 4 else []
