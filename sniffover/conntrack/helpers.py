"""The helpers' expectations, FTP's and TFTP's, in one follower (pure bookkeeping).

The agent feeds every packet that carries a payload (the decoder keeps it only for TCP
port 21 and UDP port 69) to ``HelperFollower.feed``, which applies the rule of the
helper the flow would have: ``conntrack.ftp`` for TCP, ``conntrack.tftp`` for UDP. The
bookkeeping (one expectation per master, consumed by the expected flow, gone with its
master, timed out) is ``FtpFollower``'s, shared by both.
"""

from __future__ import annotations

from . import ftp, tftp
from .entry import Conn
from .ftp import Expectation, FtpFollower
from .packet import PROTO_TCP, PROTO_UDP

HELPER_PORTS = (ftp.FTP_PORT, tftp.TFTP_PORT)  # a master's ORIGINAL destination port


class HelperFollower(FtpFollower):
    def __init__(self, ftp: bool = True, tftp: bool = True) -> None:
        super().__init__()
        self.ftp = ftp
        self.tftp = tftp

    def feed(self, conn: Conn, direction: int, payload: bytes, now: float) -> Expectation | None:
        proto = conn.orig[0]
        if proto == PROTO_TCP and self.ftp:
            exp = ftp.expectation(conn, direction, payload, now)
        elif proto == PROTO_UDP and self.tftp:
            exp = tftp.expectation(conn, direction, payload, now)
        else:
            return None
        if exp is not None:
            self.by_master[conn.orig] = exp  # one per master: a new one evicts the old
            self._count("expect-" + exp.kind)
        return exp
