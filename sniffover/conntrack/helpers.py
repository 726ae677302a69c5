"""The helpers' expectations, FTP's and TFTP's, in one follower (pure bookkeeping).

The agent feeds every packet that carries a payload (the decoder keeps it only for TCP
port 21 and UDP port 69) to ``HelperFollower.feed``, which applies the rule of the
helper the flow would have: ``conntrack.ftp`` for TCP, ``conntrack.tftp`` for UDP. The
bookkeeping (one expectation per master, consumed by the expected flow, gone with its
master, timed out) is ``FtpFollower``'s, shared by both, with the expected flows indexed:
a TFTP request needs no handshake, so a flood of (spoofed) requests may leave many
expectations outstanding, and every new flow is looked up in them.
"""

from __future__ import annotations

from . import ftp, tftp
from .entry import Conn
from .ftp import Expectation, FtpFollower
from .packet import PROTO_TCP, PROTO_UDP
from .tuple import Tuple

HELPER_PORTS = (ftp.FTP_PORT, tftp.TFTP_PORT)  # a master's ORIGINAL destination port


class HelperFollower(FtpFollower):
    def __init__(self, ftp: bool = True, tftp: bool = True) -> None:
        super().__init__()
        self.ftp = ftp
        self.tftp = tftp
        # (proto, src, dst, dport) of an expected flow -> its master; entries whose
        # expectation went (replaced, expired, master gone) are dropped lazily
        self._by_key: dict[tuple[int, bytes, bytes, int], Tuple] = {}

    def feed(self, conn: Conn, direction: int, payload: bytes, now: float) -> Expectation | None:
        proto = conn.orig[0]
        if proto == PROTO_TCP and self.ftp:
            exp = ftp.expectation(conn, direction, payload, now)
        elif proto == PROTO_UDP and self.tftp:
            exp = tftp.expectation(conn, direction, payload, now)
        else:
            return None
        if exp is not None:
            t = exp.tuple
            key = (t[0], t[1], t[2], t[4])
            other = self._by_key.get(key)
            if other is not None and other != conn.orig:
                old = self.by_master.get(other)
                if old is not None and old.tuple == t:
                    # another master expects the same flow: the kernel refuses the new one
                    # (expect_clash, -EBUSY) and keeps the old
                    self._count("expect-clash")
                    return None
            self.by_master[conn.orig] = exp  # one per master: a new one evicts the old
            self._by_key[key] = conn.orig
            if len(self._by_key) > 2 * len(self.by_master) + 64:
                self._by_key = {
                    (e.tuple[0], e.tuple[1], e.tuple[2], e.tuple[4]): m
                    for m, e in self.by_master.items()
                }
            self._count("expect-" + exp.kind)
        return exp

    def on_new(self, conn: Conn) -> Expectation | None:
        """The expectation ``conn`` consumes, if it is an expected flow (one dict lookup)."""
        o = conn.orig
        key = (o[0], o[1], o[2], o[4])
        master = self._by_key.get(key)
        if master is None:
            return None
        del self._by_key[key]
        exp = self.by_master.get(master)
        if exp is None or not exp.matches(o):
            return None  # a stale index entry
        del self.by_master[master]
        self._count("expect-consumed")
        return exp
