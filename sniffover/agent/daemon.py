"""The standby agent: sniff -> track -> install, until the cluster manager promotes us.

One select() loop, no threads but the prime pull's: capture handles, the control socket
and a 50 ms tick. Packets are tracked as they are read; changed entries are flushed to
the kernel every ``flush_interval`` (20 ms by default) in batches, so the lag from wire to
kernel table stays in tens of milliseconds. Once a second expired entries are swept and
kernel timers that would run out are re-armed.

Promotion (SIGUSR1 or ``sniffover ctl promote``): read whatever the capture rings still
hold, install everything the tracker knows, answer, and stand down (captures closed: the
kernel now tracks the live traffic itself). Demotion (SIGUSR2 or ``ctl demote``) starts
standby duty again with an empty tracker; mid-stream pickup (and a prime) rebuild it.

``Agent`` owns only that orchestration: the loop, promote/demote, signals and the control
commands. The work is done by its parts: ``Pipeline`` (tracking and installing),
``CaptureSet``, ``MasterLearning``, ``PrimeController``; ``status.build_status`` reports.
The clock and the socket factories (ctnetlink, capture, control) are injected.
"""

from __future__ import annotations

import logging
import os
import select
import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..capture.files import CaptureError
from ..kernel.ctnetlink import CtnlSocket
from .captures import CaptureFactory, CaptureSet, open_live
from .config import AgentConfig
from .control import ControlServer, Peer, Request
from .learning import MasterLearning
from .pipeline import REORDER, Pipeline, timeouts_for
from .priming import Fetch, PrimeController, fetch_snapshot
from .status import Status, build_status
from .util import GC_FREEZE_EVERY, Clock, RateLimited, sd_notify, settle_gc, start_gc

log = logging.getLogger("sniffover.agent")

TICK = 0.05
DRAIN_MAX = 2.0  # seconds a promotion reads the rings at most before installing
CTL_PRIME_EVERY = 10.0  # seconds between pulls asked through the control socket

Doc = dict[str, Any]


class Agent:
    def __init__(
        self,
        cfg: AgentConfig,
        *,
        clock: Clock | None = None,
        ctnl_socket: Callable[[], CtnlSocket] = CtnlSocket,
        open_capture: CaptureFactory = open_live,
        control_server: Callable[..., ControlServer] = ControlServer,
        fetch: Fetch = fetch_snapshot,
    ) -> None:
        self.cfg = cfg
        self.clock = clock = clock or Clock()
        self.stop = False
        self.want_promote = False
        self.want_demote = False
        self.active = False  # promoted: standing down
        self.promoted_by: str | None = None  # "control uid N" | "signal from uid N"
        self.counters: Counter[str] = Counter()
        self.started = clock.wall()
        self.notified = False  # systemd was told READY=1 (Type=notify)
        self.ratelog = RateLimited(log, clock=clock.mono)
        self.sock: CtnlSocket | None = None
        if cfg.install:
            self.sock = ctnl_socket()
            self.sock.check_writable()
        self.learning = MasterLearning(cfg.master_macs, cfg.confirm != "off")
        self.pipeline = Pipeline(cfg, timeouts_for(cfg), self.sock, self.counters, self.ratelog)
        self.captures = CaptureSet(cfg, self.learning, self.counters, open_capture)
        self.control = control_server(
            cfg.control,
            cfg.control_group,
            clock=clock.mono,
            on_refused=self._refused,
            counters=self.counters,
        )
        self.prime_waiters: list[Request] = []  # `ctl prime`s answered when the pull ends
        self.last_ctl_prime = -1e9  # monotonic
        self.priming = PrimeController(
            cfg, self.pipeline, self.counters, self.ratelog, clock, fetch, ctnl_socket
        )
        self.metrics: Any = None
        self.commands: dict[str, Callable[[Request], Doc | None]] = {
            "promote": self._cmd_promote,
            "demote": self._cmd_demote,
            "status": lambda _req: dict(self.status()),
            "prime": self._cmd_prime,
            "table": self._cmd_table,
        }

    # --- reading --------------------------------------------------------------------

    def read_ready(self, ready: list[Any]) -> None:
        caps = self.captures
        read, batches = caps.read(ready)
        learning = self.learning
        if learning.enabled and learning.learning(caps.captures):
            # a segment still learning the master's MAC: show it the packets that went
            # into the master where it is known, so it can spot their copies coming out
            cf = self.pipeline.confirmer
            learning.learned(caps.captures, cf, self.clock.wall())
            for c, got in zip(read, batches, strict=True):
                if got and c.learner is None and learning.master:
                    learning.note_ingress(caps.captures, got)
            learning.learned(caps.captures, cf, self.clock.wall())
        self.pipeline.feed(list(read), batches, self.clock.wall())

    def drain(self) -> None:
        """Read until every capture ring is empty (bounded: 2 s), then track all held."""
        pipe = self.pipeline
        deadline = self.clock.mono() + DRAIN_MAX
        while self.captures.captures and self.clock.mono() < deadline:
            before = pipe.packets + pipe.held()
            self.read_ready(self.captures.captures)
            if pipe.packets + pipe.held() == before:
                break
        pipe.release(float("inf"))

    # --- takeover -------------------------------------------------------------------

    def promote(self, by: str = "signal") -> Doc:
        start = self.clock.mono()
        self.drain()
        sent = self.pipeline.install_all(self.clock.wall())
        self.captures.close()
        self.active = True
        self.promoted_by = by
        took = self.clock.mono() - start
        inst = self.pipeline.installer
        installed = len(inst.shadow) if inst else 0
        log.warning(
            "promoted: committed %d messages in %.3f s; %d entries installed; "
            "standing down (the kernel tracks live traffic now)",
            sent,
            took,
            installed,
        )
        return {
            "ok": True,
            "state": "active",
            "committed": sent,
            "installed": installed,
            "seconds": round(took, 3),
        }

    def demote(self) -> Doc:
        if not self.active:
            return {"ok": True, "state": "standby", "note": "already standby"}
        self.pipeline.reset()
        self.captures.open(self.clock.mono())
        self.active = False
        self.promoted_by = None
        if self.cfg.prime_from:
            self.priming.primed = False
            self.priming.start(buffer=True)
        log.warning("demoted: standby duty resumed with an empty table (mid-stream pickup)")
        return {"ok": True, "state": "standby"}

    def status(self) -> Status:
        return build_status(self, self.clock.wall())

    # --- control commands -----------------------------------------------------------

    def handle_control(self, ready: list[Any]) -> None:
        for req in self.control.service(ready):
            command = self.commands.get(req.command)
            if command is None:
                doc: Doc | None = {"ok": False, "error": f"unknown command {req.command[:40]!r}"}
            else:
                doc = command(req)
            if doc is None:
                self.control.hold(req)
            else:
                self.control.answer(req, doc)

    def _refused(self, peer: Peer, why: str) -> None:
        self.ratelog(
            "control-refused",
            logging.WARNING,
            "control socket: refused pid %d uid %d (%s)",
            peer.pid,
            peer.uid,
            why,
        )

    def _cmd_promote(self, req: Request) -> Doc:
        if self.active:
            return {"ok": True, "state": "active"}
        return self.promote(by=f"control uid {req.peer.uid}")

    def _cmd_demote(self, _req: Request) -> Doc:
        try:
            return self.demote()
        except CaptureError as exc:
            return {"ok": False, "error": str(exc)}

    def _cmd_prime(self, req: Request) -> Doc | None:
        """Start a pull (or join the running one); answered when it ends (``after_events``),
        never blocking the loop. Pulls asked here: one per CTL_PRIME_EVERY."""
        if not self.cfg.prime_from:
            return {"ok": False, "error": "no --prime-from configured"}
        if self.active:
            return {"ok": False, "error": "active (promoted): nothing to prime"}
        priming = self.priming
        if priming.thread is None:
            wait = self.last_ctl_prime + CTL_PRIME_EVERY - self.clock.mono()
            if wait > 0:
                self.counters["ctl-prime-limited"] += 1
                return {
                    "ok": False,
                    "error": f"rate-limited: one pull per {CTL_PRIME_EVERY:g} s "
                    f"(try again in {wait:.1f} s)",
                }
            priming.start(buffer=False)
            self.last_ctl_prime = self.clock.mono()
        self.prime_waiters.append(req)
        return None

    def _cmd_table(self, req: Request) -> Doc:
        """The tracked table as ``conntrack -L`` text: uid 0 only (not the admin group),
        as ``conntrack -L`` itself needs CAP_NET_ADMIN."""
        if req.peer.uid != 0:
            return {"ok": False, "error": "table: root only"}
        from ..conntrack.listing import format_table

        now = self.clock.wall()
        return {"ok": True, "table": format_table(self.pipeline.table.entries(now), now)}

    # --- main loop ------------------------------------------------------------------

    def _signals(self) -> None:
        def stop(_sig: int, _frame: object) -> None:
            self.stop = True

        def promote(_sig: int, _frame: object) -> None:
            self.want_promote = True

        def demote(_sig: int, _frame: object) -> None:
            self.want_demote = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGUSR1, promote)
        signal.signal(signal.SIGUSR2, demote)

    def start(self) -> None:
        """Open the captures, drop privileges, start the metrics server and the first pull."""
        self.captures.open(self.clock.mono())  # before the pull: nothing sniffed is lost
        if self.cfg.drop_privileges and (os.geteuid() == 0 or _has_capabilities()):
            from .privs import drop_privileges

            # before any thread starts: capabilities are per thread
            done = drop_privileges(user=self.cfg.user)
            log.info("privileges dropped: %s", "; ".join(done))
        if self.cfg.metrics_listen:
            from .metrics import Metrics

            try:
                self.metrics = Metrics(self.cfg.metrics_listen)
            except (OSError, ValueError) as exc:
                from ..errors import CliError

                raise CliError(f"metrics: {exc}") from None
        if self.cfg.prime_from:
            self.priming.start(buffer=True)
        log.info(
            "standby agent up (pid %d): installing into %s, control %s",
            os.getpid(),
            "this namespace's conntrack table" if self.sock else "nowhere (--no-install)",
            self.control.path,
        )

    def run(self) -> int:
        self._signals()
        try:
            self.start()
        except BaseException:
            self.captures.close()
            self.control.close()  # no stale socket behind a failed start
            raise
        pipe = self.pipeline
        mono = self.clock.mono
        flush_every = self.cfg.flush_interval
        next_flush = mono() + flush_every
        next_tick = mono() + 1.0
        start_gc()
        next_freeze = mono() + GC_FREEZE_EVERY
        next_stats = mono() + self.cfg.stats_interval
        try:
            while not self.stop:
                fds: list[Any] = [*self.control.fds(), *self.captures.captures]
                wait = TICK
                inst = pipe.installer
                if inst is not None and inst.pending:
                    wait = max(0.0, min(TICK, next_flush - mono()))
                if pipe.reordering and any(pipe.reorder.values()):
                    pipe.release(self.clock.wall() - REORDER)
                    wait = min(wait, REORDER / 2)
                try:
                    ready, _, _ = select.select(fds, [], [], wait)
                except InterruptedError:
                    ready = []
                caps = [r for r in ready if r in self.captures.captures]
                if caps:
                    self.read_ready(caps)
                self.handle_control(ready)  # also drops connections past their deadline
                self.after_events()
                now = mono()
                inst = pipe.installer  # a demotion made a new one
                if inst is not None and not self.active and now >= next_flush:
                    next_flush = now + flush_every
                    if inst.pending:
                        pipe.flush(self.clock.wall())
                if now >= next_tick:
                    next_tick = now + 1.0
                    self.tick()
                if now >= next_freeze:
                    next_freeze = now + GC_FREEZE_EVERY
                    settle_gc()
                if now >= next_stats:
                    next_stats = now + self.cfg.stats_interval
                    self._log_stats()
        finally:
            self.captures.close()
            self.control.close()
            if self.sock is not None:
                self.sock.close()
        log.info("stopped after %d packets, %d flows tracked", pipe.packets, len(pipe.table))
        return 0

    def after_events(self) -> None:
        """A finished pull, and promotion or demotion asked by a signal."""
        if self.priming.finished():
            self.priming.finish(self.active)
            waiters, self.prime_waiters = self.prime_waiters, []
            for req in waiters:
                info = self.priming.info
                self.control.answer(req, {"ok": bool(info.get("ok")), **info})
            if self.priming.fatal:
                from ..prime.client import PrimeError

                raise PrimeError(self.priming.fatal + " (--prime-required)")
        if self.want_promote:
            self.want_promote = False
            if not self.active:
                self.promote(by="signal")
        if self.want_demote:
            self.want_demote = False
            self.demote()

    def tick(self) -> None:
        """Once a second: each part's periodic work."""
        now = self.clock.wall()
        if self.active:
            return
        caps = self.captures
        pipe = self.pipeline
        if caps.lost:
            caps.reopen_lost()
        cf = pipe.confirmer
        if cf is not None:
            self.learning.learned(caps.captures, cf, now)
            cf.expire(now)
            self.learning.confirm_pending(cf)
            waiting = self.learning.learning(caps.captures)
            if waiting and now - self.started > 10:
                self.ratelog(
                    "learning",
                    logging.WARNING,
                    "master firewall's MAC not known yet on %s (no single MAC answers ARP "
                    "for its addresses): flows there are tracked but not installed, status "
                    "is not ready; check --master-addr, or give --master-mac",
                    ", ".join(waiting),
                )
        mono = self.clock.mono()
        drops = caps.drops()
        # mirror tunnel loss is capture loss: the same re-prime (agent/priming.py)
        dropped = sum(d["dropped"] + d["ifdropped"] + d["tunnel_dropped"] for d in drops.values())
        self.priming.tick(mono, dropped, self.active)
        caps.warm_up(mono)
        pipe.expire(now)
        for iface, d in drops.items():
            if d["dropped"] or d["ifdropped"] or d["tunnel_dropped"]:
                self.ratelog(
                    f"drops-{iface}",
                    logging.WARNING,
                    "%s: capture drops: %d by the ring, %d by the interface (of %d received),"
                    " %d lost in the mirror tunnel",
                    iface,
                    d["dropped"],
                    d["ifdropped"],
                    d["received"],
                    d["tunnel_dropped"],
                )
        if self.metrics is not None:
            self.metrics.update(self)
        if not self.notified and self.status()["ok"]:
            # systemd's Type=notify: the unit is started only once the standby is ready
            # (capturing, primed when asked, every segment's master known)
            sd_notify("READY=1")
            self.notified = True

    def _log_stats(self) -> None:
        s = self.status()
        log.info(
            "%d packets, %d flows tracked, %d installed, %d pending, install %s",
            s["packets"],
            s["flows"],
            s["installed"],
            s["pending"],
            s["install"],
        )


def _has_capabilities() -> bool:
    """A non-root agent with capabilities (a service user given ambient CAP_NET_ADMIN and
    CAP_NET_RAW) drops them too: ambient and inheritable cleared, no_new_privs."""
    from .privs import get_caps

    return get_caps()[1] != 0
