"""The per-job style objective: the four losses bound to one input image and one prompt.

Built once per job, it caches what does not change between steps (the input's
CLIP embedding and VGG features, the text direction) and evaluates only the
terms whose weight is non-zero.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import losses
from .config import StyleConfig
from .encoders import ClipEncoder, VggEncoder
from .optimization import EAGER, Optimizations

TERMS = ("dir", "patch", "content", "tv")
DIRECTIONAL = ("dir", "patch")
# A direction shorter than this is none (a style picture equal to the input).
DIRECTION_EPS = 1e-6


@dataclass(frozen=True)
class SourceFeatures:
    """What the losses compare against: the input picture's CLIP embedding and VGG16 features.

    Attributes:
        embed: (1, D) unit CLIP image embedding.
        vgg: the conv4_2 and conv5_2 activations.
    """

    embed: torch.Tensor
    vgg: tuple[torch.Tensor, ...]

    def to(self, device: torch.device | None) -> SourceFeatures:
        """These features on ``device`` (unchanged for None)."""
        if device is None:
            return self
        return SourceFeatures(self.embed.to(device), tuple(t.to(device) for t in self.vgg))


def source_features(clip: ClipEncoder, vgg: VggEncoder, source: torch.Tensor, optimizations: Optimizations = EAGER) -> SourceFeatures:
    """The CLIP embedding and VGG16 features of ``source`` ((1, 3, H, W) in [0, 1]).

    They use the guided step's precision and layout, so that an unchanged image has (near)
    zero content loss, but never compile: a call made once a job would pay a compilation
    (a minute on a real-size model, per grad mode and batch size) for nothing.
    """
    uncompiled = dataclasses.replace(optimizations, compile=False)
    with torch.no_grad():
        return SourceFeatures(clip.encode_images(source, uncompiled), tuple(uncompiled.network(vgg)(source)))


def style_direction(clip: ClipEncoder, config: StyleConfig, source_embed: torch.Tensor, style_embed: torch.Tensor | None) -> torch.Tensor:
    """ΔT, the unit direction the picture's embedding should move along.

    * Text: from the reference to the prompt, averaged over prompt templates (CLIPstyler);
      several prompts blend as the weighted mean of their unit directions, normalised.
    * A style picture: from the input's embedding to the style picture's, the image-to-image
      direction of StyleGAN-NADA's image targets and DiffuseIT's image-guided mode.
    * Both: ``(1 − λ)·ΔT_text + λ·ΔT_picture``, normalised, with λ = ``style_image_weight``.

    A style picture identical to the input gives the zero vector (never NaN).
    """
    styles = config.styles
    text = None
    if len(styles) == 1:
        text = clip.text_direction(styles[0][0], config.reference)
    elif styles:
        text = F.normalize(sum(weight * clip.text_direction(prompt, config.reference) for prompt, weight in styles), dim=-1)
    if style_embed is None:
        assert text is not None, "a job needs a prompt or a style picture"
        return text
    picture = F.normalize((style_embed - source_embed).flatten(), dim=-1)
    if text is None:
        return picture
    blend = config.style_image_weight
    return F.normalize((1 - blend) * text + blend * picture, dim=-1)


class StyleObjective:
    """L = λ_dir·L_dir + λ_patch·L_patch + λ_c·L_content + λ_tv·L_tv for one job.

    Args:
        clip: guidance CLIP.
        vgg: content-feature VGG16.
        source: (1, 3, H, W) input image in [0, 1].
        config: validated job settings (weights, patch settings, seed).
        features: the source's CLIP embedding and VGG features when already known (see
            :mod:`stylizer.prepared`); computed from ``source`` otherwise.
        region: (1, 1, H, W) weights in [0, 1]: the losses then see ``region``·image +
            (1 − ``region``)·source, and the patch crops are centred where it is on (see :mod:`stylizer.mask`).
        style_embed: (1, D) CLIP embedding of a style picture, whose direction from the source
            joins (or, without a prompt, replaces) the text's (see :func:`style_direction`).
        optimizations: how the networks run inside the guided step (see :mod:`stylizer.optimization`). The
            source's features and the frames' loss readings use the same precision and layout,
            so that an unchanged image has (near) zero content loss, but never compile: a call
            made once a job or once a frame would pay a compilation (a minute on a real-size
            model, per grad mode and batch size) for nothing.
    """

    def __init__(
        self,
        clip: ClipEncoder,
        vgg: VggEncoder,
        source: torch.Tensor,
        config: StyleConfig,
        optimizations: Optimizations = EAGER,
        features: SourceFeatures | None = None,
        *,
        region: torch.Tensor | None = None,
        style_embed: torch.Tensor | None = None,
    ) -> None:
        self.clip = clip
        self.vgg = vgg
        self.config = config
        self.source = source
        self.region = region
        self.crop_where = None if region is None else region[0, 0].detach().float().cpu()
        self.optimizations = optimizations
        self.uncompiled = dataclasses.replace(optimizations, compile=False)
        self.weights = config.weights
        self.crop_generator = torch.Generator().manual_seed(config.seed + 1)
        features = features or source_features(clip, vgg, source, optimizations)
        self.source_embed, self.source_features = features.embed, list(features.vgg)
        with torch.no_grad():
            self.delta_text = style_direction(clip, config, self.source_embed, style_embed)
        # A style picture identical to the input points nowhere: the directional terms then have nothing to say.
        self.has_direction = bool(self.delta_text.norm() > DIRECTION_EPS)

    @property
    def active(self) -> tuple[str, ...]:
        """Terms with a non-zero weight that can guide (the only ones computed while guiding)."""
        return tuple(t for t in TERMS if self.weights[t] > 0 and self._can_guide(t))

    def _can_guide(self, term: str) -> bool:
        if term in DIRECTIONAL and not self.has_direction:
            return False
        return term != "patch" or self.config.n_patches > 0

    def terms(
        self, image: torch.Tensor, names: tuple[str, ...] = TERMS, optimizations: Optimizations | None = None
    ) -> dict[str, torch.Tensor]:
        """Unweighted loss terms of ``image`` ((1, 3, H, W) in [0, 1]), for the requested names.

        Args:
            optimizations: how the networks run (default: as in the guided step).
        """
        cfg = self.config
        optimizations = optimizations or self.optimizations
        if self.region is not None:
            image = self.region * image + (1 - self.region) * self.source
        out: dict[str, torch.Tensor] = {}
        crops = None
        if "patch" in names and cfg.n_patches > 0:
            crops = losses.random_perspective_crops(
                image, cfg.n_patches, cfg.patch_size, self.clip.image_size, cfg.distortion, self.crop_generator, self.crop_where
            )
        image_embed, crop_embeds = self._embed(image if "dir" in names else None, crops, optimizations)
        if image_embed is not None:
            out["dir"] = losses.directional_loss(image_embed - self.source_embed, self.delta_text).mean()
        if crop_embeds is not None:
            out["patch"] = losses.patch_directional_loss(crop_embeds, self.source_embed, self.delta_text, cfg.threshold)
        if "content" in names:
            out["content"] = losses.content_loss(self._features(image, optimizations), self.source_features)
        if "tv" in names:
            out["tv"] = losses.total_variation(image)
        return out

    def _embed(
        self, image: torch.Tensor | None, crops: torch.Tensor | None, optimizations: Optimizations
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """CLIP embeddings of the whole image and of its crops (either may be None).

        With ``batch_clip`` both go through CLIP as one batch: one pass over the weights
        instead of two, and one set of kernel launches.
        """
        if optimizations.batch_clip and image is not None and crops is not None:
            embeds = self.clip.encode_images(torch.cat([self.clip.fit(image), crops]), optimizations)
            return embeds[:1], embeds[1:]
        return (
            None if image is None else self.clip.encode_images(image, optimizations),
            None if crops is None else self.clip.encode_images(crops, optimizations),
        )

    def _features(self, image: torch.Tensor, optimizations: Optimizations) -> list[torch.Tensor]:
        """The VGG16 content features of ``image``."""
        return optimizations.network(self.vgg)(image)

    def weighted_sum(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """Σ λ_k·term_k over the given terms."""
        return sum(self.weights[name] * value for name, value in terms.items())

    @torch.no_grad()
    def measure(self, image: torch.Tensor) -> dict[str, float]:
        """All four unweighted terms of ``image`` as floats (patch only when patches are on)."""
        return {name: float(value) for name, value in self.terms(image, optimizations=self.uncompiled).items()}
