"""What the tracker concluded about one packet (the kernel's ctinfo / verdict, simplified)."""

from typing import Final

ACCEPT: Final = 0  # tracked; the entry's state was updated (NEW/ESTABLISHED ctinfo)
# passed, no state updated: an entry matched ("ign" in the TCP table), or a datagram to a
# multicast group the router neither joined nor routes (no entry: it dies in routing)
IGNORE: Final = 1
INVALID: Final = 2  # conntrack would mark it INVALID: no entry, no state change
RELATED: Final = 3  # an ICMP error about a tracked flow; no entry of its own
UNTRACKED: Final = 4  # never tracked (ICMPv6 neighbour discovery, MLD)
# Internal to protocol handlers, never returned by the table:
KILL: Final = 5  # accepted, then the entry is deleted at once (RST before any reply)
REPEAT: Final = 6  # delete the entry and process the packet again as new (TCP reopen)

NAMES = ("accept", "ignore", "invalid", "related", "untracked", "kill", "repeat")
