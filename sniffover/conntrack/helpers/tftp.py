"""TFTP requests: the expectations the kernel's TFTP helper would register.

The kernel's ``nf_conntrack_tftp`` (attached to UDP flows to port 69 by the ruleset,
e.g. nft ``udp dport 69 ct helper set "tftp-std"``) looks at the first two bytes of
every datagram of such a flow (``tftp_help``): on opcode 1 (RRQ) or 2 (WRQ) it
registers an *expectation* for the server's answer, which comes from a new port of
the server (RFC 1350: the transfer identifier) to the client's port and is then
RELATED. Unlike the FTP helper it checks neither the direction nor the connection's
state (the very first request, still NEW, registers it), and reads nothing beyond the
opcode. The expectation, built from the master's REPLY tuple: source = the server's
address, destination = the client's address, destination port = the client's port,
source port wildcard (mask 0), UDP; one per master (``max_expected`` 1: a newer request
replaces it), 300 s (``tftp_exp_policy``). DATA (3), ACK (4), ERROR (5) and anything
else register nothing.

A standby that takes over between the request and the first answer needs that
expectation: the answer is a new flow from the outside, which a strict ruleset admits
only as RELATED.

With NAT the expectation follows the translated reply tuple, and ``nf_nat_tftp`` records
the client's own port and the REPLY direction on it (``expect.nat_of``), so the answer
is translated back to the client. What is not modelled: helpers on other ports (the
module's ``ports=`` option).

Pure: no I/O, never raises on any payload.
"""

from __future__ import annotations

from ..entry import Conn
from ..expect import Expectation, ExpectPolicy, Helper, nat_of
from ..packet import PROTO_UDP

TFTP_PORT = 69
POLICY = ExpectPolicy(max_expected=1, timeout=300.0)  # tftp_exp_policy
OPCODE_READ = 1
OPCODE_WRITE = 2
OPCODES = {OPCODE_READ: "RRQ", OPCODE_WRITE: "WRQ"}


def parse(payload: bytes) -> str | None:
    """The request kind, RRQ or WRQ, as the helper reads it (the opcode only), else None."""
    if len(payload) < 2:
        return None
    return OPCODES.get(payload[0] << 8 | payload[1])


def expectation(conn: Conn, direction: int, payload: bytes, now: float) -> Expectation | None:
    """The expectation the TFTP helper would register for this datagram, or None.

    ``conn`` is the request's flow (ORIGINAL towards UDP port 69); ``direction`` is the
    datagram's direction in it, which the helper ignores.
    """
    del direction  # tftp_help registers on a request in either direction
    o = conn.orig
    if o[0] != PROTO_UDP or o[4] != TFTP_PORT:
        return None
    kind = parse(payload)
    if kind is None:
        return None
    r = conn.reply  # nf_ct_expect_init(src = reply.src, dst = reply.dst, sport any, dport)
    full = b"\xff" * len(r[1])
    return Expectation(
        o,
        (PROTO_UDP, r[1], r[2], 0, r[4]),
        (PROTO_UDP, full, full, 0, 0xFFFF),
        now,
        kind,
        POLICY.timeout,
        # nf_nat_tftp: the answer is translated back to the client's own port (dir REPLY)
        nat_of(conn, 0, o[3]),
    )


HELPER = Helper(
    name="tftp",
    l4proto=PROTO_UDP,
    port=TFTP_PORT,
    expectation=expectation,
    policy=POLICY,
    install_unreplied=True,  # the server answers from another port: never replied
    payload=True,
)
