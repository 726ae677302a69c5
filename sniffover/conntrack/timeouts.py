"""Per-state timeouts and tracker tunables, as the kernel's per-netns sysctls hold them.

The per-state arrays are indexed by the state numbers of ``states.py``.

Values are seconds. Defaults are Linux 6.18's compiled defaults; ``from_sysctl``
takes the contents of ``/proc/sys/net/netfilter/`` as a mapping (read by an
adapter, never here: the core does no I/O) and keeps defaults for absent keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

_TABLES = ("tcp", "sctp")  # derived per-state arrays, not sysctls


@dataclass
class Timeouts:
    """Tracker settings of one network namespace (``net.netfilter.nf_conntrack_*``)."""

    tcp_timeout_syn_sent: float = 120
    tcp_timeout_syn_recv: float = 60
    tcp_timeout_established: float = 432000
    tcp_timeout_fin_wait: float = 120
    tcp_timeout_close_wait: float = 60
    tcp_timeout_last_ack: float = 30
    tcp_timeout_time_wait: float = 120
    tcp_timeout_close: float = 10
    tcp_timeout_max_retrans: float = 300
    tcp_timeout_unacknowledged: float = 300
    udp_timeout: float = 30
    udp_timeout_stream: float = 120
    icmp_timeout: float = 30
    icmpv6_timeout: float = 30
    generic_timeout: float = 600
    gre_timeout: float = 30
    gre_timeout_stream: float = 180
    tcp_loose: int = 1
    tcp_be_liberal: int = 0
    tcp_ignore_invalid_rst: int = 0
    tcp_max_retrans: int = 3
    # nf_conntrack_checksum: verify L4 checksums in PRE_ROUTING (SCTP's CRC32c, the one
    # checksum a sniffer can trust on the wire, and protocols.udplite_error; offloaded
    # TCP/UDP sums are not checked)
    checksum: int = 1
    sctp_timeout_closed: float = 10
    sctp_timeout_cookie_wait: float = 3
    sctp_timeout_cookie_echoed: float = 3
    sctp_timeout_established: float = 210
    sctp_timeout_shutdown_sent: float = 3
    sctp_timeout_shutdown_recd: float = 3
    sctp_timeout_shutdown_ack_sent: float = 3
    sctp_timeout_heartbeat_sent: float = 30
    # Index = TCP state (0..9) then RETRANS (12) and UNACK (13), like tn->timeouts[].
    tcp: list[float] = field(default_factory=list, repr=False)
    # Index = SCTP state (0..8), like nf_sctp_net.timeouts[] (NONE uses the CLOSED value).
    sctp: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.tcp = [
            self.tcp_timeout_syn_sent,  # NONE uses the SYN_SENT value (slot 0 copy)
            self.tcp_timeout_syn_sent,
            self.tcp_timeout_syn_recv,
            self.tcp_timeout_established,
            self.tcp_timeout_fin_wait,
            self.tcp_timeout_close_wait,
            self.tcp_timeout_last_ack,
            self.tcp_timeout_time_wait,
            self.tcp_timeout_close,
            self.tcp_timeout_syn_sent,  # SYN_SENT2: 2 minutes, no sysctl of its own
            0.0,
            0.0,
            self.tcp_timeout_max_retrans,
            self.tcp_timeout_unacknowledged,
        ]
        self.sctp = [
            self.sctp_timeout_closed,
            self.sctp_timeout_closed,
            self.sctp_timeout_cookie_wait,
            self.sctp_timeout_cookie_echoed,
            self.sctp_timeout_established,
            self.sctp_timeout_shutdown_sent,
            self.sctp_timeout_shutdown_recd,
            self.sctp_timeout_shutdown_ack_sent,
            self.sctp_timeout_heartbeat_sent,
        ]

    @classmethod
    def from_sysctl(cls, values: Mapping[str, str | int | float]) -> Timeouts:
        """Build from sysctl names (with or without the ``nf_conntrack_`` prefix)."""
        kwargs: dict[str, float | int] = {}
        for f in fields(cls):
            if f.name in _TABLES:
                continue
            for name in (f"nf_conntrack_{f.name}", f.name):
                if name in values:
                    raw = str(values[name]).strip()
                    try:
                        kwargs[f.name] = int(raw)
                    except ValueError:
                        continue
                    break
        return cls(**kwargs)  # type: ignore[arg-type]

    @staticmethod
    def sysctl_names() -> list[str]:
        """The sysctl file names this class reads."""
        return [f"nf_conntrack_{f.name}" for f in fields(Timeouts) if f.name not in _TABLES]
