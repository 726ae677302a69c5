"""The helper registry: one ``Helper`` record per module, as the kernel has one
``struct nf_conntrack_helper`` per ``nf_conntrack_<name>.c``.

Everything that depends on which helpers exist reads ``HELPERS``: the decoder's payload
ports (``payload_ports``), the installer's CTA_HELP name and the install policy's
unreplied masters (``kernel/installer.py``), the prefilter's pass-through ports
(``capture/bpf.py``) and the follower below, which hands a master's payload to the
helper registered for its ``(l4proto, port)`` (``conntrack/expect.py``).

To add a helper: write ``helpers/<name>.py`` with its parser, an ``expectation(conn,
direction, payload, now)`` function and a ``HELPER = Helper(...)`` record (name as the
kernel spells it, L4 protocol, port, expectation policy, install_unreplied, payload),
then add ``<name>.HELPER`` to ``HELPERS`` below. Its port is spelled in its module only.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from ..expect import Expectations, Helper
from . import ftp, tftp

HELPERS: tuple[Helper, ...] = (ftp.HELPER, tftp.HELPER)

# A master's ORIGINAL destination port, for any helper (a cheap pre-check on destroy).
HELPER_PORTS: tuple[int, ...] = tuple(h.port for h in HELPERS)


def select(names: Iterable[str]) -> tuple[Helper, ...]:
    """The registered helpers called ``names`` (the kernel's names: "ftp", "tftp")."""
    wanted = set(names)
    unknown = wanted - {h.name for h in HELPERS}
    if unknown:
        raise ValueError(f"no such helper: {', '.join(sorted(unknown))}")
    return tuple(h for h in HELPERS if h.name in wanted)


def payload_ports(l4proto: int, helpers: Iterable[Helper] = HELPERS) -> frozenset[int]:
    """Ports whose segments of protocol ``l4proto`` keep their payload for a helper."""
    return frozenset(h.port for h in helpers if h.l4proto == l4proto and h.payload)


class HelperFollower(Expectations):
    """``Expectations`` of the registered helpers called ``names`` (all of them by default)."""

    def __init__(self, names: Collection[str] | None = None) -> None:
        super().__init__(HELPERS if names is None else select(names))
