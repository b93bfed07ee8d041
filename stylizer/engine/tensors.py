"""Pictures to tensors and back: what the engine reads and what it streams."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def to_tensor(img: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """PIL RGB -> float tensor of shape (1, 3, H, W) in [-1, 1], resized to ``size`` = (W, H)."""
    resized = img.resize(size, Image.Resampling.LANCZOS) if img.size != size else img
    arr = np.asarray(resized, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_pil(x: torch.Tensor, size: tuple[int, int] | None = None) -> Image.Image:
    """Tensor (1, 3, H, W) or (3, H, W) in [-1, 1] -> PIL RGB on the CPU, optionally resized to (W, H)."""
    x = x.detach()
    if x.dim() == 4:
        x = x[0]
    if size is not None and (x.shape[-1], x.shape[-2]) != tuple(size):
        x = F.interpolate(x[None].float(), size=(size[1], size[0]), mode="bicubic", align_corners=False, antialias=True)[0]
    arr = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, mode="RGB")
