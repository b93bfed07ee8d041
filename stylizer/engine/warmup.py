"""Start-up warm-up of the optimised guided step: capture its CUDA graphs before the first job.

The step loop's CUDA graphs are captured on first use (:mod:`stylizer.engine.graphs`), which would
otherwise land in a user's first job. The app calls :func:`warmup` once per loaded model replica instead.
"""

from __future__ import annotations

import logging
import time

from PIL import Image

from ..config import GUIDANCE_MODES, StyleConfig
from ..request import Request
from . import optimization
from .models import Models
from .optimization import Optimizations
from .sampler import stylize
from .step import uses_graphs

log = logging.getLogger(__name__)

# Two steps: the first captures the guided step; with the guidance window below, the second is the unguided step.
WARMUP_STEPS = 2
# Guidance on the first warm-up step only, so that the unguided step's graph is captured too.
WARMUP_GUIDE_END = 0.5
# Mid-grey: the picture's content does not matter to a capture, only its size.
WARMUP_GREY = (128, 128, 128)


def warmup(models: Models, size: int | None = None, optimize: bool | Optimizations = False) -> float:
    """Run a short job in each guidance mode so that captures happen now, not in a user's job.

    Only the optimised path on CUDA captures; anywhere else this returns at once. CUDA graphs are
    captured for ``size`` (the inversion step, the unguided step and the guided step of each mode,
    at the default settings' shapes); another size is captured the first time a job has it.

    Args:
        models: the loaded models.
        size: working resolution to capture for (default: the preset's).
        optimize: the switch, as :func:`stylizer.engine.sampler.stylize` takes it.

    Returns:
        The seconds it took (0 when there was nothing to capture).
    """
    optimizations = optimization.resolve(models.device, optimize)
    if not uses_graphs(models, optimizations):
        log.info("warm-up skipped: nothing is captured on %s with %s", models.device, optimizations)
        return 0.0
    side = size or models.preset.size
    picture = Image.new("RGB", (side, side), WARMUP_GREY)
    started = time.perf_counter()
    for mode in GUIDANCE_MODES:
        log.info("warm-up: the %s guided step of %s at %d px on %s", mode, models.name, side, models.device)
        config = StyleConfig(
            prompt="warm-up", size=side, steps=WARMUP_STEPS, strength=1.0, mode=mode, guide_end=WARMUP_GUIDE_END
        ).validated()
        for _ in stylize(models, Request(picture, config), optimize=optimizations):
            pass
    seconds = time.perf_counter() - started
    log.info("warm-up done in %.1f s", seconds)
    return seconds
