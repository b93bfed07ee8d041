"""The region to restyle: a mask (checked by :func:`stylizer.images.check_mask`) feathered and used at each size a job needs.

A job with a mask restyles only inside it (Avrahami et al., *Blended Latent Diffusion*,
2022, arXiv 2206.02779; RePaint for pixel models):

* the losses see the masked composite (the prediction inside, the input outside), and the
  patch crops are centred where the mask is on;
* after every step, outside the mask the sample follows the input's own trajectory (its
  DDIM inversion, or the same noise on the input for ``start="noise"``);
* the result composites the input's own pixels outside the feathered mask, since a VAE
  does not reproduce pixels exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter


def feathered(mask: Image.Image, size: tuple[int, int], feather: int) -> Image.Image:
    """The mask at ``size`` = (W, H) with a soft edge ``feather`` px wide on each side, exactly 0 beyond it.

    Two box blurs of half the width each: a smooth ramp with a support of exactly ``feather`` px,
    so pixels farther than that from the selection keep the input untouched.
    """
    sized = mask.resize(size, Image.Resampling.BILINEAR)
    radius = feather / 2
    return sized.filter(ImageFilter.BoxBlur(radius)).filter(ImageFilter.BoxBlur(radius)) if feather > 0 else sized


def as_tensor(mask: Image.Image, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """(1, 1, H, W) weights in [0, 1] at ``size`` = (W, H)."""
    values = torch.frombuffer(bytearray(mask.resize(size, Image.Resampling.BILINEAR).tobytes()), dtype=torch.uint8)
    return (values.float() / 255).reshape(1, 1, size[1], size[0]).to(device)


def at_latent(weights: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Pixel weights (1, 1, H, W) averaged down to a sample of ``shape`` (the latent's, or the pixels' own)."""
    if weights.shape[-2:] == shape[-2:]:
        return weights
    return F.interpolate(weights, size=tuple(shape[-2:]), mode="area")


def composite(result: Image.Image, source: Image.Image, weights: Image.Image) -> Image.Image:
    """``result`` where ``weights`` is white, ``source`` where it is black, blended in between (all the same size)."""
    return Image.composite(result, source, weights)
