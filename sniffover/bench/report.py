"""The suite's report: a Markdown table and the results files (JSON, Markdown, plots)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

Progress = Callable[[str], None]  # where the suite says what it is doing


def _frac(group: dict[str, int] | None) -> tuple[int, int]:
    if not group:
        return 0, 0
    return int(group.get("ok", 0)), int(group.get("total", 0))


def _summarize(res: dict[str, Any]) -> dict[str, Any]:
    probe = res.get("probe", {}).get("probe", {})
    tcp_ok = tcp_total = 0
    for g in ("long", "old-active", "old-idle"):
        ok, total = _frac(probe.get(g))
        tcp_ok += ok
        tcp_total += total
    old_ok = sum(_frac(probe.get(g))[0] for g in ("old-active", "old-idle"))
    old_total = sum(_frac(probe.get(g))[1] for g in ("old-active", "old-idle"))
    procs = res.get("procs", {})
    res["summary"] = {
        "tcp": [tcp_ok, tcp_total],
        "old": [old_ok, old_total],
        "old_idle": list(_frac(probe.get("old-idle"))),
        "udp": list(_frac(probe.get("udp"))),
        "icmp": list(_frac(probe.get("icmp"))),
        "coverage": res.get("coverage", {}).get("coverage"),
        "open_coverage": res.get("coverage", {}).get("open_coverage"),
        "established_coverage": res.get("coverage", {}).get("established_coverage"),
        "wrong_state": res.get("coverage", {}).get("wrong_state"),
        "extra": res.get("coverage", {}).get("extra"),
        "master_entries": res.get("coverage", {}).get("master"),
        "kernel_coverage_after_commit": res.get("coverage_after_commit", {}).get("coverage"),
        "standby_ready_s": res.get("standby_ready_s"),
        "commit_s": res.get("commit_s"),
        "takeover_s": res.get("takeover_s"),
        "sync_bytes": res.get("sync_bytes"),
        "master_cpu_s": procs.get("master_cpu_s"),
        "standby_cpu_s": procs.get("standby_cpu_s"),
        "standby_rss_mib": round(procs["standby_rss_kib"]["VmRSS"] / 1024, 1)
        if procs.get("standby_rss_kib")
        else None,
    }
    return res


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _ratio(pair: list[int] | None) -> str:
    if not pair:
        return "—"
    ok, total = pair
    return f"{ok}/{total}" if total else "—"


def _num(v: float | None, fmt: str = "{:.2f}") -> str:
    return "—" if v is None else fmt.format(v)


def format_markdown(results: dict[str, Any]) -> str:
    cfg = results.get("config", {})
    head = [
        "subject",
        "standby ready s",
        "coverage",
        "w/o TIME_WAIT",
        "ESTABLISHED cov.",
        "wrong / extra",
        "TCP survived",
        "old (idle) survived",
        "UDP",
        "ICMP",
        "commit s",
        "takeover s",
        "sync bytes",
        "CPU s master",
        "CPU s standby",
        "standby RSS MiB",
    ]
    lines = [
        f"sniffover bench: {cfg.get('long')} long-lived TCP (request every ~0.5 s), "
        f"{cfg.get('old_active')}+{cfg.get('old_idle')} old (active+idle, opened before the "
        f"standby), {cfg.get('udp')} UDP, {cfg.get('icmp')} ICMP echo, churn "
        f"{cfg.get('churn')}/s, {cfg.get('duration')} s, seed {cfg.get('seed')}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for r in results.get("subjects", []):
        s = r.get("summary")
        if not s:
            lines.append(f"| {r['subject']} | failed: {r.get('error', '?')} |")
            continue
        lines.append(
            "| "
            + " | ".join(
                [
                    r["subject"],
                    _num(s["standby_ready_s"]),
                    _pct(s["coverage"]) + f" of {s['master_entries']}",
                    _pct(s["open_coverage"]),
                    _pct(s["established_coverage"]),
                    f"{s['wrong_state']} / {s['extra']}",
                    _ratio(s["tcp"]),
                    f"{_ratio(s['old'])} ({_ratio(s['old_idle'])})",
                    _ratio(s["udp"]),
                    _ratio(s["icmp"]),
                    _num(s["commit_s"]),
                    _num(s["takeover_s"]),
                    _num(s["sync_bytes"], "{:,}"),
                    _num(s["master_cpu_s"]),
                    _num(s["standby_cpu_s"]),
                    _num(s["standby_rss_mib"], "{:.1f}"),
                ]
            )
            + " |"
        )
    lines += [
        "",
        "coverage: fw1's forwarded entries present on the standby with the same TCP state, "
        "just before the takeover (sniffover: fw2's kernel table; conntrackd: its external "
        "cache); standby ready: from its start until `sniffover status` exits 0 (capturing, "
        "primed) / conntrackd answers and `-n` returned; w/o TIME_WAIT: without fw1's "
        "TIME_WAIT/CLOSE entries (the short connections of the churn). takeover s = commit "
        "+ the lab's link switch and gratuitous ARP. CPU: "
        "utime+stime of the sync processes over the run (master: sniffover serve / conntrackd "
        "on fw1).",
    ]
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], out: Path, progress: Progress) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    (out / "results.md").write_text(format_markdown(results))
    written = [out / "results.json", out / "results.md"]
    from .plots import plot_results

    try:
        written += plot_results(results, out)
    except ImportError:
        from .svgplots import svg_results

        written += svg_results(results, out)
        progress("plots as SVG (PNG with matplotlib: pip install 'sniffover[bench]')")
    return written
