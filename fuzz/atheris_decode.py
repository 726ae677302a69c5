"""Coverage-guided fuzzing of decode + track with atheris (libFuzzer); not a pytest test.

    pip install atheris
    python fuzz/atheris_decode.py -runs=1000000                 # from an empty corpus
    python fuzz/atheris_decode.py --seed CORPUS && python fuzz/atheris_decode.py CORPUS -runs=...

One input = a link type and up to 16 frames (with time gaps) decoded by ``Decoder`` (frame
by frame and as a ``decode_batch``, which must agree) and tracked by a ``ConntrackTable``
with ``max_entries=4`` (so early drop runs too) and by an unbounded one. Any exception, or
a broken invariant (tuple shapes, both tuples mapping to their entry, the bound, remaining
timeouts within [0, the largest timeout] for listed entries) is a crash. ``--seed DIR``
writes one input per frame of the golden captures in ``pcaps/`` as a starting corpus.

The file name does not match ``test_*.py``, so pytest does not collect it.
"""

from __future__ import annotations

import os
import struct
import sys
from dataclasses import asdict

import atheris

with atheris.instrument_imports():
    from sniffover.capture.decode import Decoder
    from sniffover.capture.headers import LINKTYPES
    from sniffover.conntrack.table import ConntrackTable
    from sniffover.conntrack.timeouts import Timeouts

LINKS = sorted(LINKTYPES)
MAX_TIMEOUT = max(
    [
        *Timeouts().tcp,
        *(v for k, v in asdict(Timeouts()).items() if k.endswith("timeout") or "timeout_" in k),
    ]
)
GAPS = (0.0, 0.001, 0.5, 2.5, 31.0, 121.0, 700.0, 1e6)


def check_table(table: ConntrackTable, now: float) -> None:
    n = 0
    for conn in table.conns():
        n += 1
        for t in (conn.orig, conn.reply):
            proto, src, dst, sport, dport = t
            if not (
                0 <= proto <= 255
                and len(src) in (4, 16)
                and len(dst) == len(src)
                and 0 <= sport <= 0xFFFF
                and 0 <= dport <= 0xFFFF
            ):
                raise AssertionError(f"bad tuple {t!r}")
        if len(conn.orig[1]) != len(conn.reply[1]) or conn.orig[0] != conn.reply[0]:
            raise AssertionError(f"tuples disagree {conn.orig!r} {conn.reply!r}")
        if conn.orig != conn.reply and table.get(conn.orig) != (conn, 0):
            raise AssertionError(f"orig does not map to its entry {conn!r}")
        if table.get(conn.reply) != (conn, 1):
            raise AssertionError(f"reply does not map to its entry {conn!r}")
    if n != len(table):
        raise AssertionError(f"len {len(table)} != {n} entries")
    if table.max_entries is not None and n > table.max_entries:
        raise AssertionError(f"{n} entries over the bound {table.max_entries}")
    for conn in table.entries(now):
        if not (conn.expires > now and 0 <= conn.remaining(now) <= MAX_TIMEOUT):
            raise AssertionError(f"listed entry has remaining {conn.remaining(now)}")


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    linktype = LINKS[fdp.ConsumeIntInRange(0, len(LINKS) - 1)]
    frames = []
    gaps = []
    for _ in range(fdp.ConsumeIntInRange(1, 16)):
        gaps.append(GAPS[fdp.ConsumeIntInRange(0, len(GAPS) - 1)])
        frames.append(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200)))
        if not fdp.remaining_bytes():
            break
    dec = Decoder(linktype)
    bounded = ConntrackTable(max_entries=4)
    unbounded = ConntrackTable()
    ts = 1_700_000_000.0
    single = []
    meta = b""
    off = 0
    for frame, gap in zip(frames, gaps, strict=True):
        ts += gap
        sec = int(ts)
        meta += struct.pack("=IIII", sec, 0, off, len(frame))
        off += len(frame)
        pkt = dec.decode(float(sec), frame)
        if pkt is None:
            continue
        alen = 4 if pkt.family == 2 else 16
        if pkt.family not in (2, 10) or len(pkt.src) != alen or len(pkt.dst) != alen:
            raise AssertionError(f"bad packet {pkt!r}")
        if pkt.l4len < 0:
            raise AssertionError(f"negative l4len {pkt!r}")
        single.append(pkt)
        for table in (bounded, unbounded):
            table.process(pkt)
            check_table(table, pkt.ts)
    batch = Decoder(linktype).decode_batch(b"".join(frames), meta)
    if [repr(p) for p in batch] != [repr(p) for p in single]:
        raise AssertionError("decode_batch differs from frame-by-frame decoding")


def seed(directory: str) -> int:
    """One corpus file per golden frame: link type index, count 1, gap, length, frame."""
    import pcapy  # type: ignore[import-untyped]

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pcaps")
    os.makedirs(directory, exist_ok=True)
    n = 0
    for name in sorted(os.listdir(root)):
        if not name.endswith(".pcap"):
            continue
        reader = pcapy.open_offline(os.path.join(root, name))
        link = LINKS.index(reader.datalink())
        while True:
            hdr, frame = reader.next()
            if hdr is None:
                break
            frame = frame[:200]
            # FuzzedDataProvider reads ConsumeIntInRange from the *end* of the data and
            # ConsumeBytes from the front, so a seed is only a rough starting point.
            blob = bytes(frame) + bytes([len(frame), 0, 0, link])
            with open(os.path.join(directory, f"{name}-{n}"), "wb") as f:
                f.write(blob)
            n += 1
    return n


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--seed":
        print(f"{seed(sys.argv[2])} seed inputs in {sys.argv[2]}")
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
