"""The agent's configuration: ``AgentConfig`` (the one source of option names, TOML keys
and defaults), the TOML file, option merging, logging set-up, and ``run_agent``, which
starts the standby agent from all that."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import tomllib
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, cast

from ..conntrack.helpers import HELPERS
from ..conntrack.timeouts import Timeouts
from ..errors import EXIT_USAGE, CliError


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


def _opt(name: str = "", **kw: Any) -> dict[str, Option]:
    return {"option": Option(name, **kw)}


@dataclass
class AgentConfig:
    """The agent's settings: the one source of its option names, TOML keys and defaults
    (the ``option`` metadata; ``CONFIG_KEYS`` and ``DEFAULTS`` are derived from it)."""

    ifaces: list[str] = field(metadata=_opt("iface", kind=list, from_option=list))
    timeouts: Timeouts = field(default_factory=Timeouts)  # from --sysctl-dir
    control: str | None = field(default=None, metadata=_opt())
    zone: int = field(default=0, metadata=_opt())
    mark: int | None = field(default=None, metadata=_opt())
    flush_interval: float = field(default=0.02, metadata=_opt())
    install: bool = field(default=True, metadata=_opt("no_install", negate=True))
    # headers + an FTP control line (conntrack/helpers/ftp.py)
    snaplen: int = field(default=256, metadata=_opt())
    ring_mb: int = field(default=32, metadata=_opt())
    exclude_self: bool = field(default=True, metadata=_opt("include_self", negate=True))
    bpf: str = field(default="", metadata=_opt())
    stats_interval: float = field(default=60.0, metadata=_opt())
    pickup: bool = field(default=True, metadata=_opt("no_pickup", negate=True))
    # --prefilter control: only control segments + a sample reach Python
    prefilter: bool = field(
        default=False,
        metadata=_opt(
            kind=str,
            to_option=lambda on: "control" if on else "none",
            from_option=lambda text: text == "control",
        ),
    )
    pickup_sample: int = field(default=16, metadata=_opt())
    # seconds of full capture before the prefilter applies
    warmup: float = field(default=30.0, metadata=_opt())
    # HOST[:PORT] | ssh://[user@]HOST | FILE
    prime_from: str | None = field(default=None, metadata=_opt())
    key_file: str | None = field(default=None, metadata=_opt())
    prime_required: bool = field(default=False, metadata=_opt())
    prime_timeout: float = field(default=10.0, metadata=_opt())
    # bound of the tracker's table (early drop beyond it); default: the host's
    # nf_conntrack_max, read by run_agent
    max_flows: int | None = field(default=None, metadata=_opt())
    # keep only CAP_NET_ADMIN + CAP_NET_RAW once sockets are open
    drop_privileges: bool = field(default=True, metadata=_opt("keep_privileges", negate=True))
    user: str | None = field(default=None, metadata=_opt())  # and run as this user
    metrics_listen: str | None = field(default=None, metadata=_opt("metrics", kind=str))
    # forwarding confirmation: auto | mac | both | off
    confirm: str = field(default="auto", metadata=_opt())
    # configured; else learned
    master_macs: list[str] = field(
        default_factory=list,
        metadata=_opt("master_mac", kind=list, from_option=lambda v: list(v or [])),
    )
    # the master's own IPv4 addresses: its MAC on each segment is the one answering ARP
    master_addrs: list[str] = field(
        default_factory=list,
        metadata=_opt("master_addr", kind=list, from_option=lambda v: list(v or [])),
    )
    # Not options (no flag, no TOML key): these cannot be set today, on purpose.
    reprime_after_drops: bool = True
    # Every registered helper is on: its masters get the kernel's helper (CTA_HELP), and
    # the expectations it registers follow (conntrack/helpers/).
    helpers: tuple[str, ...] = tuple(h.name for h in HELPERS)


# Options that are not AgentConfig fields (they choose where settings come from).
OTHER_OPTIONS: dict[str, tuple[type, Any]] = {
    "sysctl_dir": (str, "/proc/sys/net/netfilter"),
    "log_format": (str, "text"),
    "log_level": (str, "info"),
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


def _options() -> tuple[dict[str, type], dict[str, Any], dict[str, tuple[str, Option]]]:
    hints = typing.get_type_hints(AgentConfig)
    keys: dict[str, type] = {}
    defaults: dict[str, Any] = {}
    by_option: dict[str, tuple[str, Option]] = {}
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
        if f.default is not MISSING and f.default is not None:
            value = not f.default if spec.negate else f.default
            defaults[name] = spec.to_option(value) if spec.to_option else value
    for name, (kind, default) in OTHER_OPTIONS.items():
        keys[name] = kind
        defaults[name] = default
    return keys, defaults, by_option


# option name -> its TOML type; option name -> its default (options without one: None)
CONFIG_KEYS, DEFAULTS, _BY_OPTION = _options()


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
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise CliError(f"config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"config {path}: {exc}") from None
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        kind = CONFIG_KEYS.get(name)
        if kind is None:
            raise CliError(f"config {path}: unknown option {key!r}")
        if kind is list and isinstance(value, str):
            value = [value]
        if kind is float and isinstance(value, int):
            value = float(value)
        if kind is int and name == "mark" and isinstance(value, str):
            value = int(value, 0)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CliError(f"config {path}: {key} must be {kind.__name__}")
        out[name] = value
    return out


def merged_options(args: argparse.Namespace) -> dict[str, Any]:
    opts = dict(DEFAULTS)
    if args.config:
        opts.update(load_config(args.config))
    for name in CONFIG_KEYS:
        value = getattr(args, name, None)
        if value is not None:
            opts[name] = value
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
    if cfg.confirm not in ("auto", "mac", "both", "off"):
        raise CliError(f"--confirm {cfg.confirm!r}: expected auto, mac, both or off")
    try:
        from ..capture.bpf import mac_bytes

        for m in cfg.master_macs:
            mac_bytes(m)
    except ValueError as exc:
        raise CliError(f"--master-mac: {exc}") from None
    try:
        from .anchors import parse_addrs, prime_host

        anchored = parse_addrs(cfg.master_addrs) or prime_host(cfg.prime_from)
    except ValueError as exc:
        raise CliError(f"--master-addr: {exc}") from None
    present = all(os.path.exists(f"/sys/class/net/{i}") for i in cfg.ifaces)
    # (a missing interface is reported by the capture, first)
    if present and cfg.confirm != "off" and not cfg.master_macs and not anchored:
        raise CliError(
            "no trust anchor for the master: give --master-addr (its own address), "
            "--master-mac, or --prime-from HOST; or --confirm off to trust the segment"
        )
    if opts["prefilter"] not in ("none", "control"):
        raise CliError(f"--prefilter {opts['prefilter']!r}: expected none or control")
    try:
        agent = Agent(cfg)
        return agent.run()
    except NetlinkError as exc:
        raise CliError(exc.strerror or str(exc)) from None
    except (CaptureError, ControlError, PrivilegeError) as exc:
        raise CliError(str(exc)) from None
