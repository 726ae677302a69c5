"""UDP-Lite as the kernel's ``udplite_error()`` judges it, frames decoded like captured ones.

Verified on 6.18 (router namespace, two UDP-Lite sockets; recorded as the golden captures
``udplite`` and ``udplite_nochecksum``): with ``nf_conntrack_checksum=1`` the PRE_ROUTING
check puts protocol 17 in the pseudo-header, so every real datagram (checksummed with 136)
is INVALID and makes no entry, IPv4 and IPv6, whatever the coverage; one checksummed with
17 is tracked. With the sysctl off, coverage and a non-zero checksum are still required.
"""

from __future__ import annotations

import struct

import pytest

from sniffover.capture.decode import Decoder
from sniffover.capture.headers import LINKTYPE_ETHERNET
from sniffover.conntrack.entry import IPS_ASSURED, IPS_SEEN_REPLY
from sniffover.conntrack.table import ConntrackTable
from sniffover.conntrack.timeouts import Timeouts
from sniffover.conntrack.verdict import ACCEPT, INVALID
from tests.helpers import A6, B6, A, B
from tests.unit.test_decode import ether, ipv4, ipv6


def fold(data: bytes) -> int:
    """RFC 1071 checksum, word by word (independent of the tracker's modulo shortcut)."""
    if len(data) & 1:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total & 0xFFFF) or 0xFFFF


def frame(
    src, dst, sport=40000, dport=7000, *, cscov=0, pseudo_proto=136, check=None, data=b"d" * 41
):
    seg = struct.pack("!HHHH", sport, dport, cscov, 0) + data
    covered = seg[: cscov or len(seg)]
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, pseudo_proto, len(seg))
    else:
        pseudo = src + dst + struct.pack("!IBBBB", len(seg), 0, 0, 0, pseudo_proto)
    c = fold(pseudo + covered) if check is None else check
    seg = seg[:6] + struct.pack("!H", c) + data
    if len(src) == 4:
        return ether(ipv4(seg, 136, src=src, dst=dst))
    return ether(ipv6(seg, 136, src=src, dst=dst), etype=0x86DD)


def run(checksum: int, *frames: bytes, snap: int = 0) -> tuple[list[int], ConntrackTable]:
    table = ConntrackTable(Timeouts(checksum=checksum))
    dec = Decoder(LINKTYPE_ETHERNET)
    verdicts = []
    for i, f in enumerate(frames):
        pkt = dec.decode(10.0 + i * 0.5, f[:snap] if snap else f)
        assert pkt is not None and pkt.proto == 136
        verdicts.append(table.process(pkt))
    return verdicts, table


@pytest.mark.parametrize("src,dst", [(A, B), (A6, B6)])
@pytest.mark.parametrize("cscov", [0, 8, 20])
def test_real_udplite_is_invalid_with_checksums_on(src, dst, cscov):
    req, rep = frame(src, dst, cscov=cscov), frame(dst, src, 7000, 40000, cscov=cscov)
    verdicts, table = run(1, req, rep, req)
    assert verdicts == [INVALID] * 3 and len(table) == 0


@pytest.mark.parametrize("src,dst", [(A, B), (A6, B6)])
def test_protocol_17_checksum_passes(src, dst):
    verdicts, table = run(1, frame(src, dst, pseudo_proto=17))
    assert verdicts == [ACCEPT] and len(table) == 1


@pytest.mark.parametrize("src,dst", [(A, B), (A6, B6)])
@pytest.mark.parametrize("cscov", [0, 20])
def test_checksums_off_tracks_and_assures(src, dst, cscov):
    req, rep = frame(src, dst, cscov=cscov), frame(dst, src, 7000, 40000, cscov=cscov)
    verdicts, table = run(0, req, rep, req)
    assert verdicts == [ACCEPT] * 3
    (conn,) = table.conns()
    assert conn.status & (IPS_SEEN_REPLY | IPS_ASSURED) == IPS_SEEN_REPLY | IPS_ASSURED


@pytest.mark.parametrize("checksum", [0, 1])
def test_bad_coverage_or_missing_checksum_is_invalid_either_way(checksum):
    for bad in (frame(A, B, cscov=4), frame(A, B, cscov=200), frame(A, B, check=0)):
        verdicts, table = run(checksum, bad)
        assert verdicts == [INVALID] and len(table) == 0


def test_segment_not_captured_to_its_coverage_counts_as_bad():
    good17 = frame(A, B, pseudo_proto=17)
    assert run(1, good17)[0] == [ACCEPT]
    assert run(1, good17, snap=60)[0] == [INVALID]  # cut before the coverage ends
    assert run(0, good17, snap=60)[0] == [ACCEPT]  # nothing to verify with the sysctl off
