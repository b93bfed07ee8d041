"""Write the report folder: metrics.json, metrics.csv, the charts and index.html."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import plots, sheet, tables
from .tables import Row

JSON_NAME = "metrics.json"
CSV_NAME = "metrics.csv"
HTML_NAME = "index.html"
SCATTER_NAME = "style_vs_content.png"


def write_report(rows: Sequence[Row], meta: Mapping[str, Any], metrics: Sequence[str], out_dir: str | Path) -> Path:
    """Write every report file into ``out_dir`` (which holds the rows' images) and return the HTML page's path.

    Args:
        rows: one per job, from :func:`stylizer.eval.runner.run_grid`.
        meta: run facts (model, guide_clip, judge_clip, lpips_skipped, device, untrained, base, created, ...);
            stored in metrics.json and shown at the top of the page.
        metrics: metric columns in display order, seconds included.
        out_dir: the report folder.
    """
    out_dir = Path(out_dir)
    meta = {**meta, "runs": len(rows), "metrics": list(metrics)}
    tables.write_json(rows, meta, out_dir / JSON_NAME)
    tables.write_csv(rows, out_dir / CSV_NAME)
    title = f"{meta['model']}: style vs content (judge {meta['judge_clip']})"
    plots.plot_style_vs_content(rows, out_dir / SCATTER_NAME, title, published=not meta.get("untrained"))
    charts = [SCATTER_NAME]
    for field in dict.fromkeys(row["sweep"] for row in rows if row["sweep"]):
        name = f"sweep_{field}.png"
        plots.plot_sweep(rows, field, metrics, out_dir / name)
        charts.append(name)
    page = out_dir / HTML_NAME
    page.write_text(sheet.render(rows, meta, metrics, charts), encoding="utf-8")
    return page
