"""The TCP state table must be the kernel's, cell for cell.

KERNEL_TABLE is ``tcp_conntracks[2][6][TCP_CONNTRACK_MAX]`` as it stands in Linux 6.18's
net/netfilter/nf_conntrack_proto_tcp.c (rows syn, synack, fin, ack, rst, none; columns
sNO..sS2), transcribed with the kernel's own state names so the two can be read side by side.
"""

from __future__ import annotations

import pytest

from sniffover.conntrack import tcp
from sniffover.conntrack.states import TCP_STATE_NAMES

KERNEL_TABLE = """
ORIGINAL
/*syn*/    { sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2 },
/*synack*/ { sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR },
/*fin*/    { sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV },
/*ack*/    { sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV },
/*rst*/    { sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL },
/*none*/   { sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV }
REPLY
/*syn*/    { sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2 },
/*synack*/ { sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR },
/*fin*/    { sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV },
/*ack*/    { sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG },
/*rst*/    { sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL },
/*none*/   { sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV }
"""

NAMES = {
    "sNO": 0,
    "sSS": 1,
    "sSR": 2,
    "sES": 3,
    "sFW": 4,
    "sCW": 5,
    "sLA": 6,
    "sTW": 7,
    "sCL": 8,
    "sS2": 9,
    "sIV": tcp.sIV,
    "sIG": tcp.sIG,
}


def parse_kernel_table() -> list[list[list[int]]]:
    table: list[list[list[int]]] = []
    for line in KERNEL_TABLE.strip().splitlines():
        if line in ("ORIGINAL", "REPLY"):
            table.append([])
            continue
        cells = line.split("{")[1].split("}")[0].split(",")
        table[-1].append([NAMES[c.strip()] for c in cells])
    return table


def test_table_is_the_kernels() -> None:
    kernel = parse_kernel_table()
    for d in range(2):
        for index in range(6):
            for state in range(10):
                ours = tcp.TCP_CONNTRACKS[d][index][state]
                assert ours == kernel[d][index][state], (
                    f"dir={d} {tcp.INDEX_NAMES[index]} in {TCP_STATE_NAMES[state]}"
                )


@pytest.mark.parametrize(
    ("flags", "index"),
    [
        (0x02, tcp.SYN),
        (0x12, tcp.SYNACK),
        (0x11, tcp.FIN),
        (0x10, tcp.ACK),
        (0x14, tcp.RST),
        (0x04, tcp.RST),
        (0x00, tcp.NONE),
        (0x18, tcp.ACK),
        (0x07, tcp.RST),
        (0x03, tcp.SYN),
    ],
)
def test_packet_classes_follow_get_conntrack_index(flags: int, index: int) -> None:
    assert tcp.TCP_INDEX[flags] == index


@pytest.mark.parametrize(
    ("flags", "valid"),
    [
        (0x02, True),
        (0x22, True),
        (0x12, True),
        (0x04, True),
        (0x14, True),
        (0x11, True),
        (0x31, True),
        (0x10, True),
        (0x30, True),
        (0x18, True),
        (0xD2, True),
        (0x01, False),
        (0x05, False),
        (0x03, False),
        (0x06, False),
        (0x00, False),
        (0x08, False),
    ],
)
def test_valid_flag_combinations(flags: int, valid: bool) -> None:
    from sniffover.conntrack.packet import Packet

    pkt = Packet(0.0, 2, 6, b"\0" * 4, b"\0" * 4, 1, 2, tcp_flags=flags)
    assert tcp.tcp_error(pkt) is (not valid)


def test_sequence_comparisons_wrap() -> None:
    assert tcp.before(0xFFFFFFF0, 0x10)
    assert tcp.after(0x10, 0xFFFFFFF0)
    assert not tcp.before(5, 5) and not tcp.after(5, 5)
