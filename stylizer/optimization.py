"""The optimised guided step: one switch, and what it turns on on each device.

``stylize(..., optimize=True)`` runs the same loop as the eager reference
(``optimize=False``) with these optimizations, none of which changes the algorithm:

* CLIP encodes the whole image and its patch crops in one batch (every device);
* on CUDA: the networks' forward passes run under bfloat16 autocast (the losses, the
  crops' sampling grid and the DDIM arithmetic stay float32, and the backward pass runs
  outside autocast, as PyTorch requires), the conv nets keep their weights channels_last,
  and every step of the loop (the inversion's, the unguided one, the guided one with its
  backward pass) replays as a CUDA graph captured on first use (:mod:`stylizer.graphs`;
  :func:`stylizer.warmup.warmup` captures the default size at start-up). Not on ZeroGPU,
  which forks a fresh process per job.

``torch.compile`` of each network (``compile``, with a ``compile_mode``) stays available to
the benchmark, which compares it with the graphs.

The CPU never compiles or autocasts, so there both paths compute the same float32
image up to the order of floating-point sums. ``optimize=None``, the default
everywhere, means ``STYLIZER_OPTIMIZE`` (1 or 0) where that is set, else off: the
CUDA path has not yet been validated on a GPU, so the eager reference stays the default
until a benchmark run confirms it.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .errors import ConfigError
from .zerogpu import on_zero_gpu

log = logging.getLogger(__name__)

# Deployments can turn the optimised path off (or on) without code: 1 or 0.
OPTIMIZE_ENV = "STYLIZER_OPTIMIZE"
# The attribute under which a module keeps its compiled callables, so they live exactly as long as it.
_COMPILED = "_stylizer_compiled"


@dataclass(frozen=True)
class Optimizations:
    """What the guided step does beyond the eager reference; all off is the reference itself.

    Attributes:
        batch_clip: encode the whole image and its crops in one CLIP batch.
        autocast: run the networks' forward passes under autocast to this dtype (None: off).
        channels_last: keep the conv nets' weights in channels_last layout.
        compile: ``torch.compile`` each network the first time it runs.
        compile_mode: ``torch.compile``'s ``mode``: None for its default, ``"reduce-overhead"``
            to replay each network as a CUDA graph (fewer kernel launches, more memory),
            ``"max-autotune"`` to also search kernels (a much longer compile).
        cuda_graphs: replay each whole step as a CUDA graph (on CUDA; see :mod:`stylizer.graphs`).
            Not with ``compile``: a compiled network's own graphs cannot nest in a capture.
    """

    batch_clip: bool = False
    autocast: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False
    compile_mode: str | None = None
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        if self.compile and self.cuda_graphs:
            raise ConfigError("compile and cuda_graphs exclude each other: choose one")

    def network(self, module: nn.Module, method: str = "forward") -> Callable:
        """``module.<method>`` as the guided step runs it: compiled and under autocast where these are on.

        Autocast covers the network alone, so that the losses, the crops' sampling grid and
        the DDIM arithmetic around it stay float32. A compiled callable is built once per
        module and kept on it for later jobs.
        """
        call = self._compiled(module, method, self.compile_mode) if self.compile else getattr(module, method)
        if self.autocast is None:
            return call
        device_type = next(itertools.chain(module.parameters(), module.buffers())).device.type
        dtype = self.autocast

        def autocast_call(*args: Any, **kwargs: Any) -> Any:
            # No weight-cast cache: each weight is cast once per call anyway, and a CUDA graph
            # capture must not keep casts made outside it.
            with torch.autocast(device_type, dtype=dtype, cache_enabled=False):
                return call(*args, **kwargs)

        return autocast_call

    @staticmethod
    def _compiled(module: nn.Module, method: str, mode: str | None) -> Callable:
        compiled = module.__dict__.setdefault(_COMPILED, {})
        if (method, mode) not in compiled:
            log.info("compiling %s.%s (mode %s) on its first call", type(module).__name__, method, mode or "default")
            compiled[method, mode] = torch.compile(module if method == "forward" else getattr(module, method), mode=mode)
        return compiled[method, mode]


EAGER = Optimizations()


def optimizations_for(device: torch.device, optimize: bool | None = None, dtype: torch.dtype | None = None) -> Optimizations:
    """What the switch turns on on ``device``.

    Args:
        device: where the models run.
        optimize: the switch; None means ``$STYLIZER_OPTIMIZE`` where set, else off.
        dtype: autocast precision on CUDA. None picks bfloat16 where the GPU has it and no
            autocast elsewhere: float16 guidance gradients can underflow without loss scaling.
            float32 turns autocast off.
    """
    if optimize is None:
        optimize = _env_switch(False)
    if not optimize:
        return EAGER
    if device.type != "cuda":
        return Optimizations(batch_clip=True)
    if dtype is None:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    autocast = None if dtype == torch.float32 else dtype
    # ZeroGPU forks a fresh GPU process per job: a capture would never be replayed.
    return Optimizations(batch_clip=True, autocast=autocast, channels_last=True, cuda_graphs=not on_zero_gpu())


def resolve(device: torch.device, optimize: bool | Optimizations | None) -> Optimizations:
    """The switch as :func:`stylizer.sampler.stylize` takes it: a bool, None (automatic) or explicit optimizations."""
    return optimize if isinstance(optimize, Optimizations) else optimizations_for(device, optimize)


def _env_switch(default: bool) -> bool:
    """``$STYLIZER_OPTIMIZE`` as a bool, or ``default`` where it is unset or empty."""
    value = os.environ.get(OPTIMIZE_ENV, "")
    if value not in ("", "0", "1"):
        raise ConfigError(f"{OPTIMIZE_ENV}={value!r}: use 1 (optimised guided step) or 0 (eager reference)")
    return default if value == "" else value == "1"


def set_layout(modules: Iterable[nn.Module], channels_last: bool) -> None:
    """Put the conv weights of ``modules`` in channels_last layout, or back to contiguous, where they are not yet.

    Switching costs one copy of the weights; a module already in the asked layout is left alone.
    """
    layout = torch.channels_last if channels_last else torch.contiguous_format
    for module in modules:
        probe = _spatial_conv_weight(module)
        if probe is not None and not probe.is_contiguous(memory_format=layout):
            module.to(memory_format=layout)


def _spatial_conv_weight(module: nn.Module) -> torch.Tensor | None:
    """The weight of the first conv with a kernel wider than 1x1 (a 1x1 weight is contiguous in both layouts)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d) and layer.weight.shape[-2:] != (1, 1):
            return layer.weight
    return None
