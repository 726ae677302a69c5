"""PNG plots of ``sniffover bench`` results (matplotlib, Agg backend).

``plot_results(results, out_dir)`` writes ``survival.png`` (fraction of TCP connections, old
ones, UDP flows and ICMP ids answering through fw2 after the failover, per subject) and
``coldstart.png`` (coverage of fw1's table by the standby's state, sampled every ~0.5 s after
the standby's agent/daemon starts). Raises ImportError when matplotlib is missing; the caller
then writes the same plots as SVG (``svgplots.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# survival per subject: (summary key, legend)
KINDS = (
    ("tcp", "TCP (all long-lived)"),
    ("old", "TCP opened before the standby"),
    ("old_idle", "… of which idle"),
    ("udp", "UDP"),
    ("icmp", "ICMP echo"),
)


def fraction(pair: list[int] | None) -> float:
    if not pair or not pair[1]:
        return 0.0
    return pair[0] / pair[1]


def plot_results(results: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    subjects = [r for r in results.get("subjects", []) if r.get("summary")]
    written: list[Path] = []
    if not subjects:
        return written

    kinds = KINDS
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(kinds)
    for j, (key, label) in enumerate(kinds):
        xs = [i + (j - (len(kinds) - 1) / 2) * width for i in range(len(subjects))]
        ys = [100 * fraction(r["summary"].get(key)) for r in subjects]
        ax.bar(xs, ys, width, label=label)
    ax.set_xticks(range(len(subjects)), [r["subject"] for r in subjects])
    ax.set_ylabel("answering through fw2 after the failover (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Failover survival per subject")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path = out / "survival.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    # coverage over time after a standby cold start
    curves = [r for r in subjects if r.get("cold_start_curve") and r["subject"] != "cold"]
    if curves:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for r in curves:
            pts = r["cold_start_curve"]
            (line,) = ax.plot(
                [p["t"] for p in pts],
                [100 * p["established_coverage"] for p in pts],
                marker="o",
                label=f"{r['subject']} (ESTABLISHED)",
            )
            ax.plot(
                [p["t"] for p in pts],
                [100 * p["coverage"] for p in pts],
                linestyle="--",
                color=line.get_color(),
                alpha=0.6,
                label=f"{r['subject']} (all entries)",
            )
        ax.set_xlabel("seconds after the standby's agent/daemon started")
        ax.set_ylabel("fw1's entries held by the standby (%)")
        ax.set_ylim(-2, 105)
        ax.set_title("Cold start: coverage of the master's table over time")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / "coldstart.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
