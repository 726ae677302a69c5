"""``sniffover audit``: compare this standby's kernel table with the master's, now
(``prime.audit`` runs it, ``conntrack.audit`` judges).

Exit status: 0 when the differences are at most ``--max-differences``, 3 above it, 1 when
the audit could not run (master unreachable, wrong key, no ctnetlink), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .errors import CliError, PrimeError, UsageError
from .prime.audit import DEFAULT_LAG

EXIT_DIFFERENCES = 3
DEFAULT_MAX_DIFFERENCES = 0


def add_interval_option(group: Any) -> None:
    """The agent's ``--audit-interval`` (an ``AgentConfig`` option)."""
    from .agent.config import option_type

    group.add_argument(
        "--audit-interval",
        type=option_type("audit_interval"),
        metavar="SECONDS",
        help="every this many seconds (10-86400), compare this host's kernel table with the "
        "--prime-from master's, like `sniffover audit` (one pull; a log line, status "
        "'audit', sniffover_audit_* metrics); default off",
    )


# --------------------------------------------------------------------


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
    p.set_defaults(run=cmd_audit)
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
    from .prime.audit import own_addresses, parse_addrs, run_audit, source_addresses

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
