"""Command line: argument parsing and the subcommands, nothing else.

Every failure a user can cause (bad flag, missing or corrupt file, missing
privilege) ends in one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(Exception):
    """An error to report as one line."""


def _add_replay(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "replay",
        help="rebuild the conntrack table from recorded captures and print it",
        description=(
            "Feed one or more pcap/pcapng files (in the order given) through sniffover's "
            "conntrack re-implementation and print the table as of the last packet, or as of "
            "--at. The default output is the text format of `conntrack -L`, so it can be "
            "diffed against a real table (sort both: the kernel lists in hash order)."
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="pcap or pcapng capture(s)")
    p.add_argument(
        "--at",
        type=float,
        metavar="EPOCH_SECONDS",
        help="report the table as of this time (packets after it are not read)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print entries as a JSON array")
    out.add_argument(
        "-o",
        "--output",
        choices=["default", "extended"],
        default="default",
        help="'extended' adds the l3 family columns, like `conntrack -L -o extended`",
    )
    p.add_argument(
        "--stats",
        action="store_true",
        help="print counters (packets, flows, skipped by reason, verdicts, packets/s) "
        "to stderr; with --json they are part of the JSON object",
    )
    p.add_argument(
        "--sysctl-dir",
        default="/proc/sys/net/netfilter",
        metavar="DIR",
        help="where to read nf_conntrack_* timeouts from (default: this host's; kernel "
        "defaults for any file missing)",
    )
    p.add_argument(
        "--kernel-direction",
        action="store_true",
        help="orient connections picked up mid-stream like the kernel does (first packet "
        "seen = original) instead of inferring client -> server from the ports",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sniffover",
        description=(
            "Sniffing failover agent for Linux stateful firewalls: rebuilds netfilter "
            "conntrack state from traffic seen on a shared segment."
        ),
    )
    parser.add_argument("--version", action="version", version=f"sniffover {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_replay(sub)
    return parser


def cmd_replay(args: argparse.Namespace) -> int:
    from .capture import CaptureError
    from .conntrack.listing import format_table
    from .replay import conn_json, replay
    from .sysctl import host_timeouts

    try:
        result = replay(
            args.files,
            at=args.at,
            timeouts=host_timeouts(args.sysctl_dir),
            infer_direction=not args.kernel_direction,
        )
    except CaptureError as exc:
        raise CliError(str(exc)) from None
    entries = result.entries()
    if args.json:
        ordered = sorted(entries, key=lambda c: (len(c.orig[1]), c.orig))
        doc: object = [conn_json(c, result.at) for c in ordered]
        if args.stats:
            doc = {"at": result.at, "entries": doc, "stats": result.stats()}
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
    else:
        sys.stdout.write(format_table(entries, result.at, extended=args.output == "extended"))
        if args.stats:
            sys.stderr.write(json.dumps(result.stats(), indent=1) + "\n")
    return EXIT_OK


COMMANDS = {"replay": cmd_replay}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        print(f"sniffover: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
