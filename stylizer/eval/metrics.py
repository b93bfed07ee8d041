"""Quality metrics as pure functions on tensors.

Conventions as in :mod:`stylizer.engine.losses`: images are float tensors (N, 3, H, W) in
[0, 1]; embeddings are rows (L2-normalised by the encoders, but the cosines here do
not rely on it). Every function returns one value per row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..engine import losses

# Wang et al. (2004): an 11x11 gaussian window with sigma 1.5, and the stabilising
# constants for a dynamic range of 1 (images in [0, 1]).
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
# Keeps the unit-normalisation of all-zero feature vectors finite (LPIPS uses the same guard).
FEATURE_EPS = 1e-10


def clip_score(image_embeds: torch.Tensor, text_embed: torch.Tensor) -> torch.Tensor:
    """Per-row cosine between image embeddings and one text embedding (the papers' "CLIP similarity").

    Args:
        image_embeds: (N, D) image embeddings.
        text_embed: (D,) or (1, D) text embedding.
    """
    return F.cosine_similarity(image_embeds, text_embed.reshape(1, -1).expand_as(image_embeds), dim=-1)


def directional_similarity(delta_image: torch.Tensor, delta_text: torch.Tensor) -> torch.Tensor:
    """Per-row ``cos(ΔI, ΔT)``: 1 when the image moved exactly along the text direction, -1 against it.

    Args:
        delta_image: (N, D) image-embedding change (output minus content).
        delta_text: (D,) or (1, D) text-embedding change (prompt minus reference).
    """
    # The guidance loss is 1 - cos; the metric is the cosine itself, on the same footing.
    return 1.0 - losses.directional_loss(delta_image, delta_text)


def ssim(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Per-image mean SSIM (gaussian window, per channel, valid positions only), 1 for identical images.

    The window shrinks to the image's short side when the image is smaller than it.

    Args:
        images: (N, C, H, W) in [0, 1].
        references: same shape as ``images``.
    """
    channels, height, width = images.shape[-3:]
    side = min(SSIM_WINDOW, height, width)
    kernel = _gaussian_window(side, SSIM_SIGMA).to(images).expand(channels, 1, side, side)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, kernel, groups=channels)

    mu_x, mu_y = blur(images), blur(references)
    var_x = blur(images * images) - mu_x.square()
    var_y = blur(references * references) - mu_y.square()
    cov = blur(images * references) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    denominator = (mu_x.square() + mu_y.square() + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return (numerator / denominator).mean(dim=(1, 2, 3))


def feature_distance(features: list[torch.Tensor], references: list[torch.Tensor]) -> torch.Tensor:
    """Per-image LPIPS-style distance without learned weights: mean over layers of the squared
    distance between channel-normalised feature vectors, averaged over positions.

    Each layer contributes a value in [0, 4] (0: same feature directions everywhere),
    so layers of different magnitude weigh alike.

    Args:
        features: per-layer (N, C, H, W) activations of the images.
        references: the same layers' activations of the reference images.
    """
    per_layer = [
        (_unit_channels(f) - _unit_channels(r)).square().sum(dim=1).mean(dim=(1, 2)) for f, r in zip(features, references, strict=True)
    ]
    return torch.stack(per_layer).mean(dim=0)


def _unit_channels(features: torch.Tensor) -> torch.Tensor:
    return features / (features.square().sum(dim=1, keepdim=True).sqrt() + FEATURE_EPS)


def _gaussian_window(side: int, sigma: float) -> torch.Tensor:
    """A (side, side) gaussian kernel that sums to 1."""
    x = torch.arange(side, dtype=torch.float64) - (side - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).float()
