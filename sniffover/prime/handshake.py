"""The prime protocol's handshake, shared by both ends (``server.py`` describes the exchange).

Constants of the greeting, the key proofs both sides compute, the per-session stream key
(the AEAD key of ``stream``),
the pre-shared key file, the bounded receive both ends read with, and the one
``HOST[:PORT]`` parser (``serve --listen``, ``--prime-from``, ``--metrics``). Imports
neither end: the client and the server import this.
"""

from __future__ import annotations

import errno
import hmac
import os
import socket
import stat
import struct
import time

from ..errors import CliError

DEFAULT_PORT = 7445
PROTOCOL_VERSION = 4  # 4: expectations carry their NAT part; 3: stream encrypted; 2: plaintext
MAGIC = b"SNFOVR"
NONCE_LEN = 32
HELLO = struct.Struct("!6sH32s")  # magic, version, server nonce
STATUS_OK = 0
STATUS_AUTH_FAILED = 1
STATUS_BUSY = 2  # authenticated, but every pull slot is taken: try again later
MAX_KEY_BYTES = 4096
MIN_KEY_BYTES = 16  # a 2-byte key fell to online guessing in 442 tries


def client_proof(key: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return hmac.digest(key, b"sniffover-client" + server_nonce + client_nonce, "sha256")


def server_proof(key: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return hmac.digest(key, b"sniffover-server" + server_nonce + client_nonce, "sha256")


def stream_key(key: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    """The 32-byte ChaCha20-Poly1305 key of one session (both nonces are fresh)."""
    return hmac.digest(key, b"sniffover-stream-v3" + server_nonce + client_nonce, "sha256")


def read_key(path: str, error: type[Exception] = CliError) -> bytes:
    """The pre-shared key in ``path``, checked on the open file (no stat-then-open race).

    Refused: a symlink (``O_NOFOLLOW``), anything but a regular file, a file owned by
    someone other than root or the running user, any group/other permission bit, and
    fewer than ``MIN_KEY_BYTES`` of key material (blanks around it ignored). Read it
    before dropping privileges: a root-owned 0600 key is unreadable afterwards.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(f"key file {path}: is a symbolic link (give the real file)") from None
        raise error(f"key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"key file {path}: not a regular file")
        if st.st_uid not in (0, os.geteuid()):
            raise error(
                f"key file {path}: owned by uid {st.st_uid}, not by root or this user "
                f"(uid {os.geteuid()}); chown it"
            )
        if st.st_mode & 0o077:
            raise error(
                f"key file {path}: accessible by group/others (mode {st.st_mode & 0o777:04o}); "
                "chmod 600 it"
            )
        try:
            key = f.read(MAX_KEY_BYTES + 1)
        except OSError as exc:
            raise error(f"key file {path}: {exc.strerror}") from None
    key = key.strip()
    if not key:
        raise error(f"key file {path}: empty")
    if len(key) > MAX_KEY_BYTES:
        raise error(f"key file {path}: longer than {MAX_KEY_BYTES} bytes")
    if len(key) < MIN_KEY_BYTES:
        raise error(
            f"key file {path}: {len(key)} bytes, at least {MIN_KEY_BYTES} needed "
            "(e.g. head -c 32 /dev/urandom | base64 > FILE)"
        )
    return key


def recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    """``n`` bytes before ``deadline`` (monotonic; for the whole read, not per ``recv``, so a
    peer that dribbles cannot hold the reader), or fewer only if the peer closed first.

    Memory grows only with what arrives. A deadline that passes between two ``recv``s
    raises ``TimeoutError("request not complete within the timeout")``; one that passes
    inside a ``recv`` raises the socket's ``TimeoutError``, other socket errors as they are.
    """
    chunks: list[bytes] = []
    got = 0
    while got < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request not complete within the timeout")
        sock.settimeout(left)
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def parse_hostport(
    text: str,
    label: str,
    default_port: int | None = DEFAULT_PORT,
    *,
    min_port: int = 0,
    error: type[Exception] = CliError,
) -> tuple[str, int]:
    """The one ``HOST[:PORT]`` parser; errors name ``label`` (e.g. ``--listen '...'``) and are
    raised as ``error``.

    With a ``default_port``: ``ADDR``, ``ADDR:PORT``, ``[V6ADDR]:PORT``, ``[V6ADDR]`` or a
    bare IPv6 address (which then takes the default port), surrounding blanks ignored.
    Without one (``None``, ``--metrics``) the port is required and follows the last colon,
    so ``V6ADDR:PORT`` and ``[V6ADDR]:PORT`` both work and ``:PORT`` means every address
    (``0.0.0.0``); any failure is ``"{label}: expected ADDR:PORT"``.
    """
    if default_port is None:
        host, sep, rest_port = text.rpartition(":")
        if not sep or not rest_port.isdigit() or not min_port <= int(rest_port) <= 65535:
            raise error(f"{label}: expected ADDR:PORT")
        return host.strip("[]") or "0.0.0.0", int(rest_port)
    text = text.strip()
    port = default_port
    rest_port = ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise error(f"{label}: expected [ADDR]:PORT")
        rest_port = rest[1:] if rest else ""
    elif text.count(":") == 1:
        host, _, rest_port = text.partition(":")
    else:
        host = text
    if rest_port or (text.endswith(":") and text.count(":") == 1):
        if not rest_port.isdigit() or not min_port <= int(rest_port) <= 65535:
            raise error(f"{label}: bad port {rest_port!r}")
        port = int(rest_port)
    if not host:
        raise error(f"{label}: no address")
    return host, port


def parse_listen(listen: str) -> tuple[str, int]:
    """``sniffover serve --listen``: port 0 means any free port."""
    return parse_hostport(listen, f"--listen {listen!r}")
