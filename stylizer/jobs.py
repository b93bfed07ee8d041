"""Plain data passed from the worker to the UI: no tensors, no torch import."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image


@dataclass
class ModelInfo:
    """What the UI may show about the loaded models.

    Attributes:
        defaults: settings whose defaults depend on the model and the server (``size``,
            ``preview_size``, ``preview_steps``; see :func:`stylizer.config.model_defaults`).
    """

    name: str
    backend: str
    clip: str
    devices: list[str]
    untrained: bool
    defaults: dict[str, int]
    description: str

    @property
    def gpu(self) -> bool:
        """The jobs run on GPUs (live previews are then quick enough to be on by default)."""
        return any(device.startswith("cuda") for device in self.devices)


@dataclass
class JobResult:
    """A finished job: images, files and the settings that reproduce it."""

    image: Image.Image
    source: Image.Image
    png_path: Path
    gif_path: Path
    settings: dict[str, Any]
    losses: dict[str, float]
    seconds: float
    notes: list[str] = field(default_factory=list)


@dataclass
class JobUpdate:
    """One message from a running job: every step, with a preview image when one is due.

    Attributes:
        step, total: progress in DDIM steps (of the inversion while ``inverting``).
        losses: loss terms of the latest preview (or of the final image).
        image: a new preview (or the result) when there is one, else ``None``.
        result: set on the last update only.
        queued: True while the job waits for a free device.
        inverting: True while the job inverts the picture, before the first guided step.
        reused: the job starts from a picture prepared earlier (its inversion was cached).
    """

    step: int
    total: int
    losses: dict[str, float] = field(default_factory=dict)
    image: Image.Image | None = None
    result: JobResult | None = None
    queued: bool = False
    inverting: bool = False
    reused: bool = False


# run_fn(image, settings) -> updates; image is a path, bytes or None; closing the iterator cancels.
RunFn = Callable[[Any, Mapping[str, Any]], Iterator[JobUpdate]]
# preview_fn(image, settings, cancelled) -> the preview's final update, or None when it was cancelled
# (``cancelled()`` turned true: superseded, stopped, or a Stylize job wants the device).
PreviewFn = Callable[[Any, Mapping[str, Any], Callable[[], bool]], "JobUpdate | None"]
# prepare_fn(image, settings, cancelled) -> True once the picture is prepared, False when cancelled.
PrepareFn = Callable[[Any, Mapping[str, Any], Callable[[], bool]], bool]
