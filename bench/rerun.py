"""``python -m bench --rerun``: what slider tweaking costs, cold against warm against a live preview, in one run.

* **cold**: the first job on a picture (an empty :class:`~stylizer.prepared.PreparedCache`):
  it encodes, reads the features of and inverts the picture, then runs the guided steps;
* **warm**: the same settings with one loss weight changed, on a cache that holds the picture;
* **preview**: the live preview of those settings (``preview_size``, ``preview_steps``) from its
  own cached inversion, as the page runs it after a slider is released.

Each is timed ``repeats`` times after one untimed warm-up job; the medians and their ratios
to cold go into the JSON.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

from PIL import Image

from stylizer.config import StyleConfig
from stylizer.engine.models import Models
from stylizer.engine.optimization import Optimizations
from stylizer.engine.prepared import PreparedCache

from .run import run_job

KINDS = ("cold", "warm", "preview")
# The changed loss weight of the warm and preview jobs: content, up by this factor.
CHANGED_WEIGHT_FACTOR = 2.0


def time_reruns(models: Models, picture: Image.Image, config: StyleConfig, optimizations: Optimizations, repeats: int) -> dict[str, Any]:
    """Time cold, warm and preview jobs of ``config`` on ``picture``.

    Returns:
        ``cases`` (per kind: median first-frame and end-to-end seconds, the step shown first,
        every timed value, and the cache's hit counts) and ``ratios`` (warm and preview over cold).
    """
    changed = dataclasses.replace(config, w_content=config.w_content * CHANGED_WEIGHT_FACTOR or 100.0)
    run_job(models, picture, config, optimizations)  # warm-up: lazily built state, first-call costs
    cold = [_timed(models, picture, config, optimizations, PreparedCache()) for _ in range(repeats)]
    cache = PreparedCache()
    run_job(models, picture, config, optimizations, cache)
    run_job(models, picture, config.as_preview(), optimizations, cache)
    warm = [_timed(models, picture, changed, optimizations, cache) for _ in range(repeats)]
    preview = [_timed(models, picture, changed.as_preview(), optimizations, cache) for _ in range(repeats)]
    cases = {kind: _summary(runs) for kind, runs in zip(KINDS, (cold, warm, preview), strict=True)}
    base = cases["cold"]
    ratios = {
        "warm_first_frame_over_cold": cases["warm"]["first_frame_s"] / base["first_frame_s"],
        "warm_end_to_end_over_cold": cases["warm"]["end_to_end_s"] / base["end_to_end_s"],
        "preview_end_to_end_over_cold": cases["preview"]["end_to_end_s"] / base["end_to_end_s"],
    }
    return {"cases": cases, "ratios": ratios, "preview": {"size": config.preview_size, "steps": config.preview_steps}}


def table(doc: dict[str, Any]) -> str:
    """The rerun figures as a readable table, with the ratios underneath."""
    job = doc["settings"]["config"]
    lines = [
        f"{doc['models']['name']} on {doc['machine']['device_name']} ({doc['machine']['device']}, {doc['machine']['torch_threads']} threads)",
        f"{job['size']} px, {job['steps']} steps x strength {job['strength']}, start {job['start']}, {job['n_patches']} patches; "
        f"preview {job['preview_size']} px, {job['preview_steps']} steps",
        f"{'path':<10} {'job':<8} {'1st frame s':>12} {'end-to-end s':>13} {'cache hits':>11}",
    ]
    for path, reruns in doc["rerun"].items():
        for kind, case in reruns["cases"].items():
            lines.append(f"{path:<10} {kind:<8} {case['first_frame_s']:12.3f} {case['end_to_end_s']:13.3f} {case['inversion_hits']:>11}")
        lines.extend(f"{path} {name}: {value:.2f}x" for name, value in reruns["ratios"].items())
    return "\n".join(lines)


def _timed(models: Models, picture: Image.Image, config: StyleConfig, optimizations: Optimizations, cache: PreparedCache) -> dict[str, Any]:
    before = cache.stats["inversion_hit"]
    job = run_job(models, picture, config, optimizations, cache)
    return {"first_frame_s": job.first_frame_s, "first_step": job.first_frame_step, "end_to_end_s": job.seconds,
            "inversion_hit": cache.stats["inversion_hit"] - before}  # fmt: skip


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "first_frame_s": statistics.median(r["first_frame_s"] for r in runs),
        "end_to_end_s": statistics.median(r["end_to_end_s"] for r in runs),
        "first_frame_step": runs[-1]["first_step"],
        "inversion_hits": sum(r["inversion_hit"] for r in runs),
        "runs": runs,
    }
