"""The report's numbers: rows to JSON and CSV, and means by group."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import judge

Row = Mapping[str, Any]
SECONDS = "seconds"

# Column headings, with the better direction: ↑ higher is better, ↓ lower is better.
LABELS = {
    judge.CLIP_SCORE: "CLIP score ↑",
    judge.DIRECTIONAL: "directional CLIP ↑",
    judge.PATCH_CLIP_SCORE: "patch CLIP ↑",
    judge.SSIM: "SSIM ↑",
    judge.VGG_DISTANCE: "VGG feature dist. ↓",
    judge.LPIPS: "LPIPS (VGG) ↓",
    SECONDS: "seconds ↓",
}


def write_json(rows: Sequence[Row], meta: Mapping[str, Any], path: Path) -> None:
    """``{**meta, "rows": rows}`` as indented UTF-8 JSON."""
    path.write_text(json.dumps({**meta, "rows": list(rows)}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """Rows as CSV, the columns in order of first appearance."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def group_means(rows: Sequence[Row], key: str, columns: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean of each column over the rows sharing a value of ``key``, groups in order of first appearance.

    Non-finite values are left out of a mean; a column with none left is NaN.
    """
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(str(row[key]), []).append(row)
    return {name: {c: _mean(r[c] for r in members) for c in columns} for name, members in groups.items()}


def _mean(values: Any) -> float:
    finite = [float(v) for v in values if math.isfinite(float(v))]
    return sum(finite) / len(finite) if finite else math.nan
