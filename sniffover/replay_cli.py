"""``sniffover replay``: its command-line options and the command (kept apart from ``cli`` so
neither grows past the size a reader takes in; the parser part imports nothing heavy)."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import EXIT_OK, CliError, UsageError

MULTICAST_HELP = (
    "datagrams to multicast groups: 'drop' = a router that joined no group and routes no "
    "multicast drops them, no entry (except for 224.0.0.1, ff02::1, ff02::2 ..., which every "
    "Linux router joins); 'track' = a firewall that listens to or routes multicast tracks "
    "them like unicast. The agent never installs multicast or broadcast entries"
)


def add_replay_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    p.add_argument(
        "files",
        nargs="+",
        metavar="[IFACE=]FILE",
        help="pcap or pcapng capture(s); IFACE= names the interface a file was captured on "
        "(for --zone-map iface: rules)",
    )
    p.add_argument(
        "--zone-map",
        action="append",
        default=[],
        metavar="RULE",
        help="give packets the conntrack zone the master's ruleset gives them: vlan:ID=ZONE "
        "or iface:NAME=ZONE, optionally /orig or /reply after ZONE for a directional zone "
        "(ct original/reply zone set); repeatable",
    )
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
        "--multicast",
        choices=["drop", "track"],
        default="drop",
        help=MULTICAST_HELP + " (default drop)",
    )
    p.add_argument(
        "--master-mac",
        action="append",
        default=[],
        metavar="MAC",
        help="Ethernet captures of both sides of a router (a mirror of its ports): its MAC "
        "address(es); its frames are flagged and each packet's copies paired, as the agent "
        "does (NAT); repeatable",
    )
    p.add_argument(
        "--decap",
        choices=["none", "auto", "vxlan", "erspan", "gre", "tzsp"],
        default="none",
        help="the captures hold a remote mirror: track the frames inside this tunnel only "
        "(see the agent's --decap; default none)",
    )
    p.add_argument("--vxlan-port", type=int, default=4789, metavar="PORT",
                   help="UDP port of the VXLAN mirror (default 4789)")  # fmt: skip
    p.add_argument("--mirror-session", action="append", default=[], metavar="N",
                   help="read only this mirror (VNI, ERSPAN session, GRE key)")  # fmt: skip
    p.add_argument("--mirror-from", action="append", default=[], metavar="ADDR",
                   help="read only mirrors sent from this address; repeatable")  # fmt: skip
    p.add_argument(
        "--kernel-direction",
        action="store_true",
        help="orient connections picked up mid-stream like the kernel does (first packet "
        "seen = original) instead of inferring client -> server from the ports",
    )


def cmd_replay(args: argparse.Namespace) -> int:
    from .capture.bpf import mac_bytes
    from .capture.decap import decap_options
    from .capture.files import CaptureError
    from .conntrack.listing import format_table
    from .conntrack.zones import ZoneMap, ZoneMapError
    from .kernel.sysctl import host_timeouts
    from .replay import conn_json, replay

    try:
        zones = ZoneMap.parse(args.zone_map)
    except ZoneMapError as exc:
        raise CliError(str(exc)) from None
    if not 1 <= args.vxlan_port <= 65535:
        raise UsageError(f"--vxlan-port must be 1-65535, got {args.vxlan_port}")
    try:
        decap = decap_options(args.decap, args.vxlan_port, args.mirror_session, args.mirror_from)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    masters = []
    for mac in args.master_mac:
        try:
            masters.append(mac_bytes(mac))
        except ValueError:
            raise UsageError(f"--master-mac must be a MAC address, got {mac!r}") from None
    try:
        result = replay(
            args.files,
            at=args.at,
            timeouts=host_timeouts(args.sysctl_dir),
            infer_direction=not args.kernel_direction,
            zones=zones,
            multicast=args.multicast,
            decap=decap,
            master_macs=masters,
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
