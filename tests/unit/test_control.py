"""The control socket without root: who may use it (peer credentials), the per-connection
deadline and the cap on open connections (socketpairs and a fake clock), what is found at
``--control PATH``, the client's check of the server, and the agent's commands behind it
(``ctl prime`` answered when the pull ends and rate-limited, ``table`` root only)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sniffover.agent import control
from sniffover.agent.control import (
    MAX_PENDING,
    REQUEST_DEADLINE,
    ControlError,
    ControlServer,
    Peer,
    PeerPolicy,
    request,
)
from tests.unit.test_agent_parts import FakeClock, FakeControl, Pulls, entry, make, wait_pull

ROOT = Peer(10, 0, 0)
NOBODY = Peer(11, 65534, 65534)
ADMIN = Peer(12, 1000, 1000, (1000, 4242))


def test_policy_root_only_by_default():
    policy = PeerPolicy()
    assert policy.allows(ROOT)
    assert not policy.allows(NOBODY) and not policy.allows(ADMIN)
    assert "uid 65534" in policy.why_not(NOBODY)


def test_policy_admin_group_by_primary_or_supplementary_gid():
    assert PeerPolicy(4242).allows(ADMIN)  # supplementary
    assert PeerPolicy(1000).allows(ADMIN)  # primary
    assert not PeerPolicy(4242).allows(NOBODY)
    assert PeerPolicy(4242).allows(ROOT)


def test_peer_credentials_of_a_real_socket():
    a, b = socket.socketpair()
    with a, b:
        peer = control.peer_of(a)
    assert (peer.pid, peer.uid, peer.gid) == (os.getpid(), os.geteuid(), os.getegid())


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def server(tmp_path: Any, peer: Peer = ROOT, **kw: Any) -> tuple[ControlServer, Clock]:
    clock = Clock()
    refused: list[Peer] = []
    srv = ControlServer(
        str(tmp_path / "ctl.sock"),
        clock=clock,
        creds=lambda _s: peer,
        on_refused=lambda p, _why: refused.append(p),
        **kw,
    )
    srv.refused = refused  # type: ignore[attr-defined]
    return srv, clock


def pair(srv: ControlServer) -> tuple[socket.socket, Any]:
    """A client end and the server's request for the other end."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    return ours, srv.adopt(theirs)


def answer_of(sock: socket.socket) -> dict[str, Any]:
    sock.settimeout(2)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    doc = json.loads(data)
    assert isinstance(doc, dict)
    return doc


def test_a_refused_peer_gets_one_error_line_and_is_closed(tmp_path):
    srv, _ = server(tmp_path, peer=NOBODY)
    try:
        client, req = pair(srv)
        assert req is None and srv.conns == []
        doc = answer_of(client)
        assert doc["ok"] is False and "permission denied" in doc["error"]
        assert srv.counters["control-refused"] == 1 and srv.refused == [NOBODY]  # type: ignore[attr-defined]
        client.close()
    finally:
        srv.close()


def test_a_complete_line_is_a_request(tmp_path):
    srv, _ = server(tmp_path)
    try:
        client, req = pair(srv)
        client.sendall(b"sta")
        assert srv.service([req.sock]) == []
        client.sendall(b"tus\nrest")
        (got,) = srv.service([req.sock])
        assert got.command == "status" and got.peer == ROOT
        srv.answer(got, {"ok": True})
        assert answer_of(client) == {"ok": True} and srv.conns == []
    finally:
        srv.close()


def test_a_dribbling_client_is_cut_off_at_the_deadline(tmp_path):
    srv, clock = server(tmp_path)
    try:
        client, req = pair(srv)
        for _ in range(5):  # one byte now and then, never a newline
            client.sendall(b"x")
            assert srv.service([req.sock]) == []
            clock.now += REQUEST_DEADLINE / 6
        assert srv.conns == [req]
        clock.now += REQUEST_DEADLINE / 6
        assert srv.service([]) == [] and srv.conns == []
        assert "within" in answer_of(client)["error"]
        assert srv.counters["control-timeout"] == 1
    finally:
        srv.close()


def test_an_overlong_line_ends_the_request(tmp_path):
    srv, _ = server(tmp_path)
    try:
        client, req = pair(srv)
        client.sendall(b"p" * 10000)
        (got,) = srv.service([req.sock])
        assert len(got.command) == control.MAX_REQUEST
    finally:
        srv.close()


def test_open_connections_are_capped(tmp_path):
    srv, clock = server(tmp_path)
    try:
        clients = [pair(srv) for _ in range(MAX_PENDING)]
        assert all(req is not None for _, req in clients) and len(srv.conns) == MAX_PENDING
        extra, req = pair(srv)
        assert req is None and "busy" in answer_of(extra)["error"]
        assert srv.counters["control-busy"] == 1
        clock.now += REQUEST_DEADLINE
        srv.service([])  # all past their deadline: room again
        assert srv.conns == [] and pair(srv)[1] is not None
    finally:
        srv.close()


def test_a_held_request_outlives_the_deadline(tmp_path):
    srv, clock = server(tmp_path)
    try:
        client, req = pair(srv)
        client.sendall(b"prime\n")
        (got,) = srv.service([req.sock])
        srv.hold(got)
        clock.now += 60
        srv.service([])
        assert srv.conns == [got] and got.sock not in srv.fds()
        srv.answer(got, {"ok": True, "entries": 3})
        assert answer_of(client)["entries"] == 3
    finally:
        srv.close()


def test_the_listener_accepts_real_connections(tmp_path):
    srv = ControlServer(str(tmp_path / "ctl.sock"))
    try:
        assert oct(os.stat(srv.path).st_mode & 0o777) == oct(0o600)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(srv.path)
        client.sendall(b"status\n")
        got: list[Any] = []
        for _ in range(50):
            got += srv.service(srv.fds())
            if got:
                break
        (req,) = got
        assert req.peer.pid == os.getpid()
        srv.answer(req, {"ok": True})
        assert answer_of(client) == {"ok": True}
        client.close()
    finally:
        srv.close()
    assert not os.path.exists(srv.path)


# --- what is found at --control PATH -----------------------------------------------------


def test_a_regular_file_at_the_path_is_never_deleted(tmp_path):
    path = tmp_path / "important.txt"
    path.write_text("important")
    with pytest.raises(ControlError, match="not a socket"):
        ControlServer(str(path))
    assert path.read_text() == "important"


def test_a_symlink_at_the_path_is_never_followed_or_deleted(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("keep")
    link = tmp_path / "ctl.sock"
    link.symlink_to(target)
    with pytest.raises(ControlError, match="not a socket"):
        ControlServer(str(link))
    assert link.is_symlink() and target.read_text() == "keep"


def test_a_stale_socket_is_replaced_and_a_live_one_kept(tmp_path):
    path = str(tmp_path / "ctl.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()  # the file stays, nobody listens
    srv = ControlServer(path)
    try:
        with pytest.raises(ControlError, match="another sniffover agent"):
            ControlServer(path)
        assert os.path.exists(path)
    finally:
        srv.close()


# --- the client's check of the server ----------------------------------------------------


def serve_once(path: str, doc: dict[str, Any]) -> threading.Thread:
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(1)

    def run() -> None:
        with lsock:
            lsock.settimeout(5)
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(100)
                    conn.sendall((json.dumps(doc) + "\n").encode())
                except OSError:
                    pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_the_client_does_not_believe_an_untrusted_server(tmp_path):
    path = str(tmp_path / "fake.sock")
    t = serve_once(path, {"ok": True, "state": "standby"})
    me = os.geteuid()
    with pytest.raises(ControlError, match=f"served by uid {me}.*not believing"):
        request("status", path, timeout=5, trusted={me + 1})
    t.join(5)


def test_the_client_believes_a_trusted_server(tmp_path):
    path = str(tmp_path / "real.sock")
    t = serve_once(path, {"ok": True, "state": "standby"})
    assert request("status", path, timeout=5, trusted={os.geteuid()})["ok"]
    t.join(5)


def test_trusted_server_uids_are_root_and_the_run_dir_owner(tmp_path, monkeypatch):
    run = tmp_path / "sniffover"
    run.mkdir()
    monkeypatch.setattr(control, "RUN_DIR", str(run))
    uids = control.trusted_server_uids()
    assert 0 in uids
    # the run directory's owner counts only under a root-owned parent
    assert (os.geteuid() in uids) == (os.lstat(tmp_path).st_uid == 0)


def test_the_default_path_is_per_network_namespace():
    ino = os.stat("/proc/self/ns/net").st_ino
    assert control.default_path() == f"/run/sniffover/net-{ino}/control"


# --- the agent's commands ----------------------------------------------------------------


def test_ctl_prime_is_answered_when_the_pull_ends_and_does_not_block():
    fc = FakeClock()
    pulls = Pulls([entry(7000)], [entry(7001)], [entry(7002)])
    agent, _ = make(fc, pulls, prime_from="master")
    agent.start()
    wait_pull(agent)  # the start-up pull
    ctl = agent.control
    assert isinstance(ctl, FakeControl)
    pulls.gate = threading.Event()  # the next pull waits until released
    ctl.requests += ["prime", "status"]
    agent.handle_control([])
    assert ctl.held and ctl.answers == []  # held, not answered, and the loop goes on
    agent.handle_control([])
    assert ctl.answers[0]["state"] == "standby"  # answered while the pull runs
    agent.after_events()
    assert len(ctl.answers) == 1
    pulls.gate.set()
    wait_pull(agent)
    assert ctl.held == [] and ctl.answers[1]["ok"] and ctl.answers[1]["entries"] == 1
    # a second ctl prime within CTL_PRIME_EVERY is refused, later it pulls again
    ctl.requests.append("prime")
    agent.handle_control([])
    assert "rate-limited" in ctl.answers[2]["error"] and pulls.calls == 2
    fc.advance(10.0)
    ctl.requests.append("prime")
    agent.handle_control([])
    wait_pull(agent)
    assert ctl.answers[3]["ok"] and pulls.calls == 3


def test_table_is_root_only():
    fc = FakeClock()
    agent, _ = make(fc)
    agent.start()
    ctl = agent.control
    assert isinstance(ctl, FakeControl)
    ctl.uid = 1000  # an admin-group member
    ctl.requests += ["table", "status"]
    agent.handle_control([])
    agent.handle_control([])
    assert ctl.answers[0] == {"ok": False, "error": "table: root only"}
    assert ctl.answers[1]["state"] == "standby"
    ctl.uid = 0
    ctl.requests.append("table")
    agent.handle_control([])
    assert ctl.answers[2]["ok"] and isinstance(ctl.answers[2]["table"], str)


def test_status_names_who_promoted_and_an_unexplained_active_is_not_ready():
    fc = FakeClock()
    agent, _ = make(fc)
    agent.start()
    ctl = agent.control
    assert isinstance(ctl, FakeControl)
    ctl.requests.append("promote")
    agent.handle_control([])
    s = agent.status()
    assert s["state"] == "active" and s["ok"] and s["promoted_by"] == "control uid 0"
    agent.promoted_by = None  # active by no path we know of
    assert not agent.status()["ok"]
    agent.demote()
    assert agent.status()["promoted_by"] is None


# --- fuzzing the protocol ---------------------------------------------------------------------

COMMANDS = [b"status", b"promote", b"demote", b"prime", b"table", b""]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=200),
            st.sampled_from(COMMANDS).map(lambda c: c + b"\n"),
            st.sampled_from(COMMANDS).map(lambda c: b" \t" + c + b"\r\n\x00junk"),
        ),
        max_size=5,
    ),
    root=st.booleans(),
)
def test_any_bytes_get_one_json_answer_and_nobody_changes_nothing(
    chunks: list[bytes], root: bool
) -> None:
    """Whatever a client sends, in whatever pieces: the agent never raises, the client gets
    exactly one JSON object (then EOF), and a peer that is not root changes no state."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        agent, _ = make(FakeClock())
        agent.start()
        srv, clock = server(Path(tmp), peer=ROOT if root else NOBODY)
        agent.control = srv
        before = (agent.active, len(agent.pipeline.table), agent.priming.thread)
        try:
            client, req = pair(srv)
            if req is not None:
                for chunk in chunks:
                    with contextlib.suppress(OSError):
                        client.sendall(chunk)
                    agent.handle_control([req.sock])
                    if req not in srv.conns:
                        break
                if req in srv.conns and not req.held:
                    clock.now += REQUEST_DEADLINE + 1  # a silent client: cut at the deadline
                    agent.handle_control([])
                if req.held:  # ctl prime without --prime-from is answered at once; never held
                    raise AssertionError("held without a pull")
            client.shutdown(socket.SHUT_WR)
            doc = answer_of(client)
            assert "ok" in doc
            if not root:
                assert doc["ok"] is False and "permission denied" in doc["error"]
                assert (agent.active, len(agent.pipeline.table), agent.priming.thread) == before
            client.close()
        finally:
            srv.close()
