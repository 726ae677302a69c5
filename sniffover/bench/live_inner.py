"""The live benchmarks' inner parts, run inside the scratch namespaces by
``python -m sniffover.bench.live --inner ...``: the synthetic flows, the install, capture and
event receivers, and the handshake sender.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

from .replay import ACK, SYN, SYN_OPTS, Flow

NFNLGRP_CONNTRACK_NEW = 1
CLIENT_MAC = b"\x02\x00\x00\x00\x00\x01"
SERVER_MAC = b"\x02\x00\x00\x00\x00\x02"


class BenchError(RuntimeError):
    pass


def flow_tuple(i: int) -> tuple[bytes, bytes, int, int]:
    """A distinct 192.0.2.x -> 198.51.100.y TCP flow for every i < 250*250*50000."""
    c = bytes([192, 0, 2, 1 + i % 250])
    s = bytes([198, 51, 100, 1 + (i // 250) % 250])
    return c, s, 10000 + i % 50000, 80 + i // 50000


def handshake_packets(i: int, ts: float) -> Iterator[Any]:
    from ..conntrack.packet import Packet

    c, s, sp, dp = flow_tuple(i)
    yield Packet(ts, 2, 6, c, s, sp, dp, 0, SYN, 1000, 0, 64240, SYN_OPTS)
    yield Packet(ts, 2, 6, s, c, dp, sp, 0, SYN | ACK, 5000, 1001, 65160, SYN_OPTS)
    yield Packet(ts, 2, 6, c, s, sp, dp, 0, ACK, 1001, 5001, 502)


def inner_install(entries: int) -> dict[str, Any]:
    """Fill an Installer through the tracker's listener, then time one flush()."""
    from ..conntrack.table import ConntrackTable
    from ..conntrack.timeouts import Timeouts
    from ..kernel.ctnetlink import CtnlSocket
    from ..kernel.installer import Installer

    sock = CtnlSocket()
    installer = Installer(sock)
    table = ConntrackTable(Timeouts(), listener=installer.on_event)
    now = time.time()
    t0 = time.perf_counter()
    process = table.process
    for i in range(entries):
        for p in handshake_packets(i, now):
            process(p)
    build = time.perf_counter() - t0
    if installer.pending != entries:
        raise BenchError(f"{installer.pending} entries pending, expected {entries}")
    from ..agent.util import settle_gc

    settle_gc()  # what the agent's loop does every GC_FREEZE_EVERY seconds
    t0 = time.perf_counter()
    sent = installer.flush(time.time())
    took = time.perf_counter() - t0
    sock.close()
    return {
        "entries": entries,
        "messages": sent,
        "seconds": round(took, 4),
        "rate": round(entries / took),
        "track_seconds": round(build, 3),
        "counters": dict(installer.counters),
    }


def inner_capture(
    iface: str,
    expect: int,
    idle: float,
    deadline: float,
    gc_off: bool = False,
    prefilter: bool = False,
    decap: str = "none",
) -> dict[str, Any]:
    """The agent's read loop with install off: LiveCapture.read + ConntrackTable.process.

    ``decap`` (``vxlan`` ...): the frames are a remote mirror's tunnel, read as the agent
    does with ``--decap``: the snap length widened by the headroom, each batch's records
    pointed at the inner frames before decoding.

    ``gc_off`` (diagnostic, not what the agent does): no cyclic garbage collection
    during the run, to show what full collections over a large table cost.
    """
    from ..agent.util import GC_FREEZE_EVERY, settle_gc

    if gc_off:
        gc.collect()
        gc.freeze()
        gc.disable()
    else:  # as the agent's loop: start frozen, then settle_gc() every GC_FREEZE_EVERY s
        gc.collect()
        gc.freeze()
    from ..capture.bpf import prefilter_bpf
    from ..capture.live import LiveCapture
    from ..conntrack.table import ConntrackTable
    from ..conntrack.timeouts import Timeouts

    timeouts = Timeouts()
    timeouts.tcp_loose = 1  # as the agent does with pickup
    if prefilter:
        timeouts.tcp_be_liberal = 1  # as the agent does with --prefilter control
    table = ConntrackTable(timeouts)
    # promiscuous, 32 MiB ring, like the agent; with the prefilter past its warm-up
    bpf = prefilter_bpf(16) if prefilter else ""
    if decap != "none":
        from ..capture.decap import HEADROOM, Decapsulator
        from ..capture.live import SNAPLEN

        cap = LiveCapture(iface, snaplen=SNAPLEN + HEADROOM, bpf=bpf)
        cap.set_decap(Decapsulator(decap))
    else:
        cap = LiveCapture(iface, bpf=bpf)
    process = table.process
    packets = 0
    first = last = 0.0
    read_s = track_s = 0.0
    cpu0 = os.times()
    print("ready", flush=True)
    end = time.monotonic() + deadline
    next_freeze = time.monotonic() + GC_FREEZE_EVERY
    try:
        while packets < expect:
            now = time.monotonic()
            if now > end or (first and now - last > idle):
                break
            if now >= next_freeze and not gc_off:
                next_freeze = now + GC_FREEZE_EVERY
                settle_gc()
            ready, _, _ = select.select([cap], [], [], 0.05)
            if not ready:
                continue
            t0 = time.perf_counter()
            got = cap.read()
            t1 = time.perf_counter()
            read_s += t1 - t0
            if not got:
                continue
            for p in got:
                process(p)
            track_s += time.perf_counter() - t1
            packets += len(got)
            last = time.monotonic()
            if not first:
                first = last
        recv, drop, ifdrop = cap.stats()
    finally:
        cap.close()
    cpu1 = os.times()
    return {
        "frames": cap.frames,
        "packets": packets,
        "pcap_received": recv,
        "pcap_dropped": drop,
        "pcap_ifdropped": ifdrop,
        "flows": len(table),
        "verdicts": table.verdicts,
        "skipped": dict(cap.decoder.skipped),
        "busy_seconds": round(last - first, 3) if first else 0.0,
        "read_seconds": round(read_s, 3),
        "track_seconds": round(track_s, 3),
        "cpu_user_seconds": round(cpu1.user - cpu0.user, 3),
        "cpu_system_seconds": round(cpu1.system - cpu0.system, 3),
    }


def inner_events(count: int, idle: float, deadline: float) -> dict[str, Any]:
    """Timestamp (CLOCK_MONOTONIC) every NEW event of this namespace's conntrack table."""
    from ..kernel.ctnetlink import NETLINK_NETFILTER
    from .ctdecode import decode_ct_message

    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE
    sock.bind((0, 1 << (NFNLGRP_CONNTRACK_NEW - 1)))
    sock.settimeout(0.1)
    events: dict[str, float] = {}
    overruns = 0
    print("ready", flush=True)
    end = time.monotonic() + deadline
    last = 0.0
    buf = bytearray(1 << 20)
    while len(events) < count:
        now = time.monotonic()
        if now > end or (last and now - last > idle):
            break
        try:
            n = sock.recv_into(buf)
        except TimeoutError:
            continue
        except OSError as exc:  # ENOBUFS: events lost
            overruns += 1
            if exc.errno != 105:
                raise
            continue
        t = time.monotonic()
        last = t
        off = 0
        while off + 16 <= n:
            length, kind = struct.unpack_from("=IH", buf, off)
            if length < 16:
                break
            if kind >> 8 == 1 and kind & 0xFF == 0:  # ctnetlink IPCTNL_MSG_CT_NEW
                e = decode_ct_message(bytes(buf[off : off + length]), 16, length)
                events.setdefault(flow_key(e.orig[1], e.orig[2], e.orig[3], e.orig[4]), t)
            off += (length + 3) & ~3
    sock.close()
    return {"events": events, "overruns": overruns}


def flow_key(src: bytes, dst: bytes, sport: int, dport: int) -> str:
    return f"{socket.inet_ntoa(src)}:{sport}>{socket.inet_ntoa(dst)}:{dport}"


def lag_flow(i: int) -> Flow:
    f = Flow(i, False, 0, 20000 + i % 40000, 443)
    f.c = bytes([192, 0, 2, 10 + i % 200])
    f.s = bytes([198, 51, 100, 10 + (i // 200) % 200])
    return f


def inner_send(iface: str, flows: int, rate: float) -> dict[str, Any]:
    """Complete handshakes on a raw socket, ``rate`` per second; when each final ACK left."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    frames = []
    for i in range(flows):
        f = lag_flow(i)
        syn, synack, ack = f.handshake()
        # Flow frames go MAC_A -> MAC_B both ways; give the server's frames its own MAC.
        synack = CLIENT_MAC + SERVER_MAC + synack[12:]
        syn, ack = SERVER_MAC + CLIENT_MAC + syn[12:], SERVER_MAC + CLIENT_MAC + ack[12:]
        frames.append((flow_key(f.c, f.s, f.sport, f.dport), syn, synack, ack))
    sent: dict[str, float] = {}
    start = time.monotonic() + 0.05
    for i, (key, syn, synack, ack) in enumerate(frames):
        due = start + i / rate
        while True:
            wait = due - time.monotonic()
            if wait <= 0:
                break
            time.sleep(wait if wait > 0.002 else 0)
        sock.send(syn)
        sock.send(synack)
        sock.send(ack)
        sent[key] = time.monotonic()
    took = time.monotonic() - start
    sock.close()
    return {"sent": sent, "seconds": round(took, 3), "rate": round(flows / took, 1)}
