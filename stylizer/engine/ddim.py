"""The deterministic DDIM update (η = 0) on device tensors, forwards (sampling) and backwards (inversion).

Song et al., *Denoising Diffusion Implicit Models* (2020), eq. 12 with σ = 0: from x_t and ε,
x̂0 = (x_t − √(1−ᾱ_t)·ε)/√ᾱ_t, then x_s = √ᾱ_s·x̂0 + √(1−ᾱ_s)·ε. Sampling moves from t to the
previous timestep, inversion from the previous timestep to t, both with ε evaluated at t.

Every coefficient of a step lives in one small device tensor (see :class:`StepTimes`), read
from a per-job table with no host synchronisation, so that a captured CUDA graph replays a
new step after an in-place copy (see :mod:`stylizer.engine.graphs`). The arithmetic is that of
diffusers' ``DDIMScheduler.step`` (its clipping of x̂0 included), whose tables it reads.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from diffusers import DDIMScheduler

from ..errors import ModelLoadError


class StepTimes(NamedTuple):
    """One step's timestep and coefficients, on the device.

    Attributes:
        t: 0-dim long, the timestep the UNet reads.
        coefficients: (6,) float32: √ᾱ and √(1−ᾱ) at the UNet's timestep, where the step starts, and where it ends.
    """

    t: torch.Tensor
    coefficients: torch.Tensor

    @property
    def unet(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(√ᾱ, √(1−ᾱ)) at the UNet's timestep (to turn a v-prediction into ε)."""
        return self.coefficients[0], self.coefficients[1]

    @property
    def start(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(√ᾱ, √(1−ᾱ)) where the step starts: x̂0 comes from the sample with these."""
        return self.coefficients[2], self.coefficients[3]

    @property
    def end(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(√ᾱ, √(1−ᾱ)) where the step ends."""
        return self.coefficients[4], self.coefficients[5]


def sampling_times(scheduler: DDIMScheduler, timesteps: torch.Tensor, device: torch.device) -> list[StepTimes]:
    """Each denoising step of ``timesteps`` (descending, after ``set_timesteps``) as :class:`StepTimes` on ``device``."""
    stride = _stride(scheduler)
    rows = [(int(t), int(t), int(t) - stride) for t in timesteps]
    return _times(scheduler, rows, device)


def inversion_times(scheduler: DDIMScheduler, timesteps: torch.Tensor, device: torch.device) -> list[StepTimes]:
    """Each inversion step, the reverse of :func:`sampling_times`: from the previous timestep to t, with ε at t."""
    stride = _stride(scheduler)
    rows = [(int(t), int(t) - stride, int(t)) for t in reversed(timesteps)]
    return _times(scheduler, rows, device)


def timestep_times(scheduler: DDIMScheduler, t: int, device: torch.device) -> StepTimes:
    """A single timestep's :class:`StepTimes`, starting and ending there (ε alone, no move)."""
    return _times(scheduler, [(t, t, t)], device)[0]


def predicted_clean(sample: torch.Tensor, eps: torch.Tensor, times: StepTimes) -> torch.Tensor:
    """x̂0 from x at the step's start and ε."""
    sqrt_ab, sqrt_1mab = times.start
    return (sample - sqrt_1mab * eps) / sqrt_ab


def ddim_move(pred_clean: torch.Tensor, eps: torch.Tensor, times: StepTimes, clip: float | None = None) -> torch.Tensor:
    """x at the step's end from x̂0 and ε; ``clip`` clamps x̂0 first (the scheduler's ``clip_sample``)."""
    if clip is not None:
        pred_clean = pred_clean.clamp(-clip, clip)
    sqrt_ab, sqrt_1mab = times.end
    return sqrt_ab * pred_clean + sqrt_1mab * eps


def clip_range(scheduler: DDIMScheduler) -> float | None:
    """The range x̂0 is clamped to while sampling (None: not clamped); dynamic thresholding is refused."""
    if scheduler.config.thresholding:
        raise ModelLoadError("the model's scheduler uses dynamic thresholding, which Stylizer's DDIM step does not support")
    return float(scheduler.config.clip_sample_range) if scheduler.config.clip_sample else None


def _stride(scheduler: DDIMScheduler) -> int:
    return scheduler.config.num_train_timesteps // scheduler.num_inference_steps


def _times(scheduler: DDIMScheduler, rows: list[tuple[int, int, int]], device: torch.device) -> list[StepTimes]:
    """Rows of (UNet timestep, start, end) as StepTimes: the coefficients computed as the scheduler does, then one copy each way."""

    def alpha(t: int) -> torch.Tensor:
        return scheduler.alphas_cumprod[t] if t >= 0 else scheduler.final_alpha_cumprod

    values = torch.stack([torch.stack([c for t in row for c in (alpha(t) ** 0.5, (1 - alpha(t)) ** 0.5)]) for row in rows])
    values = values.float().to(device)
    timesteps = torch.tensor([row[0] for row in rows], dtype=torch.long).to(device)
    return [StepTimes(timesteps[i], values[i]) for i in range(len(rows))]
