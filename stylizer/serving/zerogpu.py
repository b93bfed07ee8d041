"""Hugging Face ZeroGPU: the worker's jobs run inside ``spaces.GPU``, for a duration estimated from their settings.

On ZeroGPU (the :class:`~stylizer.serving.deployment.Deployment` says so, once, at start-up) each job
runs in a GPU process forked for it, and every yielded value is pickled back, which is why updates
carry CPU PIL images only. The request is checked before the GPU is asked for, so the duration comes
from the checked settings, and a refused request costs no GPU time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..config import StyleConfig
from ..request import Request
from .jobs import JobUpdate
from .worker import Worker

# Seconds a step is budgeted on a ZeroGPU slice, plus fixed overhead (model move, decode, GIF).
SECONDS_PER_STEP = {"fast": 0.15, "full": 0.35}
OVERHEAD_S = 15
MAX_DURATION_S = 300
# Areas are budgeted relative to this side (px): a 512 px job costs the steps' seconds.
BUDGET_SIDE = 512
# The smallest area a job is budgeted for, as a fraction of the budget side's.
MIN_AREA = 0.25


def estimate_duration(config: StyleConfig) -> int:
    """GPU seconds to reserve for a job, from its steps run, guidance mode and working size."""
    area = (config.size / BUDGET_SIDE) ** 2
    estimate = OVERHEAD_S + config.denoise_steps * SECONDS_PER_STEP[config.mode] * max(area, MIN_AREA) * 2
    return int(min(MAX_DURATION_S, estimate))


class ZeroGpuJobs:
    """The worker's jobs, each inside ``spaces.GPU``; the rest (checks, info, limits) is the worker's.

    A preview runs in a GPU process of its own, which cannot poll the page, so it is not cancelled
    by a newer change; at its size and steps it is short. Pictures are not prepared in the background
    here (that would spend the visitor's quota): Stylize prepares its own.
    """

    def __init__(self, worker: Worker) -> None:
        import spaces  # only present (and needed) on Spaces

        self.worker = worker
        self.info, self.limits, self.concurrency = worker.info, worker.limits, worker.concurrency
        self._run = spaces.GPU(duration=lambda request: estimate_duration(request.config))(self._run_on_gpu)
        self._preview = spaces.GPU(duration=lambda request: estimate_duration(request.config.as_preview()))(self._preview_on_gpu)

    def check(self, image: Any, settings: Mapping[str, Any], *, preparing: bool = False) -> Request:
        """As :meth:`Worker.check`: on the CPU, before any GPU time is asked for."""
        return self.worker.check(image, settings, preparing=preparing)

    def run(self, request: Request) -> Iterator[JobUpdate]:
        """The worker's Stylize job, inside ``spaces.GPU``."""
        yield from self._run(request)

    def preview(self, request: Request, cancelled: Callable[[], bool]) -> JobUpdate | None:
        """The worker's preview, inside ``spaces.GPU``, never cancelled (see the class)."""
        return self._preview(request)

    def _run_on_gpu(self, request: Request) -> Iterator[JobUpdate]:
        yield from self.worker.run(request)

    def _preview_on_gpu(self, request: Request) -> JobUpdate | None:
        return self.worker.preview(request, lambda: False)
