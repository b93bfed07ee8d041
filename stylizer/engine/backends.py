"""Diffusion backends: one interface over a pixel-space UNet and a latent UNet + VAE.

The sampler only talks to :class:`DiffusionBackend`; adding a backend never forks the loop.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from torch import nn

from ..config import GUIDE_DECODERS
from ..errors import ConfigError, ModelLoadError
from .ddim import StepTimes
from .optimization import EAGER, Optimizations, set_layout

# The sampler's guidance shifts ε; models trained to predict v are converted to ε in :meth:`eps`.
PREDICTION_TYPES = ("epsilon", "v_prediction")

# Frames are thumbnails while a job runs: decoding them at most this large (long side, px)
# costs a quarter of the decoder's work at 512 px and a sixteenth at 1024 px.
PREVIEW_MAX_SIDE = 256
# Above this side (px) the VAE encodes and decodes in overlapping tiles of this size, so a
# 1024 px result needs the decoder memory of a 768 px one (the guidance pass keeps every
# tile's activations for the backward pass, so tiling does not shrink that one).
VAE_TILE_SIDE = 768
# The model's own decoder: the default, and always the final image's (the other choice is "taesd").
VAE = GUIDE_DECODERS[0]

# Builds TAESD (a diffusers ``AutoencoderTiny``) on a device in a dtype; called when a job first asks for it.
TaesdLoader = Callable[[torch.device, torch.dtype], nn.Module]


class TextCondition(NamedTuple):
    """Text embeddings for the UNet's cross-attention, computed once per job.

    Attributes:
        embeds: (1, L, D) for a single pass (the empty prompt alone, or one text alone),
            or (2, L, D) = [empty prompt, text] for classifier-free guidance.
        cfg_scale: 0-dim tensor on the embeddings' device: ε = ε(∅) + cfg_scale·(ε(text) − ε(∅)),
            used only with two embeddings (a tensor, so a captured graph reads each job's own).
    """

    embeds: torch.Tensor
    cfg_scale: torch.Tensor


# What a backend's UNet is conditioned on: text embeddings, or nothing for unconditional models.
Condition = TextCondition | None


def downsampling(net: nn.Module) -> int:
    """Total downsampling factor of a diffusers UNet or VAE: 2 per block after the first."""
    return 2 ** (len(net.config.block_out_channels) - 1)


class DiffusionBackend(ABC):
    """What the guided DDIM loop needs from a diffusion model.

    Attributes:
        kind: ``"pixel"`` or ``"latent"``.
        multiple: every image side must be a multiple of this many pixels.
        grad_gain: scales the guidance gradient into pixel-equivalent units.
        conditions_on_text: the UNet reads text, so its inversion depends on the reference text.
    """

    kind: str = ""
    multiple: int = 1
    grad_gain: float = 1.0
    conditions_on_text: bool = False

    def __init__(self, scheduler_config: Mapping[str, Any]) -> None:
        config = dict(scheduler_config)
        self.prediction_type = config.get("prediction_type", "epsilon")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ModelLoadError(f"the model predicts {self.prediction_type!r}; only {' and '.join(PREDICTION_TYPES)} models are supported")
        # The scheduler always receives ε (see :meth:`to_epsilon`).
        config["prediction_type"] = "epsilon"
        self.scheduler_config = config

    @property
    @abstractmethod
    def networks(self) -> tuple[nn.Module, ...]:
        """The networks the guided step runs, for layout changes (see :func:`stylizer.engine.optimization.set_layout`)."""

    def new_scheduler(self) -> DDIMScheduler:
        """A fresh DDIM scheduler (schedulers hold per-job state, so never share one)."""
        return DDIMScheduler.from_config(self.scheduler_config)

    @property
    def dtype(self) -> torch.dtype:
        """The precision the denoiser runs in."""
        return self.networks[0].dtype

    @abstractmethod
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) image in [-1, 1] -> the space the UNet denoises."""

    @abstractmethod
    def decode(self, sample: torch.Tensor, optimizations: Optimizations = EAGER, decoder: str = VAE) -> torch.Tensor:
        """Differentiable inverse of :meth:`encode`; the networks run as ``optimizations`` says.

        ``decoder`` is a :data:`~stylizer.config.GUIDE_DECODERS` choice (``guide_decoder``): the
        model's own (``"vae"``, the default and always the final image's) or ``"taesd"``.
        """

    def preview(self, sample: torch.Tensor, decoder: str = VAE) -> torch.Tensor:
        """A cheap, non-differentiable decode for streamed frames, by ``decoder`` (see :meth:`decode`)."""
        with torch.no_grad():
            return self.decode(sample, decoder=decoder)

    def condition(self, styles: Sequence[tuple[str, float]], cfg_scale: float) -> Condition:
        """Per-job UNet conditioning for the style prompts and their weights (``None`` for unconditional models)."""
        return None

    def inversion_condition(self, reference: str) -> Condition:
        """Conditioning used while DDIM-inverting the input."""
        return None

    @abstractmethod
    def eps(self, sample: torch.Tensor, times: StepTimes, cond: Condition, optimizations: Optimizations = EAGER) -> torch.Tensor:
        """Predicted noise ε(x_t, t) in ``sample``'s dtype, with t and its ᾱ from ``times`` (device tensors, no host
        synchronisation); the networks run as ``optimizations`` says."""

    def to_epsilon(self, output: torch.Tensor, sample: torch.Tensor, times: StepTimes) -> torch.Tensor:
        """The model's raw output as ε: unchanged for ε-models, ε = √ᾱ·v + √(1-ᾱ)·x_t for v-models."""
        if self.prediction_type == "epsilon":
            return output
        sqrt_ab, sqrt_1mab = times.unet
        return sqrt_ab * output + sqrt_1mab * sample


class PixelBackend(DiffusionBackend):
    """An unconditional diffusers ``UNet2DModel`` denoising RGB pixels in [-1, 1].

    Args:
        unet: the denoiser; ``unet(x, t).sample`` is ε (or ε and a variance, which is dropped).
        scheduler_config: the checkpoint's scheduler config (any diffusers scheduler class).
        multiple: the UNet's total downsampling factor (default: read from its config).
    """

    kind = "pixel"

    def __init__(self, unet: nn.Module, scheduler_config: Mapping[str, Any], multiple: int | None = None) -> None:
        super().__init__(scheduler_config)
        self.unet = unet.eval().requires_grad_(False)
        self.multiple = multiple or downsampling(unet)

    @property
    def networks(self) -> tuple[nn.Module, ...]:
        return (self.unet,)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return image

    def decode(self, sample: torch.Tensor, optimizations: Optimizations = EAGER, decoder: str = VAE) -> torch.Tensor:
        """The sample itself: pixels need no decoder, whichever ``decoder`` is asked for."""
        return sample

    def eps(self, sample: torch.Tensor, times: StepTimes, cond: Condition, optimizations: Optimizations = EAGER) -> torch.Tensor:
        out = optimizations.network(self.unet)(sample, times.t).sample
        # Models trained with a learned variance (e.g. OpenAI's) output [ε, v]; DDIM needs ε only.
        # Under autocast the UNet answers in half precision; the DDIM arithmetic stays in the sample's.
        return self.to_epsilon(out[:, : sample.shape[1]].to(sample.dtype), sample, times)


class LatentBackend(DiffusionBackend):
    """A Stable Diffusion 1.x/2.x UNet denoising VAE latents, conditioned on text.

    Latents stay float32 in the sampler (the DDIM arithmetic and the guidance shift);
    the UNet, VAE and text encoder may run in half precision, and every output is cast
    back to float32 at the boundary, so the CLIP and VGG losses always see float32 pixels.

    Args:
        unet: a diffusers ``UNet2DConditionModel``.
        vae: a diffusers ``AutoencoderKL``.
        text_encoder: a transformers ``CLIPTextModel`` whose hidden size is the UNet's cross-attention size.
        tokenizer: the matching transformers CLIP tokenizer.
        scheduler_config: the checkpoint's scheduler config.
        preview_max_side: long side (px) above which frames decode a downscaled latent.
        taesd_loader: builds TAESD, a tiny autoencoder on the VAE's latents, for ``decoder="taesd"``;
            it runs once, when a job first asks for it, so models that never use it need no files.
    """

    kind = "latent"
    conditions_on_text = True

    def __init__(
        self,
        unet: nn.Module,
        vae: nn.Module,
        text_encoder: nn.Module,
        tokenizer: Any,
        scheduler_config: Mapping[str, Any],
        preview_max_side: int = PREVIEW_MAX_SIDE,
        taesd_loader: TaesdLoader | None = None,
    ) -> None:
        super().__init__(scheduler_config)
        self.unet = unet.eval().requires_grad_(False)
        self.vae = vae.eval().requires_grad_(False)
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.preview_max_side = preview_max_side
        self.vae_factor = downsampling(vae)
        self.multiple = self.vae_factor * downsampling(unet)
        # The losses are means over pixels, and the sampler already rescales their gradient to
        # pixel units by the image area. A latent element decodes to a vae_factor x vae_factor
        # pixel block, so its gradient sums that many pixel gradients (the chain rule through
        # the decoder): dividing by the block area (1/64 for SD's 8x VAE) puts one latent
        # element's push on the same per-pixel scale as a pixel backend's. The max_shift trust
        # region then caps whatever the decoder's Jacobian adds on top.
        self.grad_gain = 1.0 / self.vae_factor**2
        self.scaling_factor = float(vae.config.scaling_factor)
        self.vae.enable_tiling()
        self.vae.tile_sample_min_size = VAE_TILE_SIDE
        self.vae.tile_latent_min_size = VAE_TILE_SIDE // self.vae_factor
        self.max_tokens = min(tokenizer.model_max_length, text_encoder.config.max_position_embeddings)
        self._taesd_loader = taesd_loader
        self._taesd: nn.Module | None = None
        self._taesd_lock = threading.Lock()

    @property
    def networks(self) -> tuple[nn.Module, ...]:
        """The UNet and the VAE, and TAESD once a job has loaded it."""
        return (self.unet, self.vae) if self._taesd is None else (self.unet, self.vae, self._taesd)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] -> scaled latent (the posterior mean: deterministic, as inversion needs)."""
        latent = self.vae.encode(image.to(self.dtype)).latent_dist.mode()
        return latent.float() * self.scaling_factor

    def decode(self, sample: torch.Tensor, optimizations: Optimizations = EAGER, decoder: str = VAE) -> torch.Tensor:
        """Scaled latent -> float32 image in about [-1, 1], differentiable through the decoder.

        Each autoencoder reads the latent divided by its own scaling factor: the VAE's (0.18215
        for SD), and TAESD's 1, for it was distilled on the scaled latents the UNet denoises.
        diffusers' ``AutoencoderTiny.decode`` already maps TAESD's [0, 1] output to [-1, 1].
        """
        if decoder not in GUIDE_DECODERS:  # a misspelt name must not fall back to the VAE
            raise ConfigError(f"guide_decoder must be one of {', '.join(GUIDE_DECODERS)}, got {decoder!r}")
        net = self.vae if decoder == VAE else self.taesd(optimizations)
        decode = optimizations.network(net, "decode")
        return decode((sample / float(net.config.scaling_factor)).to(self.dtype)).sample.float()

    def preview(self, sample: torch.Tensor, decoder: str = VAE) -> torch.Tensor:
        """Decode a latent by ``decoder``, area-downscaled so the frame's long side is at most ``preview_max_side`` px."""
        height, width = sample.shape[-2:]
        scale = self.preview_max_side / (self.vae_factor * max(height, width))
        if scale < 1:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            sample = F.interpolate(sample, size=size, mode="area")
        return super().preview(sample, decoder)

    def taesd(self, optimizations: Optimizations = EAGER) -> nn.Module:
        """TAESD, loaded on the first call and kept (on this backend's device, in its dtype).

        Args:
            optimizations: the job's; a TAESD loaded mid-job takes their weight layout, as the other networks have.

        Raises:
            ConfigError: this backend has no TAESD.
            ModelLoadError: its files are missing, or it does not fit the VAE.
        """
        with self._taesd_lock:
            if self._taesd is None:
                if self._taesd_loader is None:
                    raise ConfigError("guide_decoder taesd: this model has no TAESD to decode with; set guide_decoder to vae")
                taesd = self._taesd_loader(self.unet.device, self.dtype).eval().requires_grad_(False)
                self._check_fits(taesd)
                set_layout([taesd], optimizations.channels_last)
                self._taesd = taesd
            return self._taesd

    def _check_fits(self, taesd: nn.Module) -> None:
        """Raise :class:`ModelLoadError` unless ``taesd`` decodes latents of the VAE's channels and downsampling."""
        ours = (self.vae.config.latent_channels, self.vae_factor)
        theirs = (taesd.config.latent_channels, downsampling(taesd))
        if theirs != ours:
            raise ModelLoadError(
                f"TAESD does not fit this model: it decodes {theirs[0]}-channel latents {theirs[1]}x, the VAE's are {ours[0]}-channel {ours[1]}x"
            )

    @torch.no_grad()
    def embed(self, texts: list[str]) -> torch.Tensor:
        """(len(texts), L, D) last hidden states of the text encoder, as SD 1.x and 2.x condition on."""
        tokens = self.tokenizer(texts, padding="max_length", max_length=self.max_tokens, truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(tokens.to(self.text_encoder.device))[0].to(self.dtype)

    def condition(self, styles: Sequence[tuple[str, float]], cfg_scale: float) -> TextCondition:
        """Classifier-free guidance on the style prompts, with as few UNet passes as the scale allows.

        ``cfg_scale`` 0, or no prompt at all (a style picture alone), is the unconditional
        (empty-prompt) ε alone, so only CLIP guides; 1 is the conditional ε alone; anything
        else runs both in one batch. Several prompts condition on the weighted mean of their
        text embeddings (``styles``' weights sum to 1).
        """
        if cfg_scale == 0 or not styles:
            return self._condition(self.embed([""]), cfg_scale)
        text = self.embed([styles[0][0]]) if len(styles) == 1 else sum(weight * self.embed([prompt]) for prompt, weight in styles)
        return self._condition(text if cfg_scale == 1 else torch.cat([self.embed([""]), text]), cfg_scale)

    def _condition(self, embeds: torch.Tensor, cfg_scale: float) -> TextCondition:
        return TextCondition(embeds, torch.tensor(cfg_scale, dtype=torch.float32, device=embeds.device))

    def inversion_condition(self, reference: str) -> TextCondition:
        """Invert with the reference text (it describes the input), without classifier-free guidance.

        DDIM inversion is only near-exact at guidance scale 1, and inverting with a
        description of the source is what prompt-to-prompt and null-text inversion do.
        The empty prompt (``condition(..., cfg_scale=0)``) would work too; it matches the
        sampler exactly only when the job also runs with ``cfg_scale`` 0.
        """
        return self._condition(self.embed([reference]), 1.0)

    def eps(self, sample: torch.Tensor, times: StepTimes, cond: TextCondition, optimizations: Optimizations = EAGER) -> torch.Tensor:
        """Predicted ε(x_t, t | text), in float32; differentiable with respect to ``sample``."""
        batch = cond.embeds.shape[0]
        x = sample.to(self.dtype).expand(batch, -1, -1, -1)
        unet = optimizations.network(self.unet)
        out = unet(x, times.t, encoder_hidden_states=cond.embeds).sample.float()
        if batch > 1:
            uncond, text = out.chunk(2)
            out = uncond + cond.cfg_scale * (text - uncond)
        return self.to_epsilon(out, sample, times)


class LatentParts(NamedTuple):
    """The components of a Stable Diffusion model, as loaded (before they move to a device)."""

    unet: nn.Module  # diffusers UNet2DConditionModel
    vae: nn.Module  # diffusers AutoencoderKL
    text_encoder: nn.Module  # transformers CLIPTextModel
    tokenizer: Any  # transformers CLIPTokenizer
    scheduler_config: dict[str, Any]
