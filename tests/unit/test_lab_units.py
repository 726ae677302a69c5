"""The failover lab's pure parts: frame builders and namespace naming (no root)."""

from __future__ import annotations

import os

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
