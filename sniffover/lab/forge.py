"""Forged frames for the lab's hostile node (``python -m sniffover.lab.forge ...``).

Run inside the attacker's namespace: it writes raw Ethernet frames to a hub port
with an AF_PACKET socket. Every frame is built here by hand (no scapy on this
machine); addresses come from the command line and must be documentation ranges.
Bounded: a fixed number of frames, then it exits.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import socket
import struct
import sys
import time

DOC_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08


def _check(addr: str) -> bytes:
    ip = ipaddress.ip_address(addr)
    if not any(ip in n for n in DOC_NETS):
        raise SystemExit(f"labforge: {addr} is not a documentation address")
    return ip.packed


def mac(text: str) -> bytes:
    return bytes(int(x, 16) for x in text.split(":"))


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_frame(
    dmac: bytes,
    smac: bytes,
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    flags: int,
    seq: int,
    ack: int = 0,
    ipid: int = 0,
    payload: bytes = b"",
    ttl: int = 64,
) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    c = _csum(pseudo + tcp + payload)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ipid, 0x4000, ttl, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return dmac + smac + b"\x08\x00" + ip + tcp + payload


def udp_frame(
    dmac: bytes,
    smac: bytes,
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    ipid: int,
    payload: bytes,
) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ipid, 0, 63, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return dmac + smac + b"\x08\x00" + ip + udp


VXLAN_FLAGS = 0x08000000  # I: the VNI is valid (RFC 7348)
CLIENT_MAC, SERVER_MAC = mac("02:00:00:00:c1:01"), mac("02:00:00:00:51:01")


def vxlan_frame(
    dmac: bytes, smac: bytes, src: bytes, dst: bytes, vni: int, inner: bytes, dport: int = 4789
) -> bytes:
    """``inner`` (an Ethernet frame) in Ethernet/IPv4/UDP/VXLAN as a VTEP sends it: the UDP
    source port from a hash of the inner frame's headers, UDP checksum 0."""
    sport = 49152 + (sum(inner[:38]) * 2654435761 & 0x3FFF)
    body = struct.pack("!II", VXLAN_FLAGS, (vni & 0xFFFFFF) << 8) + inner
    udp = struct.pack("!HHHH", sport, dport, 8 + len(body), 0) + body
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return dmac + smac + b"\x08\x00" + ip + udp


def mirrored_handshake(
    master_in: bytes, master_out: bytes, src: bytes, dst: bytes, sport: int, dport: int, i: int
) -> list[bytes]:
    """What a mirror of both of the master's ports shows of a forwarded connection: each
    packet going in (to the master's MAC on one segment) and leaving (from its MAC on the
    other, TTL one less), handshake and one data segment."""
    c, sv = 1000 + i, 900000 + i
    frames = []
    for to_server, flags, seq, ack, ipid, payload in (
        (True, SYN, c, 0, 1, b""),
        (False, SYN | ACK, sv, c + 1, 2, b""),
        (True, ACK, c + 1, sv + 1, 3, b""),
        (True, ACK | PSH, c + 1, sv + 1, 4, b"x" * 10),
    ):
        if to_server:
            a, b, sp, dp = src, dst, sport, dport
            hops = ((master_in, CLIENT_MAC), (SERVER_MAC, master_out))
        else:
            a, b, sp, dp = dst, src, dport, sport
            hops = ((master_out, SERVER_MAC), (CLIENT_MAC, master_in))
        for (dm, sm), ttl in zip(hops, (64, 63), strict=True):
            frames.append(tcp_frame(dm, sm, a, b, sp, dp, flags, seq, ack, ipid, payload, ttl))
    return frames


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sniffover.lab.forge")
    p.add_argument(
        "kind", choices=["handshake", "teardown", "synflood", "oow", "routed", "vxlan-mirror"]
    )
    p.add_argument("--iface", required=True)
    p.add_argument("--smac", required=True, help="source MAC to put in the frames")
    p.add_argument("--dmac", required=True, help="destination MAC")
    p.add_argument("--src", required=True, help="source address (teardown: the real one)")
    p.add_argument("--dst", required=True)
    p.add_argument("--sport", type=int, default=4444)
    p.add_argument("--dport", type=int, default=22)
    p.add_argument("--seq", type=int, default=1000)
    p.add_argument("--ack", type=int, default=0)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rate", type=float, default=0.0, help="routed: frames per second")
    # vxlan-mirror: --smac/--dmac are the outer (underlay) MACs
    p.add_argument("--outer-src", default="", help="vxlan-mirror: the tunnel's source address")
    p.add_argument("--outer-dst", default="", help="vxlan-mirror: the collector's address")
    p.add_argument("--vni", type=int, default=0)
    p.add_argument("--master-in", default="", help="vxlan-mirror: the master's inside MAC")
    p.add_argument("--master-out", default="", help="vxlan-mirror: its outside MAC")
    args = p.parse_args(argv)
    src, dst = _check(args.src), _check(args.dst)
    smac, dmac = mac(args.smac), mac(args.dmac)
    rnd = random.Random(args.seed)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((args.iface, 0))
    sent = 0
    t0 = time.monotonic()
    count = min(args.count, 2_000_000)
    if args.kind == "vxlan-mirror":
        # forged mirror traffic: complete forwarded-looking handshakes (both copies, from
        # the master's MACs) in VXLAN, from any outer source address and VNI we choose
        osrc, odst = _check(args.outer_src), _check(args.outer_dst)
        m_in, m_out = mac(args.master_in), mac(args.master_out)
        for i in range(count):
            for inner in mirrored_handshake(m_in, m_out, src, dst, args.sport + i, args.dport, i):
                s.send(vxlan_frame(dmac, smac, osrc, odst, args.vni, inner))
                sent += 1
    elif args.kind == "handshake":
        # a complete forged three-way handshake + data, both directions from this port
        for i in range(count):
            sp = args.sport + i
            c, sv = 1000 + i, 900000 + i
            for frame in (
                tcp_frame(dmac, smac, src, dst, sp, args.dport, SYN, c, 0, 1),
                tcp_frame(dmac, smac, dst, src, args.dport, sp, SYN | ACK, sv, c + 1, 2),
                tcp_frame(dmac, smac, src, dst, sp, args.dport, ACK, c + 1, sv + 1, 3),
                tcp_frame(
                    dmac, smac, src, dst, sp, args.dport, ACK | PSH, c + 1, sv + 1, 4, b"x" * 10
                ),
            ):
                s.send(frame)
                sent += 1
    elif args.kind == "teardown":
        for flags in (RST | ACK, FIN | ACK, RST):
            for _ in range(count):
                s.send(
                    tcp_frame(
                        dmac,
                        smac,
                        src,
                        dst,
                        args.sport,
                        args.dport,
                        flags,
                        args.seq,
                        args.ack,
                        rnd.getrandbits(16),
                    )
                )
                sent += 1
    elif args.kind == "oow":
        for i in range(count):
            s.send(
                tcp_frame(
                    dmac,
                    smac,
                    src,
                    dst,
                    args.sport,
                    args.dport,
                    ACK | PSH,
                    (args.seq + 0x40000000 + i * 1000) & 0xFFFFFFFF,
                    args.ack,
                    rnd.getrandbits(16),
                    b"y" * 100,
                )
            )
            sent += 1
    elif args.kind == "routed":
        # routed-looking UDP from this host's own MAC (off-subnet source, TTL 63), paced:
        # what a bystander sends to be taken for the router
        gap = 1.0 / args.rate if args.rate > 0 else 0.0
        for i in range(count):
            due = t0 + i * gap
            if gap and due > time.monotonic():
                time.sleep(due - time.monotonic())
            s.send(udp_frame(dmac, smac, src, dst, 40000 + i % 1000, 53, i & 0xFFFF, b"q" * 20))
            sent += 1
    else:  # synflood: spoofed sources inside src's /24, random ports
        base = src[:3]
        for i in range(count):
            a = base + bytes([1 + rnd.randrange(250)])
            s.send(
                tcp_frame(
                    dmac,
                    smac,
                    a,
                    dst,
                    1024 + rnd.randrange(60000),
                    args.dport,
                    SYN,
                    rnd.getrandbits(32),
                    0,
                    i & 0xFFFF,
                )
            )
            sent += 1
    s.close()
    print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - t0, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
