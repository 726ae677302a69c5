"""Control channel between `sniffover ctl|status` and a running agent.

Where: by default a filesystem socket ``/run/sniffover/net-<inode>/control``, the inode
being this process's network namespace (``/proc/self/ns/net``): agents in two namespaces
of one host never collide, and ``sniffover status`` run inside a namespace reaches that
namespace's agent. ``/run`` is writable by root only, so nobody else can take the name
first (an abstract name could be bound by any local user before the agent starts), and
the per-namespace directory is 0750, group root or ``--control-group``. ``--control PATH``
names a socket elsewhere; only a stale *socket* is ever replaced there.

Who: every accepted connection's ``SO_PEERCRED`` (and ``SO_PEERGROUPS``) is checked: uid 0
or a member of ``--control-group``; anyone else gets one JSON error line and is closed.
The client checks the server in turn: an answer from a process that is neither root nor
the owner root gave ``/run/sniffover`` to is not believed.

How: one request line (``promote``, ``demote``, ``prime``, ``status``, ``table``) gets one
JSON line back. Nothing here blocks the agent's loop: connections are non-blocking,
each has ``REQUEST_DEADLINE`` for its whole request line, at most ``MAX_PENDING`` are
open at once, and an answer that does not fit the socket buffer at once is dropped.
A request can be *held* (``ctl prime``: answered when the pull ends).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

RUN_DIR = "/run/sniffover"
REQUEST_DEADLINE = 1.0  # seconds for the whole request line
MAX_PENDING = 8  # open control connections (reading or held)
MAX_REQUEST = 256  # bytes of a request line
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)


class ControlError(Exception):
    pass


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...] = ()


def peer_of(sock: socket.socket) -> Peer:
    """The kernel's record of the process at the other end (at its connect or listen)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    groups: tuple[int, ...] = ()
    with contextlib.suppress(OSError):
        buf = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * 256)
        groups = struct.unpack(f"{len(buf) // 4}I", buf[: len(buf) // 4 * 4])
    return Peer(pid, uid, gid, groups)


@dataclass(frozen=True)
class PeerPolicy:
    """Who may use the control socket: uid 0, or a member of the admin group."""

    group: int | None = None  # gid of --control-group

    def allows(self, peer: Peer) -> bool:
        if peer.uid == 0:
            return True
        return self.group is not None and (peer.gid == self.group or self.group in peer.groups)

    def why_not(self, peer: Peer) -> str:
        need = "root" if self.group is None else f"root or a member of gid {self.group}"
        return f"permission denied: the control socket is for {need} (you are uid {peer.uid})"


def netns_id() -> str:
    """This process's network namespace, as the name of its run directory."""
    return f"net-{os.stat('/proc/self/ns/net').st_ino}"


def default_path() -> str:
    return os.path.join(RUN_DIR, netns_id(), "control")


def describe(path: str | None) -> str:
    return path if path else f"{default_path()} (this network namespace)"


def trusted_server_uids() -> set[int]:
    """Root, and the owner of ``/run/sniffover`` (only root can make it: e.g. systemd's
    ``RuntimeDirectory=`` for an agent that runs as its own user)."""
    uids = {0}
    with contextlib.suppress(OSError):
        st = os.lstat(RUN_DIR)
        if stat.S_ISDIR(st.st_mode) and os.lstat(os.path.dirname(RUN_DIR)).st_uid == 0:
            uids.add(st.st_uid)
    return uids


def _gid(group: str | int | None) -> int | None:
    if group is None or isinstance(group, int):
        return group
    import grp

    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ControlError(f"--control-group {group!r}: no such group") from None


def _run_dir(path: str, group: int | None) -> None:
    """Make the default socket's directories: ``/run/sniffover`` (0755, ours) and the
    namespace's (0750, group root or the admin group); refuse any we do not own."""
    top, ns_dir = os.path.dirname(os.path.dirname(path)), os.path.dirname(path)
    for d, mode in ((top, 0o755), (ns_dir, 0o750)):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, mode)
        st = os.lstat(d)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise ControlError(
                f"control directory {d}: not a directory of this user's that only it can "
                "write; refusing to use it"
            )
    os.chmod(ns_dir, 0o750)
    if group is not None and os.geteuid() == 0:
        os.chown(ns_dir, 0, group)


def _clear_stale(path: str) -> None:
    """Unlink a dead agent's socket at ``path``; refuse anything else found there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ControlError(f"control socket {path}: exists and is not a socket; not replacing it")
    if _alive(path):
        raise ControlError(
            f"control socket {path}: another sniffover agent is running on it "
            "(use --control PATH for a second one in this network namespace)"
        )
    os.unlink(path)


@dataclass
class Request:
    """One control connection: its request line once read, the peer, its deadline."""

    sock: socket.socket | None
    peer: Peer
    deadline: float
    command: str = ""
    buf: bytearray = field(default_factory=bytearray)
    held: bool = False  # answered later (ctl prime)


Creds = Callable[[socket.socket], Peer]


class ControlServer:
    """The listening socket and its connections; the agent's select loop polls ``fds()``
    and hands what was ready to ``service``, which returns complete requests."""

    def __init__(
        self,
        path: str | None,
        group_name: str | int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        creds: Creds = peer_of,
        on_refused: Callable[[Peer, str], None] | None = None,
        counters: Counter[str] | None = None,
    ) -> None:
        group = _gid(group_name)
        self.path = path or default_path()
        self.owned_dir = None if path else os.path.dirname(self.path)
        self.policy = PeerPolicy(group)
        self.clock = clock
        self.creds = creds
        self.on_refused = on_refused
        self.counters: Counter[str] = Counter() if counters is None else counters
        self.conns: list[Request] = []
        self.sock: socket.socket | None = None
        try:
            if self.owned_dir:
                _run_dir(self.path, group)
            _clear_stale(self.path)
        except OSError as exc:
            hint = "" if path else " (run as root, or give --control PATH)"
            raise ControlError(f"control socket {self.path}: {exc.strerror or exc}{hint}") from None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is born 0600; group access is added below
        try:
            sock.bind(self.path)
            if group is not None:
                os.chown(self.path, -1, group)
                os.chmod(self.path, 0o660)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise ControlError(f"control socket {self.path}: in use") from None
            raise ControlError(f"control socket {self.path}: {exc.strerror or exc}") from None
        finally:
            os.umask(old)
        sock.listen(MAX_PENDING)
        sock.setblocking(False)
        self.sock = sock

    def fileno(self) -> int:
        assert self.sock is not None
        return self.sock.fileno()

    def fds(self) -> list[Any]:
        """What the loop should wait on: the listener and connections still reading."""
        return [self, *(r.sock for r in self.conns if not r.held and r.sock is not None)]

    def service(self, ready: Iterable[Any]) -> list[Request]:
        """Accept, read what is ready, drop what is past its deadline; complete requests."""
        ready = set(ready)
        done: list[Request] = []
        if self in ready:
            self._accept()
        now = self.clock()
        for req in list(self.conns):
            if req.held or req.command:
                continue
            if req.sock in ready and self._read(req):
                done.append(req)
            elif now >= req.deadline:
                self.counters["control-timeout"] += 1
                self.answer(req, {"ok": False, "error": "request not complete within 1 s"})
        return done

    def _accept(self) -> None:
        assert self.sock is not None
        for _ in range(MAX_PENDING * 2):  # bounded per call
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn.setblocking(False)
            self.adopt(conn)

    def adopt(self, conn: socket.socket) -> Request | None:
        """A new connection: check its credentials and the cap, then wait for its line."""
        try:
            peer = self.creds(conn)
        except OSError:
            conn.close()
            return None
        req = Request(conn, peer, self.clock() + REQUEST_DEADLINE)
        if not self.policy.allows(peer):
            self.counters["control-refused"] += 1
            if self.on_refused is not None:
                self.on_refused(peer, "not allowed")
            self._send_close(conn, {"ok": False, "error": self.policy.why_not(peer)})
            return None
        if len(self.conns) >= MAX_PENDING:
            self.counters["control-busy"] += 1
            self._send_close(conn, {"ok": False, "error": "busy: too many control connections"})
            return None
        self.conns.append(req)
        return req

    def _read(self, req: Request) -> bool:
        assert req.sock is not None
        try:
            chunk = req.sock.recv(MAX_REQUEST)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(req)
            return False
        req.buf += chunk
        line, nl, _ = bytes(req.buf).partition(b"\n")
        if not nl and len(req.buf) < MAX_REQUEST:
            return False
        req.command = line[:MAX_REQUEST].decode(errors="replace").strip()
        return True

    def hold(self, req: Request) -> None:
        """Answer later (not subject to the request deadline; still counts to the cap)."""
        req.held = True

    def answer(self, req: Request, doc: dict[str, Any]) -> None:
        if req.sock is not None:
            self._send_close(req.sock, doc)
        self._drop(req, close=False)

    def _send_close(self, conn: socket.socket, doc: dict[str, Any]) -> None:
        data = (json.dumps(doc) + "\n").encode()
        try:
            if conn.send(data) < len(data):
                self.counters["control-answer-dropped"] += 1
        except OSError:
            self.counters["control-answer-dropped"] += 1
        conn.close()

    def _drop(self, req: Request, close: bool = True) -> None:
        if req in self.conns:
            self.conns.remove(req)
        if close and req.sock is not None:
            req.sock.close()
        req.sock = None

    def close(self) -> None:
        for req in list(self.conns):
            self._drop(req)
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                    os.unlink(self.path)
            if self.owned_dir:
                with contextlib.suppress(OSError):
                    os.rmdir(self.owned_dir)


def _alive(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def request(
    command: str,
    path: str | None = None,
    timeout: float = 60.0,
    trusted: set[int] | None = None,
) -> dict[str, Any]:
    """Send one command to the agent and return its JSON answer; believe only a server
    whose credentials are root's (or ``trusted``)."""
    where = describe(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        s.connect(path or default_path())
    except OSError as exc:
        s.close()
        raise ControlError(f"no sniffover agent at {where}: {exc.strerror or exc}") from None
    try:
        server = peer_of(s)
        if server.uid not in (trusted if trusted is not None else trusted_server_uids()):
            raise ControlError(
                f"control socket {where} is served by uid {server.uid} (pid {server.pid}), "
                "not by root: not believing it"
            )
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall((command + "\n").encode())  # a refusal may come before we sent
        data = b""
        while not data.endswith(b"\n") and len(data) < 64 << 20:
            s.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise ControlError(f"agent at {where}: {exc.strerror or exc}") from None
    finally:
        s.close()
    try:
        doc = json.loads(data)
    except ValueError:
        raise ControlError(f"agent at {where} gave no answer") from None
    if not isinstance(doc, dict):
        raise ControlError(f"agent at {where} gave a malformed answer")
    return doc
