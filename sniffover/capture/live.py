"""Live capture adapter: promiscuous pcapy-ng handles, read in batches when select() says so.

libpcap's blocking read never returns on an idle wire here, so every handle is
non-blocking and the agent's loop waits on ``fileno()`` with ``select()``.
Frames to or from the standby itself (its own interfaces' MAC addresses) are
cut by a kernel BPF filter: its kernel tracks that traffic already.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Protocol

import pcapy  # type: ignore[import-untyped]

from ..conntrack.packet import Packet
from .decap import Decapsulator
from .decode import Decoder
from .files import BATCH, CaptureError
from .headers import LINKTYPE_ETHERNET, LINKTYPES

SNAPLEN = 128  # Ethernet + 2 VLAN tags + IPv6 + ext headers + TCP with options
RING_BYTES = 32 << 20
# libpcap's TPACKET_V3 ring hands a block to user space when it fills or this timer runs out:
# at moderate rates the timer is the lag from wire to tracker (50 ms gave a 50 ms p99).
CAPTURE_TIMEOUT_MS = 5
READ_BUDGET = 64  # batches per interface per wake-up (fairness between interfaces)


class RawFrameHook(Protocol):
    """Sees each raw batch before decoding (the agent's master-MAC learner); returns a MAC
    the decoder must flag from this batch on, or None."""

    def feed(
        self, data: bytes, meta: bytes, ingress: set[tuple[int, ...]] | None = None
    ) -> bytes | None: ...


class LiveCapture:
    """One promiscuous, non-blocking capture on an interface."""

    def __init__(
        self,
        iface: str,
        *,
        snaplen: int = SNAPLEN,
        ring_bytes: int = RING_BYTES,
        bpf: str = "",
        promisc: bool = True,
    ) -> None:
        self.iface = iface
        if not os.path.exists(f"/sys/class/net/{iface}"):
            raise CaptureError(f"interface {iface}: no such interface in this network namespace")
        try:
            handle: Any = pcapy.create(iface)
            handle.set_snaplen(snaplen)
            handle.set_promisc(1 if promisc else 0)
            handle.set_buffer_size(ring_bytes)
            handle.set_timeout(CAPTURE_TIMEOUT_MS)
            handle.activate()
            handle.setnonblock(1)
            if bpf:
                handle.setfilter(bpf)
        except pcapy.PcapError as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else "capture failed"
            if "ermission" in text or "not permitted" in text:
                text += " (sniffover needs root or CAP_NET_RAW)"
            raise CaptureError(f"interface {iface}: {text}") from None
        self.handle = handle
        linktype = handle.datalink()
        if linktype not in LINKTYPES:
            raise CaptureError(f"interface {iface}: unsupported link type {linktype}")
        self.decoder = Decoder(linktype)
        self.frames = 0
        self.learner: RawFrameHook | None = None  # set while the master's MAC is unknown
        self.ingress_keys: set[tuple[int, ...]] | None = None  # shared by the agent
        self.decap: Decapsulator | None = None

    def set_decap(self, decap: Decapsulator) -> None:
        """Read the mirrored frames inside a tunnel (``capture.decap``): Ethernet, decoded
        by a fresh decoder (set before the agent configures the decoder)."""
        if decap.linktype != self.decoder.linktype:
            raise CaptureError(
                f"interface {self.iface}: link type {self.decoder.linktype} cannot carry "
                "a mirror tunnel"
            )
        self.decap = decap
        self.decoder = Decoder(LINKTYPE_ETHERNET)

    def set_filter(self, bpf: str) -> None:
        try:
            self.handle.setfilter(bpf)
        except pcapy.PcapError as exc:
            raise CaptureError(f"interface {self.iface}: bad filter: {exc}") from None

    def fileno(self) -> int:
        return int(self.handle.getfd())

    def read(self, budget: int = READ_BUDGET) -> list[Packet]:
        """Everything waiting (up to ``budget`` batches), decoded."""
        out: list[Packet] = []
        batch = self.decoder.decode_batch
        nb = self.handle.next_batch
        for _ in range(budget):
            try:
                data, meta = nb(BATCH)
            except pcapy.PcapError as exc:
                raise CaptureError(f"interface {self.iface}: capture failed: {exc}") from None
            if not meta:
                break
            self.frames += len(meta) >> 4
            if self.decap is not None:  # the outer headers never go further
                meta = self.decap.batch(data, meta, self.decoder.skipped)
                if not meta:
                    continue
            ln = self.learner
            if ln is not None:
                mac = ln.feed(data, meta, self.ingress_keys)
                if mac is not None:  # flag this very batch; the agent tells the others
                    self.decoder.master = self.decoder.master | {mac}
            out += batch(data, meta)
        return out

    def stats(self) -> tuple[int, int, int]:
        """(received, dropped by the kernel ring, dropped by the interface) from pcap."""
        try:
            recv, drop, ifdrop = self.handle.stats()
        except pcapy.PcapError:
            return (0, 0, 0)
        return int(recv), int(drop), int(ifdrop)

    def close(self) -> None:
        with contextlib.suppress(pcapy.PcapError):
            self.handle.close()
