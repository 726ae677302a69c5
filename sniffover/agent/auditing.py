"""The periodic self-audit (``--audit-interval S``): ``sniffover audit`` run by the agent.

Every ``audit_interval`` seconds while standby, a thread runs ``prime.audit.run_audit`` against
the ``--prime-from`` master with the agent's key (the same pull as a prime: one dump on the
master) and this namespace's table; the main loop takes the result once a second (``tick``):
one log line per audit, the counts in ``info`` (status ``audit``, the Prometheus
``sniffover_audit_*`` gauges). Never while a prime pull runs (one pull at a time) nor once
promoted. The run function is injected (tests)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .config import AgentConfig

log = logging.getLogger("sniffover.agent")

RunAudit = Callable[[], tuple[Any, dict[str, float]]]


class AuditController:
    def __init__(self, cfg: AgentConfig, key: Any, run: RunAudit | None = None) -> None:
        self.cfg = cfg
        self.key = key
        self.run = run or self._run
        self.thread: threading.Thread | None = None
        self.result: Any = None
        self.next: float | None = None  # monotonic time of the next audit
        self.info: dict[str, Any] = {}
        self.runs = 0
        self.failures = 0
        self._local: set[bytes] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.cfg.audit_interval and self.cfg.prime_from)

    def _run(self) -> tuple[Any, dict[str, float]]:
        from ..prime.audit import (
            DEFAULT_LAG,
            own_addresses,
            parse_addrs,
            run_audit,
            source_addresses,
        )

        source = self.cfg.prime_from
        assert source is not None
        if self._local is None:  # the master's addresses do not change; ours are re-read
            self._local = source_addresses(source) | parse_addrs(self.cfg.master_addrs)
        local = self._local | own_addresses()
        return run_audit(
            source, self.key, lag=DEFAULT_LAG, timeout=self.cfg.prime_timeout, local=local
        )

    def tick(self, mono: float, wall: float, busy: bool) -> None:
        """Once a second: take a finished audit's result, start one when due. ``busy``: a
        prime pull runs or the agent is active (the audit waits)."""
        if self.thread is not None and not self.thread.is_alive():
            self.thread = None
            self._finish(wall)
        if not self.enabled or self.thread is not None:
            return
        if self.next is None:  # the first one a full interval after the start
            self.next = mono + float(self.cfg.audit_interval or 0)
            return
        if mono < self.next or busy:
            return
        self.next = mono + float(self.cfg.audit_interval or 0)
        self.result = None

        def work() -> None:
            try:
                self.result = self.run()
            except Exception as exc:  # reported by tick, one line
                self.result = exc

        self.thread = threading.Thread(target=work, name="audit", daemon=True)
        self.thread.start()

    def _finish(self, wall: float) -> None:
        result, self.result = self.result, None
        self.runs += 1
        if isinstance(result, Exception) or result is None:
            self.failures += 1
            why = str(result).splitlines()[0] if result is not None else "no result"
            self.info = {**self.info, "ok": False, "error": why, "failures": self.failures}
            log.error("audit against %s failed: %s", self.cfg.prime_from, why)
            return
        res, timings = result
        self.info = {
            "ok": True,
            "at": wall,
            "runs": self.runs,
            "failures": self.failures,
            **res.as_dict(),
            **timings,
        }
        del self.info["samples"]
        level = logging.WARNING if res.total else logging.INFO
        log.log(level, "%s in %.1f s", res.summary(), timings["seconds"])
        for category, shown in res.samples.items():
            for text in shown[:2]:
                log.warning("audit %s: %s", category, text)
