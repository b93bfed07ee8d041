"""Diffusion backends: one interface over a pixel-space UNet and (later) a latent UNet + VAE.

The sampler only talks to :class:`DiffusionBackend`; adding a backend never forks the loop.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from diffusers import DDIMScheduler
from torch import nn


class DiffusionBackend:
    """What the guided DDIM loop needs from a diffusion model.

    Attributes:
        kind: ``"pixel"`` or ``"latent"``.
        multiple: every image side must be a multiple of this many pixels.
        grad_gain: scales the guidance gradient into pixel-equivalent units.
    """

    kind: str = ""
    multiple: int = 1
    grad_gain: float = 1.0

    def __init__(self, scheduler_config: Mapping[str, Any]) -> None:
        self.scheduler_config = dict(scheduler_config)

    def new_scheduler(self) -> DDIMScheduler:
        """A fresh DDIM scheduler (schedulers hold per-job state, so never share one)."""
        return DDIMScheduler.from_config(self.scheduler_config)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) image in [-1, 1] -> the space the UNet denoises."""
        raise NotImplementedError

    def decode(self, sample: torch.Tensor) -> torch.Tensor:
        """Differentiable inverse of :meth:`encode`."""
        raise NotImplementedError

    def preview(self, sample: torch.Tensor) -> torch.Tensor:
        """A cheap, non-differentiable decode for streamed frames."""
        with torch.no_grad():
            return self.decode(sample)

    def condition(self, prompt: str, reference: str, cfg_scale: float) -> Any:
        """Per-job UNet conditioning for the style prompt (``None`` for unconditional models)."""
        return None

    def inversion_condition(self, reference: str) -> Any:
        """Conditioning used while DDIM-inverting the input."""
        return None

    def eps(self, sample: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """Predicted noise ε(x_t, t)."""
        raise NotImplementedError


class PixelBackend(DiffusionBackend):
    """An unconditional diffusers ``UNet2DModel`` denoising RGB pixels in [-1, 1].

    Args:
        unet: the denoiser; ``unet(x, t).sample`` is ε (or ε and a variance, which is dropped).
        scheduler_config: the checkpoint's scheduler config (any diffusers scheduler class).
        multiple: the UNet's total downsampling factor.
    """

    kind = "pixel"

    def __init__(self, unet: nn.Module, scheduler_config: Mapping[str, Any], multiple: int) -> None:
        super().__init__(scheduler_config)
        self.unet = unet.eval().requires_grad_(False)
        self.multiple = multiple

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return image

    def decode(self, sample: torch.Tensor) -> torch.Tensor:
        return sample

    def eps(self, sample: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        out = self.unet(sample, t).sample
        # Models trained with a learned variance (e.g. OpenAI's) output [ε, v]; DDIM needs ε only.
        return out[:, : sample.shape[1]]
