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
policy timeout on create anyway), CTA_EXPECT_ZONE with a zone. An expectation the master
saw consumed (its data connection appeared) is deleted again; one whose master went is
forgotten (the kernel drops a master's expectations with it).
"""

from __future__ import annotations

import errno
import logging
import math
import struct
from collections import Counter

from ..conntrack.expect import Expectation
from ..conntrack.tuple import Tuple
from .ctnetlink import CtnlSocket, encode_exp_delete, encode_exp_new
from .installer import Installer

log = logging.getLogger("sniffover.expect")


class ExpectInstaller:
    def __init__(self, sock: CtnlSocket, installer: Installer, zone: int = 0) -> None:
        self.sock = sock
        self.installer = installer
        self.zone = zone
        self.pending: dict[Tuple, Expectation] = {}  # by master: to send
        self.installed: dict[Tuple, Expectation] = {}  # by master: in the kernel
        self.removals: list[Expectation] = []
        self.counters: Counter[str] = Counter()

    def add(self, exp: Expectation) -> None:
        self.pending[exp.master] = exp  # one per master, as the FTP and TFTP helpers keep

    def consumed(self, exp: Expectation) -> None:
        """The master's data connection appeared: the master's expectation is used up."""
        if self.pending.get(exp.master) == exp:
            del self.pending[exp.master]
        if self.installed.get(exp.master) == exp:
            del self.installed[exp.master]
            self.removals.append(exp)

    def master_gone(self, master: Tuple) -> None:
        self.pending.pop(master, None)
        self.installed.pop(master, None)

    def flush(self, now: float) -> int:
        """Send what is due; returns the number of messages sent."""
        ops: list[tuple[str, Expectation, bytes]] = []
        shadow = self.installer.shadow
        for master, exp in list(self.pending.items()):
            if exp.expires <= now:
                del self.pending[master]
                self.counters["expect-expired-unsent"] += 1
            elif master in shadow:  # the kernel must hold the master first
                timeout = max(1, math.ceil(exp.expires - now))
                msg = encode_exp_new(
                    exp.master,
                    exp.tuple,
                    exp.mask,
                    timeout=timeout,
                    zone=self.zone,
                    seq=self.sock.next_seq(),
                )
                ops.append(("new", exp, msg))
        for exp in self.removals:
            msg = encode_exp_delete(exp.tuple, zone=self.zone, seq=self.sock.next_seq())
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
            if self.pending.get(exp.master) == exp:
                if err == errno.ENOENT:  # the master is not (yet) in the kernel: retry
                    c["expect-no-master"] += 1
                    continue
                del self.pending[exp.master]
            if not err:
                self.installed[exp.master] = exp
                c["expect-installed"] += 1
            elif err == errno.EOPNOTSUPP:
                c["expect-master-without-helper"] += 1
            else:
                name = errno.errorcode.get(err, str(err))
                if not c[f"expect-error-{name}"]:
                    log.warning("kernel refused an expectation: %s", name)
                c[f"expect-error-{name}"] += 1
        return len(ops)
