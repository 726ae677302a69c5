"""BPF filter texts for the capture handles, and the MAC address text helpers they use."""

from __future__ import annotations

from collections.abc import Iterable

from ..conntrack.expect import Helper
from ..conntrack.helpers import payload_ports
from ..conntrack.packet import PROTO_TCP


def prefilter_bpf(sample: int = 16, helpers: Iterable[Helper] = ()) -> str:
    """``--prefilter control``: what the kernel passes up to Python.

    Every non-TCP packet, every TCP segment with SYN, FIN or RST, and a
    stateless sample of the other segments (about one in ``sample``, chosen by
    the low bits of seq + ack, which change as data moves) so connections open
    before the agent started are still picked up mid-stream. IPv4 and IPv6
    (TCP right after the fixed header), untagged and 802.1Q-tagged. Every IP
    fragment passes (IPv4 MF or offset; IPv6 fragment header first): ``tcp[]``
    cannot look into a fragment, and reassembly (``capture.defrag``) needs all.

    The TCP masters of ``helpers`` (FTP control) pass whole, ahead of the rest
    ("vlan" shifts what follows it); their non-TCP masters pass anyway.
    """
    mask = max(1, sample) - 1
    v4 = "(ip and tcp[13] & 7 != 0)"
    v6 = "(ip6 and ip6[6] == 6 and ip6[53] & 7 != 0)"
    frags = "(ip and ip[6:2] & 0x3fff != 0) or (ip6 and ip6[6] == 44)"
    parts = ["(not tcp)", frags, v4, v6]
    if mask:
        parts.append(f"(ip and (tcp[7] + tcp[11]) & {mask} == 0)")
        parts.append(f"(ip6 and ip6[6] == 6 and (ip6[47] + ip6[51]) & {mask} == 0)")
    expr = " or ".join(parts)
    pre = f"(({expr}) or (vlan and ({expr})))"
    ports = sorted(payload_ports(PROTO_TCP, helpers))
    if ports:
        pre = "(" + " or ".join(f"tcp port {p}" for p in ports) + f") or {pre}"
    return pre


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def mac_bytes(text: str) -> bytes:
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"bad MAC address {text!r}")
    return bytes(int(p, 16) for p in parts)


def exclude_self_filter(macs: list[str]) -> str:
    return " and ".join(f"not ether host {m}" for m in macs)
