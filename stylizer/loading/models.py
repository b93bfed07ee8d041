"""Everything a job needs on one device, loaded once per (model, device), and fetched ahead of time.

A failed download raises :class:`ModelLoadError` naming the model and how to fetch it;
nothing ever falls back to the untrained ``tiny`` models silently.
"""

from __future__ import annotations

import functools
from pathlib import Path

import open_clip
import torch

from ..engine.models import Models
from . import hub
from .build import load_backend, load_clip, load_vgg
from .devices import resolve_device
from .fetch import clip_checkpoint, explained_failures, latent_folder, pixel_folder, taesd_failures, taesd_folder, vgg_checkpoint
from .presets import CLIP_MODELS, DEFAULT_PRESET, Preset, resolve_preset


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
    return load_preset(resolve_preset(model, clip), resolve_device(device))


@functools.lru_cache(maxsize=4)
def load_preset(preset: Preset, device: torch.device) -> Models:
    """Every model of ``preset`` on ``device``, built once per (preset, device) and then shared."""
    backend = load_backend(preset.source, device, preset.backend, preset.taesd)
    return Models(preset, backend, load_clip(preset.clip, device), load_vgg(device, tiny=preset.untrained), device)


def clear_cache() -> None:
    """Forget every loaded model set, so that the next :func:`load_models` reads the files again."""
    load_preset.cache_clear()


def download(model: str = DEFAULT_PRESET, clip: str | None = None) -> list[hub.Fetched]:
    """Fetch every file a preset needs into the caches, without building any network.

    Uses the same lookups as loading, so a later load finds everything offline. A latent
    preset's TAESD comes down too (a few MB), so that ``guide_decoder="taesd"`` works offline.

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
        if preset.taesd is not None:
            with taesd_failures(preset.taesd, preset.source):
                taesd_folder(preset.taesd)
        arch, tag = CLIP_MODELS[preset.clip]
        with explained_failures(f"CLIP {arch}/{tag}"):
            clip_checkpoint(open_clip.get_pretrained_cfg(arch, tag))
        vgg_checkpoint()
    return fetched
