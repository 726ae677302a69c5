"""Conntrack state numbers and names of the stateful protocols, TCP and SCTP.

The numbers are the kernel's (``enum tcp_conntrack``, ``enum sctp_conntrack``), as
ctnetlink exports them (CTA_PROTOINFO_TCP_STATE, CTA_PROTOINFO_SCTP_STATE); the names
are ``conntrack -L``'s (``tcp_conntrack_names[]``, ``sctp_conntrack_names[]``). The
transitions live with each protocol (``tcp.py``, ``sctp.py``), the timeouts per state in
``timeouts.py``. Imports nothing: every module of the core may import it.
"""

from __future__ import annotations

from typing import Final

# enum tcp_conntrack
TCP_NONE: Final = 0
TCP_SYN_SENT: Final = 1
TCP_SYN_RECV: Final = 2
TCP_ESTABLISHED: Final = 3
TCP_FIN_WAIT: Final = 4
TCP_CLOSE_WAIT: Final = 5
TCP_LAST_ACK: Final = 6
TCP_TIME_WAIT: Final = 7
TCP_CLOSE: Final = 8
TCP_SYN_SENT2: Final = 9
# Internal pseudo-states of the table / timeout array.
TCP_MAX: Final = 10  # "invalid" (sIV)
TCP_IGNORE: Final = 11  # "ignore" (sIG)
TCP_RETRANS: Final = 12
TCP_UNACK: Final = 13

TCP_STATE_NAMES: Final = (
    "NONE",
    "SYN_SENT",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "TIME_WAIT",
    "CLOSE",
    "SYN_SENT2",
)

# enum sctp_conntrack
SCTP_CONNTRACK_NONE: Final = 0
SCTP_CONNTRACK_CLOSED: Final = 1
SCTP_CONNTRACK_COOKIE_WAIT: Final = 2
SCTP_CONNTRACK_COOKIE_ECHOED: Final = 3
SCTP_CONNTRACK_ESTABLISHED: Final = 4
SCTP_CONNTRACK_SHUTDOWN_SENT: Final = 5
SCTP_CONNTRACK_SHUTDOWN_RECD: Final = 6
SCTP_CONNTRACK_SHUTDOWN_ACK_SENT: Final = 7
SCTP_CONNTRACK_HEARTBEAT_SENT: Final = 8
SCTP_CONNTRACK_MAX: Final = 9  # "invalid" in the transition table

SCTP_STATE_NAMES: Final = (
    "NONE",
    "CLOSED",
    "COOKIE_WAIT",
    "COOKIE_ECHOED",
    "ESTABLISHED",
    "SHUTDOWN_SENT",
    "SHUTDOWN_RECD",
    "SHUTDOWN_ACK_SENT",
    "HEARTBEAT_SENT",
)
