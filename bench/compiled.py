"""The ``torch.compile`` variant of the optimised path, which the benchmark times against the CUDA graphs of whole steps.

It lives here alone: the app and the library replay captured steps (:mod:`stylizer.engine.graphs`) and
never compile. :class:`CompiledOptimizations` compiles each network the first time the step loop runs
it, and :meth:`~CompiledOptimizations.single_call` keeps the calls made once a job or a frame (the
source's features, the frames' loss readings) uncompiled, since each of those would pay a compilation
(a minute on a real-size model, per grad mode and batch size) for nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from stylizer.engine.optimization import Optimizations

log = logging.getLogger(__name__)

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Where compiled kernels persist when TORCHINDUCTOR_CACHE_DIR is not set (inductor's own default is under /tmp).
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "stylizer" / "inductor"
# The attribute under which a module keeps its compiled callables, so they live exactly as long as it.
_COMPILED = "_stylizer_compiled"


@dataclasses.dataclass(frozen=True)
class CompiledOptimizations(Optimizations):
    """``optimizations`` with each network ``torch.compile``d on its first call in the step loop.

    Attributes:
        compile_mode: ``torch.compile``'s ``mode``: None for its default, ``"reduce-overhead"`` to replay
            each network as a CUDA graph (fewer kernel launches, more memory), ``"max-autotune"`` to also
            search kernels (a much longer compile). Not with whole-step ``cuda_graphs``: a compiled
            network's own graphs cannot nest in a capture.
    """

    compile_mode: str | None = None

    def __post_init__(self) -> None:
        if self.cuda_graphs:
            raise ValueError("torch.compile and the CUDA graphs of whole steps exclude each other: choose one")

    def network(self, module: nn.Module, method: str = "forward") -> Callable:
        """``module.<method>`` compiled (once per module, mode and method, kept on the module), under autocast where that is on."""
        compiled = module.__dict__.setdefault(_COMPILED, {})
        if (method, self.compile_mode) not in compiled:
            log.info("compiling %s.%s (mode %s) on its first call", type(module).__name__, method, self.compile_mode or "default")
            compiled[method, self.compile_mode] = torch.compile(
                module if method == "forward" else getattr(module, method), mode=self.compile_mode
            )
        return self.under_autocast(compiled[method, self.compile_mode], module)

    def single_call(self) -> Optimizations:
        """The same precision and layout, uncompiled."""
        return Optimizations(self.batch_clip, self.autocast, self.channels_last)


def compiled(optimizations: Optimizations, mode: str | None) -> CompiledOptimizations:
    """``optimizations`` as the compiled variant in ``mode`` (whole-step graphs off), with inductor's caches persisted."""
    persist_compile_cache()
    fields = {f.name: getattr(optimizations, f.name) for f in dataclasses.fields(Optimizations)}
    return CompiledOptimizations(**{**fields, "cuda_graphs": False}, compile_mode=None if mode == "default" else mode)


def step_marker(optimizations: Optimizations) -> Callable[[int, int], None] | None:
    """An ``on_step`` hook for the sampler: with ``reduce-overhead``, mark where one step's outputs stop being needed.

    CUDA graphs that ``torch.compile`` captures reuse their output buffers; each new step must say so.
    """
    if isinstance(optimizations, CompiledOptimizations) and optimizations.compile_mode == "reduce-overhead":
        return lambda done, total: torch.compiler.cudagraph_mark_step_begin()
    return None


def persist_compile_cache(cache_dir: str | Path | None = None) -> Path:
    """Point inductor's on-disk caches at a lasting folder and return it.

    Inductor reads ``TORCHINDUCTOR_CACHE_DIR`` whenever it compiles (its FX-graph and AOTAutograd
    caches are on by default, and Triton's kernels go under it), so setting it before the first
    compilation is all it takes. An explicit ``cache_dir`` wins over the variable; the variable wins
    over the default.
    """
    folder = Path(cache_dir or os.environ.get("TORCHINDUCTOR_CACHE_DIR") or DEFAULT_CACHE_DIR).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return folder
