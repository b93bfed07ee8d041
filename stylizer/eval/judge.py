"""The judge: CLIP and VGG bound together to score one stylized image against its content and prompt."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..engine import losses
from ..engine.encoders import ClipEncoder, VggEncoder
from ..engine.models import Models
from ..loading.build import load_clip
from . import metrics

# Patch CLIP score: plain crops (no perspective warp) of a quarter of the short side,
# the ratio of CLIPstyler's 128 px crops at 512 px.
PATCH_COUNT = 16
PATCH_FRACTION = 0.25
PATCH_DISTORTION = 0.0
# Fixed, and independent of the jobs' seed, so that every result is cut the same way.
PATCH_SEED = 0

CLIP_SCORE = "clip_score"
DIRECTIONAL = "directional_similarity"
PATCH_CLIP_SCORE = "patch_clip_score"
SSIM = "ssim"
LPIPS = "lpips_vgg"
VGG_DISTANCE = "vgg_feature_distance"

Lpips = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LPIPS_NOT_INSTALLED = "LPIPS skipped: the lpips package is not installed (pip install lpips)"
LPIPS_NOT_TRIED = "LPIPS skipped: not tried for random-weight models"


@dataclass(frozen=True)
class Skipped:
    """An optional metric left out of the report, and why.

    Attributes:
        note: one line naming the metric and the reason, for stderr, metrics.json and the page.
        failure: an installed component broke (worth a warning), rather than an expected absence.
    """

    note: str
    failure: bool = False


class Judge:
    """Measures style (CLIP) and content preservation (SSIM, VGG features, LPIPS when available).

    Args:
        clip: the judging CLIP (the guide's, or another one so that the judge differs from the guide).
        vgg: the content VGG16 whose features :data:`VGG_DISTANCE` compares.
        lpips: an LPIPS(VGG) model taking two images in [-1, 1], or ``None``.
        lpips_skipped: why ``lpips`` is ``None``, for the report.
        seed: seeds the patch crops.
    """

    def __init__(
        self, clip: ClipEncoder, vgg: VggEncoder, lpips: Lpips | None = None, lpips_skipped: Skipped | None = None, seed: int = PATCH_SEED
    ) -> None:
        self.clip = clip
        self.vgg = vgg
        self.lpips = lpips
        self.lpips_skipped = lpips_skipped
        self.seed = seed

    @classmethod
    def for_models(cls, models: Models, metric_clip: str | None = None) -> Judge:
        """A judge on ``models``' device: their CLIP unless ``metric_clip`` names another, their VGG.

        LPIPS is tried only for trained models: the ``tiny`` preset's judge is random anyway,
        and LPIPS would try to download VGG weights. Either way :attr:`lpips_skipped` says
        why LPIPS is missing.

        Args:
            models: the loaded guide models.
            metric_clip: a key of :data:`stylizer.models.CLIP_MODELS`, or ``None`` for the guide's CLIP.
        """
        clip = models.clip if metric_clip is None else load_clip(metric_clip, models.device)
        lpips, skipped = (None, Skipped(LPIPS_NOT_TRIED)) if models.untrained else try_lpips(models.device)
        return cls(clip, models.vgg, lpips, skipped)

    @property
    def metric_names(self) -> list[str]:
        """The keys :meth:`measure` returns, in report order."""
        return [CLIP_SCORE, DIRECTIONAL, PATCH_CLIP_SCORE, SSIM, VGG_DISTANCE] + ([LPIPS] if self.lpips is not None else [])

    @torch.no_grad()
    def measure(self, content: torch.Tensor, output: torch.Tensor, prompt: str, reference: str) -> dict[str, float]:
        """Every metric of one result.

        Args:
            content: (1, 3, H, W) content image in [0, 1], at the output's size.
            output: (1, 3, H, W) stylized image in [0, 1].
            prompt: the style text.
            reference: the text the style direction starts from (e.g. "a photo").
        """
        device = self.clip.mean.device
        content, output = content.to(device), output.to(device)
        content_embed, output_embed = self.clip.encode_images(torch.cat([content, output])).split(1)
        text = self.clip.encode_text(prompt)
        delta_text = self.clip.text_direction(prompt, reference)
        crop = max(1, round(min(output.shape[-2:]) * PATCH_FRACTION))
        generator = torch.Generator().manual_seed(self.seed)
        crops = losses.random_perspective_crops(
            output, crop, self.clip.image_size, PATCH_DISTORTION, losses.crop_uniforms(PATCH_COUNT, generator).to(device)
        )
        values = {
            CLIP_SCORE: metrics.clip_score(output_embed, text),
            DIRECTIONAL: metrics.directional_similarity(output_embed - content_embed, delta_text),
            PATCH_CLIP_SCORE: metrics.clip_score(self.clip.encode_images(crops), text).mean(),
            SSIM: metrics.ssim(output, content),
            VGG_DISTANCE: metrics.feature_distance(self.vgg(output), self.vgg(content)),
        }
        if self.lpips is not None:
            values[LPIPS] = self.lpips(output * 2 - 1, content * 2 - 1)
        return {name: float(value.mean()) for name, value in values.items()}


def try_lpips(device: torch.device) -> tuple[Lpips | None, Skipped | None]:
    """LPIPS(VGG) and ``None``, or ``None`` and why it is skipped: not installed (expected) or failing (a failure)."""
    try:
        return load_lpips(device), None
    except Exception as exc:
        # Not raised: LPIPS is optional and vgg_feature_distance stands in. But a broken
        # install or missing VGG weights must show in the report rather than vanish.
        if isinstance(exc, ModuleNotFoundError) and exc.name == "lpips":
            return None, Skipped(LPIPS_NOT_INSTALLED)
        message = " ".join(str(exc).split())  # one line on stderr, whatever the library wrote
        return None, Skipped(f"LPIPS skipped: the lpips package failed: {type(exc).__name__}: {message}", failure=True)


def load_lpips(device: torch.device) -> Lpips:
    """LPIPS(VGG) from the ``lpips`` package, checked by scoring a probe pair.

    Raises:
        ModuleNotFoundError: naming ``lpips``, the package is not installed; anything else: it is broken or its weights fail.
    """
    import lpips

    model = lpips.LPIPS(net="vgg", verbose=False).to(device).eval().requires_grad_(False)
    probe = torch.zeros(1, 3, 32, 32, device=device)
    model(probe, probe)
    return model
