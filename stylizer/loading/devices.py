"""Which devices serve jobs, and the precision the diffusion networks run in on each."""

from __future__ import annotations

import torch

from ..errors import ConfigError


def resolve_device(requested: str | None = None) -> torch.device:
    """``None``/``"auto"`` picks CUDA when available, else CPU; an unavailable CUDA is an error."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {requested!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r} was requested but no CUDA GPU is available; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {requested!r}; use cpu, cuda or cuda:N")
    return device


def default_devices() -> list[str]:
    """Every visible CUDA GPU, or the CPU when there is none."""
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def latent_dtype(device: torch.device) -> torch.dtype:
    """The precision the latent networks run in on ``device``.

    float32 on the CPU (half precision is slow there). On CUDA, half precision halves
    weights and activations; bfloat16 where the GPU supports it, because it keeps
    float32's exponent range and the guidance gradients flowing back through the UNet
    and decoder can underflow float16; float16 on older GPUs.
    """
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
