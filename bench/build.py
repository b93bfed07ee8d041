"""The models a benchmark runs: real-size architectures with random weights, or a tiny preset.

Random weights cost exactly what trained ones cost to run, and need no download.
Everything is built straight on the target device, so a GPU run does not first
initialise 1.2 billion parameters on the CPU.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel, UNet2DModel
from torchvision.models import vgg16
from transformers import CLIPTextConfig, CLIPTextModel

from stylizer.engine.backends import DiffusionBackend, LatentBackend, PixelBackend
from stylizer.engine.encoders import ClipEncoder, VggEncoder
from stylizer.engine.models import Models
from stylizer.loading import Preset, load_models
from stylizer.loading.build import build_clip
from stylizer.loading.presets import LATENT_SIZE, PIXEL_SIZE
from stylizer.loading.tiny import clip_bpe_tokenizer

from . import configs

# Seeds the random weights, so that every run times the same network.
WEIGHT_SEED = 0
REAL_SIZES = {"latent": LATENT_SIZE, "pixel": PIXEL_SIZE}
REAL_SOURCES = {"latent": "stable-diffusion-v1-5 architecture", "pixel": "google/ddpm-ema-church-256 architecture"}


def bench_models(backend: str, device: torch.device, dtype: torch.dtype, model: str | None = None, clip: str | None = None) -> Models:
    """The models to time.

    Args:
        backend: ``"latent"`` (Stable Diffusion 1.5) or ``"pixel"`` (DDPM church-256); ignored with ``model``.
        device: where they run.
        dtype: the latent networks' precision (the pixel UNet, CLIP and VGG stay float32, as the app loads them).
        model: a preset, folder or repo id to load (``tiny``, ``tiny-latent``, or real weights where they are
            cached) instead of a real-size architecture with random weights.
        clip: with ``model``, its guidance CLIP (default: the preset's).
    """
    if model is not None:
        return load_models(model, str(device), clip)
    torch.manual_seed(WEIGHT_SEED)
    diffusion = _latent(device, dtype) if backend == "latent" else _pixel(device)
    with torch.device(device):
        # torchvision's VGG16 (make_layers(cfgs["D"])) with its own initialisation, which keeps the
        # activations at a working scale through all 13 conv layers; the classifier is dropped.
        vgg = VggEncoder(vgg16().features)
    # open_clip builds on the CPU whatever the default device, so CLIP moves afterwards.
    clip = _guide_clip().to(device)
    description = f"{REAL_SOURCES[backend]} with random weights (benchmark)"
    bundle = Preset(f"random-{backend}", backend, REAL_SOURCES[backend], configs.GUIDE_CLIP, REAL_SIZES[backend], description)
    return Models(bundle, diffusion, clip, vgg, device)


def parameter_counts(models: Models) -> dict[str, int]:
    """Parameters of every network in ``models``, by name."""
    nets = {"clip": models.clip, "vgg": models.vgg}
    for name in ("unet", "vae", "text_encoder"):
        if hasattr(models.backend, name):
            nets[name] = getattr(models.backend, name)
    return {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}


def _latent(device: torch.device, dtype: torch.dtype) -> DiffusionBackend:
    with torch.device(device):
        unet = UNet2DConditionModel(**configs.SD15_UNET).to(dtype)
        vae = AutoencoderKL(**configs.SD15_VAE).to(dtype)
        text_encoder = CLIPTextModel(CLIPTextConfig(**configs.SD15_TEXT_ENCODER)).to(dtype)
    # The backend itself is built outside the device context: its scheduler tables belong on the host.
    return LatentBackend(unet, vae, text_encoder, clip_bpe_tokenizer(), configs.SD15_SCHEDULER, taesd_loader=_taesd)


def _taesd(device: torch.device, dtype: torch.dtype) -> AutoencoderTiny:
    """TAESD's architecture (``AutoencoderTiny``'s defaults are madebyollin/taesd's config) with random weights."""
    with torch.device(device):
        return AutoencoderTiny().to(dtype)


def _pixel(device: torch.device) -> DiffusionBackend:
    with torch.device(device):
        unet = UNet2DModel(**configs.CHURCH_UNET)
    return PixelBackend(unet, configs.CHURCH_SCHEDULER)


def _guide_clip() -> ClipEncoder:
    return build_clip(configs.GUIDE_CLIP, tag_cfg={"quick_gelu": True})
