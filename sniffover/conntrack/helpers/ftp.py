"""FTP control channels: the expectations the kernel's FTP helper would register.

The kernel's ``nf_conntrack_ftp`` (attached to the control connection by the ruleset,
e.g. nft ``tcp dport 21 ct helper set "ftp-std"``) reads each control segment and, on a
port announcement, registers an *expectation*: the first packet of the data connection
to come, which is then RELATED. A standby that takes over an FTP session needs those
expectations too (conntrack-semantics §6). This module finds them in sniffed segments,
the way the helper does (``help()``, ``find_pattern()`` and the ``try_*`` parsers):

* the segment must start with the command: ``PORT`` / ``EPRT`` (case-insensitive) from
  the client (the ORIGINAL direction), ``227 `` / ``229 `` from the server (REPLY);
* ``PORT h1,h2,h3,h4,p1,p2\\r`` and the 227 reply (numbers after the first digit, any
  terminator) give an address and a port; ``EPRT |1|a.b.c.d|port|`` (``|2|`` for IPv6)
  likewise; ``229 ... (|||port|)`` gives a port, the address is the sender's;
* the announced address must be the sender's own (the helper's default, ``loose=0``):
  anything else is not recorded;
* only once the control connection has seen traffic both ways (ctinfo ESTABLISHED).

The expectation: whoever received the announcement connects from any port to the
announced address and port. For PORT/EPRT that is the server connecting to the
client; for 227/229 the client connecting to the server. Source address exact, source
port wildcard (mask 0), destination exact, TCP; the FTP helper keeps one per master
and its policy gives it 300 s.

With NAT (``nf_nat_ftp``) the master rewrites the announced address to the translated
one and records on the expectation where the data connection goes after translation
(``expect.nat_of``); the rewrite's change of length is the entry's sequence adjustment
(``conntrack/seqadj.py``, learned from the two copies in ``confirm.py``).

What is not modelled: the helper's "just after a newline" sequence bookkeeping (a
segment here is read when it starts with a command, which is what FTP peers send), and
the NAT helper picking another port when the announced one is taken.

Pure: no I/O, never raises on any payload.
"""

from __future__ import annotations

import ipaddress

from ..entry import IPS_SEEN_REPLY, Conn
from ..expect import Expectation, ExpectPolicy, Helper, nat_of
from ..packet import PROTO_TCP

FTP_PORT = 21
# what nf_nat_ftp rewrites (a segment starting with one of these, as the helper reads it)
REWRITTEN = frozenset((b"PORT", b"EPRT", b"227 ", b"229 "))
POLICY = ExpectPolicy(max_expected=1, timeout=300.0)  # ftp_exp_policy
U32 = 0xFFFFFFFF


# --- the helper's parsers, on bytes (each returns None where the kernel's returns 0) ----


def _numbers(data: bytes, count: int, sep: int, term: int | None) -> list[int] | None:
    """``try_number``: ``count`` numbers separated by ``sep``, then ``term`` (any non-digit
    non-separator if None); u32 arithmetic as in C. None if they are not there."""
    out = [0] * count
    i = 0
    for c in data:
        if 48 <= c <= 57:
            out[i] = (out[i] * 10 + c - 48) & U32
        elif c == sep:
            i += 1
            if i == count:
                return None
        else:
            return out if (term is None or c == term) and i == count - 1 else None
    return None


def _rfc959(data: bytes, term: int | None) -> tuple[bytes, int] | None:
    a = _numbers(data, 6, 44, term)  # ','
    if a is None:
        return None
    ip = ((a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]) & U32
    return ip.to_bytes(4, "big"), ((a[4] << 8) | a[5]) & 0xFFFF


def _rfc1123(data: bytes) -> tuple[bytes, int] | None:
    """The 227 reply: the numbers start at the first digit, whatever precedes them."""
    for i, c in enumerate(data):
        if 48 <= c <= 57:
            return _rfc959(data[i:], None)
    return None


def _port(data: bytes, start: int, delim: int) -> int | None:
    """``get_port``: digits up to ``delim`` (u16 arithmetic), not 0."""
    port = 0
    for c in data[start:]:
        if c == delim:
            return port or None
        if not 48 <= c <= 57:
            return None
        port = (port * 10 + c - 48) & 0xFFFF
    return None


def _delim(data: bytes) -> int | None:
    if len(data) <= 3:
        return None
    d = data[0]
    if 48 <= d <= 57 or d < 33 or d > 126:
        return None
    return d


def _eprt(data: bytes, v6: bool) -> tuple[bytes, int] | None:
    d = _delim(data)
    if d is None or data[2] != d or data[1] != (50 if v6 else 49):  # '2' / '1'
        return None
    end = data.find(bytes((d,)), 3)
    if v6:
        if end < 0:
            return None
        try:
            addr = ipaddress.IPv6Address(data[3:end].decode("ascii")).packed
        except (ValueError, UnicodeDecodeError):
            return None
    else:
        a = _numbers(data[3:], 4, 46, d)  # '.'
        if a is None:
            return None
        addr = (((a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]) & U32).to_bytes(4, "big")
    port = _port(data, end + 1, d)
    return None if port is None else (addr, port)


def _epsv(data: bytes) -> int | None:
    d = _delim(data)
    if d is None or data[1] != d or data[2] != d:
        return None
    return _port(data, 3, d)


def parse(payload: bytes, direction: int, sender: bytes) -> tuple[str, bytes, int] | None:
    """(kind, announced address, port) of a control segment, as the helper reads it.

    ``direction`` 0 is the client's (ORIGINAL), 1 the server's; ``sender`` is the sending
    side's address, which EPSV's answer implies (and which sets the family).
    """
    v6 = len(sender) == 16
    head = payload[:4].upper()
    if direction == 0:
        if head not in (b"PORT", b"EPRT"):
            return None
        space = payload.find(b" ", 4)  # the helper skips to the first space
        if space < 0:
            return None
        rest = payload[space + 1 :]
        if head == b"PORT":
            if v6:  # PORT carries an IPv4 address: never equal to an IPv6 sender's
                return None
            got = _rfc959(rest, 13)  # '\r'
        else:
            got = _eprt(rest, v6)
        return None if got is None else (head.decode(), got[0], got[1])
    if head == b"227 ":
        if v6:
            return None
        got = _rfc1123(payload[4:])
        return None if got is None else ("227", got[0], got[1])
    if head == b"229 ":
        paren = payload.find(b"(", 4)
        if paren < 0:
            return None
        port = _epsv(payload[paren + 1 :])
        return None if port is None else ("229", sender, port)
    return None


def expectation(conn: Conn, direction: int, payload: bytes, now: float) -> Expectation | None:
    """The expectation the FTP helper would register for this control segment, or None.

    ``conn`` is the control connection (ORIGINAL towards port 21), ``direction`` the
    segment's direction in it.
    """
    if (
        not payload
        or conn.orig[0] != PROTO_TCP
        or conn.orig[4] != FTP_PORT
        or not conn.status & IPS_SEEN_REPLY
    ):
        return None
    own, other = (conn.orig, conn.reply) if direction == 0 else (conn.reply, conn.orig)
    sender = own[1]
    got = parse(payload, direction, sender)
    if got is None:
        return None
    kind, addr, port = got
    if addr != sender:
        return None  # loose=0: an announcement for another host is not recorded
    # the helper: src = tuplehash[!dir].src, dst = tuplehash[!dir].dst, dport = announced
    full = b"\xff" * len(sender)
    return Expectation(
        conn.orig,
        (PROTO_TCP, other[1], other[2], 0, port),
        (PROTO_TCP, full, full, 0, 0xFFFF),
        now,
        kind,
        POLICY.timeout,
        nat_of(conn, direction, port),  # nf_nat_ftp: saved_proto = the announced port
    )


HELPER = Helper(
    name="ftp",
    l4proto=PROTO_TCP,
    port=FTP_PORT,
    expectation=expectation,
    policy=POLICY,
    install_unreplied=False,
    payload=True,
)
