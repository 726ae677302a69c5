"""The standby's side of priming: pull the master's conntrack table as ``SnapshotEntry`` records.

``fetch(source, key_file)`` accepts

* ``HOST[:PORT]`` / ``[V6ADDR]:PORT`` - a ``sniffover serve`` on the master (needs the key);
  the table and the master's expectations;
* ``ssh://[user@]HOST[:PORT]`` - runs ``conntrack -L -o extended`` there with the system
  ``ssh`` (BatchMode, ConnectTimeout), then ``conntrack -L expect`` (both families; its
  failure is ignored), and parses the text;
* ``file:PATH`` or an absolute path - a saved ``conntrack -L`` text dump (with or
  without ``-o extended``, optionally with ``conntrack -L expect`` lines; taken at the
  file's mtime) or a stream saved by ``fetch(..., save_to=...)``.

The type is in the text, never in the filesystem (``parse_prime_source``): a bare
``HOST[:PORT]`` is a host even when a file of that name is in the working directory
(it was once read instead, with no key), and a relative path without ``file:`` is an
error that says how to write it.

Everything is all-or-nothing: a serve stream comes in chunks, each authenticated (MAC
over everything before it) before it is decoded and handed to the caller's sink, and the
pull succeeds only when the end frame checks out; a truncated or tampered pull yields
``PrimeError``, and the sink must drop what it staged (``PrimeSink``). Connection
failures are retried with backoff (the sink starts over); authentication failures are not.

Its benchmarks are in ``sniffover.bench.prime``.
"""

from __future__ import annotations

import hmac
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..conntrack.entry import IPS_ASSURED, IPS_CONFIRMED, IPS_SEEN_REPLY
from ..conntrack.listing import ListingError, is_expect_line, parse_expect_line, parse_listing
from ..conntrack.snapshot import TCP_STATE_BY_NAME, SnapshotEntry, SnapshotExpectation
from ..conntrack.zones import NF_CT_DEFAULT_ZONE_DIR, NF_CT_ZONE_DIR_ORIG, ZONE_DIR_KEY
from ..errors import PrimeError
from .handshake import (
    DEFAULT_PORT,
    HELLO,
    MAGIC,
    NONCE_LEN,
    PROTOCOL_VERSION,
    STATUS_BUSY,
    STATUS_OK,
    client_proof,
    parse_hostport,
    read_key,
    recv_exact,
    server_proof,
    stream_key,
)
from .stream import (
    MAC_LEN,
    MAX_STREAM_BYTES,
    chunked,
    decode_stream,
    decode_stream_full,
    read_stream,
)

__all__ = ["PrimeSink", "Snapshot", "decode_stream", "decode_stream_full", "fetch"]

SAVE_MAGIC = b"SNFOSAVE"
MAX_RECORD = 65535


class _Retryable(PrimeError):
    """A connection-level failure worth another attempt."""


class PrimeSink(Protocol):
    """Takes a pull's entries as they arrive (``fetch(..., sink=...)``): the agent stages
    them while the rest is still on its way. Nothing staged may be applied before
    ``fetch`` returns; ``begin`` starts an attempt over (drop what was staged)."""

    def begin(self) -> None: ...

    def add(self, taken_at: float, entries: list[SnapshotEntry]) -> None: ...


class _Collect:
    """The sink ``fetch`` uses when given none: keeps the entries."""

    def __init__(self) -> None:
        self.entries: list[SnapshotEntry] = []

    def begin(self) -> None:
        self.entries = []

    def add(self, taken_at: float, entries: list[SnapshotEntry]) -> None:
        self.entries += entries


@dataclass
class Snapshot:
    entries: list[SnapshotEntry]  # empty when they went to a sink
    taken_at: float  # the master's dump time (epoch seconds)
    source: str
    bytes: int
    seconds: float
    # the master's outstanding expectations (empty from a source that carries none)
    expectations: list[SnapshotExpectation] = field(default_factory=list)
    count: int = 0  # entries pulled (in ``entries`` or given to the sink)


# --- sniffover serve -------------------------------------------------------------------


def parse_source(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """A ``--prime-from`` address (``HOST[:PORT]``; port 0 refused)."""
    return parse_hostport(text, f"bad source {text!r}", default_port, min_port=1, error=PrimeError)


def parse_prime_source(text: str) -> tuple[str, str]:
    """The kind of a ``--prime-from`` value and what it names, from the text alone:
    ``("ssh", text)``, ``("file", PATH)`` for ``file:PATH`` or an absolute path, or
    ``("serve", text)`` for ``HOST[:PORT]`` (checked). PrimeError for anything else,
    e.g. a relative path written the old way."""
    if text.startswith("ssh://"):
        return "ssh", text
    if text.startswith("file:"):
        path = text[len("file:") :]
        if not path:
            raise PrimeError(f"bad source {text!r}: file: needs a path")
        return "file", path
    if text.startswith("/"):
        return "file", text
    if "/" in text or text.startswith("."):
        raise PrimeError(
            f"bad source {text!r}: a relative path; write file:{text} (or an absolute "
            "path) to read a file, HOST[:PORT] for sniffover serve"
        )
    parse_source(text)
    return "serve", text


def _recv_exact(sock: socket.socket, n: int, what: str, deadline: float) -> bytes:
    """``recv_exact``, its failures as retryable "truncated stream" errors naming ``what``."""
    try:
        data = recv_exact(sock, n, deadline)
    except TimeoutError:
        raise _Retryable(f"truncated stream: timed out reading {what}") from None
    except OSError as exc:
        raise _Retryable(f"truncated stream: {what}: {exc.strerror or exc}") from None
    if len(data) < n:
        raise _Retryable(f"truncated stream: connection closed during {what} ({len(data)}/{n} B)")
    return data


MIN_RATE = 1 << 20  # bytes/s a pull may not fall below, on top of the timeout


def pull(
    host: str,
    port: int,
    key: bytes,
    sink: PrimeSink,
    timeout: float = 10.0,
    keep: list[bytes] | None = None,
) -> tuple[float, int, list[SnapshotExpectation], int]:
    """One authenticated pull, its chunks given to ``sink`` as they arrive: (dump time,
    entries, expectations, stream bytes). ``keep`` collects the raw stream (with the
    nonces first) for a saved file."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise _Retryable(f"{host}:{port} unreachable: connect timed out") from None
    except ConnectionRefusedError:
        raise _Retryable(f"{host}:{port} refused the connection") from None
    except OSError as exc:
        raise _Retryable(f"{host}:{port} unreachable: {exc.strerror or exc}") from None
    with sock:
        deadline = time.monotonic() + timeout  # greeting + authentication, in all
        hello = _recv_exact(sock, HELLO.size, "the greeting", deadline)
        magic, version, sn = HELLO.unpack(hello)
        if magic != MAGIC:
            raise PrimeError(f"bad format: {host}:{port} is not a sniffover serve")
        if version != PROTOCOL_VERSION:
            raise PrimeError(f"bad format: protocol version {version}, expected {PROTOCOL_VERSION}")
        cn = secrets.token_bytes(NONCE_LEN)
        try:
            sock.sendall(cn + client_proof(key, sn, cn))
        except OSError as exc:
            raise _Retryable(f"{host}:{port}: {exc.strerror or exc}") from None
        answer = _recv_exact(sock, 1 + MAC_LEN, "the authentication answer", deadline)
        if answer[0] == STATUS_BUSY:
            raise _Retryable(f"{host}:{port} is busy (every pull slot taken)")
        if answer[0] != STATUS_OK:
            raise PrimeError(f"authentication failed at {host}:{port} (wrong key?)")
        if not hmac.compare_digest(answer[1:], server_proof(key, sn, cn)):
            raise PrimeError(f"authentication failed: {host}:{port} does not know the key")
        if keep is not None:
            keep += [sn, cn]
        # the whole stream within the timeout plus what it takes at MIN_RATE: a peer
        # that dribbles cannot hold the standby
        start = time.monotonic()
        got = 0

        def read(n: int, what: str) -> bytes:
            nonlocal got
            data = _recv_exact(sock, n, what, start + timeout + (got + n) / MIN_RATE)
            got += n
            if keep is not None:
                keep.append(data)
            return data

        taken_at, count, exps = read_stream(read, stream_key(key, sn, cn), sink.add)
    return taken_at, count, exps, got


def _fetch_serve(
    source: str, key: bytes, timeout: float, save_to: str | None, sink: PrimeSink
) -> Snapshot:
    host, port = parse_source(source)
    t0 = time.perf_counter()
    keep: list[bytes] | None = [] if save_to else None
    taken_at, count, exps, size = pull(host, port, key, sink, timeout, keep)
    if save_to and keep is not None:
        tmp = f"{save_to}.tmp{os.getpid()}"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(SAVE_MAGIC + b"".join(keep))
        os.replace(tmp, save_to)
    return Snapshot([], taken_at, source, size, time.perf_counter() - t0, exps, count)


# --- conntrack -L text (ssh, files) ----------------------------------------------------


def listing_snapshot(text: str) -> tuple[list[SnapshotEntry], list[SnapshotExpectation]]:
    """``conntrack -L [-o extended]`` text, possibly followed (or interleaved) by
    ``conntrack -L expect`` lines: (entries, expectations). An expectation takes its zone
    and its master's protocol from the master entry when the listing has it (the text
    shows neither), and, of a translated FTP/TFTP master, the NAT helper's part the text
    does not show either (``nat_part``)."""
    lines = text.splitlines()
    try:
        exps = [parse_expect_line(ln) for ln in lines if is_expect_line(ln)]
    except ListingError as exc:
        raise PrimeError(f"bad format: {exc}") from exc
    entries = listing_entries("\n".join(ln for ln in lines if not is_expect_line(ln)))
    if exps:
        by_ports: dict[tuple[bytes, bytes, int, int], list[SnapshotEntry]] = {}
        for e in entries:
            by_ports.setdefault((e.orig[1], e.orig[2], e.orig[3], e.orig[4]), []).append(e)
        for x in exps:
            ms = by_ports.get(x.master[1:])
            if ms:
                m = ms[0]
                x.master = m.orig
                # a master tuple in several zones (VRFs reusing addresses): which one is
                # this expectation's? The text cannot say; left out (zone unknown)
                x.zone = x.zone or (m.zone if all(o.zone == m.zone for o in ms) else -1)
                nat_part(x, m)
        exps = [x for x in exps if x.zone >= 0]
    return entries, exps


def nat_part(x: SnapshotExpectation, m: SnapshotEntry) -> None:
    """What ``nf_nat_ftp`` / ``nf_nat_tftp`` put on ``x`` when its master ``m`` is
    translated (they run for every expectation of such a master): ``exp->dir``, the
    direction the expected connection goes in the master's terms (ORIGINAL when it
    comes from the master's original source, as a PASV data connection; else REPLY), and
    ``saved_proto``, the announced port, taken as the expected one (the helper keeps it
    unless that port is taken on the NAT address)."""
    o, r = m.orig, m.reply
    if x.helper not in ("ftp", "tftp") or x.nat_dir >= 0:
        return
    if r[1] == o[2] and r[2] == o[1] and r[3] == o[4] and r[4] == o[3]:
        return  # not translated
    zero = bytes(len(o[1]))
    x.nat_dir = 0 if x.tuple[1] == o[1] else 1
    x.nat_tuple = (x.tuple[0], zero, zero, x.tuple[4], 0)
    x.fn = "nat-follow-master"


def listing_entries(text: str) -> list[SnapshotEntry]:
    """``conntrack -L [-o extended]`` text as SnapshotEntry records."""
    try:
        listed = parse_listing(text)
    except ListingError as exc:
        raise PrimeError(f"bad format: {exc}") from None
    out = []
    for le in listed:
        status = IPS_CONFIRMED
        if le.assured:
            status |= IPS_ASSURED
        if not le.unreplied:
            status |= IPS_SEEN_REPLY
        entry = SnapshotEntry(le.orig, le.reply, status, le.timeout, mark=le.mark, zone=le.zone)
        if le.zone and le.zone_dir != NF_CT_DEFAULT_ZONE_DIR:  # zone-orig= / zone-reply=
            entry.extra[ZONE_DIR_KEY] = "orig" if le.zone_dir == NF_CT_ZONE_DIR_ORIG else "reply"
        if le.proto == 6:
            if le.state not in TCP_STATE_BY_NAME:
                raise PrimeError(f"bad format: unknown TCP state {le.state!r}")
            entry.tcp_state = TCP_STATE_BY_NAME[le.state]
        elif le.state is not None:
            entry.extra["state"] = le.state
        extra = dict(le.extra)
        extra.pop("use", None)
        entry.helper = extra.pop("helper", "")
        entry.extra.update(extra)
        out.append(entry)
    return out


def ssh_destination(source: str) -> tuple[str, int]:
    """``ssh://[user@]HOST[:PORT]`` -> (``[user@]HOST``, port). A user or host that starts
    with ``-`` (ssh would take it for an option), or holds a blank, a control character
    or a character no host name has, raises ValueError."""
    rest = source[len("ssh://") :].rstrip("/")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in rest):
        raise ValueError(f"bad source {source!r}: blank or control character")
    user, at, hostport = rest.rpartition("@")
    try:
        host, port = parse_source(hostport, 22) if hostport else ("", 22)
    except PrimeError as exc:
        raise ValueError(str(exc)) from None
    if not host:
        raise ValueError(f"bad source {source!r}: no host")
    for what, text in (("user", user), ("host", host)):
        if (at or what == "host") and (
            not text
            or text.startswith("-")
            or any(
                c.isspace() or ord(c) < 32 or ord(c) == 127 or c in "@/\\'\"`$;|&<>" for c in text
            )
        ):
            raise ValueError(f"bad source {source!r}: unsafe ssh {what} {text!r}")
    return (f"{user}@{host}" if user else host), port


def _fetch_ssh(source: str, timeout: float, ssh_options: Sequence[str]) -> Snapshot:
    try:
        target, port = ssh_destination(source)
    except ValueError as exc:
        raise PrimeError(str(exc)) from None
    ssh = shutil.which("ssh")
    if ssh is None:
        raise PrimeError("ssh not found on this machine")
    cmd = [
        ssh,
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={max(1, int(timeout))}",
        "-p",
        str(port),
        *ssh_options,
        "--",  # the destination is never read as an option
        target,
        # the table, then the expectations (both families) if this conntrack lists them
        "conntrack -L -o extended && "
        "(conntrack -L expect -f ipv4; conntrack -L expect -f ipv6; exit 0)",
    ]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout * 3 + 10, check=False)
    except subprocess.TimeoutExpired:
        raise _Retryable(f"{source}: ssh timed out") from None
    taken_at = time.time()
    err = proc.stderr.decode(errors="replace").strip().splitlines()
    last = err[-1] if err else f"exit status {proc.returncode}"
    if proc.returncode == 255:
        if any("Permission denied" in line for line in err):
            raise PrimeError(f"{source}: ssh authentication failed: {last}")
        raise _Retryable(f"{source} unreachable: {last}")
    if proc.returncode != 0:
        raise PrimeError(f"{source}: conntrack -L failed: {last}")
    try:
        text = proc.stdout.decode()
    except UnicodeDecodeError:
        raise PrimeError(f"{source}: bad format: output is not text") from None
    entries, exps = listing_snapshot(text)
    took = time.perf_counter() - t0
    return Snapshot(entries, taken_at, source, len(proc.stdout), took, exps, len(entries))


def _fetch_file(path: str, key_file: str | bytes | None) -> Snapshot:
    t0 = time.perf_counter()
    try:
        with open(path, "rb") as f:
            mtime = os.fstat(f.fileno()).st_mtime
            data = f.read(MAX_STREAM_BYTES + 1024)
    except OSError as exc:
        raise PrimeError(f"{path}: {exc.strerror}") from None
    if data.startswith(SAVE_MAGIC):
        if key_file is None:
            raise PrimeError(f"{path}: a saved stream needs the key file to authenticate it")
        key = key_file if isinstance(key_file, bytes) else read_key(key_file, PrimeError)
        o = len(SAVE_MAGIC)
        sn, cn = data[o : o + NONCE_LEN], data[o + NONCE_LEN : o + 2 * NONCE_LEN]
        taken_at, entries, exps = decode_stream_full(
            data[o + 2 * NONCE_LEN :], stream_key(key, sn, cn)
        )
    else:
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise PrimeError(
                f"{path}: bad format: neither conntrack -L text nor a stream"
            ) from None
        entries, exps = listing_snapshot(text)
        taken_at = mtime
    took = time.perf_counter() - t0
    return Snapshot(entries, taken_at, path, len(data), took, exps, len(entries))


# --- the entry point -------------------------------------------------------------------


def fetch(
    source: str,
    key_file: str | bytes | None,
    timeout: float = 10.0,
    retries: int = 3,
    *,
    ssh_options: Sequence[str] = (),
    save_to: str | None = None,
    backoff: float = 0.5,
    sink: PrimeSink | None = None,
) -> Snapshot:
    """The master's table from ``source`` (see the module docstring); PrimeError on failure.

    ``key_file`` may be the key itself (bytes), read before privileges were dropped.
    ``retries`` extra attempts after connection failures, waiting ``backoff`` seconds,
    doubled each time (at most 5 s); authentication and format errors are final.
    ``save_to`` keeps a pulled serve stream for a later ``fetch(save_to, key_file)``.
    With ``sink`` the entries go there as they arrive (from a serve stream: chunk by
    chunk, each authenticated before it is passed on) and the Snapshot holds none; the
    sink's staging may be applied only once ``fetch`` has returned.
    """
    out = sink if sink is not None else _Collect()
    kind, what = parse_prime_source(source)
    if kind == "ssh":
        attempt = lambda: _fetch_ssh(source, timeout, ssh_options)  # noqa: E731
    elif kind == "file":
        attempt = lambda: _fetch_file(what, key_file)  # noqa: E731
        retries = 0
    else:
        if key_file is None:
            raise PrimeError(f"{source}: pulling from sniffover serve needs a key file")
        key = key_file if isinstance(key_file, bytes) else read_key(key_file, PrimeError)
        attempt = lambda: _fetch_serve(source, key, timeout, save_to, out)  # noqa: E731
    delay = backoff
    for n in range(max(0, retries) + 1):
        out.begin()
        try:
            snap = attempt()
        except _Retryable as exc:
            if n >= retries:
                raise PrimeError(str(exc)) from None
        else:
            # a text or file source comes whole; handed on in chunks all the same (the
            # agent's main thread gets the GIL between them)
            for chunk in chunked(snap.entries):
                out.add(snap.taken_at, chunk)
            snap.entries = out.entries if isinstance(out, _Collect) else []
            return snap
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    raise PrimeError(f"{source}: no attempt made")  # unreachable
