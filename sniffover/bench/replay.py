"""Replay benchmark: synthetic captures of a realistic mix and of a worst case, and memory per flow.

    python -m sniffover.bench.replay [--packets 1000000] [--runs 5] [--dir /tmp] [--json]

* ``mix``: ~1M frames: bulk TCP transfers (data + ACKs), short-connection churn
  (handshake, request, answer, FIN close), DNS-like UDP, ICMP echo; ~10% of the
  frames 802.1Q-tagged and ~15% IPv6. Frames are stored with a 128-byte snap
  length, as a sniffer would keep them (the tracker needs only the headers;
  lengths come from the IP header).
* ``ack64``: 100k established TCP flows, then 64-byte pure-ACK frames round
  robin over them: every packet is a dict lookup and a window check.
* ``memory``: RSS growth per tracked flow with 1M established TCP flows in the
  table (and 1M UDP flows), measured in a fresh child process.

Each replay is timed end to end (file read, decode, track) on one core; the
median of ``--runs`` runs is reported. Synthetic traffic is generated, not
sniffed; seq/ack numbers are consistent so the tracker takes its normal path.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

from ..replay import replay

PCAP_HEADER = struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 128, 1)
SNAPLEN = 128
MAC_A = b"\x02\x00\x00\x00\x00\x01"
MAC_B = b"\x02\x00\x00\x00\x00\x02"
SYN_OPTS = bytes([2, 4, 5, 0xB4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7])
ACK, SYN, FIN, PSH = 0x10, 0x02, 0x01, 0x08
MSS = 1448


def _addr4(i: int, net: int) -> bytes:
    """Hosts of the documentation nets: net 0 = 192.0.2.0/24, 1 = 198.51.100.0/24."""
    return (bytes([192, 0, 2]) if net == 0 else bytes([198, 51, 100])) + bytes([1 + i % 250])


def _addr6(i: int, net: int) -> bytes:
    return bytes.fromhex("20010db8") + bytes([0, 1 + net]) + b"\0" * 8 + struct.pack("!H", 1 + i)


class Flow:
    """Frames of one flow: knows its addresses, encapsulation and sequence numbers."""

    def __init__(self, n: int, v6: bool, vlan: int, sport: int, dport: int) -> None:
        self.v6 = v6
        self.c = _addr6(n, 0) if v6 else _addr4(n, 0)
        self.s = _addr6(n, 1) if v6 else _addr4(n, 1)
        self.sport, self.dport = sport, dport
        self.cseq = random.getrandbits(32)
        self.sseq = random.getrandbits(32)
        self.link = MAC_A + MAC_B + (struct.pack("!HH", 0x8100, vlan) if vlan else b"")
        self.link += b"\x86\xdd" if v6 else b"\x08\x00"

    def _ip(self, proto: int, to_server: bool, l4: bytes, payload: int) -> bytes:
        src, dst = (self.c, self.s) if to_server else (self.s, self.c)
        if self.v6:
            return struct.pack("!IHBB", 0x60000000, len(l4) + payload, proto, 64) + src + dst + l4
        total = 20 + len(l4) + payload
        return struct.pack("!BBHHHBBH", 0x45, 0, total, 0, 0x4000, 64, proto, 0) + src + dst + l4

    def tcp(self, to_server: bool, flags: int, payload: int = 0, opts: bytes = b"") -> bytes:
        if to_server:
            sport, dport, seq, ack = self.sport, self.dport, self.cseq, self.sseq
        else:
            sport, dport, seq, ack = self.dport, self.sport, self.sseq, self.cseq
        hdr = struct.pack(
            "!HHIIBBHHH",
            sport,
            dport,
            seq,
            ack if flags & ACK else 0,
            (5 + len(opts) // 4) << 4,
            flags,
            502,
            0,
            0,
        )
        adv = payload + (1 if flags & (SYN | FIN) else 0)
        if to_server:
            self.cseq = (self.cseq + adv) & 0xFFFFFFFF
        else:
            self.sseq = (self.sseq + adv) & 0xFFFFFFFF
        return self.link + self._ip(6, to_server, hdr + opts, payload) + b"\0" * payload

    def udp(self, to_server: bool, payload: int) -> bytes:
        sport, dport = (self.sport, self.dport) if to_server else (self.dport, self.sport)
        hdr = struct.pack("!HHHH", sport, dport, 8 + payload, 0)
        return self.link + self._ip(17, to_server, hdr, payload) + b"\0" * payload

    def echo(self, to_server: bool, ident: int, seq: int) -> bytes:
        v6 = self.v6
        itype = (128 if to_server else 129) if v6 else (8 if to_server else 0)
        hdr = struct.pack("!BBHHH", itype, 0, 0, ident, seq)
        return self.link + self._ip(58 if v6 else 1, to_server, hdr, 56) + b"\0" * 56

    def handshake(self) -> list[bytes]:
        return [
            self.tcp(True, SYN, opts=SYN_OPTS),
            self.tcp(False, SYN | ACK, opts=SYN_OPTS),
            self.tcp(True, ACK),
        ]

    def close(self) -> list[bytes]:
        return [
            self.tcp(True, FIN | ACK),
            self.tcp(False, FIN | ACK),
            self.tcp(True, ACK),
        ]


def write_pcap(path: str, frames: Iterator[tuple[float, bytes]], snaplen: int = SNAPLEN) -> int:
    n = 0
    rec = struct.Struct("=IIII").pack
    with open(path, "wb") as f:
        f.write(PCAP_HEADER[:16] + struct.pack("=I", snaplen) + PCAP_HEADER[20:])
        for ts, frame in frames:
            cap = frame[:snaplen]
            sec = int(ts)
            f.write(rec(sec, int((ts - sec) * 1e6), len(cap), len(frame)))
            f.write(cap)
            n += 1
    return n


def mix_frames(total: int, seed: int = 1) -> Iterator[tuple[float, bytes]]:
    """A realistic mix, interleaved in time: ~1000 packets per simulated second."""
    random.seed(seed)
    t = 1_700_000_000.0
    step = 0.001
    count = 0
    n = 0
    port = 1024
    bulk: list[Flow] = []

    def new_flow(dport: int) -> Flow:
        nonlocal n, port
        n += 1
        port = 1024 + (port - 1023) % 60000
        v6 = random.random() < 0.15
        vlan = 100 if random.random() < 0.10 else 0
        return Flow(n, v6, vlan, port, dport)

    while count < total:
        r = random.random()
        burst: list[bytes] = []
        if r < 0.45:  # bulk: keep ~200 long transfers going
            if len(bulk) < 200:
                f = new_flow(443)
                bulk.append(f)
                burst += f.handshake()
            f = random.choice(bulk)
            for _ in range(8):
                burst.append(f.tcp(False, ACK | PSH, MSS))
                burst.append(f.tcp(False, ACK, MSS))
                burst.append(f.tcp(True, ACK))
            if random.random() < 0.01:
                burst += f.close()
                bulk.remove(f)
        elif r < 0.80:  # churn: a whole short connection
            f = new_flow(80)
            burst += f.handshake()
            burst.append(f.tcp(True, ACK | PSH, 300))
            burst.append(f.tcp(False, ACK | PSH, 1200))
            burst.append(f.tcp(True, ACK))
            burst += f.close()
        elif r < 0.95:  # UDP query/answer
            f = new_flow(53)
            burst += [f.udp(True, 40), f.udp(False, 120)]
        else:  # ICMP echo
            f = new_flow(0)
            ident = random.getrandbits(16)
            burst += [f.echo(True, ident, 1), f.echo(False, ident, 1)]
        for frame in burst:
            yield t, frame
            t += step
            count += 1
            if count >= total:
                return


def ack64_frames(flows: int, total: int) -> Iterator[tuple[float, bytes]]:
    """Handshakes of ``flows`` TCP flows, then pure ACKs round robin (60-byte frames + FCS)."""
    random.seed(2)
    t = 1_700_000_000.0
    conns = []
    for i in range(flows):
        f = Flow(i, False, 0, 1024 + i % 60000, 1 + i // 60000)
        f.c = bytes([192, 0, 2, 1 + i % 250])
        f.s = bytes([198, 51, 100, 1 + (i // 250) % 250])
        conns.append(f)
        for frame in f.handshake():
            yield t, frame
            t += 1e-6
    count = flows * 3
    while count < total:
        for f in conns:
            # a 54-byte Ethernet/IPv4/TCP ACK, padded to the 60-byte minimum (64 with FCS)
            yield t, f.tcp(count & 1 == 0, ACK) + b"\0" * 6
            t += 1e-6
            count += 1
            if count >= total:
                return


def time_replay(path: str, runs: int) -> dict[str, float]:
    rates = []
    packets = 0
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        result = replay([path])
        elapsed = time.perf_counter() - start
        packets = result.packets
        rates.append(packets / elapsed)
        del result
    return {
        "packets": packets,
        "runs": runs,
        "median_pps": round(statistics.median(rates)),
        "min_pps": round(min(rates)),
        "max_pps": round(max(rates)),
    }


MEMORY_CHILD = r"""
import gc, json, resource, sys
from sniffover.conntrack.packet import Packet
from sniffover.conntrack.table import ConntrackTable
n, proto = int(sys.argv[1]), sys.argv[2]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
gc.freeze(); gc.disable()
table = ConntrackTable()
before = rss()
ts = 1_700_000_000.0
opts = bytes([2, 4, 5, 0xB4, 4, 2, 1, 3, 3, 7])
for i in range(n):
    c = bytes([192, 0, 2, 1 + i % 250]); s = bytes([198, 51, 100, 1 + (i // 250) % 250])
    sp = 1024 + (i // 62500) ; dp = 1 + (i // 62500) % 16 + (i % 62500)
    if proto == "tcp":
        table.process(Packet(ts, 2, 6, c, s, sp, dp, 0, 0x02, 1000, 0, 64240, opts))
        table.process(Packet(ts, 2, 6, s, c, dp, sp, 0, 0x12, 5000, 1001, 64240, opts))
        table.process(Packet(ts, 2, 6, c, s, sp, dp, 0, 0x10, 1001, 5001, 502))
    else:
        table.process(Packet(ts, 2, 17, c, s, sp, dp, 20))
        table.process(Packet(ts, 2, 17, s, c, dp, sp, 20))
after = rss()
print(json.dumps({"flows": len(table), "bytes_per_flow": round((after - before) / len(table))}))
"""


def memory_per_flow(flows: int, proto: str) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(flows), proto],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return dict(json.loads(out.stdout))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m sniffover.bench.replay", description=__doc__.split("\n")[0]
    )
    p.add_argument("--packets", type=int, default=1_000_000, help="frames in each capture")
    p.add_argument("--flows", type=int, default=100_000, help="flows of the ACK worst case")
    p.add_argument("--memory-flows", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--dir", default="/tmp", help="where the synthetic captures are written")
    p.add_argument("--only", choices=["mix", "ack64", "memory"], action="append")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    which = args.only or ["mix", "ack64", "memory"]
    report: dict[str, object] = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    if "mix" in which:
        path = os.path.join(args.dir, f"sniffover-bench-mix-{args.packets}.pcap")
        if not os.path.exists(path):
            write_pcap(path, mix_frames(args.packets))
        report["mix"] = time_replay(path, args.runs)
    if "ack64" in which:
        path = os.path.join(args.dir, f"sniffover-bench-ack64-{args.flows}-{args.packets}.pcap")
        if not os.path.exists(path):
            write_pcap(path, ack64_frames(args.flows, args.packets))
        report["ack64"] = time_replay(path, args.runs)
    if "memory" in which:
        report["memory_tcp"] = memory_per_flow(args.memory_flows, "tcp")
        report["memory_udp"] = memory_per_flow(args.memory_flows, "udp")
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
