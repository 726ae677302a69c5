"""sniffover: a sniffing failover agent for Linux stateful firewalls."""

import os as _os

from ._stale import guard as _guard

__version__ = "0.1.0"

_guard(_os.path.dirname(_os.path.abspath(__file__)), __name__)
