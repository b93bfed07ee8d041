"""The optimised guided step: one switch, and what it turns on on each device.

``stylize(..., optimize=True)`` runs the same loop as the eager reference
(``optimize=False``, the default) with these optimizations, none of which changes the algorithm:

* CLIP encodes the whole image and its patch crops in one batch (every device);
* on CUDA: the networks' forward passes run under bfloat16 autocast (the losses, the
  crops' sampling grid and the DDIM arithmetic stay float32, and the backward pass runs
  outside autocast, as PyTorch requires), the conv nets keep their weights channels_last,
  and every step of the loop (the inversion's, the unguided one, the guided one with its
  backward pass) replays as a CUDA graph captured on first use (:mod:`stylizer.engine.graphs`;
  :func:`stylizer.engine.warmup.warmup` captures the default size at start-up), unless the
  caller says captures would never be replayed (``graphs=False``: a fresh process per job).

The CPU never autocasts, so there both paths compute the same float32 image up to the
order of floating-point sums. Which switch a deployment uses is the deployment's choice
(``STYLIZER_OPTIMIZE`` for the app, ``--optimize`` on the command line); the engine only
takes it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Optimizations:
    """What the guided step does beyond the eager reference; all off is the reference itself.

    Attributes:
        batch_clip: encode the whole image and its crops in one CLIP batch.
        autocast: run the networks' forward passes under autocast to this dtype (None: off).
        channels_last: keep the conv nets' weights in channels_last layout.
        cuda_graphs: replay each whole step as a CUDA graph (on CUDA; see :mod:`stylizer.engine.graphs`).
    """

    batch_clip: bool = False
    autocast: torch.dtype | None = None
    channels_last: bool = False
    cuda_graphs: bool = False

    def network(self, module: nn.Module, method: str = "forward") -> Callable:
        """``module.<method>`` as the guided step runs it: under autocast where that is on.

        Autocast covers the network alone, so that the losses, the crops' sampling grid and
        the DDIM arithmetic around it stay float32.
        """
        return self.under_autocast(getattr(module, method), module)

    def under_autocast(self, call: Callable, module: nn.Module) -> Callable:
        """``call`` (one of ``module``'s methods, or a wrapper of it) under autocast to ``self.autocast`` on the module's device."""
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

    def single_call(self) -> Optimizations:
        """How networks run for calls made once a job or once a frame (the source's features, the frames'
        loss readings) rather than every step: the same precision and layout, so that an unchanged image
        has (near) zero content loss. A variant that specialises the per-step calls (the benchmark's
        compiled one) returns plain optimizations here, so that a one-off call never pays for that."""
        return self


EAGER = Optimizations()


def optimizations_for(device: torch.device, optimize: bool = False, dtype: torch.dtype | None = None, graphs: bool = True) -> Optimizations:
    """What the switch turns on on ``device``.

    Args:
        device: where the models run.
        optimize: the switch.
        dtype: autocast precision on CUDA. None picks bfloat16 where the GPU has it and no
            autocast elsewhere: float16 guidance gradients can underflow without loss scaling.
            float32 turns autocast off.
        graphs: CUDA graph captures can be replayed by later jobs (False where every job runs
            in a fresh process, so that a capture would be thrown away).
    """
    if not optimize:
        return EAGER
    if device.type != "cuda":
        return Optimizations(batch_clip=True)
    if dtype is None:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    autocast = None if dtype == torch.float32 else dtype
    return Optimizations(batch_clip=True, autocast=autocast, channels_last=True, cuda_graphs=graphs)


def resolve(device: torch.device, optimize: bool | Optimizations) -> Optimizations:
    """The switch as :func:`stylizer.engine.sampler.stylize` takes it: a bool or explicit optimizations."""
    return optimize if isinstance(optimize, Optimizations) else optimizations_for(device, optimize)


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
