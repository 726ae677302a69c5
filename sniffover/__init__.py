"""sniffover: a sniffing failover agent for Linux stateful firewalls."""

import os as _os

from ._stale import guard as _guard

__version__ = "0.1.0"

_guard(_os.path.dirname(_os.path.abspath(__file__)), __name__)


def build() -> str:
    """ "compiled" when the hot path runs as mypyc extension modules, else "pure Python"
    (no compiler at install, SNIFFOVER_PURE, or a stale build bypassed by the guard)."""
    from .conntrack import tcp

    return "pure Python" if tcp.__file__.endswith(".py") else "compiled"
