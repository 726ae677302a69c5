"""The suite's two plots as SVG, without matplotlib: what a default install writes.

Same content as ``plots.py`` (survival per subject as grouped bars, the cold-start coverage
curves), drawn with a handful of SVG elements so ``sniffover bench --out DIR`` always leaves
pictures a browser opens. With the ``[bench]`` extra, ``plots.py`` writes the PNGs instead.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from .plots import KINDS, fraction

W, H = 760, 380
LEFT, RIGHT, TOP, BOTTOM = 60, 210, 40, 50  # plot margins; the legend sits on the right
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def _frame(title: str, ylabel: str, xlabel: str, ymax: float) -> list[str]:
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{LEFT + pw / 2}" y="22" text-anchor="middle" font-size="14">'
        f"{escape(title)}</text>",
        f'<text x="14" y="{TOP + ph / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + ph / 2})">{escape(ylabel)}</text>',
        f'<text x="{LEFT + pw / 2}" y="{H - 8}" text-anchor="middle">{escape(xlabel)}</text>',
    ]
    for pct in range(0, 101, 20):
        y = TOP + ph - ph * pct / ymax
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{pct}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    return out


def _legend(labels: list[str], dashed: list[bool] | None = None) -> list[str]:
    out = []
    for i, label in enumerate(labels):
        y = TOP + 10 + 18 * i
        dash = ' stroke-dasharray="5,3"' if dashed and dashed[i] else ""
        color = COLORS[(i // 2 if dashed else i) % len(COLORS)]
        out.append(
            f'<line x1="{W - RIGHT + 12}" x2="{W - RIGHT + 36}" y1="{y}" y2="{y}" '
            f'stroke="{color}" stroke-width="6"{dash}/>'
        )
        out.append(f'<text x="{W - RIGHT + 42}" y="{y + 4}">{escape(label)}</text>')
    return out


def survival_svg(subjects: list[dict[str, Any]]) -> str:
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    out = _frame(
        "Failover survival per subject", "answering through fw2 after the failover (%)", "", 105
    )
    group = pw / max(1, len(subjects))
    bar = group * 0.8 / len(KINDS)
    for i, r in enumerate(subjects):
        x0 = LEFT + group * i + group * 0.1
        for j, (key, _label) in enumerate(KINDS):
            v = 100 * fraction(r["summary"].get(key))
            h = ph * v / 105
            out.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{TOP + ph - h:.1f}" width="{bar * 0.95:.1f}" '
                f'height="{h:.1f}" fill="{COLORS[j % len(COLORS)]}"><title>{escape(r["subject"])}'
                f" {escape(key)}: {v:.0f}%</title></rect>"
            )
        out.append(
            f'<text x="{LEFT + group * (i + 0.5):.1f}" y="{TOP + ph + 16}" text-anchor="middle">'
            f"{escape(r['subject'])}</text>"
        )
    out += _legend([label for _key, label in KINDS])
    return "\n".join([*out, "</svg>"]) + "\n"


def coldstart_svg(curves: list[dict[str, Any]]) -> str:
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    out = _frame(
        "Cold start: coverage of the master's table over time",
        "fw1's entries held by the standby (%)",
        "seconds after the standby's agent/daemon started",
        105,
    )
    tmax = max((p["t"] for r in curves for p in r["cold_start_curve"]), default=1.0) or 1.0
    labels, dashed = [], []
    for i, r in enumerate(curves):
        color = COLORS[i % len(COLORS)]
        for field, dash in (("established_coverage", False), ("coverage", True)):
            pts = " ".join(
                f"{LEFT + pw * p['t'] / tmax:.1f},{TOP + ph - ph * 100 * p[field] / 105:.1f}"
                for p in r["cold_start_curve"]
            )
            style = ' stroke-dasharray="5,3" opacity="0.6"' if dash else ""
            out.append(
                f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"{style}/>'
            )
            labels.append(f"{r['subject']} ({'all entries' if dash else 'ESTABLISHED'})")
            dashed.append(dash)
    for k in range(5):
        t = tmax * k / 4
        out.append(
            f'<text x="{LEFT + pw * k / 4:.1f}" y="{TOP + ph + 16}" text-anchor="middle">'
            f"{t:.1f}</text>"
        )
    out += _legend(labels, dashed)
    return "\n".join([*out, "</svg>"]) + "\n"


def svg_results(results: dict[str, Any], out: Path) -> list[Path]:
    subjects = [r for r in results.get("subjects", []) if r.get("summary")]
    written: list[Path] = []
    if not subjects:
        return written
    path = out / "survival.svg"
    path.write_text(survival_svg(subjects))
    written.append(path)
    curves = [r for r in subjects if r.get("cold_start_curve") and r["subject"] != "cold"]
    if curves:
        path = out / "coldstart.svg"
        path.write_text(coldstart_svg(curves))
        written.append(path)
    return written
