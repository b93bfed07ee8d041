"""The job runner between the UI and the models.

:class:`Worker` owns one model replica per device and runs one job per device at a
time. A job runs the sampler on a background thread and streams
:class:`JobUpdate` objects back through a queue, so the consumer can stop it
between any two steps: closing the update iterator (what Gradio does on Stop or
when the client goes away) cancels the job, and the thread lets go of the device
before the next step starts. Nothing here imports Gradio.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .config import Limits, StyleConfig
from .errors import OutOfMemoryError, StylizerError
from .images import ImageSource
from .inputs import prepare_job
from .jobs import JobResult, JobUpdate, ModelInfo
from .loading import Models, default_devices, load_models, resolve_device
from .memory import release_memory
from .outputs import OutputStore
from .sampler import Frame, stylize

POLL_S = 0.1
OOM_MESSAGE = "the GPU ran out of memory: lower the resolution or the number of patches, or use fast mode"


class JobCancelled(Exception):
    """Raised inside a job's thread when its consumer went away."""


# What a job's thread sends to the consumer, in order: progress and frames, then one end.
@dataclass(frozen=True)
class StepDone:
    """A network pass finished: a guided step, or (``inverting``) a DDIM inversion step."""

    done: int
    total: int
    inverting: bool = False


@dataclass(frozen=True)
class FrameReady:
    """The sampler yielded a frame (a preview, or the result when ``frame.final``)."""

    frame: Frame


@dataclass(frozen=True)
class JobFailed:
    """The job raised; the consumer re-raises it as a user error."""

    error: BaseException


@dataclass(frozen=True)
class JobEnded:
    """The sampler finished normally."""


JobMessage = StepDone | FrameReady | JobFailed | JobEnded


class Worker:
    """Owns models (one replica per device) and runs stylization jobs on them.

    Args:
        model: preset name, diffusers folder or repo id.
        devices: devices to serve from; default: every CUDA GPU, else the CPU.
        clip: override the preset's guidance CLIP.
        limits: server caps; :meth:`Limits.from_env` when omitted.
        output_dir: where per-job files go; a private temporary folder when omitted.
    """

    def __init__(
        self,
        model: str,
        devices: Sequence[str] | None = None,
        clip: str | None = None,
        limits: Limits | None = None,
        output_dir: str | Path | None = None,
    ) -> None:
        self.limits = limits or Limits.from_env()
        names = list(devices) if devices else default_devices()
        self.replicas: dict[str, Models] = {}
        for name in names:
            device = str(resolve_device(name))
            self.replicas[device] = load_models(model, device, clip)
        self._free: queue.Queue[str] = queue.Queue()
        for device in self.replicas:
            self._free.put(device)
        self.outputs = OutputStore(output_dir, self.limits.output_ttl_s)

    @property
    def info(self) -> ModelInfo:
        """Name, backend and devices of the loaded models."""
        models = next(iter(self.replicas.values()))
        return ModelInfo(
            name=models.name,
            backend=models.backend.kind,
            clip=models.clip.name,
            devices=list(self.replicas),
            untrained=models.untrained,
            default_size=models.preset.size,
            description=models.preset.description,
        )

    @property
    def concurrency(self) -> int:
        """How many jobs may run at once (one per device)."""
        return len(self.replicas)

    def run(self, image: ImageSource | None, settings: Mapping[str, Any]) -> Iterator[JobUpdate]:
        """Run one job, yielding an update every step; closing the iterator cancels the job.

        Args:
            image: the upload (path, bytes or PIL image).
            settings: :class:`StyleConfig` fields; missing ones take their defaults.

        Raises:
            StylizerError: bad input, out of memory, or over the wall-time limit.
        """
        job = prepare_job(image, settings, self.limits)
        picture, config, notes = job.image, job.config, job.notes
        total = config.denoise_steps
        device = self._acquire()
        while device is None:
            yield JobUpdate(0, total, queued=True)
            device = self._acquire()
        try:
            yield from self._run_on(device, picture, config, notes)
        finally:
            self._free.put(device)

    def _acquire(self) -> str | None:
        try:
            return self._free.get(timeout=POLL_S)
        except queue.Empty:
            return None

    def _run_on(self, device: str, picture: Image.Image, config: StyleConfig, notes: list[str]) -> Iterator[JobUpdate]:
        models = self.replicas[device]
        messages: queue.Queue[JobMessage] = queue.Queue()
        cancel = threading.Event()
        deadline = time.monotonic() + self.limits.job_timeout_s
        frames: list[Image.Image] = []
        started = time.perf_counter()

        def progress(inverting: bool) -> Callable[[int, int], None]:
            # The sampler's hooks run between network calls, so Stop and the time limit act within one step.
            def report(done: int, total: int) -> None:
                if cancel.is_set():
                    raise JobCancelled()
                if time.monotonic() > deadline:
                    raise StylizerError(
                        f"the job took longer than the {self.limits.job_timeout_s:g} s limit; use fewer steps or a smaller size"
                    )
                messages.put(StepDone(done, total, inverting))

            return report

        def target() -> None:
            try:
                for frame in stylize(models, picture, config, on_step=progress(False), on_invert=progress(True)):
                    messages.put(FrameReady(frame))
            except BaseException as exc:  # handed to the consumer, which re-raises it
                messages.put(JobFailed(exc))
            else:
                messages.put(JobEnded())

        thread = threading.Thread(target=target, name=f"stylizer-job-{device}", daemon=True)
        thread.start()
        last_losses: dict[str, float] = {}
        try:
            while True:
                message = messages.get()
                if isinstance(message, StepDone):
                    losses = {} if message.inverting else dict(last_losses)
                    yield JobUpdate(message.done, message.total, losses, inverting=message.inverting)
                elif isinstance(message, FrameReady):
                    frame = message.frame
                    frames.append(frame.image)
                    last_losses = frame.losses
                    result = None
                    if frame.final:
                        result = self._finish(frame, picture, config, frames, notes=notes, seconds=time.perf_counter() - started)
                    yield JobUpdate(frame.step, frame.total, frame.losses, frame.image, result)
                elif isinstance(message, JobFailed):
                    raise _user_error(message.error)
                else:
                    return
        finally:
            cancel.set()
            thread.join()
            release_memory(device)

    def _finish(
        self, frame: Frame, picture: Image.Image, config: StyleConfig, frames: list[Image.Image], *, notes: list[str], seconds: float
    ) -> JobResult:
        png, gif = self.outputs.save(frame.image, frames)
        source = picture.resize(frame.image.size, Image.Resampling.LANCZOS)
        settings = {**config.to_dict(), "model": self.info.name}
        return JobResult(frame.image, source, png, gif, settings, frame.losses, seconds, notes)


def _user_error(exc: BaseException) -> BaseException:
    # No memory release here: the job's ``finally`` does it once the thread has let go of its tensors.
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return OutOfMemoryError(OOM_MESSAGE)
    return exc
