"""The agent's status document: what ``sniffover status``/``ctl``, the Prometheus metrics,
the benchmarks and the lab tests read. One ``TypedDict`` says its keys; one builder fills
it from the agent's parts."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, TypedDict

from .. import __version__, build
from ..capture.bpf import mac_text
from .captures import CaptureStats

if TYPE_CHECKING:
    from .daemon import Agent


class Status(TypedDict):
    ok: bool  # ready: capturing on every interface (or promoted by root), and primed if asked
    state: str  # "standby" | "active"
    promoted_by: str | None  # "control uid N" | "signal"; None while standby
    capturing: bool
    pid: int
    version: str  # sniffover's, and whether its hot path is compiled
    build: str  # "compiled" | "pure Python"
    uptime: float
    interfaces: list[str]
    zone_map: list[str]
    packets: int
    last_packet_age: float | None
    flows: int
    installed: int
    pending: int
    primed: bool | None  # None: no --prime-from; False: not (yet) primed
    prime: dict[str, Any]
    audit: dict[str, Any]  # the last --audit-interval audit ({} before the first / when off)
    capture: dict[str, CaptureStats]
    install: dict[str, int]
    tracker: dict[str, int]
    agent: dict[str, int]
    confirm: dict[str, Any]
    ftp: dict[str, Any]
    prefilter: str  # "off" | "warm-up" | "on"
    lost_interfaces: list[str]
    skipped: dict[str, int]


def build_status(agent: Agent, now: float) -> Status:
    pipe = agent.pipeline
    caps = agent.captures
    inst = pipe.installer
    cf = pipe.confirmer
    helpers = pipe.helpers
    expect = pipe.expect
    capturing = bool(caps.captures) and not caps.lost and not agent.active
    # active counts as ready only when promoted through a path only root (or the admin
    # group) has: the control socket's peer check, or a signal
    promoted = agent.active and agent.promoted_by is not None
    # a segment whose master is unknown installs nothing: not ready (unless promoted)
    anchored = agent.active or not agent.learning.unknown(caps.captures)
    ready = (capturing or promoted) and agent.priming.primed is not False and anchored
    return {
        "ok": ready,
        "state": "active" if agent.active else "standby",
        "promoted_by": agent.promoted_by,
        "capturing": capturing,
        "pid": os.getpid(),
        "version": __version__,
        "build": build(),
        "uptime": round(now - agent.started, 1),
        "interfaces": agent.cfg.ifaces,
        "zone_map": agent.cfg.zone_map,  # --zone-map rules, as given
        "packets": pipe.packets,
        "last_packet_age": round(now - pipe.last_packet, 3) if pipe.last_packet else None,
        "flows": len(pipe.table),
        "installed": len(inst.shadow) if inst else 0,
        "pending": inst.pending if inst else 0,
        "primed": agent.priming.primed,
        "prime": agent.priming.info,
        "audit": agent.auditing.info,
        "capture": caps.drops(),
        "install": dict(inst.counters) if inst else {},
        "tracker": dict(pipe.table.counters),
        "agent": dict(agent.counters),
        "confirm": {
            "mode": "off" if cf is None else "both" if cf.two_segments else "mac",
            "master_macs": sorted(mac_text(m) for m in agent.learning.master),
            "learning": agent.learning.learning(caps.captures),
            "anchors": agent.learning.info(caps.captures),
            **dict(agent.learning.counters),
            **(dict(cf.counters) if cf else {}),
        },
        "ftp": {  # every helper's expectations (the key predates TFTP)
            "outstanding": len(helpers.by_master) if helpers else 0,
            **(helpers.counters if helpers else {}),
            **(dict(expect.counters) if expect else {}),
        },
        "prefilter": caps.prefilter_state(),
        "lost_interfaces": sorted(caps.lost),
        "skipped": caps.skipped(),
    }
