"""``sniffover check``: is this host fit to be a standby? One line per check; exit 0 if all hold.

Like ``conntrackd -s``, ``keepalived -t`` and ``nft -c``, a preflight an operator (or a
configuration-management run) can gate a deployment on. Each check reads what the agent will
rely on and, when it fails, says what to do:

* ctnetlink: this process may write the conntrack table (CAP_NET_ADMIN in this namespace);
* helpers: the kernel's conntrack helpers the tracker mirrors are loaded (``nf_conntrack_ftp``,
  ``nf_conntrack_tftp``): installed FTP/TFTP masters carry CTA_HELP and need them;
* sysctls: what the tracker mirrors (tcp_loose, tcp_be_liberal, the established and UDP
  timeouts), shown;
* hash: ``nf_conntrack_buckets`` against the table the agent will hold (``--max-flows``, else
  ``nf_conntrack_max``): the kernel's insert cost grows with the chains (measured ~2 us per entry
  on an empty hash, ~4.5 us with three entries per bucket), so more than two per bucket fails;
* each ``--iface``: exists, is up and opens promiscuously; with ``--listen-seconds N`` frames
  arrive on it within N seconds (and from ``--master-mac`` if given);
* ``--key-file``: readable by this user, not group/other accessible (the rules of ``serve`` and
  ``--prime-from``);
* ``--prime-from``: the master's ``sniffover serve`` answers, authenticates and sends its table.
"""

from __future__ import annotations

import argparse
import json
import select
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .conntrack.packet import HW_FROM_MASTER
from .errors import CliError
from .kernel.sysctl import NETFILTER_SYSCTL_DIR, conntrack_max, read_netfilter_sysctls

MODULES_DIR = "/sys/module"
NET_DIR = "/sys/class/net"
HELPER_MODULES = ("nf_conntrack_ftp", "nf_conntrack_tftp")
MAX_PER_BUCKET = 2  # entries per hash bucket beyond which installs slow down measurably
SHOWN_SYSCTLS = (
    "nf_conntrack_tcp_loose",
    "nf_conntrack_tcp_be_liberal",
    "nf_conntrack_tcp_timeout_established",
    "nf_conntrack_udp_timeout_stream",
)


@dataclass
class Result:
    name: str
    ok: bool | None  # None: shown, not judged
    detail: str
    advice: str = ""

    def line(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "info"}[self.ok]
        text = f"{mark} {self.name}: {self.detail}"
        return f"{text} -> {self.advice}" if self.advice and self.ok is False else text


def check_ctnetlink() -> Result:
    from .errors import NetlinkError
    from .kernel.ctnetlink import CtnlSocket

    try:
        with CtnlSocket() as sock:
            sock.check_writable()
    except (NetlinkError, OSError) as exc:
        return Result(
            "ctnetlink",
            False,
            str(exc),
            "run as root or with CAP_NET_ADMIN (the example unit grants it); "
            "is nf_conntrack_netlink available?",
        )
    return Result("ctnetlink", True, "this process may write the conntrack table")


def check_helpers(modules_dir: str = MODULES_DIR) -> Result:
    missing = [m for m in HELPER_MODULES if not (Path(modules_dir) / m).is_dir()]
    if missing:
        return Result(
            "helpers",
            False,
            f"not loaded: {', '.join(missing)}",
            "modprobe " + " ".join(missing) + " (and list them in /etc/modules-load.d/)",
        )
    return Result("helpers", True, "loaded: " + ", ".join(HELPER_MODULES))


def check_sysctls(sysctl_dir: str = NETFILTER_SYSCTL_DIR) -> Result:
    values = read_netfilter_sysctls(sysctl_dir)
    shown = ", ".join(
        f"{k.removeprefix('nf_conntrack_')}={values.get(k, '?')}" for k in SHOWN_SYSCTLS
    )
    return Result("sysctls", None, f"mirrored by the tracker: {shown}")


def check_hash(max_flows: int | None, sysctl_dir: str = NETFILTER_SYSCTL_DIR) -> Result:
    try:
        buckets = int((Path(sysctl_dir) / "nf_conntrack_buckets").read_text().strip())
    except (OSError, ValueError) as exc:
        return Result(
            "hash", False, f"nf_conntrack_buckets unreadable ({exc})", "load nf_conntrack"
        )
    entries = max_flows or conntrack_max(sysctl_dir) or 0
    per = entries / buckets if buckets else float("inf")
    detail = f"{buckets:,} buckets for up to {entries:,} entries ({per:.1f} per bucket)"
    if per > MAX_PER_BUCKET:
        want = -(-entries // MAX_PER_BUCKET)
        return Result(
            "hash",
            False,
            detail,
            f"raise the hash to at least {want:,} buckets: "
            f"echo {want} > /sys/module/nf_conntrack/parameters/hashsize",
        )
    return Result("hash", True, detail)


def _is_up(iface: str, net_dir: str) -> bool | None:
    try:
        flags = int((Path(net_dir) / iface / "flags").read_text().strip(), 16)
    except (OSError, ValueError):
        return None
    return bool(flags & 1)  # IFF_UP


def check_iface(
    iface: str,
    listen_seconds: float = 0.0,
    master_mac: bytes | None = None,
    net_dir: str = NET_DIR,
) -> Result:
    name = f"iface {iface}"
    up = _is_up(iface, net_dir)
    if up is None:
        return Result(name, False, "no such interface in this network namespace", "check --iface")
    if not up:
        return Result(name, False, "interface is down", f"ip link set {iface} up")
    from .capture.files import CaptureError
    from .capture.live import LiveCapture

    try:
        cap = LiveCapture(iface, promisc=True)
    except CaptureError as exc:
        return Result(name, False, str(exc), "run as root or with CAP_NET_RAW")
    if master_mac is not None:
        cap.decoder.master = frozenset({master_mac})  # p.hw then flags the master's frames
    try:
        if listen_seconds <= 0:
            return Result(name, True, "up, opens promiscuously")
        frames = from_master = 0
        deadline = time.monotonic() + listen_seconds
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([cap], [], [], min(left, 0.2))[0]:
                continue
            for p in cap.read():
                frames += 1
                if p.hw & HW_FROM_MASTER:
                    from_master += 1
            if frames and (master_mac is None or from_master):
                break
    finally:
        cap.close()
    if not frames:
        return Result(
            name,
            False,
            f"no frame in {listen_seconds:g} s",
            "is this the shared segment (hub, mirror port)? is the master forwarding?",
        )
    if master_mac is not None and not from_master:
        return Result(
            name, False, f"{frames} frames, none from the master's MAC", "check --master-mac"
        )
    return Result(name, True, f"up, promiscuous, {frames} frames seen")


def check_key(path: str) -> Result:
    from .prime.handshake import read_key

    try:
        read_key(path)
    except CliError as exc:
        return Result("key", False, str(exc), "chmod 600 the file, owned by the agent's user")
    return Result("key", True, f"{path} readable and private")


def check_prime(source: str, key_file: str | None, timeout: float = 10.0) -> Result:
    from .errors import PrimeError
    from .prime.client import fetch

    try:
        snap = fetch(source, key_file, timeout=timeout, retries=0)
    except (PrimeError, CliError, OSError) as exc:
        return Result(
            "prime",
            False,
            f"{source}: {exc}",
            "is `sniffover serve` running on the master, reachable, with the same key?",
        )
    return Result("prime", True, f"{source} sent {len(snap.entries):,} entries")


def run_checks(args: argparse.Namespace) -> list[Result]:
    results = [check_ctnetlink(), check_helpers(), check_sysctls(), check_hash(args.max_flows)]
    mac = bytes.fromhex(args.master_mac.replace(":", "")) if args.master_mac else None
    for iface in args.iface:
        results.append(check_iface(iface, args.listen_seconds, mac))
    if args.key_file:
        results.append(check_key(args.key_file))
    if args.prime_from:
        results.append(check_prime(args.prime_from, args.key_file, args.timeout))
    return results


def add_check_arguments(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "check",
        help="preflight: is this host ready to be a standby? (exit 0 only if every check holds)",
        description=(__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--iface",
        action="append",
        default=[],
        metavar="IFACE",
        help="a sniffed interface (repeat, or comma-separate)",
    )
    p.add_argument("--max-flows", type=int, metavar="N", help="the agent's table bound")
    p.add_argument("--key-file", metavar="FILE", help="the prime key file to check")
    p.add_argument("--prime-from", metavar="SOURCE", help="pull once from the master to prove it")
    p.add_argument(
        "--listen-seconds",
        type=float,
        default=0.0,
        metavar="S",
        help="also wait up to S seconds for frames on each interface (default 0: do not listen)",
    )
    p.add_argument("--master-mac", metavar="MAC", help="with --listen-seconds: frames from it")
    p.add_argument("--timeout", type=float, default=10.0, help="prime pull timeout (default 10)")
    p.add_argument("--json", action="store_true", help="one JSON document instead of lines")


def cmd_check(args: argparse.Namespace) -> int:
    args.iface = [i for part in args.iface for i in part.split(",") if i]
    if args.max_flows is not None and args.max_flows < 1:
        raise CliError("check: --max-flows must be at least 1")
    if args.listen_seconds < 0 or args.timeout <= 0:
        raise CliError("check: --listen-seconds must be >= 0 and --timeout > 0")
    if args.master_mac:
        digits = args.master_mac.replace(":", "")
        if len(digits) != 12 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise CliError(f"check: --master-mac {args.master_mac}: not a MAC address")
    results = run_checks(args)
    if args.json:
        ok = all(r.ok is not False for r in results)
        print(json.dumps({"ok": ok, "checks": [asdict(r) for r in results]}, indent=1))
    else:
        for r in results:
            print(r.line())
    return 0 if all(r.ok is not False for r in results) else 1
