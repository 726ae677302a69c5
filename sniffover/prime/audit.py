"""One self-audit: this standby's kernel table against the master's (``sniffover audit``,
the agent's ``--audit-interval``).

The master's table comes through the prime path (``prime.client.fetch``: the authenticated,
encrypted pull from ``sniffover serve``, or ``conntrack -L`` over ssh): one dump on the
master per audit. This host's table is dumped twice (``kernel.dump``), just before the pull
and ``lag`` seconds after it; ``conntrack.audit.compare`` judges the three (the young-flow
rule is there). Entries touching this host's addresses, the master's address and
``--master-addr`` are the firewalls' own traffic and left out.
"""

from __future__ import annotations

import gc
import ipaddress
import socket
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from ..conntrack.audit import AuditResult, compare
from ..conntrack.snapshot import SnapshotEntry, SnapshotExpectation
from ..errors import UsageError

DEFAULT_LAG = 2.0  # s: capture to kernel is tens of ms; a pull of 100k entries ~1 s


@dataclass
class LocalDump:
    entries: list[SnapshotEntry]
    expectations: list[SnapshotExpectation] | None  # None: the dump was refused


def dump_local() -> LocalDump:
    """This namespace's table and expectations (NetlinkError / OSError when refused)."""
    from ..errors import NetlinkError
    from ..kernel.dump import dump_expectations, dump_table

    entries = dump_table()
    try:
        exps: list[SnapshotExpectation] | None = dump_expectations()
    except (NetlinkError, OSError):
        exps = None
    return LocalDump(entries, exps)


def own_addresses() -> set[bytes]:
    """Every address of this namespace's interfaces (both families)."""
    from pyroute2 import IPRoute

    out: set[bytes] = set()
    try:
        with IPRoute() as ipr:
            for msg in ipr.get_addr():
                for attr in ("IFA_LOCAL", "IFA_ADDRESS"):
                    addr = msg.get_attr(attr)
                    if addr:
                        out.add(ipaddress.ip_address(addr.split("%")[0]).packed)
    except OSError:
        pass
    return out


def source_addresses(source: str) -> set[bytes]:
    """The master's addresses named by an ``--against`` source (resolved)."""
    from .client import parse_prime_source, parse_source, ssh_destination

    kind, _ = parse_prime_source(source)
    if kind == "ssh":
        host = ssh_destination(source)[0].rpartition("@")[2]
    elif kind == "serve":
        host = parse_source(source)[0]
    else:
        return set()
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, type=socket.SOCK_STREAM)
    except OSError:
        return set()
    return {ipaddress.ip_address(str(i[4][0]).split("%")[0]).packed for i in infos}


def parse_addrs(values: Collection[str]) -> set[bytes]:
    """``--master-addr`` values (comma-separated allowed) as packed addresses."""
    out: set[bytes] = set()
    for value in values:
        for part in value.split(","):
            if part.strip():
                try:
                    out.add(ipaddress.ip_address(part.strip()).packed)
                except ValueError:
                    raise UsageError(f"--master-addr: not an address: {part.strip()!r}") from None
    return out


Fetch = Callable[..., Any]
Dump = Callable[[], LocalDump]


def run_audit(
    source: str,
    key: str | bytes | None,
    *,
    lag: float = DEFAULT_LAG,
    timeout: float = 10.0,
    local: Collection[bytes] = frozenset(),
    fetch: Fetch | None = None,
    dump: Dump = dump_local,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[AuditResult, dict[str, float]]:
    """One audit: dump here, pull the master's table, wait ``lag``, dump here again,
    compare. Returns the result and its timings. PrimeError if the pull fails,
    NetlinkError/OSError if this host's table cannot be dumped."""
    if fetch is None:
        from .client import fetch as fetch_prime

        fetch = fetch_prime
    t0 = clock()
    before = dump()
    t1 = clock()
    snap = fetch(source, key, timeout=timeout, retries=1)
    t2 = clock()
    sleep(lag)
    after = dump()
    t3 = clock()
    exps_known = before.expectations is not None and after.expectations is not None
    gc_was_on = gc.isenabled()
    gc.disable()  # three indexes of acyclic records: collector passes would only cost time
    try:
        result = compare(
            snap.entries,
            before.entries,
            after.entries,
            local=local,
            window=t3 - t1,  # from the pull's start (the master dumped after it) to the end
            master_exps=snap.expectations if exps_known else None,
            before_exps=before.expectations,
            after_exps=after.expectations,
        )
    finally:
        if gc_was_on:
            gc.enable()
    timings = {
        "dump_seconds": round(t1 - t0, 3),
        "pull_seconds": round(t2 - t1, 3),
        "lag_seconds": round(lag, 3),
        "compare_seconds": round(clock() - t3, 3),
        "seconds": round(clock() - t0, 3),
        "pull_bytes": float(snap.bytes),
    }
    return result, timings
