"""Remote mirror decapsulation: the mirrored Ethernet frame inside VXLAN, ERSPAN I/II/III,
GRE transparent Ethernet bridging or TZSP, found in place in a capture batch.

``Decapsulator.batch`` rewrites only the per-frame records of a ``next_batch()`` result
(offset and captured length, see ``decode.Decoder.decode_batch``): each record then points
at the inner frame in the same buffer, nothing is copied, and everything downstream (the
master-MAC learner, the decoder's fast path, VLAN tags inside the inner frame, zones)
sees the mirrored frames as if sniffed on the master's segment. The outer headers never
reach the tracker: a frame that is not the configured encapsulation (bare traffic on the
mirror port, the tunnel's own underlay), a mirror from a source or session not selected,
or a tunnel frame that is not Ethernet inside is counted in ``skipped`` and dropped.

Layouts (offsets from the outer L4 header):

* VXLAN (RFC 7348), UDP to ``vxlan_ports``: flags (I = 0x08), 3 reserved, VNI (24 bits),
  1 reserved; the inner frame at +16. Session = VNI.
* TZSP (UDP 37008): version 1, type 0 (received) or 1 (to transmit), encapsulation 1
  (Ethernet), then tagged fields up to the END tag (1); PADDING (0) is one byte. No
  session id: select TZSP mirrors by source.
* GRE (RFC 2784/2890), version 0, no routing: 4 bytes + checksum, key and sequence words
  as the C, K, S bits say. Protocol 0x6558 (TEB): Ethernet follows; session = the key.
  0x88BE without S: ERSPAN type I, Ethernet follows. 0x88BE with S: ERSPAN type II,
  8 bytes (version 1, VLAN, COS/En/T, session id 10 bits, index). 0x22EB: ERSPAN type III,
  12 bytes (version 2, session id, timestamp, SGT, P/FT/HW/D/Gra/O) + 8 when O is set;
  frame type FT must be 0 (Ethernet).

A GRE sequence number (ERSPAN II/III; GRE-TEB when the sender sets S) that jumps ahead
counts the frames it skipped in ``tunnel_dropped``: mirror loss, which the agent treats as
a capture drop (re-prime). VXLAN and TZSP carry none.

Imports: conntrack-free; capture.headers only.
"""

from __future__ import annotations

import struct
import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any, Final

from .headers import (
    ETH_P_IP,
    ETH_P_IPV6,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    LINKTYPE_RAW_OBSD,
    LINKTYPE_RAW_OLD,
    MAX_VLAN_TAGS,
    skip_ipv6_ext,
)

DECAP_MODES: Final = ("none", "auto", "vxlan", "erspan", "gre", "tzsp")
VXLAN_PORT: Final = 4789
TZSP_PORT: Final = 37008
GRE_TEB: Final = 0x6558
GRE_ERSPAN: Final = 0x88BE  # type I and II
GRE_ERSPAN3: Final = 0x22EB
NO_SESSION: Final = -1
# What the outer headers can add before the mirrored frame (Ethernet + 2 tags + IPv6 +
# GRE with C/K/S + ERSPAN III with its subheader = 94; VXLAN 78; TZSP a few tags more):
# the agent widens its snap length by this so the inner headers stay captured.
HEADROOM: Final = 128

# the outer linktypes a mirror tunnel can be captured on, and whether it is raw IP
OUTER_LINKTYPES = frozenset(
    (LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW, LINKTYPE_RAW_OLD,
     LINKTYPE_RAW_OBSD, LINKTYPE_IPV4, LINKTYPE_IPV6)
)  # fmt: skip

_rec: Final = struct.Struct("=II")  # (offset, captured length) of next_batch's record
LITTLE_ENDIAN: Final = sys.byteorder == "little"


class Decapsulator:
    """Finds the mirrored frame of each tunnel frame of one capture (see the module doc)."""

    def __init__(
        self,
        mode: str,
        linktype: int = LINKTYPE_ETHERNET,
        vxlan_ports: Iterable[int] = (VXLAN_PORT,),
        sessions: Iterable[int] = (),
        sources: Iterable[bytes] = (),
    ) -> None:
        if mode not in DECAP_MODES or mode == "none":
            raise ValueError(f"decapsulation {mode!r}: must be one of {', '.join(DECAP_MODES)}")
        if linktype not in OUTER_LINKTYPES:
            raise ValueError(f"link type {linktype}: cannot carry a mirror tunnel")
        self.mode = mode
        self.linktype = linktype
        self.vxlan = mode in ("auto", "vxlan")
        self.tzsp = mode in ("auto", "tzsp")
        self.erspan = mode in ("auto", "erspan")
        self.teb = mode in ("auto", "gre")
        self.vxlan_ports = frozenset(vxlan_ports)
        self.sessions = frozenset(sessions)
        self.sources = frozenset(sources)
        self.skipped: Counter[str] = Counter()
        self.decapsulated = 0
        self.tunnel_dropped = 0  # frames a GRE sequence number says the tunnel lost
        self.last_seq: dict[tuple[bytes, int], int] = {}  # (outer source, session) -> seq

    # --- a batch ----------------------------------------------------------------------

    def batch(self, data: bytes, meta: bytes, skipped: Counter[str] | None = None) -> bytes:
        """``meta`` of ``data`` with each record pointing at its inner frame; the records
        of frames dropped (counted in ``skipped``, default ``self.skipped``) left out.

        VXLAN over untagged Ethernet and option-less IPv4, selected, is read inline (the
        mirror's common frame; decode.decode_batch does the same); anything else, and
        every frame the inline test does not take, goes through ``inner``."""
        if skipped is not None:
            self.skipped = skipped
        out = bytearray(meta)  # records rewritten in place, kept ones moved to the front
        w = 0
        inner = self.inner
        pack_into = _rec.pack_into
        vx = self.vxlan and self.linktype == LINKTYPE_ETHERNET
        # the inline test compares machine integers: one port, at most one session and one
        # IPv4 source (the usual mirror); more of any of them take the frame walk
        port = min(self.vxlan_ports) if len(self.vxlan_ports) == 1 else -1
        vni = min(self.sessions) if len(self.sessions) == 1 else -1
        any_vni = not self.sessions
        src4 = -1
        if len(self.sources) == 1:
            only = min(self.sources)
            if len(only) == 4:
                src4 = only[0] << 24 | only[1] << 16 | only[2] << 8 | only[3]
        any_src = not self.sources
        if port < 0 or (vni < 0 and not any_vni) or (src4 < 0 and not any_src):
            vx = False
        little = LITTLE_ENDIAN
        off: int  # typed: compiled, machine integers
        caplen: int
        got: int
        for i in range(0, len(meta) - 15, 16):
            if little:
                off = meta[i + 8] | meta[i + 9] << 8 | meta[i + 10] << 16 | meta[i + 11] << 24
                caplen = meta[i + 12] | meta[i + 13] << 8 | meta[i + 14] << 16 | meta[i + 15] << 24
            else:
                off, caplen = _rec.unpack_from(meta, i + 8)
            got = -1
            if (
                vx
                and caplen >= 64  # outer 50 + the inner Ethernet header
                and data[off + 12] == 0x08
                and data[off + 13] == 0x00
                and data[off + 14] == 0x45
                and data[off + 23] == 17
                and not (data[off + 20] & 0x3F or data[off + 21])
                and (data[off + 36] << 8 | data[off + 37]) == port
                and data[off + 42] & 0x08
                and (
                    any_vni or (data[off + 46] << 16 | data[off + 47] << 8 | data[off + 48]) == vni
                )
                and (
                    any_src
                    or (
                        data[off + 26] << 24
                        | data[off + 27] << 16
                        | data[off + 28] << 8
                        | data[off + 29]
                    )
                    == src4
                )  # fmt: skip
            ):
                got = off + 50
                self.decapsulated += 1
            else:
                got = inner(data, off, off + caplen)
            if got >= 0:
                if w != i:
                    out[w : w + 8] = meta[i : i + 8]
                pack_into(out, w + 8, got, off + caplen - got)
                w += 16
        return bytes(out[:w])

    # --- a frame ----------------------------------------------------------------------

    def inner(self, buf: bytes, off: int, end: int) -> int:
        """The offset of the mirrored Ethernet frame in ``buf[off:end]``, or -1 (counted)."""
        lt = self.linktype
        if lt == LINKTYPE_ETHERNET:
            if end - off < 14:
                return self._skip("decap-truncated")
            etype = buf[off + 12] << 8 | buf[off + 13]
            off += 14
            tags = 0
            # headers.VLAN_TPIDS by value: compiled, a set lookup boxes etype every frame
            while etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
                if end - off < 4 or tags == MAX_VLAN_TAGS:
                    return self._skip("decap-truncated")
                etype = buf[off + 2] << 8 | buf[off + 3]
                off += 4
                tags += 1
        elif lt == LINKTYPE_LINUX_SLL:
            if end - off < 16:
                return self._skip("decap-truncated")
            etype = buf[off + 14] << 8 | buf[off + 15]
            off += 16
        elif lt == LINKTYPE_LINUX_SLL2:
            if end - off < 20:
                return self._skip("decap-truncated")
            etype = buf[off] << 8 | buf[off + 1]
            off += 20
        else:  # raw IP
            if end - off < 1:
                return self._skip("decap-truncated")
            version = buf[off] >> 4
            etype = ETH_P_IP if version == 4 else ETH_P_IPV6 if version == 6 else 0
        if etype == ETH_P_IP:
            if end - off < 20:
                return self._skip("decap-truncated")
            ihl = (buf[off] & 0x0F) << 2
            if buf[off] >> 4 != 4 or ihl < 20:
                return self._skip("not-mirrored")
            if (buf[off + 6] & 0x3F) or buf[off + 7]:
                # a fragmented tunnel frame: the mirror's MTU is too small (not reassembled)
                return self._skip("decap-fragment")
            proto = buf[off + 9]
            src = buf[off + 12 : off + 16]
            l4 = off + ihl
        elif etype == ETH_P_IPV6:
            if end - off < 40:
                return self._skip("decap-truncated")
            walked = skip_ipv6_ext(buf, buf[off + 6], off + 40, end)
            if walked is None:
                return self._skip("decap-truncated")
            if walked[2] >= 0:
                return self._skip("decap-fragment")
            proto = walked[0]
            l4 = walked[1]
            src = buf[off + 8 : off + 24]
        else:
            return self._skip("not-mirrored")
        if proto == 17:
            return self._udp(buf, l4, end, src)
        if proto == 47 and (self.erspan or self.teb):
            return self._gre(buf, l4, end, src)
        return self._skip("not-mirrored")

    def _udp(self, buf: bytes, l4: int, end: int, src: bytes) -> int:
        if end - l4 < 8:
            return self._skip("decap-truncated")
        dport = buf[l4 + 2] << 8 | buf[l4 + 3]
        if self.vxlan and dport in self.vxlan_ports:
            if end - l4 < 16 + 14:
                return self._skip("decap-truncated")
            if not buf[l4 + 8] & 0x08:  # the I flag: a VNI is present
                return self._skip("decap-bad-header")
            vni = buf[l4 + 12] << 16 | buf[l4 + 13] << 8 | buf[l4 + 14]
            return self._selected(src, vni, l4 + 16, end)
        if self.tzsp and dport == TZSP_PORT:
            if end - l4 < 12:
                return self._skip("decap-truncated")
            if buf[l4 + 8] != 1 or buf[l4 + 9] > 1:  # version 1, received / to transmit
                return self._skip("decap-bad-header")
            if (buf[l4 + 10] << 8 | buf[l4 + 11]) != 1:  # not Ethernet inside (802.11, ...)
                return self._skip("decap-not-ethernet")
            off = l4 + 12
            while True:  # tagged fields: each step moves >= 1 byte, bounded by end
                if off >= end:
                    return self._skip("decap-truncated")
                tag = buf[off]
                if tag == 1:  # END
                    off += 1
                    break
                if tag == 0:  # PADDING
                    off += 1
                    continue
                if off + 2 > end:
                    return self._skip("decap-truncated")
                off += 2 + buf[off + 1]
            return self._selected(src, NO_SESSION, off, end)
        return self._skip("not-mirrored")

    def _gre(self, buf: bytes, l4: int, end: int, src: bytes) -> int:
        if end - l4 < 4:
            return self._skip("decap-truncated")
        flags = buf[l4]
        if flags & 0x40 or buf[l4 + 1] & 0x07:  # routing present (RFC 1701), or version != 0
            return self._skip("not-mirrored")
        proto = buf[l4 + 2] << 8 | buf[l4 + 3]
        off = l4 + 4
        if flags & 0x80:  # checksum + reserved
            off += 4
        key = NO_SESSION
        if flags & 0x20:
            if end - off < 4:
                return self._skip("decap-truncated")
            key = buf[off] << 24 | buf[off + 1] << 16 | buf[off + 2] << 8 | buf[off + 3]
            off += 4
        seq = -1
        if flags & 0x10:
            if end - off < 4:
                return self._skip("decap-truncated")
            seq = buf[off] << 24 | buf[off + 1] << 16 | buf[off + 2] << 8 | buf[off + 3]
            off += 4
        if proto == GRE_TEB and self.teb:
            session = key
        elif proto == GRE_ERSPAN and self.erspan:
            if seq < 0:  # type I: no ERSPAN header, no sequence number
                session = NO_SESSION
            else:  # type II
                if end - off < 8:
                    return self._skip("decap-truncated")
                if buf[off] >> 4 != 1:
                    return self._skip("decap-bad-header")
                session = (buf[off + 2] & 0x03) << 8 | buf[off + 3]
                off += 8
        elif proto == GRE_ERSPAN3 and self.erspan:
            if end - off < 12:
                return self._skip("decap-truncated")
            if buf[off] >> 4 != 2:
                return self._skip("decap-bad-header")
            session = (buf[off + 2] & 0x03) << 8 | buf[off + 3]
            if (buf[off + 10] >> 2) & 0x1F:  # frame type: 0 Ethernet, 2 IP (not handled)
                return self._skip("decap-not-ethernet")
            off += 20 if buf[off + 11] & 0x01 else 12  # O: platform-specific subheader
        else:
            return self._skip("not-mirrored")
        got = self._selected(src, session, off, end)
        if got >= 0 and seq >= 0:
            self._sequence(src, session, seq)
        return got

    def _selected(self, src: bytes, session: int, inner: int, end: int) -> int:
        """The selector (``--mirror-from``, ``--mirror-session``), then the inner frame."""
        if self.sources and src not in self.sources:
            return self._skip("mirror-foreign-source")
        if self.sessions and session not in self.sessions:
            return self._skip("mirror-foreign-session")
        if end - inner < 14:
            return self._skip("decap-truncated")
        self.decapsulated += 1
        return inner

    def _sequence(self, src: bytes, session: int, seq: int) -> None:
        """A jump ahead of the last sequence number: the frames between were lost. One
        behind (or a duplicate) is reordering: not counted, and the last number stays."""
        k = (src, session)
        last = self.last_seq.get(k)
        if last is None:
            self.last_seq[k] = seq
            return
        gap = (seq - last) & 0xFFFFFFFF
        if 0 < gap < 0x80000000:
            self.tunnel_dropped += gap - 1
            self.last_seq[k] = seq

    def _skip(self, why: str) -> int:
        self.skipped[why] += 1
        return -1


def outer_bpf(mode: str, vxlan_ports: Iterable[int] = (VXLAN_PORT,)) -> str:
    """A kernel filter passing only the tunnel frames ``mode`` decapsulates: the rest of the
    mirror port never reaches Python. Not the sources: a mirror from an address not
    selected must be counted (``mirror-foreign-source``), or a switch that changed its
    address would leave the standby blind without a sign."""
    parts = []
    if mode in ("auto", "vxlan"):
        parts += [f"udp dst port {p}" for p in sorted(set(vxlan_ports))]
    if mode in ("auto", "tzsp"):
        parts.append(f"udp dst port {TZSP_PORT}")
    if mode in ("auto", "erspan", "gre"):
        parts.append("ip proto 47 or ip6 proto 47")
    expr = " or ".join(parts)
    return f"(({expr}) or (vlan and ({expr})))"  # "vlan" shifts what follows it


def decap_options(
    mode: str,
    vxlan_port: int = VXLAN_PORT,
    sessions: Iterable[str] = (),
    sources: Iterable[str] = (),
) -> dict[str, Any] | None:
    """The ``Decapsulator`` keywords of the options ``--decap``, ``--vxlan-port``,
    ``--mirror-session`` and ``--mirror-from`` (None with ``--decap none``); raises
    ``ValueError`` saying which value is wrong."""
    import ipaddress

    if mode not in DECAP_MODES:
        raise ValueError(f"--decap must be {', '.join(DECAP_MODES)}, got {mode!r}")
    sessions, sources = list(sessions), list(sources)
    if mode == "none":
        if sessions or sources:
            raise ValueError("--mirror-session and --mirror-from select mirrors: give --decap")
        return None
    ids = [parse_session(s) for s in sessions]
    addrs = []
    for text in sources:
        try:
            addrs.append(ipaddress.ip_address(text.strip()).packed)
        except ValueError:
            raise ValueError(f"--mirror-from must be an IP address, got {text!r}") from None
    return {"mode": mode, "vxlan_ports": (vxlan_port,), "sessions": ids, "sources": addrs}


def parse_session(text: str) -> int:
    """A ``--mirror-session``: a VNI (24 bits), an ERSPAN session id (10 bits) or a GRE
    key (32 bits), decimal or 0x hex."""
    try:
        value = int(str(text).strip(), 0)
    except ValueError:
        value = -1
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"--mirror-session must be an integer 0-4294967295, got {text!r}")
    return value
