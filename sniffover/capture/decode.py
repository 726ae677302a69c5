"""Frame decoder: link layer -> IP -> L4 headers, into ``conntrack.packet.Packet`` records.

This is the hot path of replay and live capture, so the headers the tracker
needs are read by hand with ``int.from_bytes``/``struct`` at offsets into the
capture buffer (dpkt's full parse costs 7-9 us per packet; it checks this module
in the tests and stays on the cold path). Nothing here raises on bad input: a
frame that cannot be decoded is counted in ``Decoder.skipped`` under a reason
and dropped.

What a sniffer on a segment sees and what the kernel's conntrack does with it:

* link layers: Ethernet II with any stack of 802.1Q / 802.1ad / 0x9100 tags,
  Linux cooked SLL and SLL2, raw IP (DLT_RAW/LINKTYPE_RAW, IPv4, IPv6), BSD
  NULL/LOOP;
* IPv4 with options; fragments are reassembled first (``defrag.Reassembler``, as
  ``nf_defrag_ipv4``): the datagram is decoded, with its full length, when its last
  fragment arrives, and an unfinished one never is;
* IPv6 with its extension-header chain (hop-by-hop, routing, destination
  options, AH), as ``ipv6_skip_exthdr()`` walks it; a fragment header sends the
  packet to reassembly (``nf_defrag_ipv6``), an atomic fragment is decoded as it is;
* TCP, UDP, UDP-Lite, SCTP (ports, verification tag, chunk types, whether its CRC32c is
  wrong), GRE (v0: no keys;
  v1/PPTP: the call id), ICMP and ICMPv6 (echo id; errors carry the quoted tuple in ``inner``); any
  other protocol is tracked as generic (ports 0/0).
"""

from __future__ import annotations

import struct
import sys
from collections import Counter
from typing import Final

from ..conntrack.helpers import payload_ports
from ..conntrack.packet import (
    FAMILY_IPV4,
    FAMILY_IPV6,
    HW_FROM_MASTER,
    HW_TO_MASTER,
    PROTO_GRE,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
    PROTO_UDPLITE,
    Packet,
)
from ..conntrack.zones import CaptureZones
from .checksum import sctp_crc_ok
from .defrag import Reassembler
from .headers import (
    BSD_AF_INET6,
    ETH_P_IP,
    ETH_P_IPV6,
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    MAX_VLAN_TAGS,
    PACKET_OUTGOING,
    VLAN_TPIDS,
    payload_digest,
    skip_ipv6_ext,
)
from .headers import (
    LINKTYPES as LINKTYPES,
)

_u16 = struct.Struct("!H").unpack_from
_u16u16 = struct.Struct("!HH").unpack_from
_tcp = struct.Struct("!HHIIBBH").unpack_from  # sport dport seq ack doff/res flags win
_u32 = struct.Struct("!I").unpack_from
_sctp = struct.Struct("!HHI").unpack_from  # sport dport vtag
# Fast path: untagged Ethernet + option-less IPv4 + the first 16 bytes of L4 (through the
# TCP window field) must be captured.
_FAST_LEN: Final = 50
_META = struct.Struct("=IIII").unpack_from  # next_batch's per-frame record, native order
LITTLE_ENDIAN: Final = sys.byteorder == "little"

ICMP_ERRORS = frozenset((3, 4, 5, 11, 12))


# Segments to or from a helper's port keep their payload (Packet.payload) for the helper
# (conntrack.helpers: FTP control lines, TFTP requests). Derived from the registry once.
# A port is first compared with the range of its protocol's helper ports, which is that
# one port while a protocol has one helper: the fast path costs int comparisons only.
TCP_PAYLOAD_PORTS: Final = payload_ports(PROTO_TCP)
UDP_PAYLOAD_PORTS: Final = payload_ports(PROTO_UDP)
_TCP_LO: Final = min(TCP_PAYLOAD_PORTS, default=65536)
_TCP_HI: Final = max(TCP_PAYLOAD_PORTS, default=-1)
_UDP_LO: Final = min(UDP_PAYLOAD_PORTS, default=65536)
_UDP_HI: Final = max(UDP_PAYLOAD_PORTS, default=-1)


class Decoder:
    """Decode frames of one link type; ``skipped`` counts undecodable frames by reason."""

    def __init__(self, linktype: int) -> None:
        if linktype not in LINKTYPES:
            raise ValueError(f"unsupported link type {linktype}")
        self.linktype = linktype
        self.skipped: Counter[str] = Counter()
        # The master firewall's MAC addresses (6-byte strings); when set, every decoded
        # Ethernet frame gets Packet.hw saying whether it leaves or enters the master.
        self.master: frozenset[bytes] = frozenset()
        # A cooked capture of a router (``tcpdump -i any``) says which way each frame went:
        # with this set, frames the router sent out are flagged as leaving "the master"
        # and all others as entering it, so both copies of a forwarded packet pair up.
        self.sll_direction = False
        # Fragment queues (nf_defrag_ipv4/ipv6); its counters say what was dropped there.
        self.defrag = Reassembler()
        # This capture's --zone-map (ZoneMap.for_capture): each packet's zone by VLAN/iface
        self.zones: CaptureZones | None = None
        # Packet.digest for UDP and echo: what pairs a datagram's copies on the two sides of
        # a NAT master (conntrack.confirm). Off where nothing pairs copies (one segment):
        # the CRC is most of what an IPv4 UDP frame costs on the fast path.
        self.digests = True

    # --- link layer -----------------------------------------------------------------

    def decode(self, ts: float, frame: bytes) -> Packet | None:
        """Decode one frame; None (and a count in ``skipped``) if it carries no trackable IP."""
        pkt = self.decode_at(ts, frame, 0, len(frame))
        if pkt is not None and self.zones is not None:
            self.zones.apply([pkt])
        return pkt

    def decode_at(self, ts: float, buf: bytes, off: int, end: int) -> Packet | None:
        """Decode the frame ``buf[off:end]`` in place (no copy of the frame)."""
        lt = self.linktype
        vlan = 0
        hw = 0
        frame = off
        if lt == LINKTYPE_ETHERNET:
            if end - off < 14:
                self.skipped["truncated-link"] += 1
                return None
            m = self.master
            if m:
                hw = (buf[off + 6 : off + 12] in m) | ((buf[off : off + 6] in m) << 1)
            etype = buf[off + 12] << 8 | buf[off + 13]
            off += 14
        elif lt == LINKTYPE_LINUX_SLL:
            if end - off < 16:
                self.skipped["truncated-link"] += 1
                return None
            if self.sll_direction:
                hw = HW_FROM_MASTER if buf[off + 1] == PACKET_OUTGOING else HW_TO_MASTER
            etype = buf[off + 14] << 8 | buf[off + 15]
            off += 16
        elif lt == LINKTYPE_LINUX_SLL2:
            if end - off < 20:
                self.skipped["truncated-link"] += 1
                return None
            if self.sll_direction:
                hw = HW_FROM_MASTER if buf[off + 10] == PACKET_OUTGOING else HW_TO_MASTER
            etype = buf[off] << 8 | buf[off + 1]
            off += 20
        elif lt in (LINKTYPE_NULL, LINKTYPE_LOOP):
            if end - off < 4:
                self.skipped["truncated-link"] += 1
                return None
            raw = buf[off : off + 4]
            af = int.from_bytes(raw, "big" if lt == LINKTYPE_LOOP else "little")
            if lt == LINKTYPE_NULL and af > 0xFFFF:  # written on a big-endian host
                af = int.from_bytes(raw, "big")
            off += 4
            etype = ETH_P_IP if af == 2 else ETH_P_IPV6 if af in BSD_AF_INET6 else 0
        else:  # raw IP: the version nibble tells
            if end - off < 1:
                self.skipped["truncated-ip"] += 1
                return None
            version = buf[off] >> 4
            etype = ETH_P_IP if version == 4 else ETH_P_IPV6 if version == 6 else 0
        if etype in VLAN_TPIDS:  # Ethernet, or cooked captures that kept the tags
            tags = 0
            while etype in VLAN_TPIDS:
                if end - off < 4 or tags == MAX_VLAN_TAGS:
                    self.skipped["truncated-link"] += 1
                    return None
                vlan = (buf[off] << 8 | buf[off + 1]) & 0x0FFF
                etype = buf[off + 2] << 8 | buf[off + 3]
                off += 4
                tags += 1
        if etype == ETH_P_IP:
            pkt = self._ipv4(ts, buf, off, end, vlan, frame, hw)
        elif etype == ETH_P_IPV6:
            pkt = self._ipv6(ts, buf, off, end, vlan, frame, hw)
        else:
            self.skipped["not-ip"] += 1
            return None
        if hw and pkt is not None:
            pkt.hw = hw
        return pkt

    # --- network layer --------------------------------------------------------------

    def _link_key(self, buf: bytes, frame: int, hw: int, vlan: int) -> tuple[int, int, bytes]:
        """What tells a fragment's copies apart on a sniffer: VLAN, master side and the
        frame's link-layer source (Ethernet source MAC; cooked: packet type and address)."""
        lt = self.linktype
        if lt == LINKTYPE_ETHERNET:
            return vlan, hw, buf[frame + 6 : frame + 12]
        if lt == LINKTYPE_LINUX_SLL:
            return vlan, hw, buf[frame : frame + 14]
        return vlan, hw, buf[frame + 10 : frame + 20] if lt == LINKTYPE_LINUX_SLL2 else b""

    def _ipv4(
        self, ts: float, buf: bytes, off: int, end: int, vlan: int, frame: int = 0, hw: int = 0
    ) -> Packet | None:
        if end - off < 20:
            self.skipped["truncated-ip"] += 1
            return None
        vihl = buf[off]
        ihl = (vihl & 0x0F) << 2
        total = buf[off + 2] << 8 | buf[off + 3]
        if vihl >> 4 != 4 or ihl < 20 or total < ihl:
            self.skipped["bad-ip-header"] += 1
            return None
        data, l4, stop, payload, ttl = (
            buf,
            off + ihl,
            min(end, off + total),
            total - ihl,
            buf[off + 8],
        )
        if (buf[off + 6] & 0x3F) or buf[off + 7]:  # more fragments or an offset: defrag first
            key = self._link_key(buf, frame, hw, vlan)
            done = self.defrag.ipv4(ts, buf, off, end, ihl, total, key)
            if done is None:  # queued, or dropped (why: defrag.counters)
                self.skipped["ip-fragment"] += 1
                return None
            data, payload, head = done
            l4, stop, ttl = 0, len(data), head[0]
        elif l4 > end:
            self.skipped["truncated-ip"] += 1
            return None
        pkt = self._l4(ts, FAMILY_IPV4, buf[off + 9], buf[off + 12 : off + 16],
                       buf[off + 16 : off + 20], data, l4, stop, payload, vlan, ttl)  # fmt: skip
        if pkt is not None:
            pkt.ipid = buf[off + 4] << 8 | buf[off + 5]
            if not self.digests:
                return pkt
            if pkt.proto in (PROTO_UDP, PROTO_UDPLITE):
                # the IP ID alone (16 bits, 0 from an unconnected socket) is too little to
                # pair copies rewritten on both sides (as the fast path does, decode_batch)
                pkt.digest = payload_digest(data, l4 + 8, stop)
            elif pkt.proto == PROTO_ICMP and pkt.dport >> 8 in (0, 8):
                # echo: as ICMPv6 echo (see _ipv6), the identifier is NAT's to rewrite
                pkt.digest = payload_digest(data, l4 + 6, stop)
        return pkt

    def _ipv6(
        self, ts: float, buf: bytes, off: int, end: int, vlan: int, frame: int = 0, hw: int = 0
    ) -> Packet | None:
        if end - off < 40:
            self.skipped["truncated-ip"] += 1
            return None
        if buf[off] >> 4 != 6:
            self.skipped["bad-ip-header"] += 1
            return None
        plen = buf[off + 4] << 8 | buf[off + 5]
        src = buf[off + 8 : off + 24]
        dst = buf[off + 24 : off + 40]
        hop = buf[off + 7]
        stop = min(end, off + 40 + plen)
        walked = skip_ipv6_ext(buf, buf[off + 6], off + 40, stop)
        if walked is None:
            self.skipped["truncated-ip"] += 1
            return None
        nexthdr, l4, frag = walked
        payload = plen - (l4 - off - 40)
        data = buf
        if frag >= 0:  # nf_defrag_ipv6 first: the fragmentable part, when it is whole
            key = self._link_key(buf, frame, hw, vlan)
            done = self.defrag.ipv6(ts, buf, off, stop, frag, plen, key)
            if done is None:  # queued, or dropped (why: defrag.counters)
                self.skipped["ip-fragment"] += 1
                return None
            data, length, head = done
            walked = skip_ipv6_ext(data, head[0], 0, len(data))
            if walked is None or walked[2] >= 0:  # cut short, or a fragment in a fragment
                self.skipped["bad-ip-header"] += 1
                return None
            nexthdr, l4, _ = walked
            payload, stop, hop = length - l4, len(data), head[1]
        if payload < 0:
            self.skipped["bad-ip-header"] += 1
            return None
        pkt = self._l4(ts, FAMILY_IPV6, nexthdr, src, dst, data, l4, stop, payload, vlan, hop)
        if pkt is not None:
            # no IP ID in IPv6: the flow label (which NAT does not touch either) and, where
            # no sequence numbers tell packets apart, a digest of the first payload bytes
            # pair the copies of a packet on both sides of the master
            pkt.ipid = (buf[off + 1] & 0x0F) << 16 | buf[off + 2] << 8 | buf[off + 3]
            if not self.digests:
                return pkt
            if nexthdr in (PROTO_UDP, PROTO_UDPLITE):
                pkt.digest = payload_digest(data, l4 + 8, stop)
            elif nexthdr == PROTO_ICMPV6 and pkt.dport >> 8 in (128, 129):
                # echo: the sequence number and the data, not the identifier (NAT's "port")
                pkt.digest = payload_digest(data, l4 + 6, stop)
        return pkt

    # --- transport layer ------------------------------------------------------------

    def _l4(
        self,
        ts: float,
        family: int,
        proto: int,
        src: bytes,
        dst: bytes,
        buf: bytes,
        l4: int,
        stop: int,
        payload: int,
        vlan: int,
        ttl: int,
    ) -> Packet | None:
        """``payload`` is the L4 length from the IP length fields; ``stop`` the captured end."""
        caplen = stop - l4
        if proto == PROTO_TCP:
            if caplen < 20:
                self.skipped["truncated-l4"] += 1
                return None
            sport, dport, seq, ack, doff, flags, win = _tcp(buf, l4)
            hlen = (doff >> 4) << 2
            if hlen < 20 or hlen > payload:
                self.skipped["bad-tcp-header"] += 1
                return None
            opts = buf[l4 + 20 : min(l4 + hlen, stop)] if hlen > 20 else b""
            pkt = Packet(
                ts, family, proto, src, dst, sport, dport, payload - hlen,
                flags, seq, ack, win, opts, None, vlan, ttl,
            )  # fmt: skip
            if (_TCP_LO <= sport <= _TCP_HI and sport in TCP_PAYLOAD_PORTS) or (
                _TCP_LO <= dport <= _TCP_HI and dport in TCP_PAYLOAD_PORTS
            ):  # e.g. FTP control: conntrack.helpers.ftp reads it
                pkt.payload = bytes(buf[l4 + hlen : stop])
            return pkt
        if proto in (PROTO_UDP, PROTO_UDPLITE):
            if caplen < 8:
                self.skipped["truncated-l4"] += 1
                return None
            if payload < 8:
                self.skipped["bad-udp-header"] += 1
                return None
            sport, dport = _u16u16(buf, l4)
            pkt = Packet(ts, family, proto, src, dst, sport, dport, payload - 8, 0, 0, 0, 0, b"",
                         None, vlan, ttl)  # fmt: skip
            if proto == PROTO_UDPLITE:  # the whole segment: conntrack.protocols.udplite_error
                pkt.payload = bytes(buf[l4:stop])
            elif (_UDP_LO <= sport <= _UDP_HI and sport in UDP_PAYLOAD_PORTS) or (
                _UDP_LO <= dport <= _UDP_HI and dport in UDP_PAYLOAD_PORTS
            ):  # e.g. a TFTP request: conntrack.helpers.tftp reads its opcode
                pkt.payload = bytes(buf[l4 + 8 : stop])
            return pkt
        if proto in (PROTO_ICMP, PROTO_ICMPV6):
            if caplen < 8:
                self.skipped["truncated-l4"] += 1
                return None
            itype = buf[l4]
            ident = buf[l4 + 4] << 8 | buf[l4 + 5]
            inner = None
            if (itype in ICMP_ERRORS) if proto == PROTO_ICMP else itype < 128:
                ident = 0
                inner = self._quoted(ts, family, buf, l4 + 8, stop)
            return Packet(ts, family, proto, src, dst, ident, itype << 8 | buf[l4 + 1],
                          payload - 8, 0, 0, 0, 0, b"", inner, vlan, ttl)  # fmt: skip
        if proto == PROTO_SCTP:
            if caplen < 12:
                self.skipped["truncated-l4"] += 1
                return None
            sport, dport, vtag = _sctp(buf, l4)
            pkt = Packet(ts, family, proto, src, dst, sport, dport, payload - 12, 0, 0, 0, 0, b"",
                         None, vlan, ttl)  # fmt: skip
            pkt.sctp_vtag = vtag
            # sctp_error()'s CRC32c check needs the whole packet: a capture cut by its snap
            # length cannot tell, and such a packet counts as good
            pkt.sctp_bad_crc = (
                payload >= 12 and caplen >= payload and not sctp_crc_ok(buf, l4, l4 + payload)
            )
            # the chunk walk of for_each_sctp_chunk (bounded: every step moves >= 4 bytes); a
            # zero-length chunk makes the packet invalid for the kernel: no chunks then
            types = bytearray()
            flags = bytearray()
            off = l4 + 12
            while off + 4 <= stop:
                clen = buf[off + 2] << 8 | buf[off + 3]
                if not clen:
                    types.clear()
                    flags.clear()
                    break
                types.append(buf[off])
                flags.append(buf[off + 1])
                off += (clen + 3) & ~3
            pkt.sctp_chunks = bytes(types)
            pkt.sctp_flags = bytes(flags)
            # initiate tag of a leading INIT / INIT_ACK (its 16-byte header must be there)
            if types and types[0] in (1, 2) and l4 + 32 <= stop:
                pkt.sctp_init_tag = _u32(buf, l4 + 16)[0]
            else:
                pkt.sctp_init_tag = -1
            return pkt
        if proto == PROTO_GRE:
            if caplen < 4:
                self.skipped["truncated-l4"] += 1
                return None
            key = 0
            if buf[l4 + 1] & 0x07 == 1:  # version 1 (PPTP enhanced GRE): the call id
                if caplen < 8:
                    self.skipped["truncated-l4"] += 1
                    return None
                key = buf[l4 + 6] << 8 | buf[l4 + 7]
            return Packet(ts, family, proto, src, dst, 0, key, payload, 0, 0, 0, 0, b"",
                          None, vlan, ttl)  # fmt: skip
        return Packet(ts, family, proto, src, dst, 0, 0, payload, 0, 0, 0, 0, b"", None, vlan, ttl)

    def _quoted(self, ts: float, family: int, buf: bytes, off: int, end: int) -> Packet | None:
        """The packet quoted by an ICMP error: its tuple, or None if too little is quoted.

        Like ``nf_ct_get_tuplepr()`` on the embedded header: the IP header and the
        first 8 bytes of its L4 header must be present.
        """
        if family == FAMILY_IPV4:
            if end - off < 20 or buf[off] >> 4 != 4:
                return None
            ihl = (buf[off] & 0x0F) << 2
            if ihl < 20:
                return None
            proto = buf[off + 9]
            src = buf[off + 12 : off + 16]
            dst = buf[off + 16 : off + 20]
            l4 = off + ihl
        else:
            if end - off < 40 or buf[off] >> 4 != 6:
                return None
            proto = buf[off + 6]
            src = buf[off + 8 : off + 24]
            dst = buf[off + 24 : off + 40]
            walked = skip_ipv6_ext(buf, proto, off + 40, end)
            if walked is not None and walked[2] >= 0 and not _u16(buf, walked[2] + 2)[0] & 0xFFF8:
                # a quoted first fragment: ipv6_skip_exthdr() walks on past its header
                walked = skip_ipv6_ext(buf, walked[0], walked[1], end)
            if walked is None:
                return None
            proto, l4, _ = walked
        if proto in (PROTO_TCP, PROTO_UDP, PROTO_UDPLITE, PROTO_SCTP):
            if end - l4 < 8:
                return None
            sport, dport = _u16u16(buf, l4)
        elif proto in (PROTO_ICMP, PROTO_ICMPV6):
            if end - l4 < 8:
                return None
            sport = buf[l4 + 4] << 8 | buf[l4 + 5]
            dport = buf[l4] << 8 | buf[l4 + 1]
        elif proto == PROTO_GRE:
            if end - l4 < 8:
                return None
            sport = 0
            dport = (buf[l4 + 6] << 8 | buf[l4 + 7]) if buf[l4 + 1] & 0x07 == 1 else 0
        else:
            sport = dport = 0
        return Packet(ts, family, proto, src, dst, sport, dport)

    # --- batches (pcapy-ng ``next_batch``) ------------------------------------------

    def decode_batch(self, data: bytes, meta: bytes) -> list[Packet]:
        """Decode a ``next_batch()`` result: frames back to back in ``data``, and per frame
        16 bytes of native u32 (ts seconds, ts microseconds, offset in data, captured length).

        The common frame (untagged Ethernet, IPv4 without options, not a fragment,
        TCP or UDP) is decoded inline, field by field; anything else goes
        through ``decode_at``. Both give identical packets (checked in the tests).
        """
        out: list[Packet] = []
        append = out.append
        decode_at = self.decode_at
        digests = self.digests
        if self.linktype != LINKTYPE_ETHERNET:
            for rec in struct.iter_unpack("=IIII", meta):
                start: int = rec[2]
                pkt = decode_at(rec[0] + rec[1] * 1e-6, data, start, start + rec[3])
                if pkt is not None:
                    append(pkt)
            if self.zones is not None:
                self.zones.apply(out)
            return out
        # Every field read by indexing: compiled (see setup.py) a bytes index is a plain
        # load, cheaper than struct's call and its tuple of boxed values.
        m = self.master
        hw = 0
        little = LITTLE_ENDIAN
        ts: float
        off: int  # typed: compiled, these stay machine integers, never boxed
        caplen: int
        for i in range(0, len(meta) - 15, 16):
            if little:
                ts = (meta[i] | meta[i + 1] << 8 | meta[i + 2] << 16 | meta[i + 3] << 24) + (
                    meta[i + 4] | meta[i + 5] << 8 | meta[i + 6] << 16 | meta[i + 7] << 24
                ) * 1e-6
                off = meta[i + 8] | meta[i + 9] << 8 | meta[i + 10] << 16 | meta[i + 11] << 24
                caplen = meta[i + 12] | meta[i + 13] << 8 | meta[i + 14] << 16 | meta[i + 15] << 24
            else:
                rec = _META(meta, i)
                ts = rec[0] + rec[1] * 1e-6
                off = rec[2]
                caplen = rec[3]
            if (
                caplen >= _FAST_LEN
                and data[off + 12] == 0x08
                and data[off + 13] == 0x00
                and data[off + 14] == 0x45
                and not (data[off + 20] & 0x3F or data[off + 21])  # not a fragment
            ):
                total = data[off + 16] << 8 | data[off + 17]
                proto = data[off + 23]
                sport = data[off + 34] << 8 | data[off + 35]
                dport = data[off + 36] << 8 | data[off + 37]
                if m:
                    hw = (data[off + 6 : off + 12] in m) | ((data[off : off + 6] in m) << 1)
                if proto == 6:
                    hlen = (data[off + 46] >> 4) << 2
                    if (
                        20 <= hlen <= total - 20
                        and caplen >= 54
                        # a helper's segments carry their payload: decode_at does that
                        and not _TCP_LO <= sport <= _TCP_HI
                        and not _TCP_LO <= dport <= _TCP_HI
                    ):
                        opts = (
                            data[off + 54 : min(off + 34 + hlen, off + caplen)]
                            if hlen > 20
                            else b""
                        )
                        seq = (
                            data[off + 38] << 24
                            | data[off + 39] << 16
                            | data[off + 40] << 8
                            | data[off + 41]
                        )
                        ack = (
                            data[off + 42] << 24
                            | data[off + 43] << 16
                            | data[off + 44] << 8
                            | data[off + 45]
                        )
                        append(Packet(ts, 2, 6, data[off + 26 : off + 30],
                                      data[off + 30 : off + 34], sport, dport, total - 20 - hlen,
                                      data[off + 47], seq, ack,
                                      data[off + 48] << 8 | data[off + 49], opts, None, 0,
                                      data[off + 22], hw,
                                      data[off + 18] << 8 | data[off + 19]))  # fmt: skip
                        continue
                elif (
                    proto == 17
                    and total >= 28
                    and not _UDP_LO <= sport <= _UDP_HI  # a helper's: decode_at
                    and not _UDP_LO <= dport <= _UDP_HI
                ):
                    digest = (
                        payload_digest(
                            data, off + 42, off + (14 + total if 14 + total < caplen else caplen)
                        )
                        if digests
                        else 0
                    )
                    append(Packet(ts, 2, 17, data[off + 26 : off + 30], data[off + 30 : off + 34],
                                  sport, dport, total - 28, 0, 0, 0, 0, b"", None, 0,
                                  data[off + 22], hw,
                                  data[off + 18] << 8 | data[off + 19], b"", digest))  # fmt: skip
                    continue
            pkt = decode_at(ts, data, off, off + caplen)
            if pkt is not None:
                append(pkt)
        if self.zones is not None:
            self.zones.apply(out)
        return out
