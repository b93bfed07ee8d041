"""Helpers shared by the test modules: pictures, short runs on a model set, a Hub cache snapshot, an analytic denoiser."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import struct
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import numpy as np
import torch
from diffusers import DDPMScheduler
from huggingface_hub.errors import EntryNotFoundError
from PIL import Image, ImageCms
from torch import nn

from bench.run import NO_GUIDANCE
from stylizer.config import Limits, StyleConfig, field_range
from stylizer.engine.models import Models
from stylizer.engine.sampler import Frame, stylize
from stylizer.images import synthetic_picture
from stylizer.loading.tiny import tiny_unet
from stylizer.request import Request

__all__ = [
    "CUDA_REPEAT_TOLERANCE",
    "NO_GUIDANCE",
    "AnalyticEps",
    "FakeJobs",
    "FakeRemote",
    "changed_settings",
    "hub_snapshot",
    "make_image",
    "pixels",
    "run",
    "save_flat_ddpm",
    "swapped_primaries_profile",
]

# CUDA's backward passes of grid_sample (the patch crops) and bilinear resizing add with
# atomics, whose order varies: same-seed runs agree to within a few levels, not bit for bit.
CUDA_REPEAT_TOLERANCE = {"max": 8, "mean": 0.5}
# Masks for the 80x60 test picture that the gate refuses, with the message's words: as file bytes or pictures.
BAD_MASKS = {
    "corrupt": (b"\x89PNG\r\n\x1a\n broken", "the mask: the image file is truncated or corrupt"),
    "all-black": (Image.new("L", (80, 60), 0), "the mask selects nothing"),
    "aspect": (Image.new("L", (60, 80), 255), "the mask must have the picture's aspect ratio"),
}
# The commit every fake Hub snapshot is filed under.
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_image(width: int = 80, height: int = 60, seed: int = 0) -> Image.Image:
    """A smooth, structured RGB test picture (gradients plus a disc) with a little seeded noise."""
    return synthetic_picture(width, height, noise=0.02, seed=seed)


def run(
    models: Models, image: Image.Image, mask: Image.Image | None = None, style_image: Image.Image | None = None, **settings
) -> list[Frame]:
    """Every frame of a short job (64 px, 10 steps at strength 0.7 unless ``settings`` say otherwise), with its optional pictures."""
    config = StyleConfig(**{"prompt": "drawing with black ink", "size": 64, "steps": 10, "strength": 0.7, **settings})
    config = config.validated(style_image=style_image is not None)
    return list(stylize(models, Request(image, config, mask=mask, style_image=style_image)))


def pixels(frame: Frame) -> np.ndarray:
    """A frame's image as signed integers, ready for differences."""
    return np.asarray(frame.image, dtype=np.int16)


def save_picture(content: bytes | Image.Image, path: Path) -> Path:
    """Write file bytes, or save a picture, at ``path``."""
    path.write_bytes(content) if isinstance(content, bytes) else content.save(path)
    return path


def hub_snapshot(repo_id: str) -> Path:
    """The cache folder hf_hub_download would fill for ``repo_id`` (and its refs/main)."""
    root = Path(os.environ["HF_HUB_CACHE"]) / ("models--" + repo_id.replace("/", "--"))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    snapshot = root / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def save_flat_ddpm(folder: Path, safe: bool) -> None:
    """google/ddpm-ema-* layout: config.json, weights and scheduler_config.json at the top."""
    unet = tiny_unet()
    unet.save_pretrained(folder, safe_serialization=safe)
    DDPMScheduler(beta_schedule="linear", clip_sample=True).save_pretrained(folder)
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", "DDPMScheduler"]})
    )


class AnalyticEps(nn.Module):
    """An analytic denoiser, ε(x, t) = ε0·(1 + t/1000).

    ε ignores x, so each DDIM step is exactly invertible; but it changes with t, so
    inverting and regenerating round-trip only when both evaluate ε at the same timesteps.
    """

    def __init__(self, shape):
        super().__init__()
        self.register_buffer("eps", torch.randn(shape, generator=torch.Generator().manual_seed(3)))

    def forward(self, x, t):
        return SimpleNamespace(sample=(self.eps * (1 + float(t) / 1000)).expand_as(x))


def swapped_primaries_profile() -> bytes:
    """A valid ICC profile that is sRGB with its red and blue primaries swapped.

    Pixels tagged with it change visibly (red reads as blue) when converted to sRGB, so a
    test can tell whether the profile was applied; an sRGB profile would be a no-op.
    """
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack_from(">I", data, 128)
    entries = {struct.unpack_from(">4s", data, 132 + 12 * i)[0]: 132 + 12 * i for i in range(count)}
    red, blue = entries[b"rXYZ"], entries[b"bXYZ"]
    # Swap where the two primaries' tags point; the tag signatures stay in place.
    data[red + 4 : red + 12], data[blue + 4 : blue + 12] = data[blue + 4 : blue + 12], data[red + 4 : red + 12]
    return bytes(data)


class FakeJobs:
    """A job runner for the page and the API without models: ``run(image, settings)`` yields the job's updates.

    ``check`` hands the upload and the settings through unchecked, so ``run`` sees what the page sent.
    """

    def __init__(self, run, info, limits: Limits | None = None) -> None:
        self.run_fn = run
        self.info = info
        self.limits = limits or Limits()
        self.concurrency = len(info.devices)

    def check(self, image, settings, *, preparing: bool = False):
        return image, dict(settings)

    def run(self, request):
        return self.run_fn(*request)


class FakeRemote:
    """Stands in for the Hub and download.pytorch.org: serves files from a local folder and logs each transfer."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.transfers: list[Path] = []

    def hf_hub_download(self, repo_id: str, filename: str, *, local_files_only: bool = False) -> str:
        """Like huggingface_hub's: the file's snapshot path in the cache, transferred only if not there yet."""
        assert not local_files_only, "the Hub is online in this test"
        source = self.root / repo_id / filename
        if not source.is_file():
            raise EntryNotFoundError(f"{repo_id} has no {filename}")
        target = hub_snapshot(repo_id) / filename
        if not target.is_file():  # the real client sees the cached file's ETag match and transfers nothing
            self._transfer(source, target)
        return str(target)

    def download_url_to_file(self, url: str, dst: str, **_options) -> None:
        """Like torch.hub's (hash and progress options aside: the weights here are random)."""
        self._transfer(self.root / "torchvision" / Path(urlparse(url).path).name, Path(dst))

    def _transfer(self, source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        self.transfers.append(target)


def changed_settings() -> dict:
    """A valid value other than the default for every setting."""
    values = {}
    for f in dataclasses.fields(StyleConfig):
        knob = f.metadata["knob"]
        if isinstance(f.default, bool):
            values[f.name] = not f.default
        elif knob.choices:
            values[f.name] = next(c for c in knob.choices if c != f.default)
        elif isinstance(f.default, str):
            values[f.name] = f"{f.name} text"
        else:
            low, high = field_range(f.name, Limits())
            values[f.name] = int(low) + 3 if isinstance(f.default, int) else round(low + (high - low) * 0.37, 3)
    values["guide_end"] = 0.73  # guidance must end after it starts (guide_start is 0.37)
    defaults = StyleConfig().to_dict()
    assert not any(values[name] == defaults[name] for name in values), "every value must differ from its default"
    return StyleConfig(**values).validated().to_dict()
