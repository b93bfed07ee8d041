"""Time one case: a warm-up job, then repeated jobs through the real ``stylize``.

A case is one path (the eager reference or the optimised step) with one kind of
guidance: ``fast``, ``full``, ``unguided`` (every loss weight 0, so a step is the UNet's
forward pass and the DDIM update alone), ``fast-window`` (``fast`` guiding only the
first :data:`WINDOW_END` of the steps), or ``fast-taesd`` (``fast`` with TAESD decoding x̂0
for the losses and the frames; latent models only).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from stylizer.config import StyleConfig
from stylizer.engine.graphs import graphs_of
from stylizer.engine.models import Models
from stylizer.engine.optimization import Optimizations
from stylizer.engine.prepared import PreparedCache
from stylizer.engine.sampler import stylize
from stylizer.engine.warmup import WARMUP_STEPS
from stylizer.request import Request

from .compiled import step_marker
from .measure import PeakMemory, StepClock
from .profile import profile_job

UNGUIDED = "unguided"
WINDOW = "fast-window"
TAESD = "fast-taesd"
# The guidance window the benchmark prices: guided steps over the first 60 % of the denoising.
WINDOW_END = 0.6
NO_GUIDANCE = dict(w_dir=0.0, w_patch=0.0, w_content=0.0, w_tv=0.0)
# Step intervals dropped at the start of every timed job: the first pays for lazily built state.
SETTLING_INTERVALS = 1


@dataclass
class CaseResult:
    """Every figure of one case; times in seconds, memory in MB.

    Attributes:
        path: ``"eager"`` or ``"optimised"``.
        guidance: ``"fast"``, ``"full"`` or ``"unguided"``.
        step_s: median step time over every timed job, after the settling intervals.
        step_intervals_s: all the step times that median is taken over.
        first_frame_s: median time from calling ``stylize`` to its first frame.
        first_frame_step: the step that first frame shows.
        end_to_end_s: median time from calling ``stylize`` to the final frame (loading excluded).
        warmup_s: the untimed warm-up job (on CUDA's optimised path: compilation or graph captures).
        capture_s: the seconds the warm-up spent capturing CUDA graphs (None: none captured).
        peak_memory_mb: the largest peak over the timed jobs, of kind ``memory_kind``.
        memory_kind: see :class:`bench.measure.PeakMemory`.
        memory_before_mb: what was held when a job started (CUDA: the weights).
        losses: the final frame's loss terms.
        profile: what :func:`bench.profile.profile_job` found in one more job, when asked for.
        image: the final image of the last timed job (for comparing paths; not in the JSON).
    """

    path: str
    guidance: str
    step_s: float | None
    step_intervals_s: list[float]
    first_frame_s: float
    first_frame_step: int
    end_to_end_s: float
    warmup_s: float
    capture_s: float | None
    peak_memory_mb: float
    memory_kind: str
    memory_before_mb: float
    losses: dict[str, float]
    image: Image.Image = field(repr=False)
    profile: dict[str, Any] | None = None

    def figures(self) -> dict[str, Any]:
        """Everything but the image, JSON-ready."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "image"}


@dataclass
class Job:
    """What :func:`run_job` measured; seconds and MB (see :class:`CaseResult` for each figure)."""

    seconds: float
    first_frame_s: float
    first_frame_step: int
    intervals: list[float]
    peak_mb: float
    memory_kind: str
    before_mb: float
    final: Any


def guidance_config(config: StyleConfig, guidance: str) -> StyleConfig:
    """``config`` in guidance mode ``guidance``, or with every loss weight 0 for ``"unguided"``."""
    if guidance == UNGUIDED:
        return dataclasses.replace(config, **NO_GUIDANCE)
    if guidance == WINDOW:
        return dataclasses.replace(config, mode="fast", guide_end=WINDOW_END)
    if guidance == TAESD:
        return dataclasses.replace(config, mode="fast", guide_decoder="taesd")
    return dataclasses.replace(config, mode=guidance)


def time_case(
    models: Models,
    picture: Image.Image,
    config: StyleConfig,
    path: str,
    guidance: str,
    optimizations: Optimizations,
    repeats: int,
    profiled: bool = False,
) -> CaseResult:
    """Run one warm-up job and ``repeats`` timed jobs of ``config`` in ``guidance`` mode along ``path``.

    With ``profiled``, one more job runs under the profiler after the timed ones, so its
    overhead never reaches the timings.
    """
    job_config = guidance_config(config, guidance)
    warm_config = dataclasses.replace(job_config, steps=WARMUP_STEPS, strength=1.0)
    graphs = graphs_of(models.backend)
    captured, captures = graphs.capture_s, graphs.captures
    warmup_s = run_job(models, picture, warm_config, optimizations).seconds
    capture_s = graphs.capture_s - captured if graphs.captures > captures else None
    jobs = [run_job(models, picture, job_config, optimizations) for _ in range(repeats)]
    intervals = [s for job in jobs for s in job.intervals[SETTLING_INTERVALS:]]
    peak = max(jobs, key=lambda job: job.peak_mb)
    return CaseResult(
        path=path,
        guidance=guidance,
        step_s=statistics.median(intervals) if intervals else None,
        step_intervals_s=intervals,
        first_frame_s=statistics.median(job.first_frame_s for job in jobs),
        first_frame_step=jobs[-1].first_frame_step,
        end_to_end_s=statistics.median(job.seconds for job in jobs),
        warmup_s=warmup_s,
        capture_s=capture_s,
        peak_memory_mb=peak.peak_mb,
        memory_kind=peak.memory_kind,
        memory_before_mb=peak.before_mb,
        losses=jobs[-1].final.losses,
        image=jobs[-1].final.image,
        profile=profile_job(models, picture, job_config, optimizations) if profiled else None,
    )


def image_difference(a: Image.Image, b: Image.Image) -> dict[str, float]:
    """The largest and the mean absolute difference of two images, in 0-255 levels."""
    diff = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
    return {"max": float(diff.max()), "mean": float(diff.mean())}


def run_job(
    models: Models, picture: Image.Image, config: StyleConfig, optimizations: Optimizations, cache: PreparedCache | None = None
) -> Job:
    """One job through the real ``stylize``, timed: end to end, to the first frame, and each step; with its peak memory."""
    clock = StepClock(models.device)
    marker = step_marker(optimizations)
    on_step = clock if marker is None else lambda done, total: (marker(done, total), clock(done, total))
    first: tuple[float, int] | None = None
    with PeakMemory(models.device) as memory:
        started = time.perf_counter()
        for frame in stylize(models, Request(picture, config), on_step=on_step, optimize=optimizations, cache=cache):
            if first is None:
                first = (time.perf_counter() - started, frame.step)
        seconds = time.perf_counter() - started
    assert first is not None and frame.final  # stylize always ends with the final frame
    return Job(seconds, first[0], first[1], clock.intervals(), memory.peak_mb, memory.kind, memory.before_mb, frame)
