"""Control channel between `sniffover ctl|status` and a running agent.

By default an abstract unix socket named ``sniffover`` (``@sniffover``):
abstract names live in the network namespace, so two agents in two namespaces
of one host never collide, and the CLI reaches the agent of the namespace it
runs in. ``--control PATH`` uses a filesystem socket instead. One request line
(``promote``, ``demote``, ``status``) gets one JSON line back.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from typing import Any

DEFAULT_NAME = "sniffover"


def address(path: str | None) -> str | bytes:
    return path if path else b"\0" + DEFAULT_NAME.encode()


def describe(path: str | None) -> str:
    return path if path else f"@{DEFAULT_NAME} (abstract, this network namespace)"


class ControlError(Exception):
    pass


class ControlServer:
    """Non-blocking listening socket; the agent polls ``fileno()`` in its select loop."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if path and os.path.exists(path):
            # A stale socket of a dead agent is replaced; a live agent keeps its socket.
            if _alive(path):
                raise ControlError(f"control socket {path}: another agent is running")
            os.unlink(path)
        try:
            self.sock.bind(address(path))
        except OSError as exc:
            self.sock.close()
            if exc.errno == 98:  # EADDRINUSE
                raise ControlError(
                    f"control socket {describe(path)}: another sniffover agent is running "
                    "in this network namespace (use --control PATH for a second one)"
                ) from None
            raise ControlError(f"control socket {describe(path)}: {exc.strerror}") from None
        self.sock.listen(8)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self) -> tuple[socket.socket, str] | None:
        """One pending request: the connection (to answer on) and its command."""
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return None
        conn.settimeout(2.0)
        try:
            data = b""
            while b"\n" not in data and len(data) < 4096:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            conn.close()
            return None
        return conn, data.decode(errors="replace").strip()

    @staticmethod
    def answer(conn: socket.socket, doc: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            conn.sendall((json.dumps(doc) + "\n").encode())
        conn.close()

    def close(self) -> None:
        self.sock.close()
        if self.path:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def _alive(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def request(command: str, path: str | None = None, timeout: float = 60.0) -> dict[str, Any]:
    """Send one command to the agent and return its JSON answer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(address(path))
    except OSError as exc:
        s.close()
        raise ControlError(
            f"no sniffover agent at {describe(path)}: {exc.strerror or exc}"
        ) from None
    try:
        s.sendall((command + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise ControlError(f"agent at {describe(path)}: {exc}") from None
    finally:
        s.close()
    try:
        doc = json.loads(data)
    except ValueError:
        raise ControlError(f"agent at {describe(path)} gave no answer") from None
    if not isinstance(doc, dict):
        raise ControlError(f"agent at {describe(path)} gave a malformed answer")
    return doc
