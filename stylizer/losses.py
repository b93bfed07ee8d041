"""The guidance losses, as pure functions on tensors.

Conventions: images are float tensors (N, 3, H, W) in [0, 1]; embeddings are
L2-normalised rows. Every loss returns a scalar tensor (or one value per row
where the name says so) and is differentiable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def directional_loss(delta_image: torch.Tensor, delta_text: torch.Tensor) -> torch.Tensor:
    """Per-row ``1 - cos(ΔI, ΔT)``: 0 when the image moved along the text direction, 2 when against it.

    Args:
        delta_image: (N, D) change of image embedding (output minus input).
        delta_text: (D,) or (1, D) change of text embedding (prompt minus reference).
    """
    return 1.0 - F.cosine_similarity(delta_image, delta_text.reshape(1, -1).expand_as(delta_image), dim=-1, eps=1e-8)


def patch_directional_loss(
    crop_embeds: torch.Tensor, source_embed: torch.Tensor, delta_text: torch.Tensor, threshold: float
) -> torch.Tensor:
    """CLIPstyler's patch loss: mean directional loss over crops, ignoring crops already below ``threshold``.

    Crops whose loss is under the threshold contribute 0, so only patches still far
    from the style push the image.

    Args:
        crop_embeds: (N, D) embeddings of the output's crops.
        source_embed: (1, D) embedding of the whole input image.
        delta_text: (D,) text direction.
        threshold: τ; per-crop losses below it are set to 0.
    """
    per_crop = directional_loss(crop_embeds - source_embed, delta_text)
    return torch.where(per_crop < threshold, torch.zeros_like(per_crop), per_crop).mean()


def content_loss(features: list[torch.Tensor], reference_features: list[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of the mean squared error between feature maps, reduced in float32."""
    # Features from an autocast forward are half precision, whose sums lose the small differences.
    return sum(F.mse_loss(f.float(), r.float()) for f, r in zip(features, reference_features, strict=True))


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between horizontally and vertically neighbouring pixels."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean()
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
    return dx + dy


def random_perspective_crops(
    image: torch.Tensor,
    n: int,
    crop: int,
    out: int,
    distortion: float,
    generator: torch.Generator,
    where: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cut ``n`` random square crops, each with a random perspective warp, in one ``grid_sample``.

    Each crop is a ``crop`` x ``crop`` window; its four corners move inwards by up to
    ``distortion`` x half the window (as torchvision's RandomPerspective), and the
    resulting quadrilateral is stretched to an ``out`` x ``out`` square.

    Args:
        image: (1, 3, H, W) source.
        n: number of crops.
        crop: window side in px (at most the image's short side).
        out: output side in px (the CLIP input size).
        distortion: 0 gives plain crops; 1 moves corners up to half the window.
        generator: CPU generator drawing the crop positions and warps.
        where: (H, W) non-negative weights on the CPU: crops are centred on pixels drawn in
            proportion to them (a mask: only where it is on); None: anywhere, uniformly.
    """
    _, _, height, width = image.shape
    crop = min(crop, height, width)
    # Work in grid_sample's normalised coordinates, where the image spans [-1, 1].
    size = torch.tensor([2.0 * crop / width, 2.0 * crop / height])
    origin = -1 + torch.rand(n, 2, generator=generator) * (2 - size) if where is None else _origins_in(where, n, size, generator)
    unit = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    inward = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    jitter = torch.rand(n, 4, 2, generator=generator) * distortion * size / 2
    corners = origin[:, None] + unit * size + inward * jitter
    homography = _square_to_quad(corners)
    if image.is_cuda:
        # From pinned memory the copy is asynchronous: the guided step does not wait for the GPU here.
        homography = homography.pin_memory().to(image.device, non_blocking=True)
    homography = homography.to(image)
    lin = torch.linspace(-1 + 1 / out, 1 - 1 / out, out, device=image.device, dtype=image.dtype)
    v, u = torch.meshgrid(lin, lin, indexing="ij")
    plane = torch.stack([u, v, torch.ones_like(u)], dim=-1).reshape(1, -1, 3)
    mapped = plane @ homography.transpose(1, 2)
    grid = (mapped[..., :2] / mapped[..., 2:]).reshape(n, out, out, 2)
    return F.grid_sample(image.expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _origins_in(where: torch.Tensor, n: int, size: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Top-left corners (N, 2), in normalised (x, y), of windows of ``size`` centred on pixels drawn by ``where``."""
    height, width = where.shape
    pixels = torch.multinomial(where.flatten().float(), n, replacement=True, generator=generator)
    centre = torch.stack([(pixels % width + 0.5) / width, (pixels // width + 0.5) / height], dim=1) * 2 - 1
    return torch.minimum(torch.maximum(centre - size / 2, torch.tensor(-1.0)), 1 - size)


def _square_to_quad(corners: torch.Tensor) -> torch.Tensor:
    """Homographies (N, 3, 3) mapping the square [-1, 1]^2 onto each quad (N, 4, 2) of corners."""
    square = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    n = corners.shape[0]
    rows = torch.zeros(n, 8, 8)
    rhs = torch.zeros(n, 8)
    for k, (u, v) in enumerate(square.tolist()):
        x, y = corners[:, k, 0], corners[:, k, 1]
        rows[:, 2 * k, 0:3] = torch.tensor([u, v, 1.0])
        rows[:, 2 * k, 6] = -u * x
        rows[:, 2 * k, 7] = -v * x
        rows[:, 2 * k + 1, 3:6] = torch.tensor([u, v, 1.0])
        rows[:, 2 * k + 1, 6] = -u * y
        rows[:, 2 * k + 1, 7] = -v * y
        rhs[:, 2 * k], rhs[:, 2 * k + 1] = x, y
    h = torch.linalg.solve(rows, rhs)
    return torch.cat([h, torch.ones(n, 1)], dim=1).reshape(n, 3, 3)
