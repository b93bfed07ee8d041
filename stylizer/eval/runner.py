"""Run the evaluation grid: every setting x content image x style prompt, stylized and measured."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..config import Limits, StyleConfig
from ..engine.models import Models
from ..engine.sampler import stylize
from ..engine.tensors import to_pil, to_tensor
from ..errors import InputError
from ..images import check_mask, load_image, load_mask
from ..request import Request, named_picture
from .judge import Judge
from .sweeps import Setting

OUTPUTS_DIR = "images"
CONTENT_DIR = "content"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


@dataclass
class Grid:
    """What to run; building one validates every job's settings, so errors come before any work.

    Attributes:
        images: content image files.
        prompts: style prompts.
        settings: the settings to compare (a sweep), each applied over ``base``.
        base: StyleConfig fields shared by every job (size, steps, seed, ...).
        limits: server caps used for validation and image decoding.
        mask: a mask for every job (white: restyle), or None; it must fit every image.
        style_image: a style picture for every job, or None.

    Raises:
        InputError: no images or no prompts.
        ConfigError: a setting out of range for some job.
    """

    images: Sequence[Path]
    prompts: Sequence[str]
    settings: Sequence[Setting] = (Setting(),)
    base: Mapping[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits.from_env)
    mask: Path | None = None
    style_image: Path | None = None

    def __post_init__(self) -> None:
        if not self.images or not self.prompts or not self.settings:
            raise InputError("the grid is empty: it needs at least one image, one prompt and one setting")
        configs = [self.config(setting, prompt) for setting in self.settings for prompt in self.prompts]
        mask, _ = self.pictures()
        if mask is not None:
            for invert in {config.invert_mask for config in configs}:
                self._check_mask(mask, invert)

    def pictures(self) -> tuple[Image.Image | None, Image.Image | None]:
        """The mask and the style picture, decoded through the usual checks (None where not given)."""
        mask = None if self.mask is None else named_picture("mask", lambda: load_mask(self.mask, self.limits).image)
        style = (
            None if self.style_image is None else named_picture("style picture", lambda: load_image(self.style_image, self.limits).image)
        )
        return mask, style

    def _check_mask(self, mask: Image.Image, invert: bool) -> None:
        """The mask fits every image (aspect ratio) and selects something, or an error naming the image."""
        for path in self.images:
            with Image.open(path) as header:  # the size alone, nothing decoded
                size = header.size
            try:
                check_mask(mask, Image.new("L", size), invert)
            except InputError as exc:
                raise InputError(f"{path.name}: {exc}") from None

    def __len__(self) -> int:
        return len(self.images) * len(self.prompts) * len(self.settings)

    def config(self, setting: Setting, prompt: str) -> StyleConfig:
        """The validated settings of one job."""
        config = StyleConfig.from_dict({**self.base, **setting.overrides, "prompt": prompt})
        return config.validated(self.limits, style_image=self.style_image is not None)


def run_grid(models: Models, judge: Judge, grid: Grid, out_dir: str | Path) -> Iterator[dict[str, Any]]:
    """Stylize and measure every job of ``grid``, saving images under ``out_dir``; yield one row per job.

    A row holds the image's file name, the prompt, the setting's label and swept field,
    every StyleConfig value, every metric of ``judge``, the seconds the stylization took,
    and the output and (resized) content images' paths relative to ``out_dir``.

    Args:
        models: the guide models.
        judge: measures each result.
        grid: the jobs.
        out_dir: report folder; created if missing.
    """
    out_dir = Path(out_dir)
    (out_dir / CONTENT_DIR).mkdir(parents=True, exist_ok=True)
    pictures = [load_image(path, grid.limits).image for path in grid.images]
    mask, style_image = grid.pictures()
    saved: set[Path] = set()
    for k, setting in enumerate(grid.settings):
        folder = Path(OUTPUTS_DIR) / f"{k:02d}-{slug(setting.label)}"
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
        for i, (path, picture) in enumerate(zip(grid.images, pictures)):
            stem = f"{i:02d}-{slug(path.stem)}"
            for j, prompt in enumerate(grid.prompts):
                request = Request(picture, grid.config(setting, prompt), mask=mask, style_image=style_image)
                result, seconds = _stylize_timed(models, request)
                output_path = folder / f"{stem}__{j:02d}-{slug(prompt)}.png"
                content_path = Path(CONTENT_DIR) / f"{stem}_{result.width}x{result.height}.png"
                content = to_tensor(picture, result.size)
                if content_path not in saved:
                    to_pil(content).save(out_dir / content_path)
                    saved.add(content_path)
                result.save(out_dir / output_path)
                scores = judge.measure((content + 1) / 2, (to_tensor(result, result.size) + 1) / 2, prompt, request.config.reference)
                yield {
                    "image": path.name,
                    "prompt": prompt,
                    "setting": setting.label,
                    "sweep": setting.swept,
                    **{
                        name: value
                        for name, value in request.record(model=models.name, clip=models.preset.clip).items()
                        if name != "prompt"
                    },
                    **scores,
                    "seconds": seconds,
                    "output": output_path.as_posix(),
                    "content": content_path.as_posix(),
                }


def _stylize_timed(models: Models, request: Request) -> tuple[Image.Image, float]:
    """The final image of one job and the wall-clock seconds it took."""
    started = time.perf_counter()
    for frame in stylize(models, request):
        result = frame.image  # the last frame is the result
    return result, time.perf_counter() - started


def slug(text: str) -> str:
    """A file-name-safe form of ``text`` (letters, digits, ``._=-``)."""
    return _UNSAFE.sub("-", text).strip("-.")[:60] or "x"
