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

from ..entry import Conn
from ..packet import PROTO_TCP, PROTO_UDP
from ..tuple import Tuple
from . import ftp, tftp
from .ftp import Expectation, FtpFollower

HELPER_PORTS = (ftp.FTP_PORT, tftp.TFTP_PORT)  # a master's ORIGINAL destination port


Key = tuple[int, bytes, bytes, int]  # (proto, src, dst, dport) of an expected flow


def _key(t: Tuple) -> Key:
    return (t[0], t[1], t[2], t[4])


class Outstanding(dict[Tuple, Expectation]):
    """``by_master`` that indexes what is put in it by expected flow, whoever puts it there
    (``feed``, or primed expectations written straight in). Entries whose expectation
    went (consumed, replaced, expired, master gone) leave the index lazily."""

    def __init__(self) -> None:
        super().__init__()
        self.by_key: dict[Key, Tuple] = {}

    def __setitem__(self, master: Tuple, exp: Expectation) -> None:
        super().__setitem__(master, exp)
        self.by_key[_key(exp.tuple)] = master
        if len(self.by_key) > 2 * len(self) + 64:
            self.by_key = {_key(e.tuple): m for m, e in self.items()}


class HelperFollower(FtpFollower):
    def __init__(self, ftp: bool = True, tftp: bool = True) -> None:
        super().__init__()
        self.ftp = ftp
        self.tftp = tftp
        self.outstanding = Outstanding()
        self.by_master = self.outstanding

    def feed(self, conn: Conn, direction: int, payload: bytes, now: float) -> Expectation | None:
        proto = conn.orig[0]
        if proto == PROTO_TCP and self.ftp:
            exp = ftp.expectation(conn, direction, payload, now)
        elif proto == PROTO_UDP and self.tftp:
            exp = tftp.expectation(conn, direction, payload, now)
        else:
            return None
        if exp is not None:
            other = self.outstanding.by_key.get(_key(exp.tuple))
            if other is not None and other != conn.orig:
                old = self.outstanding.get(other)
                if old is not None and old.tuple == exp.tuple:
                    # another master expects the same flow: the kernel refuses the new one
                    # (expect_clash, -EBUSY) and keeps the old
                    self._count("expect-clash")
                    return None
            self.outstanding[conn.orig] = exp  # one per master: a new one evicts the old
            self._count("expect-" + exp.kind)
        return exp

    def on_new(self, conn: Conn) -> Expectation | None:
        """The expectation ``conn`` consumes, if it is an expected flow (one dict lookup)."""
        o = conn.orig
        key = _key(o)
        by_key = self.outstanding.by_key
        master = by_key.get(key)
        if master is None:
            return None
        del by_key[key]
        exp = self.outstanding.get(master)
        if exp is None or not exp.matches(o):
            return None  # a stale index entry
        del self.outstanding[master]
        self._count("expect-consumed")
        return exp
