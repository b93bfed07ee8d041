"""What the front ends and the job runners share: plain data (no tensors, no torch import), the runner's
interface, and how an upload and its settings become one checked :class:`~stylizer.request.Request`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from ..config import PICTURE_INPUTS, Limits
from ..request import Request, check_request

# Stands in for a prompt not typed yet when a picture is prepared (only the prompt-free work runs).
PREPARING_PROMPT = "a picture"


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


class JobRunner(Protocol):
    """What the page and the API run jobs on: the in-process :class:`~stylizer.serving.worker.Worker`, its
    ZeroGPU wrapper, or Ray Serve replicas (:class:`~stylizer.serving.ray_client.RemoteWorker`).

    Attributes:
        info: the loaded models, as the page shows them.
        limits: the server's caps.
        concurrency: how many jobs may run at once.
    """

    info: ModelInfo
    limits: Limits
    concurrency: int

    def check(self, image: Any, settings: Mapping[str, Any], *, preparing: bool = False) -> Request:
        """The job the settings (and the pictures named in :data:`~stylizer.config.PICTURE_INPUTS`) ask for, checked."""

    def run(self, request: Request) -> Iterator[JobUpdate]:
        """The job's updates; closing the iterator cancels it."""

    def preview(self, request: Request, cancelled: Callable[[], bool]) -> JobUpdate | None:
        """A live preview's final update, or None once ``cancelled()`` (superseded, stopped, or a Stylize job wants the device)."""

    def prepare(self, request: Request, cancelled: Callable[[], bool], previews: bool = False) -> bool:
        """Prepare the picture ahead of its job: True once prepared, False when cancelled."""


def check_job(image: Any, settings: Mapping[str, Any], defaults: Mapping[str, Any], limits: Limits, *, preparing: bool = False) -> Request:
    """The request that ``settings`` (over the model's ``defaults``) and the pictures among them make, checked.

    Args:
        image: the upload (path, bytes or PIL image).
        settings: :class:`~stylizer.config.StyleConfig` fields, and the optional pictures by their
            :data:`~stylizer.config.PICTURE_INPUTS` names.
        defaults: the settings whose defaults depend on the model (see :func:`stylizer.config.model_defaults`).
        limits: the server's caps.
        preparing: for a background preparation, which needs no prompt or style picture (a picture is
            often uploaded before the prompt is typed).
    """
    fields = {name: value for name, value in settings.items() if name not in PICTURE_INPUTS}
    pictures = {name: settings.get(name) for name in PICTURE_INPUTS}
    if preparing:
        fields["prompt"] = fields.get("prompt") or PREPARING_PROMPT
        pictures["style_image"] = None
    return check_request(image, {**defaults, **fields}, limits, **pictures)
