"""The failover lab's pure parts: frame builders and namespace naming (no root)."""

from __future__ import annotations

import os
import struct

import pytest

from sniffover.lab import netns
from sniffover.lab.hub import Lab, client_ip, server_ip
from sniffover.lab.traffic import garp_frame


def test_garp_frame_layout() -> None:
    mac = bytes.fromhex("020000000001")
    f = garp_frame(mac, "192.0.2.1")
    assert len(f) == 42
    assert f[:6] == b"\xff" * 6 and f[6:12] == mac and f[12:14] == b"\x08\x06"
    arp = f[14:]
    assert arp[6:8] == b"\x00\x01"  # request
    assert arp[8:14] == mac
    assert arp[14:18] == arp[24:28] == bytes([192, 0, 2, 1])


def test_prefix_and_names() -> None:
    lab = Lab(clients=2, servers=3, prefix="x")
    assert lab.prefix == "snflab-x"
    assert lab.ns("fw2") == "snflab-x-fw2"
    assert lab.clients == ["c1", "c2"] and lab.servers == ["s1", "s2", "s3"]
    assert lab.ip("c2") == client_ip(2) == "192.0.2.11"
    assert lab.ip("s3") == server_ip(3) == "198.51.100.12"
    with pytest.raises(KeyError):
        lab.ns("c3")


def test_netns_names_use_the_project_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(netns.subprocess, "run", lambda argv, **kw: calls.append(argv))
    assert netns.base_name("snfrec-") == f"snfrec-{os.getpid()}"
    assert netns.exec_argv("snfbench-1-a", "ip", "link") == [
        *("ip", "netns", "exec", "snfbench-1-a"),
        *("ip", "link"),
    ]
    for bad in ("lab-x", "snf-x", "", "xsnflab-1"):
        with pytest.raises(netns.NetnsError):
            netns.base_name(bad)
        with pytest.raises(netns.NetnsError):
            netns.create(bad)
    assert calls == []  # refused before any ip command ran


def test_netns_deletes_only_what_it_created(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(netns.subprocess, "run", lambda argv, **kw: calls.append(argv))
    netns.delete("snflab-not-ours")
    netns.cleanup()
    assert calls == [] and netns.created() == []


def test_forged_vxlan_frames_parse_as_vxlan_with_dpkt() -> None:
    """The lab's VXLAN forger (and the live benchmark's encapsulated capture) against a
    reference decoder (dpkt: Ethernet, IPv4, UDP, TCP; this dpkt has no VXLAN, whose 8 bytes
    are RFC 7348's flags word and VNI << 8): outer UDP to 4789, flag I, the VNI, the inner
    frame unchanged."""
    dpkt = pytest.importorskip("dpkt")
    from sniffover.lab.forge import mac, mirrored_handshake, vxlan_frame

    m_in, m_out = mac("02:00:00:00:00:0a"), mac("02:00:00:00:00:0b")
    src, dst = bytes([192, 0, 2, 200]), bytes([198, 51, 100, 66])
    inners = mirrored_handshake(m_in, m_out, src, dst, 5555, 22, 0)
    assert len(inners) == 8  # four packets, each going in and leaving
    outer_src, outer_dst = bytes([203, 0, 113, 131]), bytes([203, 0, 113, 130])
    for inner in inners:
        frame = vxlan_frame(m_out, m_in, outer_src, outer_dst, 4242, inner)
        eth = dpkt.ethernet.Ethernet(frame)
        ip = eth.data
        assert (ip.src, ip.dst, ip.p, ip.len) == (outer_src, outer_dst, 17, len(frame) - 14)
        assert dpkt.in_cksum(bytes(frame[14:34])) == 0  # the outer header checksum holds
        udp = ip.data
        assert udp.dport == 4789 and udp.ulen == len(frame) - 34 and udp.sum == 0
        flags, vni = struct.unpack("!II", bytes(udp.data)[:8])
        assert flags == 0x08000000 and vni == 4242 << 8
        inner_eth = dpkt.ethernet.Ethernet(bytes(udp.data)[8:])
        assert bytes(inner_eth) == inner and isinstance(inner_eth.data.data, dpkt.tcp.TCP)
    # the leaving copy: from the master's other MAC, TTL one less, same IP ID and sequence
    syn_in, syn_out = (dpkt.ethernet.Ethernet(f) for f in inners[:2])
    assert syn_in.dst == m_in and syn_out.src == m_out
    assert (syn_in.data.ttl, syn_out.data.ttl) == (64, 63)
    assert syn_in.data.id == syn_out.data.id and syn_in.data.data.seq == syn_out.data.data.seq
