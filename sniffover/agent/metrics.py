"""Prometheus metrics (``--metrics ADDR:PORT``), refreshed from the agent's status once a second."""

from __future__ import annotations

from typing import Any

from ..prime.handshake import parse_hostport

# ``:PORT``: this host only. The counters tell a host on the sniffed segment whether the
# standby is active and whether its flood causes drops: every address only when asked.
DEFAULT_HOST = "127.0.0.1"


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT``, ``[v6]:PORT`` or ``:PORT`` (= ``127.0.0.1:PORT``; ``0.0.0.0:PORT`` or
    ``[::]:PORT`` listen on every address). The shared parser, port required."""
    host, port = parse_hostport(text, f"--metrics {text!r}", None, min_port=1, error=ValueError)
    if not text.rpartition(":")[0].strip(" []"):
        host = DEFAULT_HOST
    return host, port


class Metrics:
    def __init__(self, listen: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        host, port = parse_listen(listen)
        self.registry = r = CollectorRegistry()
        self.packets = Counter("sniffover_packets", "Packets tracked", registry=r)
        self.flows = Gauge("sniffover_flows", "Entries in the user-space table", registry=r)
        self.installed = Gauge("sniffover_installed", "Entries installed in the kernel", registry=r)
        self.pending = Gauge("sniffover_pending", "Changes waiting for the next flush", registry=r)
        self.active = Gauge("sniffover_active", "1 once promoted (standing down)", registry=r)
        self.last_age = Gauge(
            "sniffover_last_packet_age_seconds", "Seconds since the last packet", registry=r
        )
        self.drops = Gauge(
            "sniffover_capture_dropped", "Frames dropped by the capture ring", ["iface"], registry=r
        )
        self.tunnel_drops = Gauge(
            "sniffover_tunnel_dropped",
            "Mirrored frames lost in the tunnel (ERSPAN/GRE sequence gaps)",
            ["iface"],
            registry=r,
        )
        self.frames = Gauge("sniffover_capture_frames", "Frames read", ["iface"], registry=r)
        self.install = Gauge(
            "sniffover_install_results", "ctnetlink results by kind", ["result"], registry=r
        )
        self.skipped = Gauge(
            "sniffover_skipped_frames", "Undecodable frames by reason", ["reason"], registry=r
        )
        self.master_events = Gauge(
            "sniffover_master_events",
            "Trust-anchor events: resolved, moved, conflict, routed-moved",
            ["event"],
            registry=r,
        )
        self.master_unknown = Gauge(
            "sniffover_master_unknown", "Segments whose master's MAC is unknown", registry=r
        )
        from .. import __version__, build

        info = Gauge(
            "sniffover_build_info",
            "1, labelled with the version and build",
            ["version", "build"],
            registry=r,
        )
        info.labels(__version__, build()).set(1)
        self._packets_seen = 0
        start_http_server(port, addr=host, registry=r)

    def update(self, agent: Any) -> None:
        s = agent.status()
        self.packets.inc(max(0, s["packets"] - self._packets_seen))
        self._packets_seen = s["packets"]
        self.flows.set(s["flows"])
        self.installed.set(s["installed"])
        self.pending.set(s["pending"])
        self.active.set(1 if s["state"] == "active" else 0)
        if s["last_packet_age"] is not None:
            self.last_age.set(s["last_packet_age"])
        for iface, d in s["capture"].items():
            self.drops.labels(iface).set(d["dropped"] + d["ifdropped"])
            self.frames.labels(iface).set(d["frames"])
            self.tunnel_drops.labels(iface).set(d.get("tunnel_dropped", 0))
        for kind, n in s["install"].items():
            self.install.labels(kind).set(n)
        conf = s["confirm"]
        for event in ("resolved", "moved", "conflict", "routed-moved"):
            self.master_events.labels(event).set(conf.get(f"master-{event}", 0))
        self.master_unknown.set(len(conf.get("learning", [])))
        for reason, n in s["skipped"].items():
            self.skipped.labels(reason).set(n)
