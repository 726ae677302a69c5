"""ctnetlink: the messages that install, update and delete kernel conntrack entries and
expectations, the socket that sends them, and the netlink/ctnetlink numbers and header structs,
declared here once (``dump.py`` decodes with them; ``IPS_*`` bits come from
``conntrack.entry``).

The hot install path packs ``IPCTNL_MSG_CT_NEW`` messages by hand and sends many per ``sendmsg``
(pyroute2's encoder is ~50x slower); tests decode what is sent with pyroute2 to check the bytes.
Rules of this kernel (conntrack-semantics §5): CTA_STATUS must carry IPS_CONFIRMED on create and
update, may only add SEEN_REPLY/ASSURED, never EXPECTED/DYING; CTA_TIMEOUT is mandatory on
create; TCP window scales stick only with WINDOW_SCALE set on both sides; a message without a
tuple would flush the table, so the encoder refuses to build one.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any, Final

from ..conntrack.entry import IPS_CONFIRMED
from ..errors import NetlinkError

# The netlink and ctnetlink numbers (linux/netfilter/nfnetlink_conntrack.h), declared once for
# the encoder here, the dump decoder (``dump.py``) and the expectation installer.
NETLINK_NETFILTER: Final = 12
NFNL_SUBSYS_CTNETLINK: Final = 1
IPCTNL_MSG_CT_NEW: Final = 0
IPCTNL_MSG_CT_GET: Final = 1
IPCTNL_MSG_CT_DELETE: Final = 2
NFNL_SUBSYS_CTNETLINK_EXP: Final = 2  # expectations (conntrack-semantics §6.3)
IPCTNL_MSG_EXP_NEW: Final = 0
IPCTNL_MSG_EXP_GET: Final = 1
IPCTNL_MSG_EXP_DELETE: Final = 2

NLM_F_REQUEST: Final = 0x01
NLM_F_MULTI: Final = 0x02
NLM_F_ACK: Final = 0x04
NLM_F_DUMP: Final = 0x300
NLM_F_EXCL: Final = 0x200
NLM_F_CREATE: Final = 0x400
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
NLA_F_NESTED: Final = 0x8000

# enum ctattr_type
CTA_TUPLE_ORIG: Final = 1
CTA_TUPLE_REPLY: Final = 2
CTA_STATUS: Final = 3
CTA_PROTOINFO: Final = 4
CTA_HELP: Final = 5
CTA_NAT_SRC: Final = 6
CTA_TIMEOUT: Final = 7
CTA_MARK: Final = 8
CTA_ID: Final = 12
CTA_NAT_DST: Final = 13
CTA_TUPLE_MASTER: Final = 14
CTA_SEQ_ADJ_ORIG: Final = 15
CTA_SEQ_ADJ_REPLY: Final = 16
CTA_ZONE: Final = 18
CTA_LABELS: Final = 22
# enum ctattr_help
CTA_HELP_NAME: Final = 1
CTA_SEQADJ_CORRECTION_POS: Final = 1  # enum ctattr_seqadj
CTA_SEQADJ_OFFSET_BEFORE: Final = 2
CTA_SEQADJ_OFFSET_AFTER: Final = 3
# enum ctattr_expect
CTA_EXPECT_MASTER: Final = 1
CTA_EXPECT_TUPLE: Final = 2
CTA_EXPECT_MASK: Final = 3
CTA_EXPECT_TIMEOUT: Final = 4
CTA_EXPECT_HELP_NAME: Final = 6
CTA_EXPECT_ZONE: Final = 7
CTA_EXPECT_FLAGS: Final = 8
CTA_EXPECT_CLASS: Final = 9
CTA_EXPECT_NAT: Final = 10
CTA_EXPECT_FN: Final = 11
CTA_EXPECT_NAT_DIR: Final = 1  # enum ctattr_expect_nat
CTA_EXPECT_NAT_TUPLE: Final = 2
NAT_FOLLOW_MASTER: Final = "nat-follow-master"  # expectfn of nf_nat_ftp/tftp's expectations
# enum ctattr_nat, ctattr_protonat
CTA_NAT_V4_MINIP: Final = 1
CTA_NAT_V4_MAXIP: Final = 2
CTA_NAT_PROTO: Final = 3
CTA_NAT_V6_MINIP: Final = 4
CTA_NAT_V6_MAXIP: Final = 5
CTA_PROTONAT_PORT_MIN: Final = 1
CTA_PROTONAT_PORT_MAX: Final = 2
# enum ctattr_tuple, ctattr_ip, ctattr_l4proto
CTA_TUPLE_IP: Final = 1
CTA_TUPLE_PROTO: Final = 2
CTA_TUPLE_ZONE: Final = 3
CTA_IP_V4_SRC: Final = 1
CTA_IP_V4_DST: Final = 2
CTA_IP_V6_SRC: Final = 3
CTA_IP_V6_DST: Final = 4
CTA_PROTO_NUM: Final = 1
CTA_PROTO_SRC_PORT: Final = 2
CTA_PROTO_DST_PORT: Final = 3
CTA_PROTO_ICMP_ID: Final = 4
CTA_PROTO_ICMP_TYPE: Final = 5
CTA_PROTO_ICMP_CODE: Final = 6
CTA_PROTO_ICMPV6_ID: Final = 7
CTA_PROTO_ICMPV6_TYPE: Final = 8
CTA_PROTO_ICMPV6_CODE: Final = 9
# enum ctattr_protoinfo, ctattr_protoinfo_tcp, ctattr_protoinfo_sctp
CTA_PROTOINFO_TCP: Final = 1
CTA_PROTOINFO_TCP_STATE: Final = 1
CTA_PROTOINFO_TCP_WSCALE_ORIGINAL: Final = 2
CTA_PROTOINFO_TCP_WSCALE_REPLY: Final = 3
CTA_PROTOINFO_TCP_FLAGS_ORIGINAL: Final = 4
CTA_PROTOINFO_TCP_FLAGS_REPLY: Final = 5
CTA_PROTOINFO_SCTP: Final = 3
CTA_PROTOINFO_SCTP_STATE: Final = 1
CTA_PROTOINFO_SCTP_VTAG_ORIGINAL: Final = 2
CTA_PROTOINFO_SCTP_VTAG_REPLY: Final = 3

AF_INET: Final = 2
AF_INET6: Final = 10

Tuple = tuple[Any, ...]  # (proto, src, dst, sport, dport) as in the core (conntrack.tuple)

NLMSG_HDR: Final = struct.Struct("=IHHII")  # struct nlmsghdr
NLA_HDR: Final = struct.Struct("=HH")  # struct nlattr
NFGEN_HDR: Final = struct.Struct("=BBH")  # struct nfgenmsg


def _attr(kind: int, payload: bytes) -> bytes:
    pad = (-len(payload)) & 3
    return NLA_HDR.pack(4 + len(payload), kind) + payload + b"\0" * pad


def _nest(kind: int, *children: bytes) -> bytes:
    return _attr(kind | NLA_F_NESTED, b"".join(children))


def _u8(v: int) -> bytes:
    return bytes((v,))


def _be16(v: int) -> bytes:
    return v.to_bytes(2, "big")


def _be32(v: int) -> bytes:
    return v.to_bytes(4, "big")


def encode_tuple(kind: int, t: Tuple, zone: int = 0) -> bytes:
    """A CTA_TUPLE_ORIG/REPLY nest for ``t`` (``zone``: CTA_TUPLE_ZONE, this tuple alone)."""
    proto, src, dst, sport, dport = t
    if len(src) == 4:
        ip = _nest(CTA_TUPLE_IP, _attr(CTA_IP_V4_SRC, src), _attr(CTA_IP_V4_DST, dst))
    else:
        ip = _nest(CTA_TUPLE_IP, _attr(CTA_IP_V6_SRC, src), _attr(CTA_IP_V6_DST, dst))
    if proto == 1 or proto == 58:
        base = CTA_PROTO_ICMP_ID if proto == 1 else CTA_PROTO_ICMPV6_ID
        l4 = (
            _attr(base, _be16(sport))
            + _attr(base + 1, _u8(dport >> 8))
            + _attr(base + 2, _u8(dport & 0xFF))
        )
    else:
        # Ports for TCP/UDP/UDP-Lite/SCTP, keys for GRE; ignored by the generic tracker.
        l4 = _attr(CTA_PROTO_SRC_PORT, _be16(sport)) + _attr(CTA_PROTO_DST_PORT, _be16(dport))
    tz = _attr(CTA_TUPLE_ZONE, _be16(zone)) if zone else b""
    return _nest(kind, ip, _nest(CTA_TUPLE_PROTO, _attr(CTA_PROTO_NUM, _u8(proto)), l4), tz)


@dataclass
class TcpInfo:
    """CTA_PROTOINFO_TCP: state, window scales and per-direction flags with their masks."""

    state: int
    wscale_orig: int = 0
    wscale_reply: int = 0
    flags_orig: int = 0
    flags_reply: int = 0
    mask_orig: int = 0
    mask_reply: int = 0


def encode_tcp_info(info: TcpInfo) -> bytes:
    return _nest(
        CTA_PROTOINFO,
        _nest(
            CTA_PROTOINFO_TCP,
            _attr(CTA_PROTOINFO_TCP_STATE, _u8(info.state)),
            _attr(CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, _u8(info.wscale_orig)),
            _attr(CTA_PROTOINFO_TCP_WSCALE_REPLY, _u8(info.wscale_reply)),
            _attr(CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, bytes((info.flags_orig, info.mask_orig))),
            _attr(CTA_PROTOINFO_TCP_FLAGS_REPLY, bytes((info.flags_reply, info.mask_reply))),
        ),
    )


def encode_sctp_info(state: int, vtag_orig: int, vtag_reply: int) -> bytes:
    """CTA_PROTOINFO_SCTP: the kernel wants the state and both vtags (else EINVAL)."""
    return _nest(
        CTA_PROTOINFO,
        _nest(
            CTA_PROTOINFO_SCTP,
            _attr(CTA_PROTOINFO_SCTP_STATE, _u8(state)),
            _attr(CTA_PROTOINFO_SCTP_VTAG_ORIGINAL, _be32(vtag_orig)),
            _attr(CTA_PROTOINFO_SCTP_VTAG_REPLY, _be32(vtag_reply)),
        ),
    )


def encode_nat(kind: int, addr: bytes, port: int) -> bytes:
    """CTA_NAT_SRC/DST binding one address and port (ICMP: the id); create only."""
    lo, hi = (
        (CTA_NAT_V4_MINIP, CTA_NAT_V4_MAXIP)
        if len(addr) == 4
        else (CTA_NAT_V6_MINIP, CTA_NAT_V6_MAXIP)
    )
    ports = _nest(
        CTA_NAT_PROTO,
        _attr(CTA_PROTONAT_PORT_MIN, _be16(port)),
        _attr(CTA_PROTONAT_PORT_MAX, _be16(port)),
    )
    return _nest(kind, _attr(lo, addr), _attr(hi, addr), ports)


SeqAdjValues = tuple[tuple[int, int, int], tuple[int, int, int]]


def encode_seqadj(values: SeqAdjValues) -> bytes:
    """CTA_SEQ_ADJ_ORIG and _REPLY, each {CORRECTION_POS, OFFSET_BEFORE, OFFSET_AFTER}
    (be32, u32 arithmetic; the kernel wants all three: ``change_seq_adj``)."""
    kinds = (CTA_SEQ_ADJ_ORIG, CTA_SEQ_ADJ_REPLY)
    fields = (CTA_SEQADJ_CORRECTION_POS, CTA_SEQADJ_OFFSET_BEFORE, CTA_SEQADJ_OFFSET_AFTER)
    return b"".join(
        _nest(k, *(_attr(f, _be32(v & 0xFFFFFFFF)) for f, v in zip(fields, row, strict=True)))
        for k, row in zip(kinds, values, strict=True)
    )


def encode_ct_new(
    orig: Tuple,
    reply: Tuple,
    *,
    status: int,
    timeout: int,
    tcp: TcpInfo | None = None,
    mark: int | None = None,
    zone: int = 0,
    zone_dir: int = 3,
    seq: int = 0,
    create: bool = True,
    exclusive: bool = False,
    ack: bool = True,
    nat_src: tuple[bytes, int] | None = None,
    nat_dst: tuple[bytes, int] | None = None,
    labels: bytes = b"",
    helper: str | None = None,
    sctp: tuple[int, int, int] | None = None,
    seqadj: SeqAdjValues | None = None,
) -> bytes:
    """One IPCTNL_MSG_CT_NEW (create, or update when the entry exists and not ``exclusive``).

    ``helper`` (CTA_HELP, create only: a helper cannot be added later) attaches a kernel
    helper by name, e.g. "ftp", so the entry's RELATED connections can be expected.
    ``zone_dir`` 1/2: ``zone`` on that tuple alone (CTA_TUPLE_ZONE); ``seqadj``: a NAT
    helper's sequence adjustment (create or update)."""
    family = AF_INET if len(orig[1]) == 4 else AF_INET6
    oz, rz = (zone if zone_dir == 1 else 0), (zone if zone_dir == 2 else 0)
    body = encode_tuple(CTA_TUPLE_ORIG, orig, oz) + encode_tuple(CTA_TUPLE_REPLY, reply, rz)
    body += _attr(CTA_STATUS, _be32(status | IPS_CONFIRMED))
    body += _attr(CTA_TIMEOUT, _be32(max(1, min(int(timeout), 0xFFFFFFFF))))
    if nat_src is not None:
        body += encode_nat(CTA_NAT_SRC, *nat_src)
    if nat_dst is not None:
        body += encode_nat(CTA_NAT_DST, *nat_dst)
    if tcp is not None:
        body += encode_tcp_info(tcp)
    elif sctp is not None:  # (state, vtag ORIGINAL, vtag REPLY)
        body += encode_sctp_info(*sctp)
    if helper is not None:
        body += _nest(CTA_HELP, _attr(CTA_HELP_NAME, helper.encode() + b"\0"))
    if mark is not None:
        body += _attr(CTA_MARK, _be32(mark))
    if seqadj is not None:
        body += encode_seqadj(seqadj)
    if labels and create:
        # applied only where a rule uses `ct label`, silently dropped elsewhere (§5.4)
        body += _attr(CTA_LABELS, labels)
    body += _attr(CTA_ZONE, _be16(zone)) if zone and zone_dir == 3 else b""
    flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
    if create:
        flags |= NLM_F_CREATE
    if exclusive:
        flags |= NLM_F_EXCL
    return _message(IPCTNL_MSG_CT_NEW, flags, seq, family, body)


def encode_exp_new(
    master: Tuple,
    expected: Tuple,
    mask: Tuple,
    *,
    timeout: int,
    zone: int = 0,
    seq: int = 0,
    ack: bool = True,
    nat: tuple[int, Tuple] | None = None,
) -> bytes:
    """One IPCTNL_MSG_EXP_NEW: create the expectation (or update its timeout if it exists).

    ``master`` is the ORIGINAL tuple of an entry that exists and has a helper (else ENOENT
    / EOPNOTSUPP); the mask needs every tuple field, only its source address and port
    count (destination always exact). The kernel takes the helper's policy timeout on
    create and CTA_EXPECT_TIMEOUT on update (conntrack-semantics §6.3).

    ``nat`` = (direction, tuple): a NAT helper's expectation: CTA_EXPECT_NAT {DIR, TUPLE
    (saved address/port as its source)} and CTA_EXPECT_FN "nat-follow-master" (without
    the function the kernel keeps the saved values and translates nothing)."""
    family = AF_INET if len(master[1]) == 4 else AF_INET6
    body = encode_tuple(CTA_EXPECT_MASTER, master) + encode_tuple(CTA_EXPECT_TUPLE, expected)
    body += encode_tuple(CTA_EXPECT_MASK, mask)
    body += _attr(CTA_EXPECT_TIMEOUT, _be32(max(1, min(int(timeout), 0xFFFFFFFF))))
    if nat is not None:
        direction, saved = nat
        body += _nest(
            CTA_EXPECT_NAT,
            _attr(CTA_EXPECT_NAT_DIR, _be32(direction)),
            encode_tuple(CTA_EXPECT_NAT_TUPLE, saved),
        )
        body += _attr(CTA_EXPECT_FN, NAT_FOLLOW_MASTER.encode() + b"\0")
    body += _attr(CTA_EXPECT_ZONE, _be16(zone)) if zone else b""
    flags = NLM_F_REQUEST | NLM_F_CREATE | (NLM_F_ACK if ack else 0)
    return _message(IPCTNL_MSG_EXP_NEW, flags, seq, family, body, NFNL_SUBSYS_CTNETLINK_EXP)


def encode_exp_delete(expected: Tuple, zone: int = 0, seq: int = 0, ack: bool = True) -> bytes:
    """Delete one expectation by its tuple (never a tuple-less flush)."""
    family = AF_INET if len(expected[1]) == 4 else AF_INET6
    body = encode_tuple(CTA_EXPECT_TUPLE, expected)
    body += _attr(CTA_EXPECT_ZONE, _be16(zone)) if zone else b""
    flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
    return _message(IPCTNL_MSG_EXP_DELETE, flags, seq, family, body, NFNL_SUBSYS_CTNETLINK_EXP)


# --- the hot path: one struct.pack per message -----------------------------------------
#
# Profiling the installer showed message building (25 small attributes) costing 7x the sendmsg
# and the kernel round trip together. For the common shapes (port-based protocols over
# IPv4/IPv6, with or without TCP protoinfo, mark and zone) the message is precomputed constant
# pieces joined with the variable ones; ``encode_ct_new`` stays the reference and the tests
# check the two byte for byte.

_N = NLA_F_NESTED

# The constant pieces of a message, joined with the variable ones (addresses, ports, status,
# timeout, ...) in one b"".join: compiled, that beats one struct.pack of ~60 values.
_HEAD = struct.Struct(NLMSG_HDR.format + NFGEN_HDR.format.lstrip("=")).pack  # nlmsghdr + nfgenmsg
_HH = NLA_HDR.pack  # an attribute header
_PORTS: tuple[bytes, ...] = tuple(struct.pack("!Hxx", p) for p in range(0x10000))
_PROTOS: tuple[bytes, ...] = tuple(bytes((p, 0, 0, 0)) for p in range(256))


class _Pieces:
    """The constant parts of a CT_NEW message for one address family."""

    def __init__(self, v6: bool) -> None:
        alen = 16 if v6 else 4
        ip_attr = 4 + alen
        ip_nest = 4 + 2 * ip_attr
        tuple_nest = ip_nest + 32
        a_src, a_dst = (CTA_IP_V6_SRC, CTA_IP_V6_DST) if v6 else (CTA_IP_V4_SRC, CTA_IP_V4_DST)
        self.family = AF_INET6 if v6 else AF_INET
        self.base = 20 + 2 * tuple_nest + 16  # header, two tuples, status, timeout
        self.orig = _HH(tuple_nest, CTA_TUPLE_ORIG | _N) + _HH(ip_nest, CTA_TUPLE_IP | _N)
        self.orig += _HH(ip_attr, a_src)
        self.reply = _HH(tuple_nest, CTA_TUPLE_REPLY | _N) + _HH(ip_nest, CTA_TUPLE_IP | _N)
        self.reply += _HH(ip_attr, a_src)
        self.dst = _HH(ip_attr, a_dst)
        self.proto = _HH(28, CTA_TUPLE_PROTO | _N) + _HH(5, CTA_PROTO_NUM)
        self.sport = _HH(6, CTA_PROTO_SRC_PORT)
        self.dport = _HH(6, CTA_PROTO_DST_PORT)


_PIECES = (_Pieces(False), _Pieces(True))
_STATUS = _HH(8, CTA_STATUS)
_TIMEOUT = _HH(8, CTA_TIMEOUT)
_TCP_BLOCKS: dict[tuple[int, ...], bytes] = {}


def _tcp_block(tcp: TcpInfo) -> bytes:
    """``encode_tcp_info``, cached: a handful of distinct values in practice."""
    key = (
        tcp.state,
        tcp.wscale_orig,
        tcp.wscale_reply,
        tcp.flags_orig,
        tcp.flags_reply,
        tcp.mask_orig,
        tcp.mask_reply,
    )
    got = _TCP_BLOCKS.get(key)
    if got is None:
        got = encode_tcp_info(tcp)
        if len(_TCP_BLOCKS) < 4096:
            _TCP_BLOCKS[key] = got
    return got


def encode_ct_new_fast(
    orig: Tuple,
    reply: Tuple,
    status: int,
    timeout: int,
    tcp: TcpInfo | None,
    mark: int | None,
    zone: int,
    seq: int,
    create: bool,
    exclusive: bool,
    ack: bool = True,
) -> bytes:
    """``encode_ct_new`` for port-based protocols (TCP/UDP/UDP-Lite/SCTP/DCCP), byte-identical."""
    proto, osrc, odst, osport, odport = orig
    _, rsrc, rdst, rsport, rdport = reply
    pc = _PIECES[1 if len(osrc) == 16 else 0]
    flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
    if create:
        flags |= NLM_F_CREATE
    if exclusive:
        flags |= NLM_F_EXCL
    tail: list[bytes] = []
    if tcp is not None:
        tail.append(_tcp_block(tcp))
    if mark is not None:
        tail.append(_attr(CTA_MARK, _be32(mark)))
    if zone:
        tail.append(_attr(CTA_ZONE, _be16(zone)))
    length = pc.base
    for t in tail:
        length += len(t)
    p4 = _PROTOS[proto]
    ports = _PORTS
    return b"".join(
        [
            _HEAD(
                length,
                (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW,
                flags,
                seq,
                0,
                pc.family,
                0,
                0,
            ),
            pc.orig,
            osrc,
            pc.dst,
            odst,
            pc.proto,
            p4,
            pc.sport,
            ports[osport],
            pc.dport,
            ports[odport],
            pc.reply,
            rsrc,
            pc.dst,
            rdst,
            pc.proto,
            p4,
            pc.sport,
            ports[rsport],
            pc.dport,
            ports[rdport],
            _STATUS,
            (status | IPS_CONFIRMED).to_bytes(4, "big"),
            _TIMEOUT,
            max(1, min(int(timeout), 0xFFFFFFFF)).to_bytes(4, "big"),
            *tail,
        ]
    )


def encode_ct_delete(orig: Tuple, zone: int = 0, seq: int = 0, ack: bool = True) -> bytes:
    """Delete one entry by its original tuple (never a tuple-less flush)."""
    family = AF_INET if len(orig[1]) == 4 else AF_INET6
    body = encode_tuple(CTA_TUPLE_ORIG, orig) + (_attr(CTA_ZONE, _be16(zone)) if zone else b"")
    return _message(
        IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | (NLM_F_ACK if ack else 0), seq, family, body
    )


def encode_dump_request(msg: int, seq: int, family: int, subsys: int) -> bytes:
    """A dump request (``IPCTNL_MSG_CT_GET`` / ``IPCTNL_MSG_EXP_GET``) for ``family`` (0: all)."""
    return _message(msg, NLM_F_REQUEST | NLM_F_DUMP, seq, family, b"", subsys)


def _message(
    msg: int, flags: int, seq: int, family: int, body: bytes, subsys: int = NFNL_SUBSYS_CTNETLINK
) -> bytes:
    payload = NFGEN_HDR.pack(family, 0, 0) + body
    kind = (subsys << 8) | msg
    return NLMSG_HDR.pack(16 + len(payload), kind, flags, seq, 0) + payload


# --- the socket ----------------------------------------------------------------------


class CtnlSocket:
    """A NETLINK_NETFILTER socket in the current network namespace."""

    def __init__(self, rcvbuf: int = 4 << 20) -> None:
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        except OSError as exc:
            raise NetlinkError(exc.errno, f"ctnetlink unavailable: {exc.strerror}") from None
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((0, 0))
        self._seq = 1
        self._buf = bytearray(1 << 20)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> CtnlSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def send_batch(self, messages: list[bytes]) -> dict[int, int]:
        """Send messages (each with its own seq) in one datagram and collect the answers.

        The kernel acks a message that asks for it (NLM_F_ACK) and reports every
        failure whether asked or not, in order; so a batch whose last message alone
        asks for an ack is complete when that ack arrives (one recv instead of one
        per message). Returns {seq: errno}: 0 for an ack, the errno of each failure;
        a message without NLM_F_ACK and absent from the result succeeded. ENOBUFS on
        the socket is raised.
        """
        pending = set()
        for m in messages:
            _len, _kind, flags, seq, _pid = NLMSG_HDR.unpack_from(m, 0)
            if flags & NLM_F_ACK:
                pending.add(seq)
        self.sock.sendmsg(messages)
        results: dict[int, int] = {}
        view = memoryview(self._buf)
        while pending:
            n = self.sock.recv_into(view)
            off = 0
            while off + 16 <= n:
                length, kind, _flags, seq, _pid = NLMSG_HDR.unpack_from(self._buf, off)
                if length < 16:
                    break
                if kind == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", self._buf, off + 16)[0]
                    if seq in pending or err:
                        pending.discard(seq)
                        results[seq] = err
                off += (length + 3) & ~3
        return results

    def request(self, message: bytes) -> None:
        """Send one message and raise NetlinkError if the kernel refuses it."""
        seq = NLMSG_HDR.unpack_from(message, 0)[3]
        err = self.send_batch([message]).get(seq, 0)
        if err:
            raise NetlinkError(err, os.strerror(err))

    def check_writable(self) -> None:
        """Raise NetlinkError, with one line, if we may not write the conntrack table: asks
        to delete a TEST-NET tuple that is never there (ENOENT means allowed to ask)."""
        probe = (17, bytes([192, 0, 2, 0]), bytes([192, 0, 2, 0]), 0, 0)
        try:
            self.request(encode_ct_delete(probe, seq=self.next_seq()))
        except NetlinkError as exc:
            if exc.errno == errno.ENOENT:
                return
            if exc.errno == errno.EPERM:
                raise NetlinkError(
                    errno.EPERM, "ctnetlink: permission denied (needs CAP_NET_ADMIN)"
                ) from None
            raise


__all__ = [
    "CtnlSocket",
    "NetlinkError",
    "TcpInfo",
    "encode_ct_delete",
    "encode_ct_new",
    "errno",
]
