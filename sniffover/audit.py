"""``sniffover audit``: compare this standby's kernel table with the master's, now.

The master's table comes through the prime path (``prime.client.fetch``: the authenticated,
encrypted pull from ``sniffover serve``, or ``conntrack -L`` over ssh): one dump on the
master per audit. This host's table is dumped twice (``kernel.dump``), just before the pull
and ``lag`` seconds after it; ``conntrack.audit.compare`` judges the three (the young-flow
rule is there). Entries touching this host's addresses, the master's address and
``--master-addr`` are the firewalls' own traffic and left out.

Exit status: 0 when the differences are at most ``--max-differences``, 3 above it, 1 when
the audit could not run (master unreachable, wrong key, no ctnetlink), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from .conntrack.audit import AuditResult, compare
from .conntrack.snapshot import SnapshotEntry, SnapshotExpectation
from .errors import CliError, PrimeError, UsageError

EXIT_DIFFERENCES = 3
DEFAULT_LAG = 2.0  # s: capture to kernel is tens of ms; a pull of 100k entries ~1 s
DEFAULT_MAX_DIFFERENCES = 0


@dataclass
class LocalDump:
    entries: list[SnapshotEntry]
    expectations: list[SnapshotExpectation] | None  # None: the dump was refused


def dump_local() -> LocalDump:
    """This namespace's table and expectations (NetlinkError / OSError when refused)."""
    from .errors import NetlinkError
    from .kernel.dump import dump_expectations, dump_table

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
    from .prime.client import parse_prime_source, parse_source, ssh_destination

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
        from .prime.client import fetch as fetch_prime

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
    timings = {
        "dump_seconds": round(t1 - t0, 3),
        "pull_seconds": round(t2 - t1, 3),
        "lag_seconds": round(lag, 3),
        "compare_seconds": round(clock() - t3, 3),
        "seconds": round(clock() - t0, 3),
        "pull_bytes": float(snap.bytes),
    }
    return result, timings


# --- the command -----------------------------------------------------------------------


def add_audit_arguments(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "audit",
        help="compare this standby's kernel table with the master's (one pull); "
        "exit 3 above --max-differences",
        description=(
            "Pull the master's table through the prime path (sniffover serve, one dump on "
            "the master) and compare it with this host's kernel table, dumped just before "
            "the pull and --lag seconds after it: entries missing here, extra here, in a "
            "different state, with a different NAT mapping (reply tuple), and expectations "
            "missing or extra. What the master held must be here --lag seconds later; what "
            "was here before the master's dump must have been there. Entries of the "
            "firewalls' own addresses are left out. Exit 0 within --max-differences, 3 "
            "above it, 1 if the audit could not run."
        ),
    )
    p.add_argument(
        "--against",
        required=True,
        metavar="HOST[:PORT]",
        help="the master's sniffover serve (default port 7445), or ssh://[user@]HOST",
    )
    p.add_argument("--key-file", metavar="FILE", help="pre-shared key of sniffover serve")
    p.add_argument(
        "--lag",
        type=float,
        default=DEFAULT_LAG,
        metavar="SECONDS",
        help="how long after the master's dump its entries must be here "
        f"(default {DEFAULT_LAG:g}; the capture-to-kernel lag plus margin)",
    )
    p.add_argument(
        "--max-differences",
        type=int,
        default=DEFAULT_MAX_DIFFERENCES,
        metavar="N",
        help=f"exit 3 when more differences are found (default {DEFAULT_MAX_DIFFERENCES})",
    )
    p.add_argument(
        "--master-addr",
        action="append",
        default=[],
        metavar="ADDR[,ADDR]",
        help="the master's own addresses besides --against: their entries are its own "
        "traffic, left out (this host's addresses always are)",
    )
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="of the pull")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def check_arguments(args: argparse.Namespace) -> None:
    from .prime.client import parse_prime_source

    try:
        kind, _ = parse_prime_source(args.against)
    except PrimeError as exc:
        raise UsageError(f"--against: {exc}") from None
    if kind == "file":
        raise UsageError("--against: an audit needs the live master (HOST[:PORT] or ssh://)")
    if kind == "serve" and not args.key_file:
        raise UsageError(f"--against {args.against}: sniffover serve needs --key-file")
    if not 0 <= args.lag <= 600:
        raise UsageError(f"--lag must be >= 0 and <= 600, got {args.lag:g}")
    if not 0 < args.timeout <= 3600:
        raise UsageError(f"--timeout must be > 0 and <= 3600, got {args.timeout:g}")
    if args.max_differences < 0:
        raise UsageError(f"--max-differences must be >= 0, got {args.max_differences}")


def cmd_audit(args: argparse.Namespace) -> int:
    from .errors import NetlinkError

    check_arguments(args)
    local = own_addresses() | source_addresses(args.against) | parse_addrs(args.master_addr)
    try:
        result, timings = run_audit(
            args.against, args.key_file, lag=args.lag, timeout=args.timeout, local=local
        )
    except NetlinkError as exc:
        raise CliError(f"audit: this host's table: {exc.strerror or exc}") from None
    except PrimeError as exc:
        raise CliError(f"audit: {exc}") from None
    over = result.total > args.max_differences
    if args.json:
        doc = {"ok": not over, **result.as_dict(), **timings}
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
    else:
        print(result.summary() + f" in {timings['seconds']:.1f} s")
    return EXIT_DIFFERENCES if over else 0
