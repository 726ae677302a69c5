"""Read the tracker's tunables from ``/proc/sys/net/netfilter`` (adapter: the core does no I/O)."""

from __future__ import annotations

from pathlib import Path

from ..conntrack.timeouts import Timeouts

NETFILTER_SYSCTL_DIR = "/proc/sys/net/netfilter"


def read_netfilter_sysctls(directory: str | Path = NETFILTER_SYSCTL_DIR) -> dict[str, str]:
    """The ``nf_conntrack_*`` values the tracker uses; absent or unreadable files are left out."""
    values: dict[str, str] = {}
    base = Path(directory)
    for name in Timeouts.sysctl_names():
        try:
            values[name] = (base / name).read_text().strip()
        except OSError:
            continue
    return values


def host_timeouts(directory: str | Path = NETFILTER_SYSCTL_DIR) -> Timeouts:
    """Timeouts of the namespace this process runs in (kernel defaults where absent)."""
    return Timeouts.from_sysctl(read_netfilter_sysctls(directory))


def conntrack_max(directory: str | Path = NETFILTER_SYSCTL_DIR) -> int | None:
    """This host's ``nf_conntrack_max`` (the default bound of the agent's own table)."""
    try:
        value = int((Path(directory) / "nf_conntrack_max").read_text().strip())
    except (OSError, ValueError):
        return None
    return value if value > 0 else None
