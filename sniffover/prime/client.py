"""The standby's side of priming: pull the master's conntrack table as ``SnapshotEntry`` records.

``fetch(source, key_file)`` accepts

* ``HOST[:PORT]`` / ``[V6ADDR]:PORT`` - a ``sniffover serve`` on the master (needs the key);
  the table and the master's expectations;
* ``ssh://[user@]HOST[:PORT]`` - runs ``conntrack -L -o extended`` there with the system
  ``ssh`` (BatchMode, ConnectTimeout), then ``conntrack -L expect`` (both families; its
  failure is ignored), and parses the text;
* a file path - a saved ``conntrack -L`` text dump (with or without ``-o extended``,
  optionally with ``conntrack -L expect`` lines; taken at the file's mtime) or a stream
  saved by ``fetch(..., save_to=...)``.

Everything is all-or-nothing: a serve stream comes in chunks, each authenticated (MAC
over everything before it) before it is decoded and handed to the caller's sink, and the
pull succeeds only when the end frame checks out; a truncated or tampered pull yields
``PrimeError``, and the sink must drop what it staged (``PrimeSink``). Connection
failures are retried with backoff (the sink starts over); authentication failures are not.

``python -m sniffover.prime.client bench [N ...]`` measures dump + serialize + transfer +
parse in a scratch namespace; ``bench-agent [N ...]`` the agent's start to a fully
primed standby kernel (root only).
"""

from __future__ import annotations

import gc
import hmac
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..conntrack.entry import IPS_ASSURED, IPS_CONFIRMED, IPS_SEEN_REPLY
from ..conntrack.listing import TUPLE_KEYS, ListingError, _build_tuple, parse_listing
from ..conntrack.snapshot import TCP_STATE_BY_NAME, SnapshotEntry, SnapshotExpectation
from ..errors import PrimeError
from .server import (
    DEFAULT_PORT,
    HELLO,
    MAGIC,
    NONCE_LEN,
    PROTOCOL_VERSION,
    STATUS_OK,
    client_proof,
    read_key,
    server_proof,
    split_hostport,
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


def parse_hostport(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6ADDR]:PORT``, ``[V6ADDR]`` or a bare IPv6 address."""
    return split_hostport(text, f"bad source {text!r}", default_port, min_port=1, error=PrimeError)


def _recv_exact(sock: socket.socket, n: int, what: str, deadline: float) -> bytes:
    """``n`` bytes before ``deadline`` (monotonic); memory grows only with what arrives."""
    chunks: list[bytes] = []
    got = 0
    while got < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Retryable(f"truncated stream: timed out reading {what}")
        try:
            sock.settimeout(left)
            chunk = sock.recv(min(n - got, 1 << 20))
        except TimeoutError:
            raise _Retryable(f"truncated stream: timed out reading {what}") from None
        except OSError as exc:
            raise _Retryable(f"truncated stream: {what}: {exc.strerror or exc}") from None
        if not chunk:
            raise _Retryable(f"truncated stream: connection closed during {what} ({got}/{n} B)")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


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
    host, port = parse_hostport(source)
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


def is_expect_line(line: str) -> bool:
    """A line of ``conntrack -L expect`` (``<timeout> proto=<n> ...``), not of ``-L``."""
    head, _, rest = line.strip().partition(" ")
    return head.isdigit() and rest.startswith("proto=")


def parse_expect_line(line: str) -> SnapshotExpectation:
    """One line of ``conntrack -L expect``: timeout, expected tuple, mask, master tuple,
    [zone], [PERMANENT,INACTIVE,USERSPACE], class, helper (libnetfilter_conntrack's
    default format). The master's protocol is not printed: the expected one is assumed
    (``listing_snapshot`` corrects it from the master entry)."""
    tokens = line.split()
    try:
        timeout = int(tokens[0])
        proto = int(tokens[1].partition("=")[2])
        groups: list[dict[str, str]] = [{}, {}, {}]  # expected, mask, master
        g = 0
        x = SnapshotExpectation((0, b"", b"", 0, 0), (0, b"", b"", 0, 0), (0, b"", b"", 0, 0), 0)
        for tok in tokens[2:]:
            key, sep, value = tok.partition("=")
            if not sep:
                for word in tok.split(","):
                    x.flags |= {"PERMANENT": 1, "INACTIVE": 2, "USERSPACE": 4}.get(word, 0)
                continue
            for i, prefix in ((1, "mask-"), (2, "master-")):
                if key.startswith(prefix):
                    g, key = i, key[len(prefix) :]
            if key in TUPLE_KEYS and key not in groups[g]:
                groups[g][key] = value
            elif key == "zone":
                x.zone = int(value)
            elif key == "class":
                x.klass = int(value)
            elif key == "helper":
                x.helper = value
        x.tuple = _build_tuple(proto, groups[0])
        x.mask = _build_tuple(proto, groups[1])
        x.master = _build_tuple(proto, groups[2])
        x.timeout = timeout
        return x
    except (IndexError, KeyError, ValueError) as exc:
        raise PrimeError(f"bad format: not a conntrack -L expect line: {line.strip()!r}") from exc


def listing_snapshot(text: str) -> tuple[list[SnapshotEntry], list[SnapshotExpectation]]:
    """``conntrack -L [-o extended]`` text, possibly followed (or interleaved) by
    ``conntrack -L expect`` lines: (entries, expectations). An expectation takes its zone
    and its master's protocol from the master entry when the listing has it (the text
    shows neither)."""
    lines = text.splitlines()
    exps = [parse_expect_line(ln) for ln in lines if is_expect_line(ln)]
    entries = listing_entries("\n".join(ln for ln in lines if not is_expect_line(ln)))
    if exps:
        by_ports = {(e.orig[1], e.orig[2], e.orig[3], e.orig[4]): e for e in entries}
        for x in exps:
            m = by_ports.get(x.master[1:])
            if m is not None:
                x.master = m.orig
                x.zone = x.zone or m.zone
    return entries, exps


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


def _fetch_ssh(source: str, timeout: float, ssh_options: Sequence[str]) -> Snapshot:
    rest = source[len("ssh://") :].rstrip("/")
    user, _, hostport = rest.rpartition("@")
    host, port = parse_hostport(hostport, 22) if hostport else ("", 22)
    if not host:
        raise PrimeError(f"bad source {source!r}: no host")
    ssh = shutil.which("ssh")
    if ssh is None:
        raise PrimeError("ssh not found on this machine")
    target = f"{user}@{host}" if user else host
    cmd = [
        ssh,
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={max(1, int(timeout))}",
        "-p",
        str(port),
        *ssh_options,
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


def _fetch_file(path: str, key_file: str | None) -> Snapshot:
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
        key = read_key(key_file, PrimeError)
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
    key_file: str | None,
    timeout: float = 10.0,
    retries: int = 3,
    *,
    ssh_options: Sequence[str] = (),
    save_to: str | None = None,
    backoff: float = 0.5,
    sink: PrimeSink | None = None,
) -> Snapshot:
    """The master's table from ``source`` (see the module docstring); PrimeError on failure.

    ``retries`` extra attempts after connection failures, waiting ``backoff`` seconds,
    doubled each time (at most 5 s); authentication and format errors are final.
    ``save_to`` keeps a pulled serve stream for a later ``fetch(save_to, key_file)``.
    With ``sink`` the entries go there as they arrive (from a serve stream: chunk by
    chunk, each authenticated before it is passed on) and the Snapshot holds none; the
    sink's staging may be applied only once ``fetch`` has returned.
    """
    out = sink if sink is not None else _Collect()
    if source.startswith("ssh://"):
        attempt = lambda: _fetch_ssh(source, timeout, ssh_options)  # noqa: E731
    elif os.path.exists(source) or os.sep in source:
        attempt = lambda: _fetch_file(source, key_file)  # noqa: E731
        retries = 0
    else:
        if key_file is None:
            raise PrimeError(f"{source}: pulling from sniffover serve needs a key file")
        key = read_key(key_file, PrimeError)
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


# --- benchmark -------------------------------------------------------------------------


def bench(sizes: Sequence[int] = (10_000, 100_000)) -> list[dict[str, float]]:
    """Time dump + serialize + transfer + parse over loopback in a scratch namespace (root).

    Creates ``snfprime-<pid>-bench``, re-runs itself inside (``ip netns exec``) and
    always deletes the namespace again. Returns one dict of figures per size.
    """
    import json

    ns = f"snfprime-{os.getpid()}-bench"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        out = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                "-m",
                "sniffover.prime.client",
                "bench-inner",
            ]
            + [str(s) for s in sizes],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        ).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _bench_inner(sizes: Sequence[int]) -> None:
    import json
    import tempfile
    import threading

    from ..kernel.dump import dump_table, populate
    from .server import Server

    if not os.path.basename(_netns_name()).startswith("snfprime-"):
        raise SystemExit("bench-inner must run inside a snfprime-* scratch namespace")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    key = secrets.token_hex(32).encode()
    with tempfile.TemporaryDirectory() as tmp:
        key_file = os.path.join(tmp, "key")
        with open(os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(key)
        server = Server("127.0.0.1:0", key, max_clients=1, timeout=30)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        have = 0
        try:
            for size in sizes:
                have += populate(size - have, start=have)
                t0 = time.perf_counter()
                n_dumped = len(dump_table())
                dump_s = time.perf_counter() - t0
                snap = fetch(f"127.0.0.1:{server.address[1]}", key_file, timeout=60, retries=0)
                st = server.stats[-1]
                print(
                    json.dumps(
                        {
                            "entries": len(snap.entries),
                            "dump_only_s": round(dump_s, 3),
                            "dumped": n_dumped,
                            "pull_s": round(snap.seconds, 3),
                            "bytes": snap.bytes,
                            "bytes_per_entry": round(snap.bytes / max(1, len(snap.entries)), 1),
                            "server_s": round(st.seconds, 3),
                            "server_cpu_s": round(st.cpu_seconds, 3),
                        }
                    ),
                    flush=True,
                )
        finally:
            server.close()


def bench_agent(sizes: Sequence[int] = (10_000, 100_000)) -> list[dict[str, Any]]:
    """Agent start -> every primed entry in the standby's kernel table (root).

    Two scratch namespaces ``snfprime-<pid>-m`` (master) and ``-s`` (standby) joined by a
    veth over 203.0.113.0/24. The master's kernel table is filled with ``populate()``,
    ``sniffover serve`` runs there; the standby starts the real agent
    (``python -m sniffover.cli --iface s0 --prime-from ...``) and the clock runs from its
    start until ``conntrack -C`` in the standby reaches the master's count (polled every
    20 ms). Both namespaces are deleted in any case.
    """
    import json
    import tempfile

    from ..lab.hub import stop_process

    tag = f"snfprime-{os.getpid()}"
    master, standby = f"{tag}-m", f"{tag}-s"

    def run(ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *argv],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def count(ns: str) -> int:
        out = subprocess.run(
            ["ip", "netns", "exec", ns, "conntrack", "-C"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        return int(out.stdout.strip() or 0)

    rows: list[dict[str, Any]] = []
    created: list[str] = []
    # diagnostic: SNIFFOVER_BENCH_PROFILE=DIR writes the agent's cProfile there per size
    prof_dir = os.environ.get("SNIFFOVER_BENCH_PROFILE", "")
    try:
        for ns in (master, standby):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            created.append(ns)
        subprocess.run(
            [
                "ip",
                "link",
                "add",
                "m0",
                "netns",
                master,
                "type",
                "veth",
                "peer",
                "name",
                "s0",
                "netns",
                standby,
            ],
            check=True,
        )
        for ns, dev, addr in ((master, "m0", "203.0.113.1/24"), (standby, "s0", "203.0.113.2/24")):
            run(ns, "ip", "link", "set", "lo", "up")
            run(ns, "ip", "addr", "add", addr, "dev", dev)
            run(ns, "ip", "link", "set", dev, "up")
        with tempfile.TemporaryDirectory() as tmp:
            key_file = os.path.join(tmp, "key")
            with open(os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(secrets.token_hex(32).encode())
            have = 0
            for size in sizes:
                code = f"from sniffover.kernel.dump import populate; print(populate({size - have}, "
                code += f"start={have}))"
                have += int(run(master, sys.executable, "-c", code).stdout.strip())
                want = count(master)
                subprocess.run(
                    ["ip", "netns", "exec", standby, "conntrack", "-F"],
                    capture_output=True,
                    check=False,
                )
                serve_log = os.path.join(tmp, f"serve-{size}.log")
                with open(serve_log, "w") as serve_file:
                    serve = subprocess.Popen(
                        [
                            "ip",
                            "netns",
                            "exec",
                            master,
                            sys.executable,
                            "-m",
                            "sniffover.cli",
                            "serve",
                            "--listen",
                            "203.0.113.1",
                            "--key-file",
                            key_file,
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=serve_file,
                    )
                # the judge is the standby kernel's own count, read in the namespace by
                # one long-lived poller: spawning conntrack -C every 20 ms would take CPU
                # from the run being measured
                poller = subprocess.Popen(
                    ["ip", "netns", "exec", standby, sys.executable, "-c", _POLL_COUNT, str(want)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                agent = None
                try:
                    assert poller.stdout is not None
                    poller.stdout.readline()  # "ready"
                    time.sleep(1.0)  # serve is listening
                    t0 = time.monotonic()
                    log_path = os.path.join(tmp, f"agent-{size}.log")
                    profile: list[str] = []
                    if prof_dir:
                        profile = ["-m", "cProfile", "-o", f"{prof_dir}/agent-{size}.prof"]
                    with open(log_path, "w") as log_file:
                        agent = subprocess.Popen(
                            [
                                "ip",
                                "netns",
                                "exec",
                                standby,
                                sys.executable,
                                *profile,
                                "-m",
                                "sniffover.cli",
                                "--iface",
                                "s0",
                                "--prime-from",
                                "203.0.113.1",
                                "--key-file",
                                key_file,
                                "--prime-required",
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=log_file,
                        )
                    at, reached = poller.communicate(timeout=130)[0].split()
                    took, got = float(at) - t0, int(reached)
                    mem = _memory(agent.pid)
                finally:
                    if agent is not None:
                        stop_process(agent)
                    stop_process(serve)
                    stop_process(poller)
                with open(log_path) as lf:
                    primed = [ln.split(" sniffover ", 1)[-1].strip() for ln in lf if "primed" in ln]
                with open(serve_log) as lf:
                    pulled = [ln.split(": ", 1)[-1].strip() for ln in lf if "pull from" in ln]
                rows.append(
                    {
                        "entries": want,
                        "installed": got,
                        "start_to_primed_s": round(took, 2),
                        "us_per_entry": round(took / max(1, want) * 1e6, 1),
                        "agent_rss_mb": mem,
                        "agent_log": primed[:1],
                        "master_log": pulled[:1],
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], check=False)
    return rows


# bench_agent's judge: the standby namespace's entry count, polled every 5 ms until it
# reaches argv[1] (120 s at most); prints the monotonic time it got there and the count
_POLL_COUNT = """
import sys, time
want, end = int(sys.argv[1]), time.monotonic() + 120
print("ready", flush=True)
with open("/proc/sys/net/netfilter/nf_conntrack_count") as f:
    while True:
        f.seek(0)
        n = int(f.read())
        if n >= want or time.monotonic() > end:
            break
        time.sleep(0.005)
print(time.monotonic(), n)
"""


def bench_install_load(size: int = 250_000, fillers: int = 3) -> list[dict[str, Any]]:
    """The kernel's part of a primed install as its table grows (root).

    The conntrack hash is one for all namespaces (``nf_conntrack_buckets``, 262,144
    here) while ``nf_conntrack_max`` caps each namespace at 262,144 entries, so a 1M
    table cannot be made but its hash chains can: ``fillers`` scratch namespaces of
    ``size`` entries each are filled one by one, and after each step the time to commit
    ``size`` prepared entries into one more namespace is measured (two sockets, as the
    agent does). Summed over the steps, that is the install of a table of
    ``size * (fillers + 1)`` entries. All namespaces are deleted in any case.
    """
    import json

    tag = f"snfprime-{os.getpid()}"
    names = [f"{tag}-f{i}" for i in range(fillers)] + [f"{tag}-t"]
    rows: list[dict[str, Any]] = []

    def inner(ns: str, *argv: str) -> str:
        return subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "sniffover.prime.client", *argv],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        ).stdout.strip()

    created: list[str] = []
    try:
        for ns in names:
            subprocess.run(["ip", "netns", "add", ns], check=True)
            created.append(ns)
        for step in range(fillers + 1):
            if step:
                inner(names[step - 1], "fill-inner", str(size), str((step - 1) * size))
            out = json.loads(inner(names[-1], "commit-inner", str(size)))
            rows.append({"others": step * size, **out})
            print(json.dumps(rows[-1]), flush=True)
            subprocess.run(
                ["ip", "netns", "exec", names[-1], "conntrack", "-F"],
                capture_output=True,
                check=False,
            )
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], check=False)
    return rows


def _commit_inner(size: int) -> None:
    """Prepare ``size`` primed TCP entries and time their commit (in a scratch namespace)."""
    import json

    from ..conntrack.snapshot import seed
    from ..kernel.ctnetlink import CtnlSocket
    from ..kernel.installer import Installer

    if not _netns_name().startswith("snfprime-"):
        raise SystemExit("commit-inner must run inside a snfprime-* scratch namespace")
    now = time.time()
    conns = []
    for i in range(5_000_000, 5_000_000 + size):  # not the fillers' tuples
        a, b = bytes((203, 0, 113, 1 + (i >> 16) % 250)), bytes((198, 51, 100, 1 + (i >> 8) % 250))
        sport, dport = 1024 + i % 60000, 80 + i % 200
        entry = SnapshotEntry(
            (6, a, b, sport, dport), (6, b, a, dport, sport), 0xE, 3600, 3, 7, 9, 3, 3
        )
        conns.append(seed(entry, now))
    gc.collect()
    gc.freeze()
    gc.disable()
    with CtnlSocket() as sock, CtnlSocket() as helper:
        inst = Installer(sock, require_forwarded=True)
        batches = inst.prepare(conns, now)
        t0 = time.perf_counter()
        inst.commit(batches, now, helper)
        took = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "committed": inst.counters["created"],
                "seconds": round(took, 3),
                "us_per_entry": round(took / max(1, size) * 1e6, 2),
            }
        )
    )


def _memory(pid: int) -> dict[str, float]:
    """A process's peak and current resident size in MB (``/proc/PID/status``)."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmHWM", "VmRSS"):
                    out["peak" if name == "VmHWM" else "now"] = round(int(value.split()[0]) / 1024)
    except OSError:
        pass
    return out


def _netns_name() -> str:
    """Name of the namespace we run in, as ``ip netns identify`` reports it."""
    out = subprocess.run(
        ["ip", "netns", "identify", str(os.getpid())], capture_output=True, text=True, check=False
    )
    return out.stdout.strip()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["bench-inner"]:
        _bench_inner([int(a) for a in args[1:]] or [10_000, 100_000])
        return 0
    if args[:1] == ["bench-agent"]:
        bench_agent([int(a) for a in args[1:]] or [10_000, 100_000])
        return 0
    if args[:1] == ["bench"]:
        for row in bench([int(a) for a in args[1:]] or [10_000, 100_000]):
            print(row)
        return 0
    if args[:1] == ["bench-install-load"]:
        bench_install_load(*[int(a) for a in args[1:3]])
        return 0
    if args[:1] == ["fill-inner"] and len(args) == 3:
        if not _netns_name().startswith("snfprime-"):
            raise SystemExit("fill-inner must run inside a snfprime-* scratch namespace")
        from ..kernel.dump import populate

        print(populate(int(args[1]), start=int(args[2])))
        return 0
    if args[:1] == ["commit-inner"] and len(args) == 2:
        _commit_inner(int(args[1]))
        return 0
    print(
        "usage: python -m sniffover.prime.client bench|bench-agent|bench-install-load [N ...]",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
