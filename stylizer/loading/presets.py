"""Named model combinations, and how a ``--model`` value (preset, folder or repo id) becomes one."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from ..engine.preset import PIXEL_SIZE, Preset
from ..errors import ConfigError
from . import hub

TINY = "tiny"
TINY_LATENT = "tiny-latent"
LATENT_SIZE = 512
MODEL_INDEX = "model_index.json"
# open_clip name of the tiny presets' guidance CLIP (its config ships in model_configs/).
TINY_CLIP_ARCH = "stylizer-tiny-clip"

# Guidance CLIPs: name -> (open_clip architecture, pretrained tag).
CLIP_MODELS = {
    "ViT-B-32": ("ViT-B-32", "openai"),
    "ViT-B-16": ("ViT-B-16", "openai"),
    "ViT-L-14": ("ViT-L-14", "openai"),
    TINY: (TINY_CLIP_ARCH, None),
}
# TAESD, a distilled tiny autoencoder, for ``guide_decoder="taesd"``. One checkpoint serves SD 1.x and 2.x,
# whose VAEs share one latent space (madebyollin's taesdxl, taesd3 and taef1 are for other VAEs).
TAESD_REPO = "madebyollin/taesd"


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "sd15",
            "latent",
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            size=LATENT_SIZE,
            taesd=TAESD_REPO,
            description="Stable Diffusion 1.5, latent, 512 px, any photo (4.3 GB: UNet 3.44 GB, VAE 335 MB, text encoder 492 MB)",
        ),
        Preset(
            "sd21-base",
            "latent",
            "stabilityai/stable-diffusion-2-1-base",
            size=LATENT_SIZE,
            taesd=TAESD_REPO,
            description="Stable Diffusion 2.1 base, latent, 512 px (5.2 GB: UNet 3.46 GB, VAE 335 MB, text encoder 1.36 GB)",
        ),
        Preset(TINY, "pixel", TINY, TINY, 64, "untrained tiny models (random weights) for tests and offline smoke runs", untrained=True),
        Preset(
            TINY_LATENT,
            "latent",
            TINY_LATENT,
            TINY,
            64,
            "untrained tiny latent models (random weights: UNet, VAE, text encoder, TAESD) for tests",
            taesd=TINY_LATENT,
            untrained=True,
        ),
        Preset("church-256", "pixel", "google/ddpm-ema-church-256", description="DDPM trained on LSUN churches, 256 px (455 MB)"),
        Preset("bedroom-256", "pixel", "google/ddpm-ema-bedroom-256", description="DDPM trained on LSUN bedrooms, 256 px (455 MB)"),
        Preset("celebahq-256", "pixel", "google/ddpm-ema-celebahq-256", description="DDPM trained on CelebA-HQ faces, 256 px (455 MB)"),
    )
}
DEFAULT_PRESET = "sd15"


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
        raise ConfigError(f"unknown model {model!r}: use a preset ({', '.join(PRESETS)}), a diffusers folder, or a Hugging Face repo id")
    if clip is not None:
        check_clip(clip)
        preset = dataclasses.replace(preset, clip=clip)
    return preset


def check_clip(name: str) -> None:
    """Raise :class:`ConfigError` unless ``name`` is a key of :data:`CLIP_MODELS`."""
    if name not in CLIP_MODELS:
        raise ConfigError(f"unknown CLIP {name!r}: choose one of {', '.join(CLIP_MODELS)}")


def detect_backend(source: str) -> str:
    """``"latent"`` for a Stable Diffusion layout, else ``"pixel"``.

    A latent model is a folder or repo whose ``model_index.json`` names a ``vae``, or a
    folder with ``unet/`` and ``vae/`` subfolders. A repo whose index cannot be read is
    taken as ``pixel``; its loader then reports what is missing.

    Args:
        source: ``"tiny"``, ``"tiny-latent"``, a local folder or a repo id.
    """
    if source == TINY_LATENT:
        return "latent"
    if source == TINY:
        return "pixel"
    folder = Path(source).expanduser()
    if folder.is_dir():
        index = folder / MODEL_INDEX
        names_vae = index.is_file() and _index_names_vae(index)
        return "latent" if names_vae or ((folder / "unet").is_dir() and (folder / "vae").is_dir()) else "pixel"
    try:
        return "latent" if _index_names_vae(hub.fetch(source, MODEL_INDEX)) else "pixel"
    except Exception:  # offline, missing, private or unreadable: the loader gives the full message
        return "pixel"


def _index_names_vae(index: Path) -> bool:
    """Whether a diffusers ``model_index.json`` lists a VAE component."""
    entry = json.loads(index.read_text(encoding="utf-8")).get("vae")
    return isinstance(entry, list) and entry[0] is not None


def _source_preset(source: str, description: str) -> Preset:
    """A preset for a folder or repo id, with the backend its layout implies, that backend's usual size and, if latent, TAESD."""
    backend = detect_backend(source)
    latent = backend == "latent"
    size, taesd = (LATENT_SIZE, TAESD_REPO) if latent else (PIXEL_SIZE, None)
    return Preset(source, backend, source, size=size, description=f"{description} ({backend})", taesd=taesd)
