"""Command line: argument parsing and the subcommands, nothing else.

Every failure a user can cause (bad flag, missing or corrupt file, missing
privilege) ends in one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from collections.abc import Sequence

from . import __version__, build
from .errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE, CliError
from .replay_cli import MULTICAST_HELP, add_replay_parser


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one line (what is wrong, where help is), exit 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


AGENT_EPILOG = """\
examples:
  sniffover --iface eth0 --iface eth1          standby agent on two shared segments
  sniffover --config /etc/sniffover.toml       the same, from a config file
  sniffover ctl promote                        cluster manager: commit state, stand down
  sniffover status                             readiness probe (exit 0 when up)
  sniffover replay capture.pcap                rebuild a table offline from a capture
  sniffover demo                               hub lab: failover with and without sniffover

Config file (TOML): every long option, with '-' or '_', e.g.
  iface = ["eth0"]
  zone = 0
  metrics = "127.0.0.1:9477"
Command-line options override the file.
"""


def _add_agent_options(p: argparse.ArgumentParser) -> None:
    # defaults in the help come from AgentConfig (agent.config), the one source of them;
    # values go through its check_value as TOML values do
    from .agent.config import option_type, shown_default

    g = p.add_argument_group("standby agent (the default when no COMMAND is given)")
    g.add_argument(
        "-i",
        "--iface",
        action="append",
        type=option_type("iface"),
        metavar="IFACE",
        help="shared segment to sniff, promiscuous; repeat for several (not the sync link)",
    )
    g.add_argument("--config", metavar="FILE", help="TOML file with any of these options")
    g.add_argument(
        "--zone",
        type=option_type("zone"),
        metavar="N",
        help=f"conntrack zone of installed entries (default {shown_default('zone')})",
    )
    g.add_argument(
        "--zone-map",
        action="append",
        type=option_type("zone_map"),
        metavar="RULE",
        help="the zone the master's ruleset gives a packet, by where it was sniffed: "
        "vlan:ID=ZONE or iface:NAME=ZONE, /orig or /reply after ZONE for a directional zone "
        "(ct original/reply zone set); a VLAN rule wins; unmapped packets get --zone; repeat",
    )
    g.add_argument(
        "--mark",
        type=option_type("mark"),
        metavar="MARK",
        help="ct mark set on installed entries (32 bits: 16 or 0x10)",
    )
    g.add_argument(
        "--no-install",
        action="store_true",
        default=None,
        help="track only, never write the kernel table (dry run; no CAP_NET_ADMIN needed)",
    )
    g.add_argument(
        "--flush-interval",
        type=option_type("flush_interval"),
        metavar="SECONDS",
        help="how often changed entries are written to the kernel "
        f"(default {shown_default('flush_interval')})",
    )
    g.add_argument(
        "--snaplen",
        type=option_type("snaplen"),
        metavar="BYTES",
        help=f"capture length, 128-65535 (default {shown_default('snaplen')})",
    )
    g.add_argument(
        "--ring-mb",
        type=option_type("ring_mb"),
        metavar="MIB",
        help=f"kernel capture ring per interface, 1-2048 (default {shown_default('ring_mb')})",
    )
    g.add_argument(
        "--bpf",
        type=option_type("bpf"),
        metavar="FILTER",
        help="extra capture filter (pcap syntax), ANDed with ours",
    )
    g.add_argument(
        "--include-self",
        action="store_true",
        default=None,
        help="do not exclude frames to/from this host's own MAC addresses",
    )
    g.add_argument(
        "--no-pickup",
        action="store_true",
        default=None,
        help="do not pick up TCP connections mid-stream (only from their SYN)",
    )
    g.add_argument(
        "--prefilter",
        choices=["none", "control"],
        help="'control': the kernel passes up only TCP segments with SYN/FIN/RST, all "
        "non-TCP and a sample of the rest (see --pickup-sample); far less Python work, "
        "handshakes assumed to complete once the SYN/ACK is seen "
        f"(default {shown_default('prefilter')})",
    )
    g.add_argument(
        "--pickup-sample",
        type=option_type("pickup_sample"),
        metavar="N",
        help="with --prefilter control, pass about 1 in N (a power of two, 1-256) other TCP "
        "segments so connections "
        "open before the agent started are picked up mid-stream "
        f"(default {shown_default('pickup_sample')})",
    )
    g.add_argument(
        "--warmup",
        type=option_type("warmup"),
        metavar="SECONDS",
        help="with --prefilter control, capture everything for this long after start (and "
        "after a demotion) so every active connection is picked up "
        f"(default {shown_default('warmup')})",
    )
    g.add_argument(
        "--max-flows",
        type=option_type("max_flows"),
        metavar="N",
        help="bound of the agent's own table; beyond it unassured entries are dropped first, "
        "like the kernel's early drop (default: this host's nf_conntrack_max)",
    )
    g.add_argument(
        "--user",
        type=option_type("user"),
        metavar="USER",
        help="after opening its sockets, run as this user (keeping only CAP_NET_ADMIN and "
        "CAP_NET_RAW)",
    )
    g.add_argument(
        "--keep-privileges",
        action="store_true",
        default=None,
        help="do not drop capabilities after start-up (default: keep only CAP_NET_ADMIN and "
        "CAP_NET_RAW, no new privileges)",
    )
    g.add_argument(
        "--multicast",
        choices=["drop", "track"],
        help=MULTICAST_HELP + f" (default {shown_default('multicast')})",
    )
    g.add_argument(
        "--confirm",
        choices=["auto", "mac", "both", "off"],
        help="install only flows seen forwarded by the master: 'mac' = a frame of the flow "
        "sent from the master's MAC; 'both' = the same packet seen going into the master on "
        "one segment and out of it on another (sniff inside and outside); 'auto' = 'both' "
        "with two or more --iface, else 'mac'; 'off' trusts everything "
        f"(default {shown_default('confirm')})",
    )
    g.add_argument(
        "--master-mac",
        action="append",
        type=option_type("master_mac"),
        metavar="MAC",
        help="the master firewall's MAC on a sniffed segment (repeat per segment); default: "
        "the MAC answering ARP for --master-addr",
    )
    g.add_argument(
        "--master-addr",
        action="append",
        metavar="ADDR[,ADDR]",
        help="the master firewall's own IPv4 address(es) (not a virtual one): on each segment "
        "its MAC is the one answering ARP for them (default: the --prime-from host); one "
        "of --master-addr, --master-mac, --prime-from HOST is needed unless --confirm off",
    )
    g.add_argument(
        "--decap",
        type=option_type("decap"),
        metavar="MODE",
        help="the interfaces receive a remote mirror: none, auto, vxlan, erspan (type I/II/III "
        "over GRE), gre (transparent Ethernet bridging) or tzsp; only the mirrored frames inside "
        "are tracked, everything else there is counted and dropped "
        f"(default {shown_default('decap')})",
    )
    g.add_argument(
        "--vxlan-port",
        type=option_type("vxlan_port"),
        metavar="PORT",
        help=f"UDP port of the VXLAN mirror (default {shown_default('vxlan_port')})",
    )
    g.add_argument(
        "--mirror-session",
        action="append",
        type=option_type("mirror_session"),
        metavar="N",
        help="read only this mirror: VXLAN VNI, ERSPAN session id or GRE key; repeatable",
    )
    g.add_argument(
        "--mirror-from",
        action="append",
        type=option_type("mirror_from"),
        metavar="ADDR",
        help="read only mirrors sent from this address (the tunnel's outer source); repeatable",
    )
    g.add_argument(
        "--prime-from",
        type=option_type("prime_from"),
        metavar="SOURCE",
        help="pull the master's table once at start-up (and after a demotion or capture "
        "loss): HOST[:PORT] (sniffover serve, default port 7445), ssh://[user@]HOST "
        "(runs conntrack -L there) or a saved dump FILE",
    )
    g.add_argument(
        "--key-file",
        type=option_type("key_file"),
        metavar="FILE",
        help="pre-shared key for sniffover serve (mode 0600)",
    )
    g.add_argument(
        "--prime-required",
        action="store_true",
        default=None,
        help="refuse to run (exit 1) if the first pull fails; otherwise keep retrying "
        "every 30 s and report not-ready in `sniffover status`",
    )
    g.add_argument(
        "--prime-timeout",
        type=option_type("prime_timeout"),
        metavar="SECONDS",
        help=f"per pull attempt (default {shown_default('prime_timeout')})",
    )
    g.add_argument(
        "--sysctl-dir",
        type=option_type("sysctl_dir"),
        metavar="DIR",
        help=f"nf_conntrack_* timeouts to mirror (default {shown_default('sysctl_dir')})",
    )
    g.add_argument(
        "--metrics",
        type=option_type("metrics"),
        metavar="ADDR:PORT",
        help="serve Prometheus metrics: ':9477' = 127.0.0.1:9477 (this host only); "
        "'0.0.0.0:9477' or '[::]:9477' listen on every address",
    )
    g.add_argument(
        "--log-format",
        choices=["text", "json"],
        help=f"log line format on stderr (default {shown_default('log_format')})",
    )
    g.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help=f"default {shown_default('log_level')}",
    )
    g.add_argument(
        "--stats-interval",
        type=option_type("stats_interval"),
        metavar="SECONDS",
        help=f"log a counters line this often (default {shown_default('stats_interval')})",
    )
    g.add_argument(
        "--control",
        type=option_type("control"),
        metavar="PATH",
        help="control socket path (default: /run/sniffover/net-<netns inode>/control, one per "
        "network namespace, in a root-owned 0750 directory); a stale socket there is "
        "replaced, any other file refuses the start",
    )
    g.add_argument(
        "--control-group",
        metavar="GROUP",
        help="besides root, members of this group may use the control socket "
        "(default: root only; `table` stays root only)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="sniffover",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Sniffing failover agent for Linux stateful firewalls: on the standby firewall, "
            "rebuilds netfilter conntrack state from traffic seen on the shared segments and "
            "installs it into this host's kernel, so established connections survive a "
            "failover."
        ),
        epilog=AGENT_EPILOG,
    )
    parser.add_argument(
        "--version", action="version", version=f"sniffover {__version__} ({build()})"
    )
    _add_agent_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_replay_parser(sub)
    ctl = sub.add_parser(
        "ctl",
        help="tell the running agent to promote (commit state, stand down) or demote",
        description=(
            "promote: read what the capture rings still hold, install every tracked entry "
            "into the kernel, then stand down; returns when the kernel table holds "
            "everything seen so far. demote: resume standby duty. Same as SIGUSR1/SIGUSR2. "
            "prime: pull the master's table again now (--prime-from) and merge it; answers "
            "when the pull ends; at most one every 10 s. table: print the tracked table as "
            "conntrack -L does (root only). Only root or --control-group members may use "
            "the control socket, and only an agent running as root is believed."
        ),
    )
    ctl.add_argument("action", choices=["promote", "demote", "prime", "table"])
    ctl.add_argument("--control", dest="ctl_path", metavar="PATH", help="agent's control socket")
    ctl.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    demo = sub.add_parser(
        "demo",
        help="build the hub lab in namespaces and show a failover with and without sniffover",
        description=(
            "Builds client, server, two firewalls and a hub in network namespaces "
            "(snflab-*), opens connections through fw1, runs sniffover on fw2, fails over, "
            "and prints how many connections survived with sniffover and without it. "
            "Needs root; takes about half a minute; removes everything it made."
        ),
    )
    demo.add_argument("--tcp", type=int, default=50, help="TCP connections (default 50)")
    demo.add_argument("--udp", type=int, default=10, help="UDP flows (default 10)")
    from .bench.suite import add_bench_arguments
    from .check import add_check_arguments
    from .prime.server import add_serve_arguments

    add_serve_arguments(sub)
    add_bench_arguments(sub)
    add_check_arguments(sub)
    sub.add_parser(
        "completion",
        help="print the bash completion script, generated from this --help",
        description="Prints the bash completion: sniffover completion > "
        "/usr/share/bash-completion/completions/sniffover",
    )
    sub.add_parser(
        "manpage",
        help="print the sniffover(8) man page (roff), generated from this --help",
        description="Prints the man page in roff: sniffover manpage > sniffover.8",
    )
    st = sub.add_parser(
        "status",
        help="show the running agent's state; exit 0 only if it is up and capturing",
        description="Readiness probe: exit 0 when the agent is up, capturing and (if asked "
        "to prime) primed; 1 otherwise.",
    )
    st.add_argument("--control", dest="ctl_path", metavar="PATH", help="agent's control socket")
    st.add_argument("--json", action="store_true", help="print the full status as JSON")
    return parser


def cmd_replay_lazy(args: argparse.Namespace) -> int:
    from .replay_cli import cmd_replay

    return cmd_replay(args)


def cmd_ctl(args: argparse.Namespace) -> int:
    from .agent.control import ControlError, request

    try:
        doc = request(args.action, args.ctl_path or args.control, timeout=args.timeout)
    except ControlError as exc:
        raise CliError(str(exc)) from None
    if not doc.get("ok"):
        raise CliError(f"{args.action} failed: {doc.get('error', doc)}")
    if args.action == "table":
        sys.stdout.write(str(doc.get("table", "")))
    elif args.action == "promote":
        print(
            f"promoted: {doc.get('installed', 0)} entries in the kernel table "
            f"({doc.get('committed', 0)} messages in {doc.get('seconds', 0)} s)"
        )
    elif args.action == "prime":
        print(
            f"primed from {doc.get('source')}: {doc.get('entries')} entries "
            f"({doc.get('adopted')} new) in {doc.get('seconds')} s"
        )
    else:
        print(f"state: {doc.get('state')}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from .agent.control import ControlError, request

    try:
        doc = request("status", args.ctl_path or args.control, timeout=10.0)
    except ControlError as exc:
        raise CliError(str(exc)) from None
    if "state" not in doc:  # refused, or not a status document
        raise CliError(f"status failed: {doc.get('error', doc)}")
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        age = doc.get("last_packet_age")
        drops = sum(d["dropped"] + d["ifdropped"] for d in doc.get("capture", {}).values())
        print(
            f"{doc.get('state')} pid {doc.get('pid')} up {doc.get('uptime')} s; "
            f"capturing {','.join(doc.get('interfaces', [])) if doc.get('capturing') else 'no'}; "
            f"flows {doc.get('flows')}, installed {doc.get('installed')}, "
            f"pending {doc.get('pending')}; drops {drops}; "
            f"last packet {'never' if age is None else f'{age} s ago'}"
            + ("" if doc.get("primed") is None else f"; primed {doc.get('primed')}")
        )
    return EXIT_OK if doc.get("ok") else EXIT_ERROR


def cmd_demo(args: argparse.Namespace) -> int:
    from .lab.demo import run_demo

    if not 1 <= args.tcp <= 1000 or not 0 <= args.udp <= 500:
        raise CliError("demo: --tcp must be 1..1000 and --udp 0..500")
    return run_demo(args.tcp, args.udp)


def cmd_serve_lazy(args: argparse.Namespace) -> int:
    import os
    import pwd

    from .agent.privs import drop_privileges
    from .prime.server import DEFAULT_USERS, cmd_serve

    user = args.user
    if user is None:
        known = {p.pw_name for p in pwd.getpwall()}
        user = next((u for u in DEFAULT_USERS if u in known), DEFAULT_USERS[-1])

    def drop() -> list[str]:
        # root: become ``user`` keeping CAP_NET_ADMIN (the dump); started unprivileged
        # (e.g. a unit's User= with ambient capabilities): keep what is needed of what it has
        if os.geteuid() == 0:
            return drop_privileges(("CAP_NET_ADMIN",), user)
        return [f"not started as root: running as uid {os.geteuid()} unchanged"]

    return cmd_serve(args, drop)


def cmd_completion_lazy(args: argparse.Namespace) -> int:
    from .completion import cmd_completion

    return cmd_completion(args)


def cmd_manpage_lazy(args: argparse.Namespace) -> int:
    from .manpage import cmd_manpage

    return cmd_manpage(args)


def cmd_check_lazy(args: argparse.Namespace) -> int:
    from .check import cmd_check

    return cmd_check(args)


def cmd_bench_lazy(args: argparse.Namespace) -> int:
    from .bench.suite import cmd_bench

    return cmd_bench(args)


COMMANDS = {
    "bench": cmd_bench_lazy,
    "replay": cmd_replay_lazy,
    "ctl": cmd_ctl,
    "status": cmd_status,
    "demo": cmd_demo,
    "serve": cmd_serve_lazy,
    "check": cmd_check_lazy,
    "manpage": cmd_manpage_lazy,
    "completion": cmd_completion_lazy,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if not args.command:
            from .agent.config import run_agent

            return run_agent(args, parser)
        return COMMANDS[args.command](args)
    except CliError as exc:
        print(f"sniffover: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
