"""The agent's own policy without root: promotion and demotion, the prime controller
(cold absorb, adopt over a live table, failure and retry, --prime-required, re-prime after
capture drops), status readiness, the two-segment reorder merge and the prefilter warm-up
switch. Sockets, captures and the clock are fakes injected into ``Agent``."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections import Counter
from typing import Any

import pytest

from sniffover.agent.config import AgentConfig
from sniffover.agent.control import Peer, Request
from sniffover.agent.daemon import Agent
from sniffover.agent.pipeline import REORDER, release_held
from sniffover.agent.priming import PRIME_AFTER_DROPS, PRIME_RETRY
from sniffover.agent.util import Clock
from sniffover.capture.defrag import Reassembler
from sniffover.conntrack.snapshot import SnapshotEntry, SnapshotExpectation
from sniffover.errors import PrimeError
from sniffover.prime.client import Snapshot
from tests.helpers import A, B, FakeSender, udp


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()  # PrimeStage stamps entries with the real clock
        self.mono_now = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono_now += seconds

    def clock(self) -> Clock:
        return Clock(wall=lambda: self.now, mono=lambda: self.mono_now)


class FakeSock(FakeSender):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def check_writable(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class FakeDecoder:
    def __init__(self) -> None:
        self.master: frozenset[bytes] = frozenset()
        self.skipped: Counter[str] = Counter()
        self.digests = True
        self.defrag = Reassembler()


class FakeCapture:
    def __init__(self, iface: str, bpf: str) -> None:
        self.iface = iface
        self.decoder = FakeDecoder()
        self.frames = 0
        self.learner: Any = None
        self.ingress_keys: Any = None
        self.filters = [bpf]
        self.queue: list[Any] = []
        self.dropped = 0
        self.closed = False

    def set_filter(self, bpf: str) -> None:
        self.filters.append(bpf)

    def fileno(self) -> int:
        return -1

    def read(self) -> list[Any]:
        got, self.queue = self.queue, []
        self.frames += len(got)
        return got

    def stats(self) -> tuple[int, int, int]:
        return (self.frames, self.dropped, 0)

    def close(self) -> None:
        self.closed = True


class FakeControl:
    """One request per ``service`` call, from root unless ``uid`` says otherwise."""

    def __init__(self, path: str | None, group: Any = None, **kw: Any) -> None:
        self.path = path or "fake"
        self.answers: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.held: list[Request] = []
        self.uid = 0

    def fds(self) -> list[Any]:
        return []

    def service(self, ready: Any) -> list[Request]:
        if not self.requests:
            return []
        return [Request(None, Peer(1, self.uid, self.uid), 0.0, command=self.requests.pop(0))]

    def hold(self, req: Request) -> None:
        self.held.append(req)

    def answer(self, req: Request, doc: dict[str, Any]) -> None:
        if req in self.held:
            self.held.remove(req)
        self.answers.append(doc)

    def close(self) -> None:
        pass

    def fileno(self) -> int:
        return -1


class Pulls:
    """A fake ``fetch``: each call takes the next outcome (entries or an exception)."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.gate: threading.Event | None = None

    def __call__(self, source: str, key: Any, timeout: float, sink: Any) -> Snapshot:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(5)
        outcome = self.outcomes.pop(0) if self.outcomes else PrimeError("no more pulls")
        if isinstance(outcome, Exception):
            raise outcome
        taken_at = time.time()
        sink.begin()
        sink.add(taken_at, outcome)
        return Snapshot([], taken_at, source, 100, 0.01, [], len(outcome))


def entry(port: int, timeout: int = 29) -> SnapshotEntry:
    """A replied UDP entry (CONFIRMED | SEEN_REPLY): one the installer puts in."""
    return SnapshotEntry((17, A, B, port, 53), (17, B, A, 53, port), 0xA, timeout)


def flow(ts: float, port: int) -> list[Any]:
    """A UDP request and its answer: an entry the installer puts in."""
    return [udp(ts, sport=port), udp(ts + 0.001, src=B, dst=A, sport=53, dport=port)]


def make(
    fc: FakeClock, pulls: Pulls | None = None, ifaces: tuple[str, ...] = ("in0",), **kw: Any
) -> tuple[Agent, dict[str, list[FakeCapture]]]:
    opened: dict[str, list[FakeCapture]] = {}

    def open_capture(iface: str, snaplen: int, ring: int, bpf: str) -> FakeCapture:
        cap = FakeCapture(iface, bpf)
        opened.setdefault(iface, []).append(cap)
        return cap

    kw.setdefault("confirm", "off")
    kw.setdefault("exclude_self", False)
    # run as root, start() would drop this test process's capabilities for good (and every
    # later test's, lab tests and child processes included)
    kw.setdefault("drop_privileges", False)
    cfg = AgentConfig(ifaces=list(ifaces), **kw)
    agent = Agent(
        cfg,
        clock=fc.clock(),
        ctnl_socket=FakeSock,
        open_capture=open_capture,  # type: ignore[arg-type]
        control_server=FakeControl,  # type: ignore[arg-type]
        fetch=pulls or Pulls(),
    )
    return agent, opened


def sniff(agent: Agent, cap: FakeCapture, *packets: Any) -> None:
    cap.queue += packets
    agent.read_ready([cap])


def wait_pull(agent: Agent) -> None:
    thread = agent.priming.thread
    assert thread is not None
    thread.join(5)
    agent.after_events()


class PullsWithExpectations(Pulls):
    def __init__(self, entries: list[SnapshotEntry], exps: list[SnapshotExpectation]) -> None:
        super().__init__(entries)
        self.exps = exps

    def __call__(self, source: str, key: Any, timeout: float, sink: Any) -> Snapshot:
        snap = super().__call__(source, key, timeout, sink)
        snap.expectations = self.exps
        return snap


def test_primed_expectation_of_a_snat_master_is_installed_with_its_nat() -> None:
    """An FTP control connection through SNAT with a PORT outstanding on the master: the
    prime's expectation goes into the kernel with CTA_EXPECT_NAT and "nat-follow-master"
    (without them the server's data connection to the NAT address is not translated
    back); one with another expectfn is left out (untranslated it would be wrong)."""
    from sniffover.kernel.ctnetlink import IPCTNL_MSG_EXP_NEW
    from sniffover.kernel.dump import decode_expectation

    fc = FakeClock()
    c, s, n, zero = bytes([192, 0, 2, 10]), bytes([203, 0, 113, 5]), B, bytes(4)
    full = b"\xff" * 4
    ftp = SnapshotEntry((6, c, s, 40000, 21), (6, s, n, 21, 40000), 0xE, 300, tcp_state=3)
    other = SnapshotEntry((6, c, s, 40001, 21), (6, s, n, 21, 40001), 0xE, 300, tcp_state=3)
    nat = SnapshotExpectation(
        ftp.orig, (6, s, n, 0, 50000), (6, full, full, 0, 0xFFFF), 250, "ftp",
        nat_dir=1, nat_tuple=(6, zero, zero, 50000, 0), fn="nat-follow-master",
    )  # fmt: skip
    sip = SnapshotExpectation(
        other.orig, (6, s, n, 0, 50001), (6, full, full, 0, 0xFFFF), 250, "ftp",
        nat_dir=1, nat_tuple=(6, zero, zero, 50001, 0), fn="sip",
    )  # fmt: skip
    agent, _ = make(fc, PullsWithExpectations([ftp, other], [nat, sip]), prime_from="master")
    agent.start()
    wait_pull(agent)
    assert agent.priming.info["expectations_queued"] == 1
    assert agent.priming.counters["prime-expect-other-fn"] == 1
    agent.pipeline.flush(fc.now)
    sock = agent.pipeline.sock
    exp_new = (2 << 8) | IPCTNL_MSG_EXP_NEW  # NFNL_SUBSYS_CTNETLINK_EXP
    sent = [m for m in sock.sent if struct.unpack_from("=H", m, 4)[0] == exp_new]
    assert len(sent) == 1, sock.sent
    got = decode_expectation(sent[0], 0, len(sent[0]))
    assert (got.master, got.tuple, got.nat_dir, got.nat_tuple, got.fn) == (
        ftp.orig, nat.tuple, 1, nat.nat_tuple, "nat-follow-master",
    )  # fmt: skip


def test_primed_expectation_of_a_zoned_master_is_installed_in_its_zone() -> None:
    """Two masters with one ORIGINAL tuple in zones 5 and 6 (VRFs reusing addresses), each
    with its expectation (serve gave each its zone): both go in, each with its
    CTA_EXPECT_ZONE; one whose zone holds no such master is not installed."""
    from sniffover.kernel.ctnetlink import CTA_EXPECT_ZONE, IPCTNL_MSG_EXP_NEW
    from sniffover.kernel.dump import iter_attrs

    fc = FakeClock()
    c, s = bytes([192, 0, 2, 10]), bytes([203, 0, 113, 5])
    full = b"\xff" * 4
    masters = [
        SnapshotEntry((6, c, s, 40000, 21), (6, s, c, 21, 40000), 0xE, 300, tcp_state=3, zone=z)
        for z in (5, 6)
    ]
    exps = [
        SnapshotExpectation(
            masters[0].orig, (6, c, s, 0, p), (6, full, full, 0, 0xFFFF), 250, "ftp", zone=z
        )
        for p, z in ((50000, 5), (50001, 6), (50002, 7))
    ]
    agent, _ = make(fc, PullsWithExpectations(masters, exps), prime_from="master")
    agent.start()
    wait_pull(agent)
    assert agent.priming.info["expectations_queued"] == 2
    assert agent.priming.counters["prime-expect-no-master"] == 1
    agent.pipeline.flush(fc.now)
    exp_new = (2 << 8) | IPCTNL_MSG_EXP_NEW
    zones = sorted(
        int.from_bytes(m[s:e], "big")
        for m in agent.pipeline.sock.sent
        if struct.unpack_from("=H", m, 4)[0] == exp_new
        for k, s, e in iter_attrs(m, 20, len(m))
        if k == CTA_EXPECT_ZONE
    )
    assert zones == [5, 6]


# --- promotion and demotion --------------------------------------------------------------


def test_promotion_installs_everything_and_stands_down():
    fc = FakeClock()
    agent, opened = make(fc)
    agent.start()
    cap = opened["in0"][0]
    sniff(agent, cap, *flow(fc.now, 5001), *flow(fc.now, 5002))
    sock = agent.sock
    assert isinstance(sock, FakeSock) and sock.sent == []  # not flushed yet
    doc = agent.promote()
    assert doc["ok"] and doc["state"] == "active" and doc["installed"] == 2
    assert doc["committed"] == len(sock.sent) == 2
    assert cap.closed and agent.captures.captures == []
    s = agent.status()
    assert s["state"] == "active" and s["ok"] and not s["capturing"] and s["installed"] == 2


def test_promotion_drains_the_rings_first():
    fc = FakeClock()
    agent, opened = make(fc)
    agent.start()
    opened["in0"][0].queue += flow(fc.now, 5003)  # read by the promotion itself
    assert agent.promote()["installed"] == 1


def test_demotion_is_a_fresh_standby():
    fc = FakeClock()
    pulls = Pulls([entry(7000)], [entry(7001)])
    agent, opened = make(fc, pulls, prime_from="master")
    agent.start()
    wait_pull(agent)
    sniff(agent, opened["in0"][0], *flow(fc.now, 5001))
    agent.promote()
    assert agent.demote() == {"ok": True, "state": "standby"}
    assert len(agent.pipeline.table) == 0  # empty tracker, new installer
    assert agent.pipeline.installer is not None and len(agent.pipeline.installer.shadow) == 0
    assert len(opened["in0"]) == 2 and not opened["in0"][1].closed  # captures reopened
    assert agent.priming.primed is False and agent.priming.thread is not None
    assert agent.pipeline.hold == []  # sniffed packets wait for the pull
    assert agent.status()["state"] == "standby" and not agent.status()["ok"]
    wait_pull(agent)
    assert agent.status()["ok"] and len(agent.pipeline.table) == 1
    assert agent.demote()["note"] == "already standby"


def test_control_commands():
    fc = FakeClock()
    agent, _ = make(fc)
    agent.start()
    control = agent.control
    assert isinstance(control, FakeControl)
    control.requests += ["status", "prime", "bogus", "promote", "promote"]
    for _ in range(5):
        agent.handle_control([])
    status, prime, bogus, promoted, again = control.answers
    assert status["state"] == "standby" and status["ok"]
    assert prime == {"ok": False, "error": "no --prime-from configured"}
    assert bogus == {"ok": False, "error": "unknown command 'bogus'"}
    assert promoted["state"] == "active" and "committed" in promoted
    assert again == {"ok": True, "state": "active"}


# --- priming -----------------------------------------------------------------------------


def test_cold_start_absorbs_the_snapshot_and_commits_it():
    fc = FakeClock()
    pulls = Pulls([entry(p) for p in range(7000, 7010)])
    gate = pulls.gate = threading.Event()
    agent, opened = make(fc, pulls, prime_from="master")
    agent.start()
    assert agent.status()["primed"] is False and not agent.status()["ok"]
    sniff(agent, opened["in0"][0], *flow(fc.now, 5001))  # held while the pull runs
    assert len(agent.pipeline.table) == 0 and agent.pipeline.packets == 2
    gate.set()
    wait_pull(agent)
    info = agent.priming.info
    assert info["ok"] and info["entries"] == 10 and info["adopted"] == 10
    assert len(agent.pipeline.table) == 11  # the held packet applied after the snapshot
    assert agent.pipeline.packets == 2  # not counted twice
    inst = agent.pipeline.installer
    assert inst is not None and len(inst.shadow) == 11  # committed, then the held one flushed
    assert agent.status()["ok"] and agent.status()["primed"] is True


def test_reprime_over_a_live_table_adopts_only_what_is_new():
    fc = FakeClock()
    pulls = Pulls([], [entry(5001, timeout=100), entry(7000)])
    agent, opened = make(fc, pulls, prime_from="master")
    agent.start()
    wait_pull(agent)  # empty snapshot
    sniff(agent, opened["in0"][0], *flow(fc.now, 5001))
    before = agent.pipeline.table.get((17, A, B, 5001, 53))
    assert before is not None
    assert agent.priming.start(buffer=False)
    wait_pull(agent)
    assert agent.priming.info["adopted"] == 1 and len(agent.pipeline.table) == 2
    after = agent.pipeline.table.get((17, A, B, 5001, 53))
    assert after is not None and after[0] is before[0]  # the sniffed entry wins


def test_prime_failure_retries_after_prime_retry():
    fc = FakeClock()
    pulls = Pulls(PrimeError("connection refused"), [entry(7000)])
    agent, _ = make(fc, pulls, prime_from="master")
    agent.start()
    wait_pull(agent)
    assert agent.priming.info == {"ok": False, "error": "connection refused"}
    assert agent.counters["prime-failed"] == 1 and not agent.status()["ok"]
    fc.advance(PRIME_RETRY - 1)
    agent.tick()
    assert pulls.calls == 1 and agent.priming.thread is None
    fc.advance(1)
    agent.tick()
    assert pulls.calls == 2
    wait_pull(agent)
    assert agent.priming.info["ok"] and agent.status()["ok"]
    assert agent.priming.next is None


def test_prime_required_exits_when_the_first_pull_fails():
    fc = FakeClock()
    agent, _ = make(fc, Pulls(PrimeError("refused")), prime_from="master", prime_required=True)
    agent.start()
    with pytest.raises(PrimeError, match="prime from master failed: refused .--prime-required."):
        wait_pull(agent)


def test_prime_required_tolerates_a_later_failure():
    fc = FakeClock()
    pulls = Pulls([entry(7000)], PrimeError("refused"))
    agent, _ = make(fc, pulls, prime_from="master", prime_required=True)
    agent.start()
    wait_pull(agent)
    agent.priming.start(buffer=False)
    wait_pull(agent)  # no exception: the agent was primed once
    assert agent.counters["prime-failed"] == 1 and agent.priming.fatal is None


def test_reprime_after_drops_at_most_once_per_period():
    fc = FakeClock()
    pulls = Pulls([], [], [], [])
    agent, opened = make(fc, pulls, prime_from="master")
    agent.start()
    wait_pull(agent)
    cap = opened["in0"][0]
    agent.tick()
    assert pulls.calls == 1  # no drops, no pull
    cap.dropped = 5
    agent.tick()
    assert pulls.calls == 2
    wait_pull(agent)
    fc.advance(PRIME_AFTER_DROPS - 1)
    cap.dropped = 9
    agent.tick()
    assert pulls.calls == 2  # too soon
    fc.advance(1)
    agent.tick()
    assert pulls.calls == 2  # no new drops since
    cap.dropped = 10
    agent.tick()
    assert pulls.calls == 3


def test_no_reprime_after_drops_without_prime_from():
    fc = FakeClock()
    pulls = Pulls()
    agent, opened = make(fc, pulls)
    agent.start()
    opened["in0"][0].dropped = 5
    agent.tick()
    assert pulls.calls == 0 and agent.priming.thread is None


# --- status ------------------------------------------------------------------------------


def test_status_readiness_follows_lost_interfaces():
    fc = FakeClock()
    agent, opened = make(fc, ifaces=("in0", "out0"))
    agent.start()
    assert agent.status()["ok"] and agent.status()["capturing"]
    agent.captures.lost_one(opened["out0"][0], "out0: gone")
    s = agent.status()
    assert not s["ok"] and not s["capturing"] and s["lost_interfaces"] == ["out0"]
    assert s["agent"]["capture-lost"] == 1
    agent.tick()  # reopened
    s = agent.status()
    assert s["ok"] and s["lost_interfaces"] == [] and sorted(s["capture"]) == ["in0", "out0"]
    assert s["agent"]["capture-reopened"] == 1


def test_status_keys():
    fc = FakeClock()
    agent, _ = make(fc)
    agent.start()
    assert set(agent.status()) == {
        "ok", "state", "promoted_by", "capturing", "pid", "version", "build", "uptime",
        "interfaces", "zone_map", "packets",
        "last_packet_age", "flows", "installed", "pending", "primed", "prime", "audit", "capture",
        "install", "tracker", "agent", "confirm", "ftp", "prefilter", "lost_interfaces",
        "skipped",
    }  # fmt: skip
    assert agent.status()["primed"] is None and agent.status()["prefilter"] == "off"
    from sniffover import __version__
    from sniffover.conntrack import tcp

    compiled = not tcp.__file__.endswith(".py")
    assert agent.status()["version"] == __version__
    assert agent.status()["build"] == ("compiled" if compiled else "pure Python")


# --- reorder merge and warm-up ------------------------------------------------------------


def test_release_held_merges_in_timestamp_order_up_to_the_cutoff():
    a = [udp(1.0, sport=1), udp(3.0, sport=3), udp(5.0, sport=5)]
    b = [udp(2.0, sport=2), udp(4.0, sport=4)]
    held = {"in": list(a), "out": list(b)}
    assert [p.sport for p in release_held(held, 3.5)] == [1, 2, 3]
    assert [p.ts for p in held["in"]] == [5.0] and [p.ts for p in held["out"]] == [4.0]
    assert release_held(held, 3.9) == []
    assert [p.sport for p in release_held(held, float("inf"))] == [4, 5]
    assert held == {"in": [], "out": []}


def test_two_segments_hold_frames_for_the_reorder_window():
    fc = FakeClock()
    agent, opened = make(fc, ifaces=("in0", "out0"))
    agent.start()
    t = fc.now
    opened["out0"][0].queue.append(udp(t - 0.005, src=B, dst=A, sport=53, dport=5001))
    opened["in0"][0].queue.append(udp(t - 0.010, sport=5001))
    agent.read_ready(agent.captures.captures)
    assert agent.pipeline.packets == 0 and agent.pipeline.held() == 2  # within REORDER
    fc.advance(REORDER)
    agent.pipeline.release(fc.now - REORDER)
    assert agent.pipeline.packets == 2
    conn = agent.pipeline.table.get((17, A, B, 5001, 53))
    assert conn is not None and conn[0].orig[1] == A  # the earlier frame made the entry


@pytest.mark.parametrize(
    "confirm,ifaces,digests",
    [("auto", ("in0", "out0"), True), ("both", ("any0",), True), ("auto", ("in0",), False),
     ("mac", ("in0", "out0"), False), ("off", ("in0", "out0"), False)],
)  # fmt: skip
def test_payload_digests_only_where_copies_are_paired(confirm, ifaces, digests):
    """The decoders digest payloads (what pairs a datagram's copies across NAT) only when
    the confirmer pairs copies: elsewhere the CRC would only cost time."""
    agent, opened = make(
        FakeClock(), ifaces=ifaces, confirm=confirm, master_macs=["02:00:00:00:00:01"]
    )
    agent.start()
    assert [opened[i][0].decoder.digests for i in ifaces] == [digests] * len(ifaces)
    assert agent.pipeline.confirmer is None or agent.pipeline.confirmer.two_segments == digests


def test_prefilter_switches_after_the_warm_up():
    fc = FakeClock()
    agent, opened = make(fc, prefilter=True, warmup=30.0)
    agent.start()
    cap = opened["in0"][0]
    full, pre = agent.captures.bpf_full, agent.captures.bpf_pre
    assert pre and pre != full and "tcp port 21" in pre
    assert cap.filters == [full, pre, full]  # both compiled at start, full capture first
    assert agent.status()["prefilter"] == "warm-up"
    fc.advance(29.9)
    agent.tick()
    assert cap.filters[-1] == full and agent.status()["prefilter"] == "warm-up"
    fc.advance(0.1)
    agent.tick()
    assert cap.filters[-1] == pre and agent.status()["prefilter"] == "on"
    agent.tick()
    assert len(cap.filters) == 4  # switched once


def test_a_big_cold_start_commits_through_a_second_socket():
    fc = FakeClock()
    socks: list[FakeSock] = []

    def ctnl() -> FakeSock:
        socks.append(FakeSock())
        return socks[-1]

    n = 64 * 20  # 20 batches: the commit is split over two sockets from 16 on
    pulls = Pulls([entry(p) for p in range(10000, 10000 + n)])
    cfg = AgentConfig(ifaces=["in0"], confirm="off", exclude_self=False, prime_from="m",
                      drop_privileges=False)  # fmt: skip
    agent = Agent(
        cfg,
        clock=fc.clock(),
        ctnl_socket=ctnl,  # type: ignore[arg-type]
        open_capture=lambda i, s, r, b: FakeCapture(i, b),  # type: ignore[arg-type,return-value]
        control_server=FakeControl,  # type: ignore[arg-type]
        fetch=pulls,
    )
    agent.start()
    wait_pull(agent)
    assert len(socks) == 2 and socks[1].closed and not socks[0].closed
    assert len(socks[0].sent) + len(socks[1].sent) == n and len(socks[1].sent) > 0
    assert agent.pipeline.installer is not None and len(agent.pipeline.installer.shadow) == n


def test_the_prime_key_is_read_before_privileges_are_dropped(tmp_path: Any) -> None:
    """With --user the key file is unreadable once the agent has dropped privileges (the
    review's finding 8): it is read when the agent is built, before ``start`` drops."""
    key = tmp_path / "key"
    key.write_bytes(b"a key of at least sixteen bytes\n")
    key.chmod(0o600)
    seen: list[Any] = []
    pulls = Pulls([entry(10000)])

    def fetch(source: str, key: Any, timeout: float, sink: Any) -> Snapshot:
        seen.append(key)
        return pulls(source, key, timeout, sink)

    cfg = AgentConfig(ifaces=["in0"], confirm="off", exclude_self=False, prime_from="m",
                      key_file=str(key), drop_privileges=False)  # fmt: skip
    agent = Agent(
        cfg,
        clock=FakeClock().clock(),
        ctnl_socket=FakeSock,  # type: ignore[arg-type]
        open_capture=lambda i, s, r, b: FakeCapture(i, b),  # type: ignore[arg-type,return-value]
        control_server=FakeControl,  # type: ignore[arg-type]
        fetch=fetch,
    )
    key.unlink()  # what the dropped agent sees: no access to the file any more
    agent.start()
    wait_pull(agent)
    assert seen == [b"a key of at least sixteen bytes"]


# --- systemd readiness ----------------------------------------------------------------------


def test_sd_notify_datagram(tmp_path: Any) -> None:
    from sniffover.agent.util import sd_notify

    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        assert sd_notify("READY=1", {"NOTIFY_SOCKET": path})
        assert s.recv(64) == b"READY=1"
    name = f"sniffover-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        assert sd_notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert s.recv(64) == b"READY=1"
    assert not sd_notify("READY=1", {})
    assert not sd_notify("READY=1", {"NOTIFY_SOCKET": "relative"})


def test_systemd_hears_ready_once_the_prime_is_done(tmp_path: Any, monkeypatch: Any) -> None:
    path = str(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    fc = FakeClock()
    pulls = Pulls([entry(p) for p in range(7000, 7003)])
    gate = pulls.gate = threading.Event()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        s.setblocking(False)
        agent, _ = make(fc, pulls, prime_from="master")
        agent.start()
        agent.tick()
        with pytest.raises(BlockingIOError):  # capturing, but the pull still runs: not ready
            s.recv(64)
        gate.set()
        wait_pull(agent)
        agent.tick()
        assert s.recv(64) == b"READY=1"
        agent.tick()
        with pytest.raises(BlockingIOError):  # once
            s.recv(64)
