"""Issue 13 point 5 (review finding 10): expectations whose master is not installed (a flood
of unconfirmed FTP flows) are bounded and indexed, so a flush never walks them all.
Operations are counted (lookups in the installer's shadow), not timed."""

from __future__ import annotations

from typing import Any

from sniffover.agent.pipeline import helper_listener
from sniffover.conntrack.entry import Conn
from sniffover.conntrack.expect import Expectation
from sniffover.conntrack.helpers import HelperFollower
from sniffover.kernel.expect import SWEEP, WAITING_MAX, ExpectInstaller
from sniffover.kernel.installer import Installer
from tests.helpers import FakeSender

FULL4 = b"\xff" * 4
N = 100_000


class CountingShadow(dict):  # type: ignore[type-arg]
    """The installer's shadow, counting every lookup a flush makes in it."""

    lookups = 0

    def __contains__(self, key: object) -> bool:
        CountingShadow.lookups += 1
        return super().__contains__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        CountingShadow.lookups += 1
        return super().get(key, default)


def ftp_flow(i: int) -> tuple[tuple[int, bytes, bytes, int, int], Expectation]:
    """The i-th FTP control flow (198.51.100.x:port -> 192.0.2.21:21) and its PORT."""
    client = bytes([198, 51, 100, i % 256])
    server = bytes([192, 0, 2, 21])
    master = (6, client, server, 1024 + i // 256, 21)
    exp = Expectation(
        master, (6, server, client, 0, 2000), (6, FULL4, FULL4, 0, 0xFFFF), 0.0, "PORT"
    )
    return master, exp


def setup(n: int) -> tuple[FakeSender, Installer, ExpectInstaller, list[Any]]:
    sock = FakeSender()
    inst = Installer(sock=sock, helpers=["ftp"])  # type: ignore[arg-type]
    inst.shadow = CountingShadow()
    ex = ExpectInstaller(sock, inst)  # type: ignore[arg-type]
    flows = [ftp_flow(i) for i in range(n)]
    for _, exp in flows:
        ex.add(exp)
    return sock, inst, ex, flows


def test_a_flush_with_100k_unconfirmed_ftp_flows_does_not_scan_them():
    sock, inst, ex, flows = setup(N)
    for t in range(1, 11):
        CountingShadow.lookups = 0
        assert ex.flush(float(t)) == 0
        assert CountingShadow.lookups <= SWEEP, CountingShadow.lookups
    assert not sock.sent
    # a master installed later (its table event touched it): sent at the next flush, and
    # still without a walk
    master, exp = flows[7_777]
    inst.shadow[master] = None
    ex.touched(master)
    CountingShadow.lookups = 0
    assert ex.flush(11.0) == 1 and ex.installed == {master: exp}
    assert CountingShadow.lookups <= SWEEP + 4
    # they age out in slices, never all at once
    CountingShadow.lookups = 0
    ex.flush(exp.expires + 1)
    assert CountingShadow.lookups <= SWEEP + 4


def test_unconfirmed_expectations_are_bounded():
    sock, inst, ex, flows = setup(N)
    assert len(ex.waiting) == WAITING_MAX and ex.pending <= WAITING_MAX
    assert ex.counters["expect-waiting-full"] == N - WAITING_MAX
    # a master already in the kernel is never refused for room
    master, exp = ftp_flow(N + 1)
    inst.shadow[master] = None
    ex.add(exp)
    assert ex.flush(1.0) == 1 and master in ex.installed


def test_a_master_installed_without_an_event_is_found_by_the_sweep_or_promotion():
    sock, inst, ex, flows = setup(10 * SWEEP)
    master, exp = flows[-1]
    inst.shadow[master] = None  # no touched(): only the rotation can find it
    sent = sum(ex.flush(1.0 + i) for i in range(10))
    assert sent == 1 and master in ex.installed
    master2, exp2 = flows[-2]
    inst.shadow[master2] = None
    assert ex.flush(20.0, everything=True) == 1 and master2 in ex.installed  # promotion


def test_the_helper_listener_touches_waiting_masters():
    sock, inst, ex, flows = setup(3)
    master, exp = flows[1]
    listener = helper_listener(inst, HelperFollower(names=("ftp",)), ex)
    conn = Conn(master, (6, master[2], master[1], 21, master[3]), 0.0)
    listener("update", conn)
    assert ex.woken == {master}
    inst.shadow[master] = None  # what the installer's flush did with it
    assert ex.flush(1.0) == 1 and master in ex.installed
