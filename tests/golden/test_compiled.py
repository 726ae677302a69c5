"""The compiled hot path (mypyc, see setup.py) must behave exactly like its Python source.

The same dump script runs twice in child processes: once on this checkout (compiled
modules beside the source when it was built in place) and once on a copy of the
``.py`` files only. It replays every golden capture and two synthetic captures (the
benchmark's mix and ACK worst case) and feeds the tracker seeded random TCP segments
around live sequence numbers; it prints every verdict, every entry with its full TCP
window state, and the decoder's skip counters. The two outputs must be identical.
"""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sniffover

ROOT = Path(__file__).resolve().parents[2]
EXT = importlib.machinery.EXTENSION_SUFFIXES[0]

DUMP = r"""
import glob, os, random, sys, tempfile
from sniffover.bench import replay as bench
from sniffover.conntrack.packet import Packet
from sniffover.conntrack.table import ConntrackTable
from sniffover.replay import replay

def dump_conn(c):
    parts = [repr(c.orig), repr(c.reply), c.status, repr(c.expires), repr(c.last_seen)]
    st = c.tcp
    if st is not None:
        parts += [st.state, st.last_dir, st.last_index, st.last_seq, st.last_ack, st.last_end,
                  st.last_win, st.last_flags, st.retrans]
        for s in st.seen:
            parts += [s.td_end, s.td_maxend, s.td_maxwin, s.td_maxack, s.td_scale, s.flags]
    if c.sctp is not None:
        parts += [c.sctp.state, c.sctp.vtag, c.sctp.flags]
    return " ".join(map(str, parts))

def dump_table(name, table, extra=""):
    print("==", name, extra, table.verdicts, sorted(table.counters.items()))
    for line in sorted(dump_conn(c) for c in table.conns()):
        print(line)

paths = sorted(glob.glob(os.path.join(sys.argv[1], "*.pcap")))
with tempfile.TemporaryDirectory() as tmp:
    mix = os.path.join(tmp, "mix.pcap")
    bench.write_pcap(mix, bench.mix_frames(40_000, seed=7))
    ack = os.path.join(tmp, "ack.pcap")
    bench.write_pcap(ack, bench.ack64_frames(2_000, 20_000))
    for path in paths + [mix, ack]:
        r = replay([path])
        dump_table(os.path.basename(path), r.table, f"{r.packets} {sorted(r.skipped.items())}")

# Random segments on a few flows, near the sequence numbers in play: every branch of the
# state table and of the window checks gets exercised, valid or not.
rng = random.Random(11)
table = ConntrackTable()
hosts = [bytes([192, 0, 2, 1]), bytes([198, 51, 100, 2])]
seqs = [[rng.getrandbits(32), rng.getrandbits(32)] for _ in range(8)]
ts = 1_700_000_000.0
verdicts = []
for i in range(60_000):
    f = rng.randrange(8)
    d = rng.randrange(2)
    flags = rng.choice([0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x01, 0x03, 0x10, 0x18])
    base = seqs[f][d]
    seq = (base + rng.choice([0, 0, 0, 1, -1, 1000, -70000, 2**31])) & 0xFFFFFFFF
    ack = (seqs[f][1 - d] + rng.choice([0, 0, 1, -1, 5000, 2**31])) & 0xFFFFFFFF
    l4len = rng.choice([0, 0, 100, 1448, 70000])
    opts = rng.choice([b"", b"\x01\x03\x03\x07\x04\x02\x00\x00", b"\x01\x01\x08\x0a" + bytes(8)])
    src, dst = (hosts[0], hosts[1]) if d == 0 else (hosts[1], hosts[0])
    sport, dport = (40000 + f, 80) if d == 0 else (80, 40000 + f)
    ts += rng.choice([0.001, 0.5, 30, 200])
    verdicts.append(table.process(Packet(ts, 2, 6, src, dst, sport, dport, l4len, flags, seq,
                                         ack, rng.choice([0, 502, 65535]), opts)))
    if rng.random() < 0.7:
        seqs[f][d] = (seq + l4len + (1 if flags & 0x03 else 0)) & 0xFFFFFFFF
print("== random", "".join(map(str, verdicts)))
dump_table("random", table)
"""


def _compiled(package_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(package_dir)) for p in package_dir.rglob(f"*{EXT}"))


def _run(pythonpath: Path, cwd: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(pythonpath), PYTHONWARNINGS="error::UserWarning")
    out = subprocess.run(
        [sys.executable, "-P", "-c", DUMP, str(ROOT / "pcaps")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_compiled_hot_path_matches_source(tmp_path: Path) -> None:
    package_dir = Path(sniffover.__file__).resolve().parent
    compiled = _compiled(package_dir)
    if not compiled:
        pytest.skip("sniffover is not compiled here (pure-Python install): nothing to compare")
    pure = tmp_path / "pure"
    shutil.copytree(package_dir, pure / "sniffover", ignore=shutil.ignore_patterns(f"*{EXT}"))
    assert not _compiled(pure / "sniffover")
    assert (package_dir / "conntrack" / f"tcp{EXT}").exists(), compiled
    with_compiled = _run(package_dir.parent, tmp_path)
    with_source = _run(pure, tmp_path)
    assert with_compiled.count("\n== ") >= 40
    if with_compiled != with_source:
        a, b = with_compiled.splitlines(), with_source.splitlines()
        first = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
        pytest.fail(f"compiled and source differ at line {first}:\n{a[first]}\n{b[first]}")
