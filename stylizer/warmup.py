"""Start-up warm-up of the optimised guided step: compile its networks before the first job.

``torch.compile`` works on a network's first call, which would otherwise land in a
user's first job (a minute or more on a cold start). The app calls :func:`warmup`
once per loaded model replica instead.
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

log = logging.getLogger(__name__)

# Where compiled kernels persist when TORCHINDUCTOR_CACHE_DIR is not set (inductor's own default is under /tmp).
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "stylizer" / "inductor"
# Two guided steps: the first compiles every graph a job runs, and the second would catch a
# recompilation on a new timestep before a user's job does.
WARMUP_STEPS = 2
# Mid-grey: the picture's content does not matter to the compiler, only its size.
WARMUP_GREY = (128, 128, 128)


def warmup(
    models: Models, size: int | None = None, optimize: bool | Optimizations | None = None, cache_dir: str | Path | None = None
) -> float:
    """Run a short job in each guidance mode so that compilation happens now, not in a user's job.

    Only the optimised path on CUDA compiles; anywhere else this returns at once. The
    compiled artefacts (inductor's FX-graph, AOTAutograd and Triton caches) persist in
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
    if not optimizations.compile:
        log.info("warm-up skipped: nothing is compiled on %s with %s", models.device, optimizations)
        return 0.0
    cache = persist_compile_cache(cache_dir)
    side = size or models.preset.size
    picture = Image.new("RGB", (side, side), WARMUP_GREY)
    started = time.perf_counter()
    for mode in GUIDANCE_MODES:
        log.info("warm-up: compiling the %s guided step of %s at %d px on %s (cache: %s)", mode, models.name, side, models.device, cache)
        config = StyleConfig(prompt="warm-up", size=side, steps=WARMUP_STEPS, strength=1.0, mode=mode).validated()
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
