"""Start-up warm-up of the optimised guided step: capture its CUDA graphs (or compile its networks) before the first job.

The step loop's CUDA graphs are captured on first use (:mod:`stylizer.graphs`), and
``torch.compile`` works on a network's first call; either would otherwise land in a user's
first job. The app calls :func:`warmup` once per loaded model replica instead.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from PIL import Image

from . import optimization
from .config import GUIDANCE_MODES, StyleConfig
from .loading import Models
from .optimization import Optimizations
from .sampler import stylize
from .step import uses_graphs

log = logging.getLogger(__name__)

# Where compiled kernels persist when TORCHINDUCTOR_CACHE_DIR is not set (inductor's own default is under /tmp).
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "stylizer" / "inductor"
# Two steps: the first compiles (or captures) the guided step and the second would catch a
# recompilation on a new timestep; with the guidance window below, the second is the unguided step.
WARMUP_STEPS = 2
# Guidance on the first warm-up step only, so that the unguided step's graph is captured too.
WARMUP_GUIDE_END = 0.5
# Mid-grey: the picture's content does not matter to the compiler, only its size.
WARMUP_GREY = (128, 128, 128)


def warmup(
    models: Models, size: int | None = None, optimize: bool | Optimizations | None = None, cache_dir: str | Path | None = None
) -> float:
    """Run a short job in each guidance mode so that captures and compilation happen now, not in a user's job.

    Only the optimised path on CUDA captures or compiles; anywhere else this returns at once.
    CUDA graphs are captured for ``size`` (the inversion step, the unguided step and the guided
    step of each mode, at the default settings' shapes). The compiled artefacts (inductor's FX-graph, AOTAutograd and Triton caches) persist in
    ``cache_dir``, so a restart with the same models, torch and GPU reads them back
    instead of compiling again.

    Args:
        models: the loaded models.
        size: working resolution to compile for (default: the preset's). Another size or
            aspect ratio recompiles once, with dynamic shapes, the first time a job has it.
        optimize: the switch, as :func:`stylizer.sampler.stylize` takes it (default: `STYLIZER_OPTIMIZE`, else off).
        cache_dir: where compiled artefacts persist (default: ``$TORCHINDUCTOR_CACHE_DIR``,
            else ``~/.cache/stylizer/inductor``).

    Returns:
        The seconds it took (0 when there was nothing to compile).
    """
    optimizations = optimization.resolve(models.device, optimize)
    if not (optimizations.compile or uses_graphs(models, optimizations)):
        log.info("warm-up skipped: nothing is compiled or captured on %s with %s", models.device, optimizations)
        return 0.0
    cache = persist_compile_cache(cache_dir)
    side = size or models.preset.size
    picture = Image.new("RGB", (side, side), WARMUP_GREY)
    started = time.perf_counter()
    for mode in GUIDANCE_MODES:
        log.info("warm-up: the %s guided step of %s at %d px on %s (compile cache: %s)", mode, models.name, side, models.device, cache)
        config = StyleConfig(
            prompt="warm-up", size=side, steps=WARMUP_STEPS, strength=1.0, mode=mode, guide_end=WARMUP_GUIDE_END
        ).validated()
        for _ in stylize(models, picture, config, optimize=optimizations):
            pass
    seconds = time.perf_counter() - started
    log.info("warm-up done in %.1f s", seconds)
    return seconds


def persist_compile_cache(cache_dir: str | Path | None = None) -> Path:
    """Point inductor's on-disk caches at a lasting folder and return it.

    Inductor reads ``TORCHINDUCTOR_CACHE_DIR`` whenever it compiles (its FX-graph and
    AOTAutograd caches are on by default, and Triton's kernels go under it), so setting
    it before the first compilation is all it takes. An explicit ``cache_dir`` wins over
    the variable; the variable wins over the default.
    """
    folder = Path(cache_dir or os.environ.get("TORCHINDUCTOR_CACHE_DIR") or DEFAULT_CACHE_DIR).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return folder
