"""The per-job style objective: the four losses bound to one input image and one prompt.

Built once per job, it caches what does not change between steps (the input's
CLIP embedding and VGG features, the text direction) and evaluates only the
terms whose weight is non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..config import StyleConfig
from ..config.terms import DIRECTIONAL, TERMS
from . import losses
from .encoders import ClipEncoder, VggEncoder
from .optimization import EAGER, Optimizations

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

    A call made once a job: it runs as :meth:`Optimizations.single_call` says.
    """
    once = optimizations.single_call()
    with torch.no_grad():
        return SourceFeatures(clip.encode_images(source, once), tuple(once.network(vgg)(source)))


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


class LossTensors(NamedTuple):
    """Everything a job's loss reads that may change from job to job, as device tensors.

    A captured CUDA graph reads its own copy of these; a new job copies its values in
    (see :mod:`stylizer.engine.graphs`), so sliders and pictures change without a new capture.

    Attributes:
        source: (1, 3, H, W) input picture in [0, 1].
        source_embed: (1, D) its unit CLIP embedding.
        source_vgg: its VGG16 content features.
        delta_text: (D,) the unit style direction.
        weights: (4,) λ of each term, in :data:`TERMS` order.
        threshold: 0-dim patch threshold τ.
        distortion: 0-dim perspective strength of the crops.
        region: (1, 1, H, W) mask weights, or None.
        crop_cdf: cumulative mask weights where crops are centred, or None.
    """

    source: torch.Tensor
    source_embed: torch.Tensor
    source_vgg: tuple[torch.Tensor, ...]
    delta_text: torch.Tensor
    weights: torch.Tensor
    threshold: torch.Tensor
    distortion: torch.Tensor
    region: torch.Tensor | None
    crop_cdf: torch.Tensor | None


@dataclass(frozen=True)
class LossPlan:
    """What shapes the loss's work (a captured graph is specialised on it).

    Attributes:
        terms: the terms computed, a subset of :data:`TERMS` in its order.
        patch_size: crop window side in px.
        clip_size: CLIP's input side in px.
    """

    terms: tuple[str, ...]
    patch_size: int
    clip_size: int


def loss_terms(
    clip: ClipEncoder,
    vgg: VggEncoder,
    image: torch.Tensor,
    plan: LossPlan,
    tensors: LossTensors,
    crop_draws: torch.Tensor | None,
    optimizations: Optimizations,
) -> dict[str, torch.Tensor]:
    """The unweighted loss terms of ``image`` ((1, 3, H, W) in [0, 1]) named in ``plan``, as 0-dim tensors.

    A pure function of its tensors: no host synchronisation, no randomness of its own (the
    crops come from ``crop_draws``, see :func:`stylizer.engine.losses.crop_uniforms`).
    """
    if tensors.region is not None:
        image = tensors.region * image + (1 - tensors.region) * tensors.source
    out: dict[str, torch.Tensor] = {}
    crops = None
    if "patch" in plan.terms:
        crops = losses.random_perspective_crops(image, plan.patch_size, plan.clip_size, tensors.distortion, crop_draws, tensors.crop_cdf)
    image_embed, crop_embeds = _embed(clip, image if "dir" in plan.terms else None, crops, optimizations)
    if image_embed is not None:
        out["dir"] = losses.directional_loss(image_embed - tensors.source_embed, tensors.delta_text).mean()
    if crop_embeds is not None:
        out["patch"] = losses.patch_directional_loss(crop_embeds, tensors.source_embed, tensors.delta_text, tensors.threshold)
    if "content" in plan.terms:
        out["content"] = losses.content_loss(optimizations.network(vgg)(image), tensors.source_vgg)
    if "tv" in plan.terms:
        out["tv"] = losses.total_variation(image)
    return out


def weighted_sum(terms: dict[str, torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Σ λ_k·term_k over the given terms, with λ from ``weights`` in :data:`TERMS` order."""
    return sum(weights[TERMS.index(name)] * value for name, value in terms.items())


def _embed(
    clip: ClipEncoder, image: torch.Tensor | None, crops: torch.Tensor | None, optimizations: Optimizations
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """CLIP embeddings of the whole image and of its crops (either may be None).

    With ``batch_clip`` both go through CLIP as one batch: one pass over the weights
    instead of two, and one set of kernel launches.
    """
    if optimizations.batch_clip and image is not None and crops is not None:
        embeds = clip.encode_images(torch.cat([clip.fit(image), crops]), optimizations)
        return embeds[:1], embeds[1:]
    return (
        None if image is None else clip.encode_images(image, optimizations),
        None if crops is None else clip.encode_images(crops, optimizations),
    )


class StyleObjective:
    """L = λ_dir·L_dir + λ_patch·L_patch + λ_c·L_content + λ_tv·L_tv for one job.

    It holds the job's :class:`LossTensors` and its crop generator; the loss itself is
    :func:`loss_terms`, a pure function the guided step (eager or captured) calls.

    Args:
        clip: guidance CLIP.
        vgg: content-feature VGG16.
        source: (1, 3, H, W) input image in [0, 1].
        config: validated job settings (weights, patch settings, seed).
        optimizations: how the networks run inside the guided step (see :mod:`stylizer.engine.optimization`). The
            source's features and the frames' loss readings, made once a job or once a frame, run as
            its :meth:`~stylizer.engine.optimization.Optimizations.single_call` says.
        features: the source's CLIP embedding and VGG features when already known (see
            :mod:`stylizer.engine.prepared`); computed from ``source`` otherwise.
        region: (1, 1, H, W) weights in [0, 1]: the losses then see ``region``·image +
            (1 − ``region``)·source, and the patch crops are centred where it is on (see :mod:`stylizer.engine.mask`).
        style_embed: (1, D) CLIP embedding of a style picture, whose direction from the source
            joins (or, without a prompt, replaces) the text's (see :func:`style_direction`).
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
        self.optimizations = optimizations
        self.single_call = optimizations.single_call()
        self.weights = config.weights
        device = source.device
        # Drawn on the job's device: crops never wait for a host-side copy.
        self.crop_generator = torch.Generator(device=device).manual_seed(config.seed + 1)
        features = features or source_features(clip, vgg, source, optimizations)
        with torch.no_grad():
            delta_text = style_direction(clip, config, features.embed, style_embed)
        # A style picture identical to the input points nowhere: the directional terms then have nothing to say.
        self.has_direction = bool(delta_text.norm() > DIRECTION_EPS)
        scalar = lambda value: torch.tensor(value, dtype=torch.float32, device=device)  # noqa: E731
        self.tensors = LossTensors(
            source=source,
            source_embed=features.embed,
            source_vgg=tuple(features.vgg),
            delta_text=delta_text,
            weights=torch.tensor([self.weights[name] for name in TERMS], dtype=torch.float32, device=device),
            threshold=scalar(config.threshold),
            distortion=scalar(config.distortion),
            region=region,
            crop_cdf=None if region is None else losses.crop_cdf(region[0, 0].detach()),
        )

    @property
    def active(self) -> tuple[str, ...]:
        """Terms with a non-zero weight that can guide (the only ones computed while guiding)."""
        return tuple(t for t in TERMS if self.weights[t] > 0 and self._can_guide(t))

    def _can_guide(self, term: str) -> bool:
        if term in DIRECTIONAL and not self.has_direction:
            return False
        return term != "patch" or self.config.n_patches > 0

    def plan(self, names: tuple[str, ...]) -> LossPlan:
        """The :class:`LossPlan` computing ``names`` (patch only when there are crops)."""
        terms = tuple(t for t in TERMS if t in names and (t != "patch" or self.config.n_patches > 0))
        return LossPlan(terms, self.config.patch_size, self.clip.image_size)

    def crop_draws(self, plan: LossPlan | None) -> torch.Tensor | None:
        """The crop draws of one evaluation of ``plan`` from the job's generator (None when it has no patch term)."""
        if plan is None or "patch" not in plan.terms:
            return None
        return losses.crop_uniforms(self.config.n_patches, self.crop_generator)

    def terms(
        self, image: torch.Tensor, names: tuple[str, ...] = TERMS, optimizations: Optimizations | None = None
    ) -> dict[str, torch.Tensor]:
        """Unweighted loss terms of ``image`` ((1, 3, H, W) in [0, 1]), for the requested names, with fresh crops.

        Args:
            optimizations: how the networks run (default: as in the guided step).
        """
        plan = self.plan(names)
        draws = self.crop_draws(plan)
        return loss_terms(self.clip, self.vgg, image, plan, self.tensors, draws, optimizations or self.optimizations)

    def weighted_sum(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """Σ λ_k·term_k over the given terms."""
        return weighted_sum(terms, self.tensors.weights)

    @torch.no_grad()
    def measure(self, image: torch.Tensor) -> dict[str, float]:
        """All four unweighted terms of ``image`` as floats (patch only when patches are on)."""
        return {name: float(value) for name, value in self.terms(image, optimizations=self.single_call).items()}
