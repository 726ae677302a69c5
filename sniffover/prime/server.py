"""``sniffover serve``: hand this firewall's conntrack table to a standby that is priming.

A small read-only TCP service. Each connection is one pull:

1. server -> client: ``b"SNFOVR"`` + protocol version (u16, big-endian, 4) + 32-byte
   server nonce
2. client -> server: 32-byte client nonce + ``HMAC(key, b"sniffover-client" + sn + cn)``
3. server -> client: one status byte (0 = ok, 1 = authentication failed, 2 = every pull
   slot busy) + 32 bytes: ``HMAC(key, b"sniffover-server" + sn + cn)`` on success
   (zeros otherwise, then close)
4. server -> client: the table as it is dumped, encrypted in chunks (format version 4,
   see ``stream``): ChaCha20-Poly1305 keyed by ``HMAC(key, b"sniffover-stream-v3" + sn
   + cn)``, one sequence-numbered frame per ~2,000 entries, the master's expectations,
   and an end frame with the entry count. A chunk is sent as soon as the kernel dump
   has produced it, so the standby works on it meanwhile.

Both sides prove knowledge of the pre-shared key with fresh nonces (constant-time
compares); the stream key is per session, so a recorded stream cannot be replayed to
another pull, and nobody on the sync link reads the table. Before authentication a
connection has ``auth_timeout`` (2 s) for its 64 bytes and sits in a bounded pool
(``admission``: per-source limit, the oldest evicted rather than the newcomer refused,
failed authentications throttled per source); after it, at most ``max_clients`` pulls
run at once, one dump each, every read and write bounded by ``timeout``. One log line
per pull; refusals and failures are rate-limited.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hmac
import logging
import resource
import secrets
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from ..conntrack.snapshot import SnapshotEntry, SnapshotExpectation
from ..conntrack.tuple import Tuple
from ..errors import EXIT_ERROR, CliError
from .admission import MAX_PENDING, PER_SOURCE, Admission, LogLimiter, Pending
from .handshake import (
    DEFAULT_PORT,
    HELLO,
    MAGIC,
    NONCE_LEN,
    PROTOCOL_VERSION,
    STATUS_AUTH_FAILED,
    STATUS_BUSY,
    STATUS_OK,
    client_proof,
    parse_listen,
    read_key,
    recv_exact,
    server_proof,
    stream_key,
)
from .stream import CHUNK_ENTRIES, HEADER, MAC_LEN, StreamWriter, chunked

log = logging.getLogger("sniffover.serve")

EVICTED = "evicted before authenticating (pre-authentication slots full)"
AUTH_TIMEOUT = 2.0  # s for the 64-byte request after the greeting (one round trip)


Dumper = Callable[[], Iterable[SnapshotEntry]]  # may be lazy: sent as it comes
ExpectDumper = Callable[[], list[SnapshotExpectation]]
InZone = Callable[[Tuple, int], bool]  # does the kernel hold (expected tuple, master zone)?


@dataclass
class PullStats:
    peer: str
    entries: int
    bytes: int
    seconds: float
    cpu_seconds: float
    ok: bool
    expectations: int = 0


def default_dumper() -> Iterator[SnapshotEntry]:
    """This namespace's table as the kernel dumps it. A Python generator on purpose: if
    the pull is abandoned half-way (the standby went away) it is closed when dropped, and
    the ``with`` closes the netlink socket (and with it the kernel's dump)."""
    from ..kernel.ctnetlink import CtnlSocket
    from ..kernel.dump import dump_batches

    with CtnlSocket(rcvbuf=8 << 20) as ctnl:
        for batch in dump_batches(ctnl):
            yield from batch


def default_expect_dumper() -> list[SnapshotExpectation]:
    from ..kernel.dump import dump_expectations

    return dump_expectations()


def default_in_zone(expected: Tuple, zone: int) -> bool:
    from ..kernel.ctnetlink import CtnlSocket
    from ..kernel.expect import expectation_in_zone

    with CtnlSocket() as ctnl:
        return expectation_in_zone(ctnl, expected, zone)


def assign_zones(
    exps: Sequence[SnapshotExpectation], zones: dict[Tuple, list[int]], in_zone: InZone | None
) -> None:
    """Each expectation's zone, which the kernel's dump leaves out: its master's, found
    among the dumped entries by ORIGINAL tuple (``zones``). A master tuple held in several
    zones (VRFs reusing addresses) is told apart by asking the kernel whether a zone holds
    the expected tuple (``in_zone``: a GET with CTA_EXPECT_ZONE matches on the master's
    zone id); identical expectations of such masters take one zone each."""
    given: set[tuple[Tuple, int]] = set()
    for x in exps:
        cands = sorted(set(zones.get(x.master, ())))
        if len(cands) == 1:
            x.zone = cands[0]
        elif cands and in_zone is not None:
            for z in cands:
                if (x.tuple, z) not in given and in_zone(x.tuple, z):
                    x.zone = z
                    given.add((x.tuple, z))
                    break


class Server:
    """The listening socket and the per-pull handling; ``serve()`` runs one forever."""

    def __init__(
        self,
        listen: str,
        key: bytes,
        *,
        max_clients: int = 4,
        timeout: float = 10.0,
        auth_timeout: float = AUTH_TIMEOUT,
        max_pending: int = MAX_PENDING,
        per_source: int = PER_SOURCE,
        dump: Dumper | None = None,
        dump_expect: ExpectDumper | None = None,
        in_zone: InZone | None = None,
    ) -> None:
        host, port = parse_listen(listen)
        self.key = key
        self.timeout = timeout
        self.auth_timeout = min(auth_timeout, timeout)
        self.admission = Admission(max_pending, per_source, spoke=_has_spoken)
        self.limited = LogLimiter(log)
        self.dump = dump or default_dumper
        # the kernel's expectations go with the kernel's table; a test's own dumper
        # sends none (no section) unless it brings its own
        self.dump_expect = dump_expect or (default_expect_dumper if dump is None else None)
        self.in_zone = in_zone or (default_in_zone if dump is None else None)
        self.slots = threading.BoundedSemaphore(max(1, max_clients))
        self.stop_event = threading.Event()
        self._dumps_lock = threading.Lock()
        self._dumps = 0  # dumps streaming now (see _collector)
        self._gc_was_on = True
        self.stats: list[PullStats] = []
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except OSError as exc:
            raise CliError(f"--listen {listen}: {exc}") from None
        family, _, _, _, addr = infos[0]
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind(addr)
            self.sock.listen(128)  # a burst of connects is accepted, then evicted
        except OSError as exc:
            self.sock.close()
            raise CliError(f"cannot listen on {listen}: {exc.strerror}") from None
        self.sock.settimeout(0.5)
        self.address = self.sock.getsockname()

    def _collector(self, change: int) -> None:
        """No cyclic collections while a dump streams (it makes ~10 short-lived objects
        per entry and no cycles; the passes cost ~10% of the master's CPU per pull):
        off with the first running dump, on again with the last."""
        with self._dumps_lock:
            if change > 0 and self._dumps == 0:
                self._gc_was_on = gc.isenabled()
                gc.disable()
            self._dumps += change
            if change < 0 and self._dumps == 0 and self._gc_was_on:
                gc.enable()

    def close(self) -> None:
        self.stop_event.set()
        self.sock.close()

    def serve_forever(self) -> None:
        while not self.stop_event.is_set():
            try:
                conn, addr = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.stop_event.is_set():
                    return
                time.sleep(0.05)
                continue
            peer = _peer(addr)
            entry, evicted, why = self.admission.admit(conn, addr[0])
            for old in evicted:  # its handler sees the shutdown and ends
                with contextlib.suppress(OSError):
                    old.sock.shutdown(socket.SHUT_RDWR)
            if entry is None:
                self.limited.warning("refused", "connection from %s refused: %s", peer, why)
                conn.close()
                continue
            threading.Thread(target=self.handle, args=(conn, peer, entry), daemon=True).start()

    def handle(self, conn: socket.socket, peer: str, entry: Pending | None = None) -> PullStats:
        """One pull over ``conn`` (closed at the end); logs one line, returns the figures.
        ``entry``: its place in the pre-authentication pool (``serve_forever``)."""
        source = entry.source if entry is not None else peer
        t0 = time.perf_counter()
        cpu0 = resource.getrusage(resource.RUSAGE_THREAD)
        stats = PullStats(peer, 0, 0, 0.0, 0.0, False)
        why = ""
        try:
            conn.settimeout(self.auth_timeout)
            sn = secrets.token_bytes(NONCE_LEN)
            conn.sendall(HELLO.pack(MAGIC, PROTOCOL_VERSION, sn))
            try:
                req = recv_exact(conn, NONCE_LEN + MAC_LEN, time.monotonic() + self.auth_timeout)
            except OSError:
                if entry is not None and entry.evicted:
                    raise ConnectionError(EVICTED) from None
                raise
            if len(req) < NONCE_LEN + MAC_LEN:
                evicted = entry is not None and entry.evicted
                raise ConnectionError(EVICTED if evicted else "peer closed the connection")
            cn, proof = req[:NONCE_LEN], req[NONCE_LEN:]
            if not hmac.compare_digest(proof, client_proof(self.key, sn, cn)):
                wait = self.admission.failed(source)
                conn.sendall(bytes((STATUS_AUTH_FAILED,)) + bytes(MAC_LEN))
                why = f"authentication failed (source throttled for {wait:.1f} s)"
            elif entry is not None and not self.admission.authenticated(entry):
                raise ConnectionError(EVICTED)
            elif not self.slots.acquire(blocking=False):
                conn.sendall(bytes((STATUS_BUSY,)) + bytes(MAC_LEN))
                why = "every pull slot busy"
            else:
                try:
                    self._pull(conn, sn, cn, stats)
                finally:
                    self.slots.release()
        except (OSError, ConnectionError) as exc:
            why = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a failed dump must not kill the server
            why = f"dump failed: {exc}"
        finally:
            conn.close()
            if entry is not None:
                self.admission.done(entry)
        cpu1 = resource.getrusage(resource.RUSAGE_THREAD)
        stats.seconds = time.perf_counter() - t0
        stats.cpu_seconds = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        self.stats.append(stats)
        del self.stats[:-100]
        if stats.ok:
            log.info(
                "pull from %s: %d entries, %d expectations, %d bytes, %.3f s (cpu %.3f s)",
                peer,
                stats.entries,
                stats.expectations,
                stats.bytes,
                stats.seconds,
                stats.cpu_seconds,
            )
        else:
            self.limited.warning(
                "failed-pull", "pull from %s failed: %s (%.3f s)", peer, why, stats.seconds
            )
        return stats

    def _pull(self, conn: socket.socket, sn: bytes, cn: bytes, stats: PullStats) -> None:
        """The authenticated part: the answer, then the encrypted stream."""
        conn.settimeout(self.timeout)
        conn.sendall(bytes((STATUS_OK,)) + server_proof(self.key, sn, cn))
        taken_at = time.time()
        w = StreamWriter(stream_key(self.key, sn, cn), taken_at)
        conn.sendall(w.header())
        # the expectations (a handful) first: their masters' zones are read off the table
        exps: list[SnapshotExpectation] = []
        if self.dump_expect is not None:
            try:
                exps = self.dump_expect()
            except Exception as exc:  # the table alone is still worth sending
                log.warning("expectation dump failed: %s", exc)
        masters = {x.master for x in exps}
        zones: dict[Tuple, list[int]] = {}
        # each chunk goes out as soon as the dump has read it: the standby
        # decodes and stages it while the next one is dumped
        dump = iter(self.dump())
        self._collector(+1)
        try:
            for chunk in chunked(dump, CHUNK_ENTRIES):
                data = w.chunk(chunk)
                conn.sendall(data)
                stats.bytes += len(data)
                if masters:  # an expectation's master has a helper: others cost one test
                    for e in chunk:
                        if e.helper and e.orig in masters:
                            zones.setdefault(e.orig, []).append(e.zone)
        finally:  # a pull cut short ends the kernel's dump now
            self._collector(-1)
            close = getattr(dump, "close", None)
            if close is not None:
                close()
        stats.entries = w.entries
        if self.dump_expect is not None:
            if any(z for zs in zones.values() for z in zs):
                try:
                    assign_zones(exps, zones, self.in_zone)
                except OSError as exc:  # left in zone 0: the standby skips what it lacks
                    log.warning("expectation zone lookup failed: %s", exc)
            data = w.expectations(exps)
            conn.sendall(data)
            stats.bytes += len(data)
            stats.expectations = len(exps)
        data = w.end()
        conn.sendall(data)
        stats.bytes += len(data) + HEADER.size
        stats.ok = True
        conn.shutdown(socket.SHUT_WR)


def _peer(peer: tuple[str, int] | tuple[str, int, int, int]) -> str:
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve(
    listen: str,
    key_file: str,
    max_clients: int = 4,
    *,
    timeout: float = 10.0,
    dump: Dumper | None = None,
    ready: Callable[[Server], None] | None = None,
    drop: Callable[[], list[str]] | None = None,
) -> None:
    """Serve pulls on ``listen`` until interrupted (``ready`` gets the bound server first).

    The key is read and the socket bound first; then ``drop()`` (``sniffover serve``
    passes the privilege drop) runs before any thread starts, so the pulls run without
    the privileges that were needed only to get there."""
    key = read_key(key_file)
    server = Server(listen, key, max_clients=max_clients, timeout=timeout, dump=dump)
    if dump is None:  # the kernel's dumpers, imported while their files are still readable
        from ..kernel import ctnetlink  # noqa: F401
        from ..kernel import dump as kernel_dump  # noqa: F401
    if drop is not None:
        try:
            for line in drop():
                log.info("privileges: %s", line)
        except BaseException:
            server.close()
            raise
    log.info("serving conntrack snapshots on %s", listen)
    if ready is not None:
        ready(server)
    try:
        server.serve_forever()
    finally:
        server.close()


DEFAULT_USERS = ("sniffover", "nobody")


def add_serve_arguments(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add the ``serve`` subcommand to ``sniffover``'s subparsers."""
    p = subparsers.add_parser(
        "serve",
        help="serve this firewall's conntrack table to a priming standby (read-only)",
        description=(
            "Listen for pulls from a standby's --prime-from; each pull is authenticated "
            "with the pre-shared key (mutual HMAC-SHA256 challenge-response) and gets one "
            "dump of this namespace's conntrack table, encrypted and authenticated "
            "(ChaCha20-Poly1305, a key per session). Once bound, it keeps only "
            "CAP_NET_ADMIN (to dump the table) and runs as --user."
        ),
    )
    _arguments(p)
    p.add_argument(
        "--user",
        metavar="USER",
        default=None,
        help=(
            f"unprivileged user to run as once bound (default: {DEFAULT_USERS[0]} if that "
            f"system user exists, else {DEFAULT_USERS[1]}); ignored when not started as root"
        ),
    )
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--listen",
        required=True,
        metavar="ADDR[:PORT]",
        help=f"address to listen on (default port {DEFAULT_PORT}; IPv6 as [ADDR]:PORT)",
    )
    p.add_argument(
        "--key-file",
        required=True,
        metavar="FILE",
        help=(
            "pre-shared key, at least 16 bytes (e.g. 32 random bytes in base64); a regular "
            "file (no symlink) owned by root or the running user, mode 0600"
        ),
    )
    p.add_argument("--max-clients", type=int, default=4, metavar="N", help="concurrent pulls")
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help=(
            "timeout of every read and write of a pull (the request before authentication "
            f"has min({AUTH_TIMEOUT:g} s, this))"
        ),
    )


def cmd_serve(args: argparse.Namespace, drop: Callable[[], list[str]] | None = None) -> int:
    if args.max_clients < 1 or not args.timeout > 0:
        raise CliError("serve: --max-clients must be >= 1 and --timeout > 0")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s sniffover serve: %(message)s")
    serve(args.listen, args.key_file, args.max_clients, timeout=args.timeout, drop=drop)
    return 0


def _has_spoken(sock: socket.socket) -> bool:
    """Bytes from the peer wait in ``sock`` (its proof, unread yet): a peek, no wait."""
    try:
        # poll first: recv() on a socket with a timeout would wait for data up to it
        ready = select.poll()
        ready.register(sock, select.POLLIN)
        if not ready.poll(0):
            return False
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))  # b"": closed
    except (OSError, ValueError):  # the socket is gone
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sniffover.prime.server``: the server alone, for tests and development;
    it keeps the privileges it was started with (``sniffover serve`` drops them)."""
    parser = argparse.ArgumentParser(prog="python -m sniffover.prime.server")
    _arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_serve(args)
    except CliError as exc:
        print(f"sniffover: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
