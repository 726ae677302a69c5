"""Expectations into the standby's kernel (ctnetlink ``IPCTNL_MSG_EXP_NEW`` / ``EXP_DELETE``).

``conntrack.helpers.ftp`` finds, in the sniffed FTP control channels, the expectations the
master's FTP helper registered (``conntrack.helpers.tftp`` likewise for TFTP requests); this
adapter mirrors them into the standby's kernel so a data connection opened after a
takeover on an older control connection (a TFTP server's answer to a request seen
before it) is RELATED there too (conntrack-semantics §6). The kernel accepts an
expectation only for a master entry that exists (else ENOENT) and has a helper (else
EOPNOTSUPP): the installer creates FTP control entries with CTA_HELP "ftp" and TFTP
request flows (unreplied) with CTA_HELP "tftp", and an expectation is
sent only once its master is in the installer's shadow. The messages are the same for
both (TCP or UDP tuples). Attributes: CTA_EXPECT_MASTER (the control connection's
ORIGINAL tuple), CTA_EXPECT_TUPLE, CTA_EXPECT_MASK (source address exact, source port
wildcard), CTA_EXPECT_TIMEOUT (what is left of the helper's 300 s; the kernel uses its
policy timeout on create anyway), CTA_EXPECT_ZONE with a zone, and for a translated
master the NAT helper's CTA_EXPECT_NAT with CTA_EXPECT_FN "nat-follow-master". An
expectation the master saw consumed (its data connection appeared) is deleted again;
one whose master went is forgotten (the kernel drops a master's expectations with it).

Zones: an expectation is held under its master's table key (``Expectation.master_key``,
what the installer's shadow is keyed by). It is created with CTA_EXPECT_ZONE = the id the
master's ORIGINAL tuple is hashed in (``ctnetlink_create_expect`` finds the master with
it; the expectation then takes the master's zone) and deleted with the master's zone id
(``nf_ct_expect_find_get`` compares it with the master's). A master in zone 0 uses the
agent's ``--zone``, as its entry does.

Expectations whose master is not in the shadow (not confirmed, or not installed yet) wait
in an index of their own, bounded (``limit``; beyond it new ones are refused and counted,
as the kernel refuses beyond ``nf_conntrack_expect_max``), so a flood of unconfirmed FTP
flows never makes a flush walk them all: a flush looks at the ones whose master had a
table event since the last flush (``touched``), plus a round-robin slice of ``SWEEP``
(which also finds a master put in the shadow without an event, and ages them out).
Promotion looks at every one (``flush(everything=True)``).
"""

from __future__ import annotations

import errno
import logging
import math
import struct
from collections import Counter, deque

from ..conntrack.expect import Expectation
from ..conntrack.tuple import Tuple
from .ctnetlink import (
    IPCTNL_MSG_EXP_GET,
    NFNL_SUBSYS_CTNETLINK_EXP,
    CtnlSocket,
    encode_exp_delete,
    encode_exp_new,
)
from .installer import Installer

log = logging.getLogger("sniffover.expect")


SWEEP = 64  # waiting expectations a flush looks at besides the touched ones
WAITING_MAX = 65536  # waiting (master not installed) expectations kept


def encode_exp_get(expected: Tuple, zone: int, seq: int) -> bytes:
    """IPCTNL_MSG_EXP_GET of one expectation by tuple and zone, acked: the attributes of a
    delete (``encode_exp_delete``) under the GET type."""
    msg = bytearray(encode_exp_delete(expected, zone=zone, seq=seq))
    struct.pack_into("=H", msg, 4, NFNL_SUBSYS_CTNETLINK_EXP << 8 | IPCTNL_MSG_EXP_GET)
    return bytes(msg)


def expectation_in_zone(sock: CtnlSocket, expected: Tuple, zone: int) -> bool:
    """Whether this kernel holds an expectation of ``expected`` whose master's zone id is
    ``zone`` (``nf_ct_expect_find_get``: ``nf_ct_zone_equal_any``). The dump does not say
    an expectation's zone; a GET with CTA_EXPECT_ZONE does."""
    seq = sock.next_seq()
    return sock.send_batch([encode_exp_get(expected, zone, seq)]).get(seq, 0) == 0


class ExpectInstaller:
    def __init__(
        self, sock: CtnlSocket, installer: Installer, zone: int = 0, limit: int = WAITING_MAX
    ) -> None:
        self.sock = sock
        self.installer = installer
        self.zone = zone
        self.limit = limit
        self.ready: dict[Tuple, Expectation] = {}  # by master, master in the shadow: to send
        self.waiting: dict[Tuple, Expectation] = {}  # by master, master not (yet) installed
        self.woken: set[Tuple] = set()  # waiting masters with a table event since the flush
        self.rotation: deque[Tuple] = deque()  # waiting masters, round robin (lazily pruned)
        self.installed: dict[Tuple, Expectation] = {}  # by master: in the kernel
        self.removals: list[Expectation] = []
        self.counters: Counter[str] = Counter()

    @property
    def pending(self) -> int:
        return len(self.ready) + len(self.waiting)

    @property
    def due(self) -> bool:
        """Something to send at the next flush even if no entry changed (an expectation
        whose master is already in: the PASV reply leaves the control entry as it was)."""
        return bool(self.ready or self.removals)

    def add(self, exp: Expectation) -> None:
        master = exp.master_key  # one per master, as the FTP and TFTP helpers keep
        if master in self.installer.shadow:
            self.waiting.pop(master, None)
            self.ready[master] = exp
        else:
            self.ready.pop(master, None)
            self._wait(exp)

    def _wait(self, exp: Expectation) -> None:
        waiting = self.waiting
        master = exp.master_key
        if master not in waiting:
            if len(waiting) >= self.limit:
                self.counters["expect-waiting-full"] += 1
                return
            self.rotation.append(master)
            if len(self.rotation) > 2 * len(waiting) + 64:  # stale names: start afresh
                self.rotation = deque(waiting)
                self.rotation.append(master)
        waiting[master] = exp

    def touched(self, master: Tuple) -> None:
        """A table event of ``master`` (its table key): if an expectation waits on it, look
        at it at the next flush (the event may be what gets the master installed)."""
        if master in self.waiting:
            self.woken.add(master)

    def consumed(self, exp: Expectation) -> None:
        """The master's data connection appeared: the master's expectation is used up."""
        master = exp.master_key
        for held in (self.ready, self.waiting):
            if held.get(master) == exp:
                del held[master]
        if self.installed.get(master) == exp:
            del self.installed[master]
            self.removals.append(exp)

    def master_gone(self, master: Tuple) -> None:
        self.ready.pop(master, None)
        self.waiting.pop(master, None)
        self.installed.pop(master, None)

    def _wake(self, now: float, everything: bool) -> None:
        """Waiting expectations whose master is now in the shadow become ready: the touched
        ones and a slice of the rotation (every one with ``everything``)."""
        shadow = self.installer.shadow
        waiting = self.waiting
        if not waiting:
            self.woken.clear()
            self.rotation.clear()
            return
        dirty = self.installer.dirty
        woken, self.woken = self.woken, set()
        for master in woken:
            if master in shadow:
                exp = waiting.pop(master, None)
                if exp is not None:
                    self.ready[master] = exp
            elif master in dirty and master in waiting:  # requeued by the installer
                self.woken.add(master)
        rotation = self.rotation
        for _ in range(len(rotation) if everything else min(SWEEP, len(rotation))):
            master = rotation.popleft()
            exp = waiting.get(master)
            if exp is None:
                continue  # gone (consumed, woken, master gone): a stale name
            if exp.expires <= now:
                del waiting[master]
                self.counters["expect-expired-unsent"] += 1
            elif master in shadow:
                del waiting[master]
                self.ready[master] = exp
            else:
                rotation.append(master)

    def flush(self, now: float, everything: bool = False) -> int:
        """Send what is due; returns the number of messages sent. ``everything``
        (promotion): look at every waiting expectation, not only a slice."""
        self._wake(now, everything)
        ops: list[tuple[str, Expectation, bytes]] = []
        shadow = self.installer.shadow
        for master, exp in list(self.ready.items()):
            if exp.expires <= now:
                del self.ready[master]
                self.counters["expect-expired-unsent"] += 1
            elif master not in shadow:  # the master left the kernel again: wait for it
                del self.ready[master]
                self._wait(exp)
            else:
                timeout = max(1, math.ceil(exp.expires - now))
                msg = encode_exp_new(
                    exp.master,
                    exp.tuple,
                    exp.mask,
                    timeout=timeout,
                    zone=exp.master_zid if exp.zone else self.zone,
                    seq=self.sock.next_seq(),
                    nat=exp.nat,
                )
                ops.append(("new", exp, msg))
        for exp in self.removals:
            zone = exp.zone or self.zone
            msg = encode_exp_delete(exp.tuple, zone=zone, seq=self.sock.next_seq())
            ops.append(("delete", exp, msg))
        self.removals = []
        if not ops:
            return 0
        results = self.sock.send_batch([m for _, _, m in ops])
        c = self.counters
        for kind, exp, msg in ops:
            err = results.get(struct.unpack_from("=I", msg, 8)[0], 0)
            if kind == "delete":
                c["expect-deleted" if not err else "expect-delete-gone"] += 1
                continue
            master = exp.master_key
            if self.ready.get(master) == exp:
                if err == errno.ENOENT:  # the master is not (yet) in the kernel: retry
                    c["expect-no-master"] += 1
                    continue
                del self.ready[master]
            if not err:
                self.installed[master] = exp
                c["expect-installed"] += 1
            elif err == errno.EOPNOTSUPP:
                c["expect-master-without-helper"] += 1
            else:
                name = errno.errorcode.get(err, str(err))
                if not c[f"expect-error-{name}"]:
                    log.warning("kernel refused an expectation: %s", name)
                c[f"expect-error-{name}"] += 1
        return len(ops)
