"""Model presets and the one place that builds every model family.

* diffusion backends: diffusers ``UNet2DModel`` + scheduler (``pixel``), or a Stable
  Diffusion 1.x/2.x ``UNet2DConditionModel`` + ``AutoencoderKL`` + CLIP text encoder
  (``latent``), from a preset, a Hugging Face repo id or a local folder; or tiny random
  ones of either kind (``tiny``, ``tiny-latent``);
* guidance CLIP: open_clip (``ViT-B-32``/``openai`` by default);
* content VGG16: torchvision ``VGG16_Weights.IMAGENET1K_V1`` features.

Weights come through the libraries' own caches (``HF_HOME``, ``TORCH_HOME``) and
are held in memory once per (model, device). A failed download raises
:class:`ModelLoadError` naming the model and how to fetch it; nothing ever falls
back to the untrained ``tiny`` models silently.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import open_clip
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel, UNet2DModel
from torchvision.models.vgg import cfgs as vgg_layer_configs
from torchvision.models.vgg import make_layers
from transformers import CLIPTextModel, CLIPTokenizer

from . import hub
from .backends import DiffusionBackend, LatentBackend, LatentParts, PixelBackend
from .encoders import ClipEncoder, VggEncoder
from .errors import ConfigError
from .tiny import TINY, TINY_LATENT, TINY_SEED, seeded, tiny_latent_parts, tiny_pixel_parts, tiny_vgg_features
from .weights import clip_checkpoint, detect_backend, explained_failures, latent_folder, pixel_folder, vgg_checkpoint

PIXEL_SIZE = 256

LATENT_SIZE = 512

TINY_CLIP_ARCH = "stylizer-tiny-clip"

open_clip.add_model_config(Path(__file__).with_name("model_configs"))

# Guidance CLIPs: name -> (open_clip architecture, pretrained tag).
CLIP_MODELS = {
    "ViT-B-32": ("ViT-B-32", "openai"),
    "ViT-B-16": ("ViT-B-16", "openai"),
    "ViT-L-14": ("ViT-L-14", "openai"),
    TINY: (TINY_CLIP_ARCH, None),
}

DEFAULT_CLIP = "ViT-B-32"


@dataclass(frozen=True)
class Preset:
    """A named model combination.

    Attributes:
        name: what users type after ``--model``.
        backend: ``"pixel"`` or ``"latent"``.
        source: Hugging Face repo id, local folder, ``"tiny"`` or ``"tiny-latent"``.
        clip: key of :data:`CLIP_MODELS`.
        size: default working resolution (long side, px).
        description: one line for ``--help`` and the app.
    """

    name: str
    backend: str
    source: str
    clip: str = DEFAULT_CLIP
    size: int = PIXEL_SIZE
    description: str = ""

    @property
    def untrained(self) -> bool:
        """True for the random-weight test models."""
        return self.source in (TINY, TINY_LATENT)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("sd15", "latent", "stable-diffusion-v1-5/stable-diffusion-v1-5", size=LATENT_SIZE,
               description="Stable Diffusion 1.5, latent, 512 px, any photo (4.3 GB: UNet 3.44 GB, VAE 335 MB, text encoder 492 MB)"),
        Preset("sd21-base", "latent", "stabilityai/stable-diffusion-2-1-base", size=LATENT_SIZE,
               description="Stable Diffusion 2.1 base, latent, 512 px (5.2 GB: UNet 3.46 GB, VAE 335 MB, text encoder 1.36 GB)"),
        Preset(TINY, "pixel", TINY, TINY, 64, "untrained tiny models (random weights) for tests and offline smoke runs"),
        Preset(TINY_LATENT, "latent", TINY_LATENT, TINY, 64, "untrained tiny latent models (random weights: UNet, VAE, text encoder) for tests"),
        Preset("church-256", "pixel", "google/ddpm-ema-church-256", size=256, description="DDPM trained on LSUN churches, 256 px (455 MB)"),
        Preset("bedroom-256", "pixel", "google/ddpm-ema-bedroom-256", size=256, description="DDPM trained on LSUN bedrooms, 256 px (455 MB)"),
        Preset("celebahq-256", "pixel", "google/ddpm-ema-celebahq-256", size=256, description="DDPM trained on CelebA-HQ faces, 256 px (455 MB)"),
    )
}

DEFAULT_PRESET = "sd15"


@dataclass
class Models:
    """Everything a job needs, loaded on one device.

    Attributes:
        preset: what was loaded.
        backend: the diffusion model behind the common interface.
        clip: guidance CLIP.
        vgg: content VGG16.
        device: where all of it lives.
    """

    preset: Preset
    backend: DiffusionBackend
    clip: ClipEncoder
    vgg: VggEncoder
    device: torch.device

    @property
    def name(self) -> str:
        """The preset name or model path."""
        return self.preset.name

    @property
    def untrained(self) -> bool:
        """True when these are the random-weight ``tiny`` models."""
        return self.preset.untrained


def resolve_device(requested: str | None = None) -> torch.device:
    """``None``/``"auto"`` picks CUDA when available, else CPU; an unavailable CUDA is an error."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {requested!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r} was requested but no CUDA GPU is available; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {requested!r}; use cpu, cuda or cuda:N")
    return device


def resolve_preset(model: str, clip: str | None = None) -> Preset:
    """Turn a preset name, local folder or repo id into a :class:`Preset`.

    Args:
        model: preset name, path to a diffusers folder, or ``org/name`` repo id.
        clip: override the guidance CLIP (a key of :data:`CLIP_MODELS`).
    """
    if model in PRESETS:
        preset = PRESETS[model]
    elif Path(model).expanduser().is_dir():
        folder = str(Path(model).expanduser().resolve())
        preset = _source_preset(folder, f"diffusers folder {folder}")
    elif re.fullmatch(r"[\w.\-]+/[\w.\-]+", model):
        preset = _source_preset(model, f"Hugging Face repo {model}")
    else:
        raise ConfigError(
            f"unknown model {model!r}: use a preset ({', '.join(PRESETS)}), a diffusers folder, or a Hugging Face repo id"
        )
    if clip is not None:
        if clip not in CLIP_MODELS:
            raise ConfigError(f"unknown CLIP {clip!r}: choose one of {', '.join(CLIP_MODELS)}")
        preset = Preset(preset.name, preset.backend, preset.source, clip, preset.size, preset.description)
    return preset


def _source_preset(source: str, description: str) -> Preset:
    """A preset for a folder or repo id, with the backend its layout implies and that backend's usual size."""
    backend = detect_backend(source)
    size = LATENT_SIZE if backend == "latent" else PIXEL_SIZE
    return Preset(source, backend, source, size=size, description=f"{description} ({backend})")


def load_models(model: str = DEFAULT_PRESET, device: str | None = None, clip: str | None = None) -> Models:
    """Load (or fetch from the in-memory cache) every model of a preset on a device.

    Args:
        model: preset name, diffusers folder or repo id.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``None`` for automatic.
        clip: override the preset's guidance CLIP.

    Raises:
        ConfigError: unknown model, CLIP or device.
        ModelLoadError: weights missing or unreadable, with how to get them.
    """
    preset = resolve_preset(model, clip)
    return _load_models_cached(preset, resolve_device(device))


@functools.lru_cache(maxsize=4)
def _load_models_cached(preset: Preset, device: torch.device) -> Models:
    backend = load_backend(preset.source, device, preset.backend)
    return Models(preset, backend, load_clip(preset.clip, device), load_vgg(device, tiny=preset.untrained), device)


def download(model: str = DEFAULT_PRESET, clip: str | None = None) -> list[hub.Fetched]:
    """Fetch every file a preset needs into the caches, without building any network.

    Uses the same lookups as loading, so a later load finds everything offline.

    Args:
        model: preset name, diffusers folder or repo id.
        clip: override the preset's guidance CLIP.

    Returns:
        One entry per file, saying whether it came down now or was cached already.
    """
    preset = resolve_preset(model, clip)
    if preset.untrained:
        return []
    with hub.recording() as fetched:
        if not Path(preset.source).expanduser().is_dir():
            with explained_failures(f"diffusion model {preset.source!r}", preset.source):
                if preset.backend == "latent":
                    latent_folder(preset.source)
                else:
                    pixel_folder(preset.source)
        arch, tag = CLIP_MODELS[preset.clip]
        with explained_failures(f"CLIP {arch}/{tag}"):
            clip_checkpoint(open_clip.get_pretrained_cfg(arch, tag))
        vgg_checkpoint()
    return fetched


def load_backend(source: str, device: torch.device, kind: str | None = None) -> DiffusionBackend:
    """Build the diffusion backend for ``source`` on ``device``.

    Args:
        source: ``"tiny"``, ``"tiny-latent"``, a diffusers folder or a repo id.
        device: where the networks run.
        kind: ``"pixel"`` or ``"latent"``; detected from the layout when omitted.
    """
    if (kind or detect_backend(source)) == "latent":
        return _load_latent_backend(source, device)
    unet, scheduler_config = tiny_pixel_parts() if source == TINY else _load_pixel_unet(source)
    return PixelBackend(unet.to(device), scheduler_config)


def _load_pixel_unet(source: str) -> tuple[UNet2DModel, dict]:
    """Load a ``UNet2DModel`` and its scheduler config from a flat or pipeline-style layout."""
    with explained_failures(f"diffusion model {source!r}", source):
        folder, subfolder = pixel_folder(source)
        unet = UNet2DModel.from_pretrained(folder, subfolder=subfolder)
        scheduler_config = DDIMScheduler.load_config(folder, subfolder="scheduler" if subfolder else None)
    return unet, dict(scheduler_config)


def latent_dtype(device: torch.device) -> torch.dtype:
    """The precision the latent networks run in on ``device``.

    float32 on the CPU (half precision is slow there). On CUDA, half precision halves
    weights and activations; bfloat16 where the GPU supports it, because it keeps
    float32's exponent range and the guidance gradients flowing back through the UNet
    and decoder can underflow float16; float16 on older GPUs.
    """
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _load_latent_backend(source: str, device: torch.device) -> LatentBackend:
    """The latent backend for ``"tiny-latent"``, a Stable Diffusion folder or a repo id.

    Attention runs through PyTorch's scaled_dot_product_attention (diffusers' default on
    torch 2), which never materialises the attention matrix, so slicing is not needed.
    """
    dtype = latent_dtype(device)
    parts = tiny_latent_parts() if source == TINY_LATENT else _load_latent_parts(source, dtype)
    # Loaded parts are already in ``dtype``; casting them again only makes diffusers warn.
    nets = (parts.unet, parts.vae, parts.text_encoder)
    unet, vae, text_encoder = (net.to(device) if net.dtype == dtype else net.to(device, dtype) for net in nets)
    return LatentBackend(unet, vae, text_encoder, parts.tokenizer, parts.scheduler_config)


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


def load_clip(name: str, device: torch.device, pretrained: str | None = None) -> ClipEncoder:
    """Build a guidance CLIP.

    Args:
        name: key of :data:`CLIP_MODELS`.
        device: target device.
        pretrained: override the weights: an open_clip tag or a checkpoint file
            (safetensors, or a state dict read with ``weights_only=True``).
    """
    if name not in CLIP_MODELS:
        raise ConfigError(f"unknown CLIP {name!r}: choose one of {', '.join(CLIP_MODELS)}")
    arch, tag = CLIP_MODELS[name]
    tag = pretrained or tag
    tag_cfg = (open_clip.get_pretrained_cfg(arch, tag) or {}) if tag else {}
    with explained_failures(f"CLIP {arch}/{tag}"):
        checkpoint = clip_checkpoint(tag_cfg) if tag_cfg else tag
        encoder = build_clip(arch, checkpoint, tag_cfg, label=f"{arch}/{tag}" if tag else None)
    return encoder.to(device)


def build_clip(arch: str, checkpoint: str | None = None, tag_cfg: Mapping[str, Any] | None = None,
               label: str | None = None) -> ClipEncoder:
    """An open_clip architecture as a :class:`ClipEncoder`, on the CPU.

    Args:
        arch: open_clip model name.
        checkpoint: weights file; ``None`` gives seeded random weights.
        tag_cfg: the pretrained tag's config (QuickGELU, normalisation), if any.
        label: name for messages (default: ``"<arch> (random weights)"``).
    """
    tag_cfg = tag_cfg or {}
    with seeded(TINY_SEED), _quiet_logging(checkpoint is None):
        model = open_clip.create_model(
            arch, pretrained=checkpoint, force_quick_gelu=bool(tag_cfg.get("quick_gelu")), weights_only=True
        )
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
    """Silence open_clip's 'initialized randomly' warning where random weights are intended."""
    if not quiet:
        yield
        return
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
