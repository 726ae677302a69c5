"""Multicast and broadcast datagrams as a router treats them (issue 15 point 3).

The rows were verified on 6.18 in a router namespace (golden capture
``multicast_broadcast``): a datagram to a group the router neither joined nor routes dies
in routing and its entry is never confirmed; the groups every Linux router joins
(224.0.0.1, ff02::1, ff02::2) and the broadcasts it delivers (255.255.255.255, its subnets'
broadcast addresses) get entries. The agent installs none of them.
"""

from __future__ import annotations

import pytest

from sniffover.conntrack.entry import IPS_SEEN_REPLY
from sniffover.conntrack.packet import HW_FROM_MASTER, HW_TO_MASTER, Packet
from sniffover.conntrack.table import ConntrackTable
from sniffover.conntrack.tuple import addr_bytes
from sniffover.conntrack.verdict import ACCEPT, IGNORE
from sniffover.kernel.installer import Installer
from tests.helpers import FakeSender

C4, C6 = addr_bytes("192.0.2.1"), addr_bytes("fe80::1")
NOT_JOINED = ["224.0.0.22", "224.0.0.252", "239.255.255.250", "224.0.0.251", "224.0.0.2",
              "ff02::fb", "ff02::1:3", "ff02::c", "ff05::c"]  # fmt: skip
DELIVERED = ["224.0.0.1", "ff02::1", "ff02::2", "ff05::2", "255.255.255.255", "192.0.2.255"]


def datagram(dst: str, proto: int = 17, ts: float = 1.0) -> Packet:
    d = addr_bytes(dst)
    src = C4 if len(d) == 4 else C6
    return Packet(ts, 2 if len(d) == 4 else 10, proto, src, d, 40000, 5353, 20)


@pytest.mark.parametrize("dst", NOT_JOINED)
def test_group_not_joined_makes_no_entry(dst: str) -> None:
    table = ConntrackTable()
    assert table.process(datagram(dst)) == IGNORE
    assert table.process(datagram(dst, ts=1.1)) == IGNORE
    assert len(table) == 0 and table.counters["multicast-not-joined"] == 2


@pytest.mark.parametrize("dst", DELIVERED)
def test_delivered_destinations_make_entries(dst: str) -> None:
    table = ConntrackTable()
    assert table.process(datagram(dst)) == ACCEPT and len(table) == 1


def test_igmp_report_and_query() -> None:
    table = ConntrackTable()
    assert table.process(datagram("224.0.0.22", proto=2)) == IGNORE  # IGMPv3 report
    assert table.process(datagram("224.0.0.1", proto=2)) == ACCEPT  # query to all-systems
    assert len(table) == 1


@pytest.mark.parametrize("dst", ["224.0.0.18", "224.0.0.251", "ff02::fb"])
def test_what_leaves_the_master_went_through_its_output_path(dst: str) -> None:
    """Its own VRRP adverts, mDNS, IGMP reports: confirmed (golden capture any_multicast)."""
    table = ConntrackTable()
    own = datagram(dst)
    own.hw = HW_FROM_MASTER
    assert table.process(own) == ACCEPT and len(table) == 1
    arriving = datagram(dst, ts=1.1)
    arriving.src = arriving.src[:-1] + b"\x09"  # another host on the segment: no entry
    arriving.hw = HW_TO_MASTER
    assert table.process(arriving) == IGNORE and len(table) == 1


@pytest.mark.parametrize("dst", NOT_JOINED)
def test_track_mode_tracks_every_group(dst: str) -> None:
    table = ConntrackTable(multicast="track")
    assert table.process(datagram(dst)) == ACCEPT and len(table) == 1


@pytest.mark.parametrize("mode", ["drop", "track"])
def test_interface_local_group_never_reaches_conntrack(mode: str) -> None:
    table = ConntrackTable(multicast=mode)
    assert table.process(datagram("ff01::1")) == IGNORE and len(table) == 0


def test_unknown_mode_refused() -> None:
    with pytest.raises(ValueError):
        ConntrackTable(multicast="route")


@pytest.mark.parametrize("dst", NOT_JOINED + DELIVERED[:-1])
def test_agent_never_installs_group_or_broadcast_entries(dst: str) -> None:
    """Even an entry that looks answered and forwarded stays out of the kernel. (A subnet's
    broadcast address cannot be told from a host's without the router's subnets; nothing
    ever answers from it, so its entry never sees a reply and stays out by that rule.)"""
    sender = FakeSender()
    inst = Installer(sender)
    table = ConntrackTable(multicast="track", listener=inst.on_event)
    table.process(datagram(dst))
    (conn,) = table.conns()
    conn.status |= IPS_SEEN_REPLY
    conn.forwarded = True
    inst.on_event("update", conn)
    assert inst.flush(1.2) == 0 and sender.sent == []


def test_unicast_control_is_installed() -> None:
    sender = FakeSender()
    inst = Installer(sender)
    table = ConntrackTable(listener=inst.on_event)
    table.process(datagram("198.51.100.1"))
    (conn,) = table.conns()
    conn.status |= IPS_SEEN_REPLY
    inst.on_event("update", conn)
    inst.flush(1.2)
    assert len(sender.sent) == 1
