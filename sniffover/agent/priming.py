"""The prime controller: pulls the master's table in a thread and seeds the tracker.

Owns the pull (one at a time), the packets held while the first one runs, the cold start
(the staged table absorbed whole and committed to the kernel as prepared) against the
re-prime over a live table (what the tracker holds wins: adopt), the retry clock after a
failure, the re-prime after capture drops (at most once per ``PRIME_AFTER_DROPS``),
``--prime-required`` and the import of the master's expectations. Time comes in as
arguments (``now`` wall, ``mono`` monotonic); the pull function and the second ctnetlink
socket's factory are injected."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..conntrack.zones import NF_CT_DEFAULT_ZONE_DIR, NF_CT_ZONE_DIR_REPL
from ..kernel.ctnetlink import NAT_FOLLOW_MASTER, CtnlSocket
from .config import AgentConfig
from .pipeline import Pipeline
from .util import Clock, RateLimited, collector_off, settle_gc

log = logging.getLogger("sniffover.agent")

PRIME_RETRY = 30.0  # seconds between automatic pulls after a failure
PRIME_AFTER_DROPS = 60.0  # at most one automatic re-prime this often after capture drops

# fetch(source, key_file, timeout=..., sink=stage) -> Snapshot (prime.client.fetch)
Fetch = Callable[..., Any]


def fetch_snapshot(*args: Any, **kw: Any) -> Any:
    from ..prime.client import fetch

    return fetch(*args, **kw)


class PrimeController:
    def __init__(
        self,
        cfg: AgentConfig,
        pipeline: Pipeline,
        counters: Counter[str],
        ratelog: RateLimited,
        clock: Clock,
        fetch: Fetch = fetch_snapshot,
        second_socket: Callable[[], CtnlSocket] = CtnlSocket,
    ) -> None:
        self.cfg = cfg
        self.pipeline = pipeline
        self.counters = counters  # the agent's
        self.ratelog = ratelog
        self.clock = clock
        self.fetch = fetch
        self.second_socket = second_socket
        # None = not asked for; False = asked, not (yet) done; True = done.
        self.primed: bool | None = False if cfg.prime_from else None
        self.thread: threading.Thread | None = None
        self.result: Any = None  # a Snapshot or the exception the pull raised
        self.stage: Any = None  # the PrimeStage the running pull fills
        self.next: float | None = None  # monotonic time of the next automatic pull
        self.info: dict[str, Any] = {}
        self.drops_seen = 0
        self.last_drop_prime = -1e9  # monotonic time of the last re-prime after drops
        self.successes = 0  # successful pulls
        self.fatal: str | None = None  # --prime-required and the first pull failed
        self.key = self._read_key()

    def _read_key(self) -> str | bytes | None:
        """The key itself, read now: the agent is built before it drops privileges, and a
        root-owned 0600 key is unreadable after the drop. If it cannot be read now, the
        path is kept and each pull reports why (one line), as before."""
        from ..errors import PrimeError
        from ..prime.handshake import read_key

        if not self.cfg.key_file or not self.cfg.prime_from:
            return self.cfg.key_file
        try:
            return read_key(self.cfg.key_file, PrimeError)
        except PrimeError:
            return self.cfg.key_file

    def finished(self) -> bool:
        """A pull ended whose result ``finish`` has not taken yet."""
        return self.thread is not None and not self.thread.is_alive()

    def start(self, buffer: bool) -> bool:
        """Pull the master's table in a thread; with ``buffer`` hold sniffed packets until
        the snapshot is in (start-up, after a demotion), so they are applied after it."""
        if not self.cfg.prime_from or self.thread is not None:
            return False  # one pull at a time, until finish has taken its result
        from ..prime.stage import PrimeStage

        fetch = self.fetch
        pipe = self.pipeline
        source, key, timeout = self.cfg.prime_from, self.key, self.cfg.prime_timeout
        # a cold start (table empty, packets held) also encodes the kernel's messages while
        # the pull runs; a re-prime over a live table stages the entries only
        cold = buffer and len(pipe.table) == 0
        stage = PrimeStage(pipe.timeouts, self.cfg.max_flows, pipe.installer if cold else None)
        self.stage = stage

        def pull() -> None:
            # the stage makes hundreds of thousands of long-lived acyclic objects: no
            # cyclic collections meanwhile (each would walk all made so far); they are
            # frozen with the rest once taken over (see util.GC_FREEZE_EVERY)
            with collector_off(restore_if_enabled=True):
                try:
                    self.result = fetch(source, key, timeout=timeout, sink=stage)
                except Exception as exc:  # reported by the main loop, one line
                    self.result = exc

        if buffer:
            pipe.hold = []
        self.result = None
        self.thread = threading.Thread(target=pull, name="prime", daemon=True)
        self.thread.start()
        log.info("priming from %s", source)
        return True

    def finish(self, active: bool) -> None:
        """The pull ended: seed the tracker (all or nothing), then apply held packets."""
        thread = self.thread
        if thread is None or thread.is_alive():
            return
        self.thread = None
        pipe = self.pipeline
        result, self.result = self.result, None
        held, pipe.hold = pipe.hold, None
        if isinstance(result, Exception) or result is None:
            self._failed(str(result).splitlines()[0] if result is not None else "no result")
        else:
            self._seed(result, active)
        if held:
            pipe.track_held(held)
            log.info("applied %d packets captured during the pull", len(held))
        if pipe.installer is not None and not active:
            pipe.flush(self.clock.wall())

    def _failed(self, why: str) -> None:
        self.counters["prime-failed"] += 1
        self.info = {"ok": False, "error": why}
        self.next = self.clock.mono() + PRIME_RETRY
        self.ratelog(
            "prime",
            logging.ERROR,
            "prime from %s failed: %s (retrying every %d s)",
            self.cfg.prime_from,
            why,
            PRIME_RETRY,
        )
        if self.cfg.prime_required and self.primed is False and self.successes == 0:
            self.fatal = f"prime from {self.cfg.prime_from} failed: {why}"

    def _seed(self, result: Any, active: bool) -> None:
        now = self.clock.wall()
        pipe = self.pipeline
        stage, self.stage = self.stage, None
        assert stage is not None
        inst = pipe.installer
        if pipe.table.absorb(stage.table):  # cold start: the staged table, whole
            adopted = len(pipe.table)
            if inst is not None and not active and stage.batches:
                try:
                    inst.commit_prepared(stage.batches, now, self.second_socket)
                except OSError as exc:
                    self.ratelog("netlink", logging.ERROR, "ctnetlink write failed: %s", exc)
                    for conn in pipe.table.conns():  # the next flush tries again
                        inst.on_event("new", conn)
            elif inst is not None:
                for conn in pipe.table.conns():
                    inst.on_event("new", conn)
        else:  # sniffed entries exist: what the tracker holds wins (adopt)
            adopted = 0
            with collector_off():
                for conn in stage.table.conns():
                    if conn.expires > now and pipe.table.adopt(conn):
                        adopted += 1
        stage = None  # its prepared messages can go now
        # the new entries are long-lived and acyclic: frozen, not walked (the install
        # and the adoption above ran with the collector off)
        settle_gc(collect=False)
        expects = self._expectations(result.expectations, result.taken_at, now)
        self.primed = True
        self.successes += 1
        self.next = None
        self.info = {
            "ok": True,
            "source": result.source,
            "entries": result.count,
            "adopted": adopted,
            "expectations": len(result.expectations),
            "expectations_queued": expects,
            "bytes": result.bytes,
            "seconds": round(result.seconds, 3),
            "at": result.taken_at,
        }
        log.warning(
            "primed from %s: %d entries in %.2f s (%d adopted, %d already known or expired)",
            result.source,
            result.count,
            result.seconds,
            adopted,
            result.count - adopted,
        )

    def _expectations(self, exps: list[Any], taken_at: float, now: float) -> int:
        """The master's outstanding expectations from a prime: to the kernel (``expect``:
        sent once their master entry, created with its helper, is in) and to the helper
        follower, so a data connection sniffed later consumes them like sniffed ones.
        One per master (FTP and TFTP keep one); a sniffed one newer than the snapshot
        wins. Returns how many were queued."""
        pipe = self.pipeline
        if pipe.expect is None or pipe.helpers is None:
            return 0
        queued = 0
        for x in exps:
            # the master by its ORIGINAL tuple in its zone (x.zone: the master's id), hashed
            # in that zone, or in zone 0 if the zone is the reply direction's only
            found = None
            for zdir in (
                (NF_CT_DEFAULT_ZONE_DIR, NF_CT_ZONE_DIR_REPL)
                if x.zone
                else (NF_CT_DEFAULT_ZONE_DIR,)
            ):
                found = pipe.table.get(x.master, x.zone, zdir)
                if found is not None and found[0].zone == x.zone:
                    break
                found = None
            if found is None:  # neither primed nor sniffed (expired, or not adopted)
                self.counters["prime-expect-no-master"] += 1
                continue
            master = found[0]  # the kernel finds a master by either of its tuples
            nat = None  # the NAT helper's part: the data connection translated as on the master
            if x.nat_dir >= 0 and x.nat_tuple is not None and x.fn == NAT_FOLLOW_MASTER:
                nat = (x.nat_dir, x.nat_tuple)
            elif x.nat_dir >= 0 or x.fn:  # another expectfn (SIP's): untranslated it would
                self.counters["prime-expect-other-fn"] += 1  # be wrong, so it is left out
                continue
            zone = (master.zone, master.zone_id(0))
            exp = pipe.helpers.adopt(
                master.orig, x.tuple, x.mask, x.timeout, taken_at, now, nat, zone
            )
            if exp is not None:
                pipe.expect.add(exp)
                queued += 1
        return queued

    def tick(self, mono: float, dropped: int, active: bool) -> None:
        """Once a second: the retry after a failure, and a re-prime after capture drops
        (``dropped``: the captures' total so far), at most once per PRIME_AFTER_DROPS."""
        if self.next is not None and mono >= self.next and not active:
            self.next = None
            self.start(buffer=False)
        if self.cfg.prime_from and self.cfg.reprime_after_drops and dropped > self.drops_seen:
            self.drops_seen = dropped
            if mono - self.last_drop_prime >= PRIME_AFTER_DROPS and self.start(buffer=False):
                self.last_drop_prime = mono
                log.warning("capture lost packets: re-priming from the master")
