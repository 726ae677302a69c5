"""sniffover: a sniffing failover agent for Linux stateful firewalls."""

__version__ = "0.1.0"
