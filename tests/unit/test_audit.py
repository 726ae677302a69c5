"""The self-audit's comparison (conntrack.audit) and its runner / command (sniffover.audit)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from sniffover.agent.auditing import AuditController
from sniffover.agent.config import AgentConfig
from sniffover.cli import main
from sniffover.conntrack.audit import compare
from sniffover.conntrack.entry import IPS_ASSURED, IPS_CONFIRMED, IPS_SEEN_REPLY
from sniffover.conntrack.snapshot import SnapshotEntry, SnapshotExpectation
from sniffover.conntrack.states import (
    TCP_CLOSE_WAIT,
    TCP_ESTABLISHED,
    TCP_FIN_WAIT,
    TCP_SYN_SENT,
    TCP_TIME_WAIT,
)
from sniffover.prime.audit import LocalDump, run_audit

C = bytes((192, 0, 2, 10))
S = bytes((198, 51, 100, 10))
VIP = bytes((198, 51, 100, 1))
SYNC = bytes((203, 0, 113, 1))
OK = IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED


def tcp(
    sport: int, state: int = TCP_ESTABLISHED, *, zone: int = 0, nat: bytes | None = None, t=300
) -> SnapshotEntry:
    reply_dst = nat or C
    return SnapshotEntry(
        (6, C, S, sport, 80), (6, S, reply_dst, 80, sport), OK, t, state, zone=zone
    )


def udp(sport: int, status: int = OK, dst: bytes = S) -> SnapshotEntry:
    return SnapshotEntry((17, C, dst, sport, 53), (17, dst, C, 53, sport), status, 30)


def test_identical_tables_have_no_difference() -> None:
    table = [tcp(40000 + i) for i in range(20)] + [udp(50000)]
    r = compare(table, table, table)
    assert r.total == 0 and r.compared == 21
    assert r.summary().startswith("audit: 0 differences (0 missing, 0 extra, 0 state, 0 nat")


def test_missing_only_what_the_policy_installs_and_will_not_expire() -> None:
    master = [
        tcp(40000),  # missing
        tcp(40001, TCP_SYN_SENT),  # handshake: never installed
        udp(50000, IPS_CONFIRMED),  # unreplied: never installed
        udp(50001, OK, dst=bytes((224, 0, 0, 251))),  # group destination
        tcp(40002, t=2),  # about to expire (2 s left, window 3 s)
        tcp(40003),  # present
    ]
    here = [tcp(40003)]
    r = compare(master, here, here, window=3.0)
    assert r.counts["missing"] == 1 and r.total == 1
    assert r.excluded["policy"] == 3 and r.excluded["expiring"] == 1
    assert r.samples["missing"] == ["6 192.0.2.10:40000 -> 198.51.100.10:80 zone 0 ESTABLISHED"]


def test_young_flow_rule_extra_only_when_held_before_and_after() -> None:
    master = [tcp(40000)]
    before = [tcp(40000), tcp(40001)]  # 40001: held before the master's dump
    after = [tcp(40000), tcp(40001), tcp(40002)]  # 40002: appeared after the first dump
    r = compare(master, before, after)
    assert r.counts["extra"] == 1 and r.excluded["young"] == 1
    # gone here by the second dump (the deletion was mirrored within the lag): no difference
    assert compare(master, before, [tcp(40000)]).total == 0


def test_state_compared_by_phase_and_by_dump_order() -> None:
    est, fin, cw, tw = (
        tcp(40000, s) for s in (TCP_ESTABLISHED, TCP_FIN_WAIT, TCP_CLOSE_WAIT, TCP_TIME_WAIT)
    )
    # the standby behind the master lag seconds later: a difference
    r = compare([fin], [est], [est])
    assert r.counts["state"] == 1 and r.samples["state"][0].endswith("FIN_WAIT vs ESTABLISHED")
    # moved on after the master's dump: fine
    assert compare([est], [est], [tw]).total == 0
    # a pure-ACK step inside a phase (a prefiltered capture may miss the ACK): fine
    assert compare([cw], [fin], [fin]).total == 0
    # ahead of the master before its dump: invented a transition
    r = compare([est], [tw], [tw])
    assert r.counts["state"] == 1 and "(before: TIME_WAIT)" in r.samples["state"][0]
    # UDP: ASSURED on the master, not here
    r = compare(
        [udp(1)], [udp(1, IPS_CONFIRMED | IPS_SEEN_REPLY)], [udp(1, IPS_CONFIRMED | IPS_SEEN_REPLY)]
    )
    assert r.counts["state"] == 1


def test_nat_mapping_and_reversed_entries() -> None:
    master = [tcp(40000, nat=VIP), tcp(40001)]
    rev = tcp(40001)
    flipped = SnapshotEntry(rev.reply, rev.orig, OK, 300, TCP_ESTABLISHED)
    here = [tcp(40000), flipped]
    r = compare(master, here, here)
    assert r.counts["nat"] == 2 and r.total == 2, r.as_dict()
    assert any("held reversed" in s for s in r.samples["nat"])


def test_zones_never_mix() -> None:
    r = compare([tcp(40000, zone=5)], [tcp(40000)], [tcp(40000)])
    assert r.counts == {**r.counts, "missing": 1, "extra": 1}
    assert r.by_zone[5]["missing"] == 1 and r.by_zone[0]["extra"] == 1
    assert compare([tcp(40000, zone=5)], [tcp(40000, zone=5)], [tcp(40000, zone=5)]).total == 0


def test_own_traffic_left_out_on_both_sides() -> None:
    sync = SnapshotEntry(
        (6, bytes((203, 0, 113, 2)), SYNC, 40000, 7445),
        (6, SYNC, bytes((203, 0, 113, 2)), 7445, 40000),
        OK,
        300,
        TCP_ESTABLISHED,
    )
    r = compare([sync, tcp(1)], [tcp(1)], [tcp(1)], local={SYNC})
    assert r.total == 0 and r.excluded["local-master"] == 1
    assert compare([sync, tcp(1)], [tcp(1)], [tcp(1)]).counts["missing"] == 1  # the control


def exp(sport: int, port: int, timeout: int = 290) -> SnapshotExpectation:
    master = (6, C, S, sport, 21)
    return SnapshotExpectation(master, (6, C, S, 0, port), (6, C, S, 0, 0xFFFF), timeout, "ftp")


def test_expectations() -> None:
    ctl = SnapshotEntry((6, C, S, 40000, 21), (6, S, C, 21, 40000), OK, 300, TCP_ESTABLISHED)
    ctl2 = SnapshotEntry((6, C, S, 40001, 21), (6, S, C, 21, 40001), OK, 300, TCP_ESTABLISHED)
    e1, e2 = exp(40000, 5000), exp(40001, 5001)
    r = compare(
        [ctl, ctl2],
        [ctl, ctl2],
        [ctl, ctl2],
        master_exps=[e1, e2],
        before_exps=[e2],
        after_exps=[e2],
    )
    assert r.counts["expect_missing"] == 1 and r.total == 1
    # consumed: its data connection exists (here, or on the master)
    data = SnapshotEntry((6, C, S, 33333, 5000), (6, S, C, 5000, 33333), OK, 300, TCP_ESTABLISHED)
    r = compare(
        [ctl, ctl2, data],
        [ctl, ctl2],
        [ctl, ctl2, data],
        master_exps=[e1, e2],
        before_exps=[e2],
        after_exps=[e2],
    )
    assert r.total == 0 and r.excluded["expect-consumed"] == 1
    # held here before and after, never on the master
    r = compare(
        [ctl, ctl2],
        [ctl, ctl2],
        [ctl, ctl2],
        master_exps=[e2],
        before_exps=[e1, e2],
        after_exps=[e1, e2],
    )
    assert r.counts["expect_extra"] == 1
    # no expectation dump here: not compared
    r = compare([ctl], [ctl], [ctl], master_exps=[e1])
    assert r.total == 0 and r.excluded["expect-not-compared"] == 1


def test_run_audit_dumps_before_and_lag_after_the_pull() -> None:
    calls: list[str] = []
    now = [0.0]
    tables = iter([[tcp(1), tcp(2)], [tcp(1), tcp(2), tcp(3)]])

    def dump() -> LocalDump:
        calls.append(f"dump@{now[0]:g}")
        return LocalDump(next(tables), [])

    def fetch(source, key, **kw):
        calls.append(f"pull@{now[0]:g}")
        now[0] += 1.0
        return SimpleNamespace(entries=[tcp(1)], expectations=[], bytes=100)

    def sleep(s: float) -> None:
        now[0] += s

    r, t = run_audit("m", b"k", lag=2.0, fetch=fetch, dump=dump, sleep=sleep, clock=lambda: now[0])
    assert calls == ["dump@0", "pull@0", "dump@3"]
    assert r.counts["extra"] == 1 and r.excluded["young"] == 1 and t["pull_seconds"] == 1.0


@pytest.mark.parametrize(
    "argv",
    [
        ["audit"],
        ["audit", "--against", "foo/bar", "--key-file", "k"],
        ["audit", "--against", "file:/tmp/x"],
        ["audit", "--against", "192.0.2.1"],
        ["audit", "--against", "192.0.2.1:0", "--key-file", "k"],
        ["audit", "--against", "192.0.2.1", "--key-file", "k", "--lag", "-1"],
        ["audit", "--against", "192.0.2.1", "--key-file", "k", "--max-differences", "-3"],
        ["audit", "--against", "192.0.2.1", "--key-file", "k", "--lag", "x"],
    ],
)
def test_bad_input_is_one_line(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sniffover"), err


def test_unreadable_key_exits_1(capsys) -> None:
    assert main(["audit", "--against", "192.0.2.1", "--key-file", "/nonexistent/k"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_agent_audits_every_interval(caplog) -> None:
    cfg = AgentConfig(ifaces=["x"], prime_from="192.0.2.1", audit_interval=60.0)
    r = compare([tcp(1), tcp(2)], [tcp(1)], [tcp(1)])
    runs: list[int] = []

    def run():
        runs.append(1)
        return r, {"seconds": 2.5}

    ctl = AuditController(cfg, b"key", run)
    ctl.tick(0.0, 1000.0, busy=False)  # arms: the first a full interval after start
    ctl.tick(59.0, 1059.0, busy=False)
    assert ctl.thread is None and not runs
    ctl.tick(60.0, 1060.0, busy=True)  # a prime pull runs: waits
    assert ctl.thread is None
    with caplog.at_level(logging.INFO, logger="sniffover.agent"):
        ctl.tick(61.0, 1061.0, busy=False)
        assert ctl.thread is not None
        ctl.thread.join(5)
        ctl.tick(62.0, 1062.0, busy=False)
    assert runs == [1] and ctl.info["missing"] == 1 and ctl.info["at"] == 1062.0
    assert any("audit: 1 differences (1 missing" in m for m in caplog.messages)
    # a failed audit: one line, counted
    ctl.run = lambda: (_ for _ in ()).throw(OSError("refused"))
    ctl.next = 0.0
    ctl.tick(200.0, 1200.0, busy=False)
    ctl.thread.join(5)  # type: ignore[union-attr]
    ctl.tick(201.0, 1201.0, busy=False)
    assert ctl.info["ok"] is False and ctl.info["failures"] == 1 and ctl.info["missing"] == 1
