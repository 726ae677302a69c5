"""AgentConfig is the one source of the agent's options: TOML keys, defaults and the
help's "(default ...)" text are derived from its fields."""

from __future__ import annotations

import dataclasses

from sniffover.agent.config import (
    CONFIG_KEYS,
    DEFAULTS,
    AgentConfig,
    agent_config,
    merged_options,
    shown_default,
)
from sniffover.cli import build_parser
from sniffover.conntrack.timeouts import Timeouts


def options(*argv: str) -> dict:
    return merged_options(build_parser().parse_args(list(argv)))


def test_defaults_give_the_dataclass_defaults():
    timeouts = Timeouts()
    cfg = agent_config(options("-i", "eth0"), timeouts)
    plain = AgentConfig(ifaces=["eth0"], timeouts=timeouts)
    assert cfg == plain


def test_negated_flags_and_converted_options():
    cfg = agent_config(
        options(
            "-i", "a", "-i", "b", "--no-install", "--include-self", "--no-pickup",
            "--keep-privileges", "--prefilter", "control", "--metrics", ":9477",
            "--master-mac", "02:00:00:00:00:01", "--mark", "0x10", "--warmup", "5",
        ),
        Timeouts(),
    )  # fmt: skip
    assert cfg.ifaces == ["a", "b"] and cfg.mark == 16 and cfg.warmup == 5.0
    assert not cfg.install and not cfg.exclude_self and not cfg.pickup
    assert not cfg.drop_privileges and cfg.prefilter and cfg.metrics_listen == ":9477"
    assert cfg.master_macs == ["02:00:00:00:00:01"]


def test_fields_without_an_option_cannot_be_set():
    names = {f.name for f in dataclasses.fields(AgentConfig) if "option" not in f.metadata}
    assert names == {"timeouts", "reprime_after_drops", "helpers"}
    for name in ("helpers", "reprime_after_drops"):
        assert name not in CONFIG_KEYS


def test_help_shows_the_derived_defaults():
    text = " ".join(build_parser().format_help().split())
    assert shown_default("warmup") == "30" and shown_default("flush_interval") == "0.02"
    for name in ("zone", "flush_interval", "snaplen", "ring_mb", "pickup_sample", "warmup"):
        assert f"(default {shown_default(name)})" in text, name
    assert DEFAULTS["prefilter"] == "none" and DEFAULTS["include_self"] is False
