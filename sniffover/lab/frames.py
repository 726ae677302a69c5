"""SCTP frames built by hand: chunks, packets with their CRC32c, one builder per chunk type.

The kernel in the lab has no SCTP sockets, so the golden recorder crafts every SCTP packet
(``tools/golden/record.py`` sends them from raw sockets) and the unit tests feed the same
bytes to the decoder and the tracker. Only bytes here: no addresses, no sockets.
Imports only the standard library.
"""

from __future__ import annotations

import struct
from typing import Final


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C: Final = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC32c (Castagnoli), as SCTP uses it (RFC 9260 appendix B)."""
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def sctp_chunk(ctype: int, flags: int = 0, body: bytes = b"") -> bytes:
    n = 4 + len(body)
    return struct.pack("!BBH", ctype, flags, n) + body + bytes(-n % 4)


def sctp_packet(sport: int, dport: int, vtag: int, *chunks: bytes) -> bytes:
    """An SCTP packet (common header + chunks) with its CRC32c (stored little-endian)."""
    data = struct.pack("!HHII", sport, dport, vtag, 0) + b"".join(chunks)
    return data[:8] + struct.pack("<I", crc32c(data)) + data[12:]


def _init_body(tag: int, tsn: int, params: bytes = b"") -> bytes:
    return struct.pack("!IIHHI", tag, 65536, 10, 10, tsn) + params


def sc_init(tag: int, tsn: int = 1000) -> bytes:
    return sctp_chunk(1, 0, _init_body(tag, tsn))


def sc_init_ack(tag: int, tsn: int = 5000, cookie: bytes = b"cookie" * 4) -> bytes:
    return sctp_chunk(2, 0, _init_body(tag, tsn, struct.pack("!HH", 7, 4 + len(cookie)) + cookie))


def sc_cookie_echo(cookie: bytes = b"cookie" * 4) -> bytes:
    return sctp_chunk(10, 0, cookie)


def sc_data(tsn: int, n: int = 100, sid: int = 0, ssn: int = 0) -> bytes:
    return sctp_chunk(0, 0x03, struct.pack("!IHHI", tsn, sid, ssn, 0) + b"d" * n)


def sc_sack(cum: int) -> bytes:
    return sctp_chunk(3, 0, struct.pack("!IIHH", cum, 65536, 0, 0))


def sc_heartbeat(info: bytes = b"hbinfo!!") -> bytes:
    return sctp_chunk(4, 0, struct.pack("!HH", 1, 4 + len(info)) + info)


def sc_heartbeat_ack(info: bytes = b"hbinfo!!") -> bytes:
    return sctp_chunk(5, 0, struct.pack("!HH", 1, 4 + len(info)) + info)


SC_COOKIE_ACK: Final = sctp_chunk(11)
SC_SHUTDOWN_ACK: Final = sctp_chunk(8)


def sc_abort(t_flag: bool = False) -> bytes:
    return sctp_chunk(6, 1 if t_flag else 0)


def sc_shutdown(cum: int) -> bytes:
    return sctp_chunk(7, 0, struct.pack("!I", cum))


def sc_shutdown_complete(t_flag: bool = False) -> bytes:
    return sctp_chunk(14, 1 if t_flag else 0)
