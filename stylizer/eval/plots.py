"""The report's charts, drawn with matplotlib's object API (Agg canvas; no pyplot global state)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import judge
from .tables import LABELS, Row, group_means

# Published (SSIM, CLIP similarity) on MS-COCO, 16 images x 10 texts; shown for orientation
# only, since the judge's CLIP and the images differ from theirs.
PUBLISHED = (("CLIPstyler", 0.51, 0.28), ("InstructPix2Pix", 0.62, 0.22), ("Plug-and-Play", 0.63, 0.23))
DPI = 120
RUN_ALPHA = 0.45
PANEL_INCHES = 3.2


def plot_style_vs_content(rows: Sequence[Row], path: Path, title: str, published: bool) -> None:
    """Scatter of CLIP score (style) against SSIM (content kept): faint dots per run, a bold mean per setting.

    Settings of one sweep are joined in sweep order, tracing the slider's trade-off curve.

    Args:
        rows: report rows.
        path: PNG to write.
        title: chart title.
        published: also mark the published reference figures.
    """
    x_key, y_key = judge.SSIM, judge.CLIP_SCORE
    fig = Figure(dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    means = group_means(rows, "setting", (x_key, y_key))
    for k, (label, mean) in enumerate(means.items()):
        runs = [row for row in rows if row["setting"] == label]
        colour = f"C{k % 10}"
        ax.scatter([r[x_key] for r in runs], [r[y_key] for r in runs], s=18, color=colour, alpha=RUN_ALPHA, linewidths=0)
        ax.scatter(mean[x_key], mean[y_key], s=60, color=colour, edgecolors="black", zorder=3, label=label)
    for swept in dict.fromkeys(row["sweep"] for row in rows if row["sweep"]):
        labels = list(dict.fromkeys(row["setting"] for row in rows if row["sweep"] == swept))
        ax.plot([means[s][x_key] for s in labels], [means[s][y_key] for s in labels], color="0.5", lw=1, zorder=2)
    if published:
        for name, ssim, score in PUBLISHED:
            ax.scatter(ssim, score, marker="x", color="0.4", zorder=3)
            ax.annotate(f"{name}†", (ssim, score), textcoords="offset points", xytext=(-6, 6), ha="right", fontsize=8, color="0.4")
        fig.text(0.01, 0.01, "† published, MS-COCO: other images and CLIP, for orientation only", fontsize=7, color="0.4")
        ax.margins(0.1)
    ax.set_xlabel(f"{LABELS[x_key]}  (content kept)")
    ax.set_ylabel(f"{LABELS[y_key]}  (style)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best", title="mean per setting", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def plot_sweep(rows: Sequence[Row], field: str, metrics: Sequence[str], path: Path) -> None:
    """One panel per metric: its mean (line) and each run (dots) against the swept field's value.

    Args:
        rows: report rows; only those sweeping ``field`` are drawn.
        field: the swept StyleConfig field.
        metrics: the metric columns to chart.
        path: PNG to write.
    """
    swept = [row for row in rows if row["sweep"] == field]
    values = list(dict.fromkeys(row[field] for row in swept))
    # Text settings (mode, start) are categories; numbers go on a numeric axis.
    position = {v: (v if isinstance(v, (int, float)) else k) for k, v in enumerate(values)}
    columns = min(3, len(metrics))
    lines = math.ceil(len(metrics) / columns)
    fig = Figure(figsize=(PANEL_INCHES * columns, PANEL_INCHES * 0.8 * lines), dpi=DPI)
    FigureCanvasAgg(fig)
    means = group_means(swept, field, metrics)
    for k, metric in enumerate(metrics):
        ax = fig.add_subplot(lines, columns, k + 1)
        ax.scatter([position[r[field]] for r in swept], [r[metric] for r in swept], s=12, alpha=RUN_ALPHA, color="C0")
        ax.plot([position[v] for v in values], [means[str(v)][metric] for v in values], marker="o", color="C0")
        if not all(isinstance(v, (int, float)) for v in values):
            ax.set_xticks(range(len(values)), [str(v) for v in values])
        ax.set_title(LABELS.get(metric, metric), fontsize=9)
        ax.set_xlabel(field, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"sweep of {field}: mean (line) and each run (dots)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
