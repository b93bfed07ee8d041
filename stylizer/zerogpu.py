"""Hugging Face ZeroGPU support: wrap the run function in ``spaces.GPU`` when ``SPACES_ZERO_GPU`` is set.

Off ZeroGPU the run function is returned unchanged. On ZeroGPU the job runs in
a forked GPU worker and every yielded value is pickled back, which is why
updates carry CPU PIL images only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .config import StyleConfig
from .jobs import JobUpdate, PreviewFn, RunFn

if TYPE_CHECKING:  # the worker imports torch and the models; this module must not, for ZeroGPU's import order
    from .worker import Worker

# Seconds a step is budgeted on a ZeroGPU slice, plus fixed overhead (model move, decode, GIF).
SECONDS_PER_STEP = {"fast": 0.15, "full": 0.35}
OVERHEAD_S = 15
MAX_DURATION_S = 300


def on_zero_gpu() -> bool:
    """True on a Hugging Face ZeroGPU Space."""
    return bool(os.environ.get("SPACES_ZERO_GPU"))


def estimate_duration(image: Any, settings: Mapping[str, Any]) -> int:
    """GPU seconds to reserve for a job, from its steps, mode and resolution."""
    defaults = StyleConfig()
    try:
        steps = float(settings.get("steps", defaults.steps)) * float(settings.get("strength", defaults.strength))
        area = (float(settings.get("size", defaults.size)) / 512) ** 2
    except (TypeError, ValueError):
        return OVERHEAD_S  # the job's own validation rejects these settings at once
    per_step = SECONDS_PER_STEP.get(str(settings.get("mode", defaults.mode)), SECONDS_PER_STEP["full"])
    estimate = OVERHEAD_S + steps * per_step * max(area, 0.25) * 2
    if math.isnan(estimate):
        return OVERHEAD_S
    return int(min(MAX_DURATION_S, estimate))


def gpu_run_fn(worker: Worker) -> RunFn:
    """The worker's ``run``, wrapped for ZeroGPU when running there."""
    if not on_zero_gpu():
        return worker.run
    import spaces  # only present (and needed) on Spaces

    @spaces.GPU(duration=estimate_duration)
    def run(image: Any, settings: Mapping[str, Any]) -> Iterator[JobUpdate]:
        yield from worker.run(image, settings)

    return run


def gpu_preview_fn(worker: Worker) -> PreviewFn:
    """The worker's ``preview``, wrapped for ZeroGPU when running there.

    There a preview runs in a GPU process of its own, which cannot poll the page, so it is
    not cancelled by a newer change; at its size and steps it is short.
    """
    if not on_zero_gpu():
        return worker.preview
    import spaces  # only present (and needed) on Spaces

    @spaces.GPU(duration=lambda image, settings: estimate_duration(image, preview_settings(settings)))
    def run(image: Any, settings: Mapping[str, Any]) -> JobUpdate | None:
        return worker.preview(image, settings, lambda: False)

    return lambda image, settings, cancelled: run(image, settings)


def preview_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with the preview's size and steps as the job's, for the GPU time estimate."""
    defaults = StyleConfig()
    return {
        **settings,
        "size": settings.get("preview_size", defaults.preview_size),
        "steps": settings.get("preview_steps", defaults.preview_steps),
    }
