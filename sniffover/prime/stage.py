"""A pull's entries staged while the pull runs (the prime thread), applied after it.

``fetch`` hands each authenticated chunk to ``PrimeStage.add`` as it arrives: the
entries are seeded into a table of their own and, on a cold start (the agent's table
still empty, sniffed packets held back), their ctnetlink messages are planned and
encoded at once. So while the master is still dumping, the standby does everything but
the kernel's part; once the end of the stream checks out, the agent takes the staged
table over whole and sends the prepared messages (``PrimeController.finish`` in
agent/priming.py). A failed or truncated pull leaves the stage unused: nothing reaches the
tracker or the kernel.
"""

from __future__ import annotations

import time

from ..conntrack.snapshot import SnapshotEntry, seed_into
from ..conntrack.table import ConntrackTable
from ..conntrack.timeouts import Timeouts
from ..kernel.installer import Batch, Installer


class PrimeStage:
    """The ``PrimeSink`` the agent gives ``fetch``; see the module docstring."""

    def __init__(
        self, timeouts: Timeouts, max_entries: int | None, installer: Installer | None
    ) -> None:
        self.timeouts = timeouts
        self.max_entries = max_entries
        self.installer = installer  # None: stage the tracker's side only
        self.begin()

    def begin(self) -> None:
        self.table = ConntrackTable(self.timeouts, max_entries=self.max_entries)
        self.batches: list[Batch] = []
        self.entries = 0

    def add(self, taken_at: float, entries: list[SnapshotEntry]) -> None:
        now = time.time()
        fresh = seed_into(self.table, entries, taken_at, now)
        self.entries += len(entries)
        if self.installer is not None and self.installer.enabled:
            self.batches += self.installer.prepare(fresh, now)
