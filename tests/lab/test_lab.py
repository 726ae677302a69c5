"""The failover lab itself, and the control run: a failover without any state sync."""

from __future__ import annotations

import re
import time

import pytest

from sniffover.lab.hub import (
    FW_SYNC,
    INSIDE_VIP,
    OUTSIDE_VIP,
    Lab,
    LabError,
    client_ip,
    list_netns,
    server_ip,
)

pytestmark = pytest.mark.requires("ip", "nft", "conntrack", "ping")


def flows_to(table: str, client: str, server: str, dport: int, proto: str) -> set[int]:
    """Source ports of ``proto`` entries client -> server:dport in ``conntrack -L`` text."""
    ports = set()
    for line in table.splitlines():
        if not line.startswith(proto):
            continue
        m = re.search(
            rf"src={re.escape(client)} dst={re.escape(server)} sport=(\d+) dport={dport}\b", line
        )
        if m:
            ports.add(int(m.group(1)))
    return ports


def own_namespaces(lab: Lab) -> list[str]:
    return [n for n in list_netns() if n.startswith(lab.prefix + "-")]


def test_control_failover_without_sync() -> None:
    """Through fw1 everything works; after a failover to fw2 with no state, TCP dies."""
    t0 = time.monotonic()
    lab = Lab(clients=1, servers=1)
    with lab:
        assert len(own_namespaces(lab)) == 3 + 2
        # plumbing sanity: sync link, firewall sysctls and ruleset
        assert lab.ping("fw1", FW_SYNC["fw2"])
        for fw in ("fw1", "fw2"):
            assert lab.read_sysctl(fw, "net.netfilter.nf_conntrack_tcp_loose") == "0"
            assert lab.read_sysctl(fw, "net.ipv4.ip_forward") == "1"
            rules = lab.run(fw, "nft", "list", "chain", "inet", "snflab", "forward_filter").stdout
            assert "policy drop" in rules
        lab.start_server("s1", duration=60)
        cl = lab.traffic_client("c1", tcp=20, udp=5, duration=60)
        try:
            assert cl.initial["tcp_ok"] == 20 and cl.initial["udp_ok"] == 5, cl.initial
            before = cl.probe()
            assert (before["tcp_ok"], before["udp_ok"]) == (20, 5), before
            sports = cl.info()
            c, s = client_ip(1), server_ip(1)
            fw1 = lab.conntrack("fw1")
            fw2 = lab.conntrack("fw2")
            assert flows_to(fw1, c, s, 8000, "tcp") == set(sports["tcp_sports"])
            assert flows_to(fw1, c, s, 9000, "udp") == set(sports["udp_sports"])
            assert not flows_to(fw2, c, s, 8000, "tcp")
            assert not flows_to(fw2, c, s, 9000, "udp")
            assert lab.fw_counters("fw2").get("new_accept") == 0

            t_fail = time.monotonic()
            took = lab.failover()
            assert took < 5
            after = cl.probe()
            probe_s = time.monotonic() - t_fail
            print(
                f"control: took {took:.2f}s, after failover {after}, probe+failover {probe_s:.2f}s"
            )
            # no state on fw2: every old TCP connection's segments are INVALID -> dropped
            assert after["tcp_ok"] == 0 and after["tcp_total"] == 20, after
            assert lab.fw_counters("fw2")["invalid_drop"] >= 20
            # UDP: the client speaks first, so fw2 creates fresh state from inside (accepted
            # as "new"); the old UDP flows survive even without sync
            assert after["udp_ok"] == 5, after
            fw2 = lab.conntrack("fw2")
            assert not flows_to(fw2, c, s, 8000, "tcp")
            assert flows_to(fw2, c, s, 9000, "udp") == set(sports["udp_sports"])
            # the VIPs moved: a new connection goes through fw2
            fresh = cl.open(1)
            assert fresh["tcp_ok"] == 1, fresh
            assert lab.ping("c1", s)
            assert len(flows_to(lab.conntrack("fw2"), c, s, 8000, "tcp")) == 1
            # fw1 is off the hub: its table did not see the new connection
            assert len(flows_to(lab.conntrack("fw1"), c, s, 8000, "tcp")) == 20
            # the old connections stay dead
            again = cl.probe()
            assert again["tcp_ok"] == 1 and again["tcp_total"] == 21, again
            assert cl.close(1) == {"closed": 1}
        finally:
            cl.stop()
        addrs = lab.run("fw2", "ip", "-4", "-o", "addr", "show").stdout
        assert INSIDE_VIP in addrs and OUTSIDE_VIP in addrs
    assert own_namespaces(lab) == []
    assert time.monotonic() - t0 < 40


def test_failback_and_cleanup_on_error() -> None:
    lab = Lab()
    with pytest.raises(LabError), lab:
        lab.failover(verify=True)
        lab.failback(verify=True)
        assert "192.0.2.1" not in lab.run("fw2", "ip", "-4", "-o", "addr").stdout
        lab.run("c1", "false")  # a failing command raises, the lab is torn down anyway
    assert own_namespaces(lab) == []
    assert not any(n.startswith(lab.prefix + "-") for n in list_netns())
