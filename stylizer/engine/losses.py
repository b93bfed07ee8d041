"""The guidance losses, as pure functions on tensors.

Conventions: images are float tensors (N, 3, H, W) in [0, 1]; embeddings are
L2-normalised rows. Every loss returns a scalar tensor (or one value per row
where the name says so) and is differentiable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Uniform draws per crop: two for its position, two for each corner's inward jitter.
CROP_UNIFORMS = 10
# The unit square's corners in the order the homography maps them, and the direction each moves inwards.
SQUARE_CORNERS = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
INWARD = ((1.0, 1.0), (-1.0, 1.0), (-1.0, -1.0), (1.0, -1.0))


def directional_loss(delta_image: torch.Tensor, delta_text: torch.Tensor) -> torch.Tensor:
    """Per-row ``1 - cos(ΔI, ΔT)``: 0 when the image moved along the text direction, 2 when against it.

    Args:
        delta_image: (N, D) change of image embedding (output minus input).
        delta_text: (D,) or (1, D) change of text embedding (prompt minus reference).
    """
    return 1.0 - F.cosine_similarity(delta_image, delta_text.reshape(1, -1).expand_as(delta_image), dim=-1, eps=1e-8)


def patch_directional_loss(
    crop_embeds: torch.Tensor, source_embed: torch.Tensor, delta_text: torch.Tensor, threshold: float | torch.Tensor
) -> torch.Tensor:
    """CLIPstyler's patch loss: mean directional loss over crops, ignoring crops already below ``threshold``.

    Crops whose loss is under the threshold contribute 0, so only patches still far
    from the style push the image. The threshold is a multiply by a mask, not indexing,
    so the crop count never depends on the data (a captured CUDA graph needs that).

    Args:
        crop_embeds: (N, D) embeddings of the output's crops.
        source_embed: (1, D) embedding of the whole input image.
        delta_text: (D,) text direction.
        threshold: τ (a number or a 0-dim tensor); per-crop losses below it are set to 0.
    """
    per_crop = directional_loss(crop_embeds - source_embed, delta_text)
    return (per_crop * (per_crop >= threshold)).mean()


def content_loss(features: list[torch.Tensor], reference_features: list[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of the mean squared error between feature maps, reduced in float32."""
    # Features from an autocast forward are half precision, whose sums lose the small differences.
    return sum(F.mse_loss(f.float(), r.float()) for f, r in zip(features, reference_features, strict=True))


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between horizontally and vertically neighbouring pixels."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean()
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
    return dx + dy


def crop_uniforms(n: int, generator: torch.Generator) -> torch.Tensor:
    """The uniform draws behind ``n`` crops, (n, CROP_UNIFORMS), on the generator's device."""
    return torch.rand(n, CROP_UNIFORMS, generator=generator, device=generator.device)


def random_perspective_crops(
    image: torch.Tensor,
    crop: int,
    out: int,
    distortion: float | torch.Tensor,
    uniforms: torch.Tensor,
    where_cdf: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cut one random square crop per row of ``uniforms``, each with a random perspective warp, in one ``grid_sample``.

    Each crop is a ``crop`` x ``crop`` window; its four corners move inwards by up to
    ``distortion`` x half the window (as torchvision's RandomPerspective), and the
    resulting quadrilateral is stretched to an ``out`` x ``out`` square. Everything runs
    on the image's device from the given draws, with no host synchronisation.

    Args:
        image: (1, 3, H, W) source.
        crop: window side in px (at most the image's short side).
        out: output side in px (the CLIP input size).
        distortion: 0 gives plain crops; 1 moves corners up to half the window.
        uniforms: (N, CROP_UNIFORMS) uniform draws in [0, 1) (see :func:`crop_uniforms`).
        where_cdf: (H·W,) cumulative sums of non-negative pixel weights (see :func:`crop_cdf`):
            crops are centred on pixels drawn in proportion to them (a mask: only where it is on);
            None: anywhere, uniformly.
    """
    _, _, height, width = image.shape
    crop = min(crop, height, width)
    # Work in grid_sample's normalised coordinates, where the image spans [-1, 1].
    side_x, side_y = 2.0 * crop / width, 2.0 * crop / height
    if where_cdf is None:
        left, top = -1 + uniforms[:, 0] * (2 - side_x), -1 + uniforms[:, 1] * (2 - side_y)
    else:
        left, top = _origins_in(where_cdf, uniforms[:, 0], width, height, side_x, side_y)
    jitter = uniforms[:, 2:].reshape(-1, 4, 2) * (distortion / 2)
    corners = [
        (left + ux * side_x + ix * jitter[:, k, 0] * side_x, top + uy * side_y + iy * jitter[:, k, 1] * side_y)
        for k, ((ux, uy), (ix, iy)) in enumerate(zip(SQUARE_CORNERS, INWARD, strict=True))
    ]
    # Pixel centres of the output square, as unit-square coordinates mapped through each crop's homography.
    centres = (torch.arange(out, device=image.device, dtype=image.dtype) + 0.5) / out
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    x, y = _square_to_quad(corners, u.reshape(1, -1), v.reshape(1, -1))
    grid = torch.stack([x, y], dim=-1).reshape(-1, out, out, 2).to(image.dtype)
    return F.grid_sample(image.expand(grid.shape[0], -1, -1, -1), grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def crop_cdf(where: torch.Tensor) -> torch.Tensor:
    """(H·W,) cumulative pixel weights of an (H, W) weight map, for drawing crop centres with :func:`random_perspective_crops`."""
    return where.flatten().float().cumsum(0)


def _origins_in(
    cdf: torch.Tensor, draws: torch.Tensor, width: int, height: int, side_x: float, side_y: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left corners, in normalised (x, y), of windows centred on pixels drawn in proportion to the weights behind ``cdf``."""
    pixels = torch.searchsorted(cdf, draws * cdf[-1], right=True).clamp(max=cdf.numel() - 1)
    centre_x = ((pixels % width).float() + 0.5) / width * 2 - 1
    centre_y = (torch.div(pixels, width, rounding_mode="floor").float() + 0.5) / height * 2 - 1
    return (centre_x - side_x / 2).clamp(-1, 1 - side_x), (centre_y - side_y / 2).clamp(-1, 1 - side_y)


def _square_to_quad(
    corners: list[tuple[torch.Tensor, torch.Tensor]], u: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points (u, v) of the unit square mapped onto each quad of ``corners`` (four (N,) x and y pairs, in square order).

    Heckbert's closed form (*Fundamentals of Texture Mapping and Image Warping*, 1989, §2.2.3):
    elementwise arithmetic, so it runs on the device with no solver and no synchronisation.
    """
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = ((x[:, None], y[:, None]) for x, y in corners)
    sx, sy = x0 - x1 + x2 - x3, y0 - y1 + y2 - y3
    dx1, dx2, dy1, dy2 = x1 - x2, x3 - x2, y1 - y2, y3 - y2
    den = dx1 * dy2 - dx2 * dy1
    g, h = (sx * dy2 - dx2 * sy) / den, (dx1 * sy - sx * dy1) / den
    a, b, d, e = x1 - x0 + g * x1, x3 - x0 + h * x3, y1 - y0 + g * y1, y3 - y0 + h * y3
    w = g * u + h * v + 1
    return (a * u + b * v + x0) / w, (d * u + e * v + y0) / w
