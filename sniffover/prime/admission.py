"""Who ``sniffover serve`` lets in before authentication, and how loudly it says no.

Pure bookkeeping with an injected clock (no sockets, no threads of its own; the server
calls it under its accept loop and its handler threads, so every method takes the lock):

* a pool of at most ``max_pending`` connections that have not authenticated yet, at most
  ``per_source`` of them from one address. A new connection is never refused for lack of
  room: it evicts its own source's oldest when that source is at its limit, else the
  pool's oldest. One source therefore holds at most ``per_source`` slots however fast it
  reconnects, and a standby's handshake (one round trip) is not pushed out by it. Among
  the candidates, one that has not sent its proof yet (``spoke``, the server peeks at the
  socket) goes before one whose proof is waiting to be checked: a crowd that connects and
  stays silent, even from the standby's own address, cannot evict a pull that answered,
  and one that sends bytes is judged by them (and throttled when they are wrong);
* failed authentications throttled per source: after the n-th failure in a row, that
  source's connections are closed unanswered for ``min(base * 2**(n-1), cap)`` seconds
  (a 2-byte key fell in 442 tries in 0.21 s without it); a success clears the record;
* ``LogLimiter``: at most ``burst`` warning lines of one kind per ``interval``, then one
  line saying how many were suppressed, so a flood cannot fill the master's log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Clock = Callable[[], float]

MAX_PENDING = 16  # connections before authentication, all sources together
PER_SOURCE = 4  # of those, from one address
THROTTLE_BASE = 0.2  # s after the first failed authentication of a source
THROTTLE_CAP = 5.0  # s at most
THROTTLE_FORGET = 300.0  # s after which a source's failures are forgotten
MAX_SOURCES = 4096  # sources with a failure record (the oldest is dropped beyond)


@dataclass(eq=False)
class Pending:
    """One connection that has not authenticated yet."""

    sock: Any  # socket.socket; closed (shut down) by whoever evicts it
    source: str
    since: float
    evicted: bool = False


class Admission:
    def __init__(
        self,
        max_pending: int = MAX_PENDING,
        per_source: int = PER_SOURCE,
        *,
        throttle_base: float = THROTTLE_BASE,
        throttle_cap: float = THROTTLE_CAP,
        clock: Clock = time.monotonic,
        spoke: Callable[[Any], bool] = lambda sock: False,
    ) -> None:
        self.spoke = spoke
        self.max_pending = max(1, max_pending)
        self.per_source = max(1, min(per_source, self.max_pending))
        self.throttle_base = throttle_base
        self.throttle_cap = throttle_cap
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: OrderedDict[int, Pending] = OrderedDict()  # id -> Pending, oldest first
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()  # (count, until)
        self.evictions = 0

    def admit(self, sock: Any, source: str) -> tuple[Pending | None, list[Pending], str]:
        """(the new connection's entry, or None if refused; the entries it evicted, to be
        shut down by the caller; why it was refused)."""
        now = self.clock()
        with self._lock:
            fail = self._failures.get(source)
            if fail is not None:
                count, until = fail
                if now < until:
                    return None, [], f"throttled after {count} failed authentications"
                if now - until > THROTTLE_FORGET:
                    del self._failures[source]
            evicted: list[Pending] = []
            mine = [p for p in self._pending.values() if p.source == source]
            if len(mine) >= self.per_source:
                evicted.append(self._victim(mine))
            elif len(self._pending) >= self.max_pending:
                evicted.append(self._victim(list(self._pending.values())))
            for p in evicted:
                p.evicted = True
                del self._pending[id(p)]
            self.evictions += len(evicted)
            entry = Pending(sock, source, now)
            self._pending[id(entry)] = entry
            return entry, evicted, ""

    def _victim(self, candidates: list[Pending]) -> Pending:
        """The oldest candidate that has not sent its proof, else the oldest."""
        for p in candidates:
            if not self.spoke(p.sock):
                return p
        return candidates[0]

    def authenticated(self, entry: Pending) -> bool:
        """``entry`` has proven the key: it leaves the pool (False if it was evicted first)."""
        with self._lock:
            self._failures.pop(entry.source, None)
            return self._pending.pop(id(entry), None) is not None and not entry.evicted

    def done(self, entry: Pending) -> None:
        """``entry`` is closed (failed, timed out, evicted or served): out of the pool."""
        with self._lock:
            self._pending.pop(id(entry), None)

    def failed(self, source: str) -> float:
        """A failed authentication from ``source``; returns how long it is now throttled."""
        now = self.clock()
        with self._lock:
            count = self._failures.pop(source, (0, 0.0))[0] + 1
            wait = min(self.throttle_base * 2 ** min(count - 1, 30), self.throttle_cap)
            self._failures[source] = (count, now + wait)
            while len(self._failures) > MAX_SOURCES:
                self._failures.popitem(last=False)
            return wait

    def pending(self, source: str | None = None) -> int:
        with self._lock:
            return sum(1 for p in self._pending.values() if source in (None, p.source))


class LogLimiter:
    """``warning(kind, msg, *args)``: at most ``burst`` lines of a kind per ``interval``."""

    def __init__(
        self,
        log: logging.Logger,
        burst: int = 10,
        interval: float = 10.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.log = log
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int, int]] = {}  # kind -> (start, lines, dropped)

    def warning(self, kind: str, msg: str, *args: object) -> bool:
        """Logs unless over the limit; True if it did."""
        now = self.clock()
        with self._lock:
            start, lines, dropped = self._windows.get(kind, (now, 0, 0))
            if now - start >= self.interval:
                if dropped:
                    self.log.warning(
                        "%d more %s lines suppressed in %.0f s", dropped, kind, now - start
                    )
                start, lines, dropped = now, 0, 0
            ok = lines < self.burst
            self._windows[kind] = (start, lines + ok, dropped + (not ok))
        if ok:
            self.log.warning(msg, *args)
        return ok
