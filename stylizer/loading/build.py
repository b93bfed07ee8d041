"""The one place that builds every model family, from files the fetchers made local.

* diffusion backends: diffusers ``UNet2DModel`` + scheduler (``pixel``), or a Stable
  Diffusion 1.x/2.x ``UNet2DConditionModel`` + ``AutoencoderKL`` + CLIP text encoder
  (``latent``), from a Hugging Face repo id or a local folder; or tiny random ones of
  either kind (``tiny``, ``tiny-latent``);
* TAESD for ``guide_decoder="taesd"``: a diffusers ``AutoencoderTiny``, built when a job first asks for it;
* guidance CLIP: open_clip (``ViT-B-32``/``openai`` by default);
* content VGG16: torchvision ``VGG16_Weights.IMAGENET1K_V1`` features.

Safetensors are read where they exist, and anything else with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import open_clip
import torch
from diffusers import AutoencoderKL, AutoencoderTiny, DDIMScheduler, UNet2DConditionModel, UNet2DModel
from torchvision.models.vgg import cfgs as vgg_layer_configs
from torchvision.models.vgg import make_layers
from transformers import CLIPTextModel, CLIPTokenizer

from ..engine.backends import DiffusionBackend, LatentBackend, LatentParts, PixelBackend
from ..engine.encoders import ClipEncoder, VggEncoder
from .devices import latent_dtype
from .fetch import clip_checkpoint, explained_failures, latent_folder, pixel_folder, taesd_failures, taesd_folder, vgg_checkpoint
from .presets import CLIP_MODELS, TINY, TINY_LATENT, check_clip, detect_backend
from .tiny import TINY_SEED, seeded, tiny_latent_parts, tiny_pixel_parts, tiny_taesd_folder, tiny_vgg_features

open_clip.add_model_config(Path(__file__).with_name("model_configs"))


def load_backend(source: str, device: torch.device, kind: str | None = None, taesd: str | None = None) -> DiffusionBackend:
    """Build the diffusion backend for ``source`` on ``device``.

    Args:
        source: ``"tiny"``, ``"tiny-latent"``, a diffusers folder or a repo id.
        device: where the networks run.
        kind: ``"pixel"`` or ``"latent"``; detected from the layout when omitted.
        taesd: a latent model's TAESD (see :attr:`Preset.taesd`), loaded only when a job asks for it; None: it has none.
    """
    if (kind or detect_backend(source)) == "latent":
        return _load_latent_backend(source, device, taesd)
    unet, scheduler_config = tiny_pixel_parts() if source == TINY else _load_pixel_unet(source)
    return PixelBackend(unet.to(device), scheduler_config)


def _load_pixel_unet(source: str) -> tuple[UNet2DModel, dict]:
    """Load a ``UNet2DModel`` and its scheduler config from a flat or pipeline-style layout."""
    with explained_failures(f"diffusion model {source!r}", source):
        folder, subfolder = pixel_folder(source)
        unet = UNet2DModel.from_pretrained(folder, subfolder=subfolder)
        scheduler_config = DDIMScheduler.load_config(folder, subfolder="scheduler" if subfolder else None)
    return unet, dict(scheduler_config)


def _load_latent_backend(source: str, device: torch.device, taesd: str | None) -> LatentBackend:
    """The latent backend for ``"tiny-latent"``, a Stable Diffusion folder or a repo id, with ``taesd`` to load on demand.

    Attention runs through PyTorch's scaled_dot_product_attention (diffusers' default on
    torch 2), which never materialises the attention matrix, so slicing is not needed.
    """
    dtype = latent_dtype(device)
    parts = tiny_latent_parts() if source == TINY_LATENT else _load_latent_parts(source, dtype)
    # Loaded parts are already in ``dtype``; casting them again only makes diffusers warn.
    nets = (parts.unet, parts.vae, parts.text_encoder)
    unet, vae, text_encoder = (net.to(device) if net.dtype == dtype else net.to(device, dtype) for net in nets)
    loader = None if taesd is None else functools.partial(load_taesd, taesd, model=source)
    return LatentBackend(unet, vae, text_encoder, parts.tokenizer, parts.scheduler_config, taesd_loader=loader)


def _load_latent_parts(source: str, dtype: torch.dtype) -> LatentParts:
    """Load every component from the folder (or the Hub snapshot) in ``dtype``."""
    with explained_failures(f"Stable Diffusion model {source!r}", source):
        root = latent_folder(source)
        return LatentParts(
            UNet2DConditionModel.from_pretrained(root, subfolder="unet", torch_dtype=dtype),
            AutoencoderKL.from_pretrained(root, subfolder="vae", torch_dtype=dtype),
            CLIPTextModel.from_pretrained(root, subfolder="text_encoder", dtype=dtype),
            CLIPTokenizer.from_pretrained(root, subfolder="tokenizer"),
            dict(DDIMScheduler.load_config(root, subfolder="scheduler")),
        )


def load_taesd(source: str, device: torch.device, dtype: torch.dtype, model: str | None = None) -> AutoencoderTiny:
    """TAESD as a diffusers ``AutoencoderTiny`` on ``device`` in ``dtype``, from safetensors only.

    Args:
        source: a repo id (e.g. madebyollin/taesd), a folder with its files at the root, or
            ``"tiny-latent"``: the tiny preset's random one, saved in that layout and read back alike.
        device: where it runs.
        dtype: the latent networks' precision.
        model: the ``--model`` value whose download fetches it, for the error's hint.
    """
    with taesd_failures(source, model):
        folder = tiny_taesd_folder() if source == TINY_LATENT else taesd_folder(source)
        # AutoencoderTiny writes a block_out_channels key into its config that its own loader then warns about.
        with _quiet_logging(True):
            taesd = AutoencoderTiny.from_pretrained(folder, torch_dtype=dtype, use_safetensors=True)
    return taesd.to(device)


def load_clip(name: str, device: torch.device, pretrained: str | None = None) -> ClipEncoder:
    """Build a guidance CLIP.

    Args:
        name: key of :data:`CLIP_MODELS`.
        device: target device.
        pretrained: override the weights: an open_clip tag or a checkpoint file
            (safetensors, or a state dict read with ``weights_only=True``).
    """
    check_clip(name)
    arch, tag = CLIP_MODELS[name]
    tag = pretrained or tag
    tag_cfg = (open_clip.get_pretrained_cfg(arch, tag) or {}) if tag else {}
    with explained_failures(f"CLIP {arch}/{tag}"):
        checkpoint = clip_checkpoint(tag_cfg) if tag_cfg else tag
        encoder = build_clip(arch, checkpoint, tag_cfg, label=f"{arch}/{tag}" if tag else None)
    return encoder.to(device)


def build_clip(arch: str, checkpoint: str | None = None, tag_cfg: Mapping[str, Any] | None = None, label: str | None = None) -> ClipEncoder:
    """An open_clip architecture as a :class:`ClipEncoder`, on the CPU.

    Args:
        arch: open_clip model name.
        checkpoint: weights file; ``None`` gives seeded random weights.
        tag_cfg: the pretrained tag's config (QuickGELU, normalisation), if any.
        label: name for messages (default: ``"<arch> (random weights)"``).
    """
    tag_cfg = tag_cfg or {}
    with seeded(TINY_SEED), _quiet_logging(checkpoint is None):
        model = open_clip.create_model(arch, pretrained=checkpoint, force_quick_gelu=bool(tag_cfg.get("quick_gelu")), weights_only=True)
    size = model.visual.image_size
    side = size[0] if isinstance(size, (tuple, list)) else size
    pcfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    mean = tuple(tag_cfg.get("mean") or pcfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(tag_cfg.get("std") or pcfg.get("std", open_clip.OPENAI_DATASET_STD))
    return ClipEncoder(model, open_clip.get_tokenizer(arch), side, mean, std, label or f"{arch} (random weights)")


def load_vgg(device: torch.device, tiny: bool = False) -> VggEncoder:
    """VGG16 features with ImageNet weights (torchvision's cache), or a narrow random one when ``tiny``."""
    if tiny:
        return VggEncoder(tiny_vgg_features()).to(device)
    path = vgg_checkpoint()
    with explained_failures(f"VGG16 weights at {path}"):
        state = torch.load(path, map_location="cpu", weights_only=True)
        features = make_layers(vgg_layer_configs["D"])
        features.load_state_dict({k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")})
    return VggEncoder(features).to(device)


@contextlib.contextmanager
def _quiet_logging(quiet: bool) -> Iterator[None]:
    """Silence warnings known not to apply: open_clip's 'initialized randomly' where random weights are intended, and the like."""
    if not quiet:
        yield
        return
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
