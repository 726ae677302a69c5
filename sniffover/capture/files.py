"""Capture adapter: frames from pcap/pcapng files (and, later, live interfaces) via pcapy-ng.

Frames are read with ``next_batch()`` (one call per 1024 frames, the frames
back to back in one buffer) and decoded in place by ``sniffover.capture.decode``.
Errors opening or reading a capture become ``CaptureError`` with one line that
names the file, so the CLI can print it and exit non-zero.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pcapy  # type: ignore[import-untyped]

from ..conntrack.packet import Packet
from ..conntrack.zones import ZoneMap
from .decap import Decapsulator
from .decode import Decoder
from .headers import LINKTYPE_ETHERNET, LINKTYPES

BATCH = 1024


class CaptureError(Exception):
    """A capture cannot be opened or read; the message is one line for the operator."""


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def open_pcap(path: str) -> tuple[Any, Decoder]:
    """Open a pcap or pcapng file; its decoder follows the file's link type."""
    if not os.path.exists(path):
        raise CaptureError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CaptureError(f"{path}: is a directory, not a capture file")
    try:
        reader = pcapy.open_offline(path)
    except pcapy.PcapError as exc:
        msg = _reason(exc)
        if msg.startswith(path):
            msg = msg[len(path) :].lstrip(": ")
        raise CaptureError(f"{path}: cannot read capture: {msg}") from None
    linktype = reader.datalink()
    if linktype not in LINKTYPES:
        raise CaptureError(f"{path}: unsupported link type {linktype}")
    return reader, Decoder(linktype)


class PcapSource:
    """Decoded packets of several capture files in the order given.

    Iterating opens each file in turn; ``skipped`` accumulates the frames that
    were not decoded, by reason, over all files.
    """

    def __init__(
        self,
        paths: list[str],
        sll_direction: bool = False,
        zones: ZoneMap | None = None,
        ifaces: list[str] | None = None,
        decap: dict[str, Any] | None = None,
        master: frozenset[bytes] = frozenset(),
    ) -> None:
        self.paths = list(paths)
        self.master = master  # the master's MACs (Decoder.master)
        # Decapsulator keyword arguments (mode, vxlan_ports, sessions, sources): each file's
        # frames are read inside their mirror tunnel (capture.decap)
        self.decap = decap
        self.decapsulators: list[Decapsulator] = []
        # the zone map, and per file the interface it was captured on ("" if not known)
        self.zones = zones
        self.ifaces = list(ifaces) if ifaces is not None else [""] * len(self.paths)
        self.skipped: Counter[str] = Counter()
        self.frames = 0
        self.sll_direction = sll_direction
        self.linktypes: list[int] = []
        for path in self.paths:  # fail before any work if a file is missing or unreadable
            reader, decoder = open_pcap(path)
            self.linktypes.append(decoder.linktype)
            reader.close()
            if decap is not None:
                try:
                    Decapsulator(linktype=decoder.linktype, **decap)
                except ValueError as exc:
                    raise CaptureError(f"{path}: {exc}") from None

    @property
    def tunnel_dropped(self) -> int:
        """Frames the mirror tunnels' sequence numbers say were lost (capture.decap)."""
        return sum(d.tunnel_dropped for d in self.decapsulators)

    def __iter__(self) -> Iterator[Packet]:
        for path, iface in zip(self.paths, self.ifaces, strict=True):
            reader, decoder = open_pcap(path)
            decap = None
            if self.decap is not None:
                decap = Decapsulator(linktype=decoder.linktype, **self.decap)
                self.decapsulators.append(decap)
                decoder = Decoder(LINKTYPE_ETHERNET)
            decoder.skipped = self.skipped
            decoder.master = self.master
            decoder.sll_direction = self.sll_direction
            decoder.zones = self.zones.for_capture(iface) if self.zones else None
            batch = decoder.decode_batch
            try:
                while True:
                    try:
                        data, meta = reader.next_batch(BATCH)
                    except pcapy.PcapError as exc:
                        raise CaptureError(f"{path}: corrupt capture: {_reason(exc)}") from None
                    if not meta:
                        break
                    self.frames += len(meta) >> 4
                    if decap is not None:
                        meta = decap.batch(data, meta, self.skipped)
                    yield from batch(data, meta)
            finally:
                reader.close()


def iter_pcap_packets(
    paths: list[str],
    sll_direction: bool = False,
    zones: ZoneMap | None = None,
    ifaces: list[str] | None = None,
    decap: dict[str, Any] | None = None,
    master: frozenset[bytes] = frozenset(),
) -> PcapSource:
    """The packets of ``paths``; raises ``CaptureError`` at once for a missing or bad file."""
    return PcapSource(paths, sll_direction, zones, ifaces, decap, master)


def split_iface(arg: str) -> tuple[str, str]:
    """A capture argument ``[IFACE=]FILE``: (interface it was captured on, path). An
    existing file is a path as it is, even with ``=`` in its name."""
    if "=" in arg and not os.path.exists(arg):
        iface, _, path = arg.partition("=")
        if iface and "/" not in iface:
            return iface, path
    return "", arg
