"""Small builders for tracker tests: packets between two documentation-range hosts, and a
stand-in for the kernel's ctnetlink socket."""

from __future__ import annotations

import errno
import struct

from sniffover.conntrack.packet import Packet

A = bytes([192, 0, 2, 1])
B = bytes([198, 51, 100, 1])
A6 = bytes.fromhex("20010db8000100000000000000000001")
B6 = bytes.fromhex("20010db8000200000000000000000001")

SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08


# MSS 1460, SACK permitted, timestamps, NOP, window scale 7 (what Linux sends)
def syn_opts(wscale: int | None = 7, sack: bool = True) -> bytes:
    opts = bytes([2, 4, 5, 0xB4])
    opts += bytes([4, 2]) if sack else bytes([1, 1])
    opts += bytes([8, 10, 0, 0, 0, 1, 0, 0, 0, 0])
    if wscale is not None:
        opts += bytes([1, 3, 3, wscale])
    return opts


def tcp(ts, flags, seq, ack=0, *, src=A, dst=B, sport=40000, dport=80, win=64240, data=0, opts=b""):
    return Packet(
        ts, 2 if len(src) == 4 else 10, 6, src, dst, sport, dport, data, flags, seq, ack, win, opts
    )


def udp(ts, src=A, dst=B, sport=40000, dport=53, data=20):
    return Packet(ts, 2 if len(src) == 4 else 10, 17, src, dst, sport, dport, data)


def icmp(ts, icmp_type, code=0, ident=0x1234, src=A, dst=B, inner=None, proto=1):
    return Packet(
        ts,
        2 if len(src) == 4 else 10,
        proto,
        src,
        dst,
        ident,
        icmp_type << 8 | code,
        0,
        inner=inner,
    )


class FakeSender:
    """A BatchSender standing in for the kernel: records the messages and answers each
    with ``err`` (0: ack), or ``errors[n]`` for the n-th message sent; its ``enobufs``-th
    batch raises ENOBUFS (counting from 1)."""

    def __init__(
        self,
        err: int = 0,
        *,
        start: int = 0,
        errors: dict[int, int] | None = None,
        enobufs: int = -1,
    ) -> None:
        self.seq = start
        self.err = err
        self.errors = errors or {}
        self.enobufs = enobufs
        self.batches = 0
        self.sent: list[bytes] = []

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def send_batch(self, messages: list[bytes]) -> dict[int, int]:
        self.batches += 1
        if self.batches == self.enobufs:
            raise OSError(errno.ENOBUFS, "no buffer space")
        out = {}
        for m in messages:
            out[struct.unpack_from("=I", m, 8)[0]] = self.errors.get(len(self.sent), self.err)
            self.sent.append(m)
        return out


# A prelude for ``python -c`` agents whose run patches a module (a lab's control): mypyc
# modules call each other natively, so a patched attribute would not be seen. This makes
# every compiled module of the package import from its source instead (sniffover._stale).
SOURCE_FIRST = (
    "import os, sys, sniffover._stale as _s; "
    "sys.meta_path.insert(0, _s.SourceFirst({m: p[0] for m, p in "
    "_s.compiled_modules(os.path.dirname(_s.__file__), 'sniffover').items()})); "
)
