"""The agent's configuration: ``AgentConfig`` (the one source of option names, TOML keys,
defaults and the range of each value), the TOML file, option merging, logging set-up, and
``run_agent``, which starts the standby agent from all that.

Validation is one step for both sources (``check_value``): a TOML value and a command-line
text go through the same typing and the same ``check`` of the option's ``Option`` record,
so an option is validated by declaring its range; a bad value is one line and exit 2."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
import tomllib
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, cast

from ..conntrack.helpers import HELPERS
from ..conntrack.timeouts import Timeouts
from ..errors import EXIT_USAGE, CliError, UsageError


@dataclass(frozen=True)
class Option:
    """An agent option: ``--name-with-dashes`` on the command line, ``name`` (dashes or
    underscores) in the TOML file. ``negate``: a flag that turns its field off
    (``no_install`` -> ``install``)."""

    name: str
    kind: type = object  # the TOML value's type; derived from the field when left out
    negate: bool = False
    to_option: Callable[[Any], Any] | None = None  # field value -> option value
    from_option: Callable[[Any], Any] | None = None  # option value -> field value
    # What a typed value must be (each element of a list): raises ValueError saying why.
    # Floats are always checked finite; see in_range, one_of, ...
    check: Callable[[Any], None] | None = None
    # text -> value where the kind is not str (the command line; a TOML string for an int
    # option, such as mark = "0x10"); default: the kind's constructor
    parse: Callable[[str], Any] | None = None


def _opt(name: str = "", **kw: Any) -> dict[str, Option]:
    return {"option": Option(name, **kw)}


# --- checks (each raises ValueError with what the value must be) ----------------------


def in_range(lo: float, hi: float, *, above: bool = False) -> Callable[[Any], None]:
    """lo <= value <= hi (lo < value with ``above``)."""

    def check(value: Any) -> None:
        if (value <= lo if above else value < lo) or value > hi:
            low = f"> {lo:g}" if above else f">= {lo:g}"
            raise ValueError(f"must be {low} and <= {hi:g}")

    return check


def one_of(*choices: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value not in choices:
            raise ValueError("must be " + ", ".join(choices[:-1]) + " or " + choices[-1])

    return check


def power_of_two(hi: int) -> Callable[[Any], None]:
    # the prefilter samples by masking the low bits of seq + ack (capture/bpf.py)
    def check(value: Any) -> None:
        if not 1 <= value <= hi or value & (value - 1):
            raise ValueError(f"must be a power of two from 1 to {hi}")

    return check


def _plain(what: str, maxlen: int = 4096) -> Callable[[Any], None]:
    """A non-empty word: no blank, no control character (it reaches a kernel name, a user
    database or a socket path)."""

    def check(value: Any) -> None:
        if not value or len(value) > maxlen or any(c.isspace() or ord(c) < 32 for c in value):
            raise ValueError(f"must be {what}")

    return check


def _iface(value: Any) -> None:
    _plain("an interface name", 15)(value)  # IFNAMSIZ - 1
    if "/" in value or value in (".", ".."):
        raise ValueError("must be an interface name")


def _mac(value: Any) -> None:
    parts = value.replace("-", ":").split(":")
    if len(parts) != 6 or not all(
        1 <= len(p) <= 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts
    ):
        raise ValueError("must be a MAC address like 02:00:5e:00:53:01")


def _listen(value: Any) -> None:
    from .metrics import parse_listen

    try:
        parse_listen(value)
    except ValueError:
        raise ValueError("must be ADDR:PORT, [ADDR]:PORT or :PORT (port 1-65535)") from None


def _directory(value: Any) -> None:
    if not os.path.isdir(value):
        raise ValueError("must be a directory")


def _prime_source(value: Any) -> None:
    _plain("HOST[:PORT], ssh://[user@]HOST or a file")(value)
    if value.startswith("ssh://"):
        from ..prime.client import ssh_destination

        try:
            ssh_destination(value)
        except ValueError as exc:
            raise ValueError(f"must be ssh://[user@]HOST[:PORT] ({exc})") from None
    elif serve_source(value):
        from ..errors import PrimeError
        from ..prime.client import parse_source

        try:
            parse_source(value)
        except PrimeError:
            raise ValueError("must be HOST[:PORT] (port 1-65535)") from None


def _zone_rule(value: Any) -> None:
    from ..conntrack.zones import ZoneMapError, parse_rule

    _plain("a zone map rule")(value)
    try:
        parse_rule(value)
    except ZoneMapError as exc:
        raise ValueError(str(exc).partition(": ")[2]) from None


def _session(value: Any) -> None:
    from ..capture.decap import parse_session

    try:
        parse_session(value)
    except ValueError:
        raise ValueError("must be an integer 0-4294967295 (VNI, ERSPAN session, GRE key)") from None


def _address(value: Any) -> None:
    import ipaddress

    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError("must be an IP address") from None


def _u32(text: str) -> int:
    return int(text, 0)  # 0x10, 0o20 or 16


@dataclass
class AgentConfig:
    """The agent's settings: the one source of its option names, TOML keys and defaults
    (the ``option`` metadata; ``CONFIG_KEYS`` and ``DEFAULTS`` are derived from it)."""

    ifaces: list[str] = field(metadata=_opt("iface", kind=list, from_option=list, check=_iface))
    timeouts: Timeouts = field(default_factory=Timeouts)  # from --sysctl-dir
    control: str | None = field(default=None, metadata=_opt(check=_plain("a socket path")))
    # the group (besides root) allowed on the control socket (agent/control.py)
    control_group: str | None = field(default=None, metadata=_opt(check=_plain("a group name", 32)))
    zone: int = field(default=0, metadata=_opt(check=in_range(0, 65535)))
    # --zone-map: each packet's zone from its VLAN / capture interface (conntrack.zones)
    zone_map: list[str] = field(
        default_factory=list,
        metadata=_opt("zone_map", kind=list, from_option=lambda v: list(v or []), check=_zone_rule),
    )
    mark: int | None = field(default=None, metadata=_opt(check=in_range(0, 0xFFFFFFFF), parse=_u32))
    flush_interval: float = field(default=0.02, metadata=_opt(check=in_range(0, 60, above=True)))
    install: bool = field(default=True, metadata=_opt("no_install", negate=True))
    # headers + an FTP control line (conntrack/helpers/ftp.py)
    snaplen: int = field(default=256, metadata=_opt(check=in_range(128, 65535)))
    ring_mb: int = field(default=32, metadata=_opt(check=in_range(1, 2048)))
    exclude_self: bool = field(default=True, metadata=_opt("include_self", negate=True))
    bpf: str = field(default="", metadata=_opt())
    stats_interval: float = field(default=60.0, metadata=_opt(check=in_range(0, 86400, above=True)))
    pickup: bool = field(default=True, metadata=_opt("no_pickup", negate=True))
    # --prefilter control: only control segments + a sample reach Python
    prefilter: bool = field(
        default=False,
        metadata=_opt(
            kind=str,
            to_option=lambda on: "control" if on else "none",
            from_option=lambda text: text == "control",
            check=one_of("none", "control"),
        ),
    )
    pickup_sample: int = field(default=16, metadata=_opt(check=power_of_two(256)))
    # seconds of full capture before the prefilter applies
    warmup: float = field(default=30.0, metadata=_opt(check=in_range(0, 86400)))
    # HOST[:PORT] | ssh://[user@]HOST | FILE
    prime_from: str | None = field(default=None, metadata=_opt(check=_prime_source))
    key_file: str | None = field(default=None, metadata=_opt(check=_plain("a file name")))
    prime_required: bool = field(default=False, metadata=_opt())
    prime_timeout: float = field(default=10.0, metadata=_opt(check=in_range(0, 3600, above=True)))
    # bound of the tracker's table (early drop beyond it); default: the host's
    # nf_conntrack_max, read by run_agent
    max_flows: int | None = field(default=None, metadata=_opt(check=in_range(1, 2**31 - 1)))
    # keep only CAP_NET_ADMIN + CAP_NET_RAW once sockets are open
    drop_privileges: bool = field(default=True, metadata=_opt("keep_privileges", negate=True))
    # and run as this user
    user: str | None = field(default=None, metadata=_opt(check=_plain("a user name", 256)))
    metrics_listen: str | None = field(
        default=None, metadata=_opt("metrics", kind=str, check=_listen)
    )
    # datagrams to multicast groups: drop (a router that joined none) | track (conntrack.table)
    multicast: str = field(default="drop", metadata=_opt(check=one_of("drop", "track")))
    # forwarding confirmation: auto | mac | both | off
    confirm: str = field(default="auto", metadata=_opt(check=one_of("auto", "mac", "both", "off")))
    # configured; else learned
    master_macs: list[str] = field(
        default_factory=list,
        metadata=_opt("master_mac", kind=list, from_option=lambda v: list(v or []), check=_mac),
    )
    # the master's own IPv4 addresses: its MAC on each segment is the one answering ARP
    master_addrs: list[str] = field(
        default_factory=list,
        metadata=_opt("master_addr", kind=list, from_option=lambda v: list(v or [])),
    )
    # remote mirror ingest (capture/decap.py): the tunnel the mirrored frames arrive in
    decap: str = field(
        default="none",
        metadata=_opt(check=one_of("none", "auto", "vxlan", "erspan", "gre", "tzsp")),
    )
    vxlan_port: int = field(default=4789, metadata=_opt(check=in_range(1, 65535)))
    # the mirrors to read: VNI / ERSPAN session id / GRE key, and the tunnels' sources
    mirror_sessions: list[str] = field(
        default_factory=list,
        metadata=_opt("mirror_session", kind=list, from_option=lambda v: list(v or []),
                      check=_session),
    )  # fmt: skip
    mirror_from: list[str] = field(
        default_factory=list,
        metadata=_opt("mirror_from", kind=list, from_option=lambda v: list(v or []),
                      check=_address),
    )  # fmt: skip
    # Not options (no flag, no TOML key): these cannot be set today, on purpose.
    reprime_after_drops: bool = True
    # Every registered helper is on: its masters get the kernel's helper (CTA_HELP), and
    # the expectations it registers follow (conntrack/helpers/).
    helpers: tuple[str, ...] = tuple(h.name for h in HELPERS)

    @property
    def two_segments(self) -> bool:
        """Both sides of the master are sniffed: its packets' copies are paired (NAT)."""
        c = self.confirm
        return c == "both" or (c == "auto" and len(self.ifaces) >= 2)


# Options that are not AgentConfig fields (they choose where settings come from).
OTHER_OPTIONS: dict[str, tuple[type, Any]] = {
    "sysctl_dir": (str, "/proc/sys/net/netfilter"),
    "log_format": (str, "text"),
    "log_level": (str, "info"),
}
# ... and their checks
OTHER_CHECKS: dict[str, Callable[[Any], None]] = {
    "sysctl_dir": _directory,
    "log_format": one_of("text", "json"),
    "log_level": one_of("debug", "info", "warning", "error"),
}


def _kind(hint: Any) -> type:
    """``int | None`` -> int, ``list[str]`` -> list."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin is list:
        return list
    if args and origin is not None:
        return _kind(args[0])
    return cast(type, hint)


def _options() -> tuple[
    dict[str, type], dict[str, Any], dict[str, tuple[str, Option]], dict[str, Option]
]:
    hints = typing.get_type_hints(AgentConfig)
    keys: dict[str, type] = {}
    defaults: dict[str, Any] = {}
    by_option: dict[str, tuple[str, Option]] = {}
    specs: dict[str, Option] = {}
    for f in fields(AgentConfig):
        spec: Option | None = f.metadata.get("option")
        if spec is None:
            continue
        name = spec.name or f.name
        by_option[name] = (f.name, spec)
        keys[name] = (
            bool
            if spec.negate
            else spec.kind
            if spec.kind is not object
            else (_kind(hints[f.name]))
        )
        specs[name] = replace(spec, kind=keys[name])
        if f.default is not MISSING and f.default is not None:
            value = not f.default if spec.negate else f.default
            defaults[name] = spec.to_option(value) if spec.to_option else value
    for name, (kind, default) in OTHER_OPTIONS.items():
        keys[name] = kind
        defaults[name] = default
        specs[name] = Option(name, kind, check=OTHER_CHECKS.get(name))
    return keys, defaults, by_option, specs


# option name -> its TOML type; option name -> its default (options without one: None)
CONFIG_KEYS, DEFAULTS, _BY_OPTION, _SPECS = _options()

_KIND_NAMES = {int: "int (an integer)", float: "float (a number)", str: "str (a string)"}


def _kind_name(kind: type) -> str:
    return _KIND_NAMES.get(kind, kind.__name__)


def check_value(name: str, value: Any) -> Any:
    """The one validation step of option ``name``, for a TOML value and for command-line
    text alike: typed (text parsed, an int where a float goes, a string where a list goes),
    then the option's ``check`` (on each element of a list). Returns the value; raises
    ``ValueError`` saying what it must be."""
    spec = _SPECS[name]
    if spec.kind is list:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise ValueError("must be a string or a list of strings")
        if spec.check is not None:
            for item in items:
                spec.check(item)
        return list(items)
    return _check_scalar(spec, value)


def _check_scalar(spec: Option, value: Any) -> Any:
    kind = spec.kind
    if isinstance(value, str) and kind is not str:
        if kind is bool:
            raise ValueError("must be bool (true or false)")
        try:
            value = (spec.parse or kind)(value.strip())
        except (ValueError, OverflowError):
            raise ValueError(f"must be {_kind_name(kind)}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"must be {_kind_name(kind)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    if spec.check is not None:
        spec.check(value)
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def option_type(name: str) -> Callable[[str], Any]:
    """The argparse ``type=`` of option ``name``: its text through ``check_value`` (for a
    list option, one element)."""
    flag = "--" + name.replace("_", "-")

    def convert(text: str) -> Any:
        try:
            got = check_value(name, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc}, got {_shown(text)}") from None
        return got[0] if _SPECS[name].kind is list else got

    convert.__name__ = flag  # argparse names a failed type by it
    return convert


def serve_source(source: str) -> bool:
    """Whether ``--prime-from`` names a ``sniffover serve`` (needs ``--key-file``): not
    ``ssh://``, not ``file:PATH`` and not a path."""
    return not source.startswith(("ssh://", "file:")) and "/" not in source


def check_options(opts: dict[str, Any], given: set[str]) -> None:
    """Every option in ``given`` (set by the user) through ``check_value``, then what no
    single value can say; raises ``UsageError``."""
    for name in sorted(given):
        try:
            opts[name] = check_value(name, opts[name])
        except ValueError as exc:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} {exc}, got {_shown(opts[name])}") from None
    if opts.get("zone_map"):
        from ..conntrack.zones import ZoneMap, ZoneMapError

        try:
            ZoneMap.parse(opts["zone_map"])
        except ZoneMapError as exc:
            raise UsageError(str(exc).replace("zone map", "--zone-map", 1)) from None
    decap = opts.get("decap") or "none"
    if decap == "none" and (opts.get("mirror_session") or opts.get("mirror_from")):
        raise UsageError("--mirror-session and --mirror-from select mirrors: give --decap")
    if decap != "none" and opts.get("prefilter") in (True, "control"):
        # its tcp[] offsets are the outer headers': a tunnel's inner frame is out of reach
        raise UsageError(
            f"--prefilter control cannot look inside the --decap {decap} tunnel "
            "(the inner frame's offsets vary); use --prefilter none"
        )
    source = opts.get("prime_from")
    if source and serve_source(source) and not opts.get("key_file"):
        raise UsageError(
            f"--prime-from {source}: pulling from sniffover serve needs --key-file "
            "(a file: file:PATH or an absolute path)"
        )


def shown_default(name: str) -> str:
    """An option's default as the help text shows it (``30.0`` -> ``30``)."""
    value = DEFAULTS[name]
    return f"{value:g}" if isinstance(value, float) else str(value)


def agent_config(opts: dict[str, Any], timeouts: Timeouts) -> AgentConfig:
    """The AgentConfig of merged options (see ``merged_options``)."""
    kw: dict[str, Any] = {"timeouts": timeouts}
    for name, (fname, spec) in _BY_OPTION.items():
        value = opts.get(name)
        if spec.negate:
            value = not value
        elif spec.from_option is not None:
            value = spec.from_option(value)
        kw[fname] = value
    return AgentConfig(**kw)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "ts": round(record.created, 3),
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": record.getMessage(),
            }
        )


def setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s sniffover %(levelname)s %(message)s")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger("sniffover")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def load_config(path: str) -> dict[str, Any]:
    """The options of a TOML file, each through ``check_value``. A file that cannot be
    read is ``CliError`` (exit 1); one that is not valid TOML, or a bad key or value,
    ``UsageError`` (exit 2)."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise CliError(f"config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config {path}: {str(exc).splitlines()[0]}") from None
    except (UnicodeDecodeError, ValueError):
        raise UsageError(f"config {path}: not a UTF-8 TOML file") from None
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in CONFIG_KEYS:
            raise UsageError(f"config {path}: unknown option {_shown(key)}")
        try:
            out[name] = check_value(name, value)
        except ValueError as exc:
            raise UsageError(f"config {path}: {key} {exc}, got {_shown(value)}") from None
    return out


def merged_options(args: argparse.Namespace) -> dict[str, Any]:
    """Defaults, then the config file, then the command line; every value given checked."""
    opts = dict(DEFAULTS)
    if args.config:
        opts.update(load_config(args.config))
    given: set[str] = set()
    for name in CONFIG_KEYS:
        value = getattr(args, name, None)
        if value is not None:
            opts[name] = value
            given.add(name)
    check_options(opts, given)
    return opts


def run_agent(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    opts = merged_options(args)
    if not opts.get("iface"):
        parser.print_usage(sys.stderr)
        print("sniffover: give --iface (or a COMMAND); see sniffover --help", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(opts["log_format"], opts["log_level"])

    from ..capture.files import CaptureError
    from ..kernel.ctnetlink import NetlinkError
    from ..kernel.sysctl import conntrack_max, host_timeouts
    from .control import ControlError
    from .daemon import Agent
    from .privs import PrivilegeError

    cfg = agent_config(opts, host_timeouts(opts["sysctl_dir"]))
    cfg.max_flows = cfg.max_flows or conntrack_max(opts["sysctl_dir"])
    from .anchors import parse_addrs, prime_host

    try:
        anchored = parse_addrs(cfg.master_addrs) or prime_host(cfg.prime_from)
    except ValueError as exc:
        raise UsageError(f"--master-addr: {exc}") from None
    present = all(os.path.exists(f"/sys/class/net/{i}") for i in cfg.ifaces)
    # (a missing interface is reported by the capture, first)
    if present and cfg.confirm != "off" and not cfg.master_macs and not anchored:
        raise UsageError(
            "no trust anchor for the master: give --master-addr (its own address), "
            "--master-mac, or --prime-from HOST; or --confirm off to trust the segment"
        )
    try:
        agent = Agent(cfg)
        return agent.run()
    except NetlinkError as exc:
        raise CliError(exc.strerror or str(exc)) from None
    except (CaptureError, ControlError, PrivilegeError) as exc:
        raise CliError(str(exc)) from None
