"""Start the standby agent from command-line options and an optional TOML config file."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import tomllib
from typing import Any

from ..errors import EXIT_USAGE, CliError

# option name -> (AgentConfig field, type)
CONFIG_KEYS: dict[str, type] = {
    "iface": list,
    "zone": int,
    "mark": int,
    "no_install": bool,
    "flush_interval": float,
    "snaplen": int,
    "ring_mb": int,
    "bpf": str,
    "include_self": bool,
    "no_pickup": bool,
    "sysctl_dir": str,
    "metrics": str,
    "log_format": str,
    "log_level": str,
    "stats_interval": float,
    "control": str,
    "prefilter": str,
    "pickup_sample": int,
    "warmup": float,
    "prime_from": str,
    "key_file": str,
    "prime_required": bool,
    "prime_timeout": float,
    "confirm": str,
    "max_flows": int,
    "keep_privileges": bool,
    "user": str,
    "master_mac": list,
}
DEFAULTS: dict[str, Any] = {
    "zone": 0,
    "no_install": False,
    "flush_interval": 0.02,
    "snaplen": 256,  # headers + an FTP control line (conntrack.ftp)
    "ring_mb": 32,
    "bpf": "",
    "include_self": False,
    "no_pickup": False,
    "sysctl_dir": "/proc/sys/net/netfilter",
    "log_format": "text",
    "log_level": "info",
    "stats_interval": 60.0,
    "prefilter": "none",
    "pickup_sample": 16,
    "warmup": 30.0,
    "prime_required": False,
    "prime_timeout": 10.0,
    "confirm": "auto",
    "keep_privileges": False,
}


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
    from .daemon import Agent, AgentConfig
    from .privs import PrivilegeError

    cfg = AgentConfig(
        ifaces=list(opts["iface"]),
        timeouts=host_timeouts(opts["sysctl_dir"]),
        control=opts.get("control"),
        zone=opts["zone"],
        mark=opts.get("mark"),
        flush_interval=opts["flush_interval"],
        install=not opts["no_install"],
        snaplen=opts["snaplen"],
        ring_mb=opts["ring_mb"],
        exclude_self=not opts["include_self"],
        bpf=opts["bpf"],
        stats_interval=opts["stats_interval"],
        pickup=not opts["no_pickup"],
        prefilter=opts["prefilter"] == "control",
        pickup_sample=opts["pickup_sample"],
        warmup=opts["warmup"],
        prime_from=opts.get("prime_from"),
        key_file=opts.get("key_file"),
        prime_required=opts["prime_required"],
        prime_timeout=opts["prime_timeout"],
        confirm=opts["confirm"],
        max_flows=opts.get("max_flows") or conntrack_max(opts["sysctl_dir"]),
        drop_privileges=not opts["keep_privileges"],
        user=opts.get("user"),
        metrics_listen=opts.get("metrics"),
        master_macs=list(opts.get("master_mac") or []),
    )
    if cfg.confirm not in ("auto", "mac", "both", "off"):
        raise CliError(f"--confirm {cfg.confirm!r}: expected auto, mac, both or off")
    try:
        from ..capture.bpf import mac_bytes

        for m in cfg.master_macs:
            mac_bytes(m)
    except ValueError as exc:
        raise CliError(f"--master-mac: {exc}") from None
    if opts["prefilter"] not in ("none", "control"):
        raise CliError(f"--prefilter {opts['prefilter']!r}: expected none or control")
    try:
        agent = Agent(cfg)
        return agent.run()
    except NetlinkError as exc:
        raise CliError(exc.strerror or str(exc)) from None
    except (CaptureError, ControlError, PrivilegeError) as exc:
        raise CliError(str(exc)) from None
