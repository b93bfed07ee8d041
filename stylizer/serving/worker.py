"""The job runner between the UI and the models.

:class:`Worker` owns one model replica per device and runs one job per device at a
time, in three kinds (see :mod:`stylizer.serving.pool`): a Stylize job, a live preview and a
background preparation of a picture, each device taking the most urgent waiting one.
A Stylize job runs the sampler on a background thread and streams :class:`JobUpdate`
objects back through a queue, so the consumer can stop it between any two steps:
closing the update iterator (what Gradio does on Stop or when the client goes away)
cancels the job, and the thread lets go of the device before the next step starts.
Each device keeps a :class:`~stylizer.engine.prepared.PreparedCache`, so a job on a picture
prepared before starts at its first guided step. Nothing here imports Gradio.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..config import Limits, model_defaults
from ..engine.graphs import graphs_of
from ..engine.models import Models
from ..engine.optimization import optimizations_for
from ..engine.prepared import PreparedCache, prepare_picture
from ..engine.sampler import Frame, stylize
from ..errors import OutOfMemoryError, StylizerError
from ..images import ImageSource
from ..loading import default_devices, load_models, resolve_device
from ..request import Request
from .deployment import Deployment
from .jobs import JobResult, JobUpdate, ModelInfo, check_job
from .memory import release_memory
from .outputs import OutputStore
from .pool import DevicePool, Priority

POLL_S = 0.1
OOM_MESSAGE = "the GPU ran out of memory: lower the resolution or the number of patches, or use fast mode"


class JobCancelled(Exception):
    """Raised inside a job when its consumer went away or it was cancelled."""


class Preempted(JobCancelled):
    """Raised inside a preparation when a more urgent job waits for its device."""


# What a Stylize job's thread sends to the consumer, in order: progress and frames, then one end.
@dataclass(frozen=True)
class StepDone:
    """A network pass finished: a guided step, or (``inverting``) a DDIM inversion step."""

    done: int
    total: int
    inverting: bool = False


@dataclass(frozen=True)
class StartReady:
    """The start point is ready; ``reused`` when it came from the device's cache."""

    reused: bool


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


JobMessage = StepDone | StartReady | FrameReady | JobFailed | JobEnded


class Worker:
    """Owns models (one replica per device) and runs stylization jobs on them.

    Args:
        model: preset name, diffusers folder or repo id.
        devices: devices to serve from; default: every CUDA GPU, else the CPU.
        clip: override the preset's guidance CLIP.
        limits: server caps; :meth:`Limits.from_env` when omitted.
        output_dir: where per-job files go; a private temporary folder when omitted.
        deployment: where this worker runs (the optimised step, graph and cache bounds, where prepared
            pictures are kept); :meth:`Deployment.from_env` when omitted.
    """

    def __init__(
        self,
        model: str,
        devices: Sequence[str] | None = None,
        clip: str | None = None,
        limits: Limits | None = None,
        output_dir: str | Path | None = None,
        deployment: Deployment | None = None,
    ) -> None:
        self.limits = limits or Limits.from_env()
        self.deployment = deployment or Deployment.from_env()
        names = list(devices) if devices else default_devices()
        self.replicas: dict[str, Models] = {}
        for name in names:
            device = str(resolve_device(name))
            self.replicas[device] = models = load_models(model, device, clip)
            if self.deployment.max_graphs is not None:
                graphs_of(models.backend, self.deployment.max_graphs)
        # Each device's optimisations, decided once: the switch, and whether a capture can serve a later job.
        self.optimizations = {
            device: optimizations_for(torch.device(device), self.deployment.optimize, graphs=self.deployment.cuda_graphs)
            for device in self.replicas
        }
        self.pool = DevicePool(self.replicas)
        entries = {} if self.deployment.cache_entries is None else {"max_entries": self.deployment.cache_entries}
        self.caches = {device: PreparedCache(storage=self.deployment.cache_storage, **entries) for device in self.replicas}
        self.outputs = OutputStore(output_dir, self.limits.output_ttl_s)
        models = next(iter(self.replicas.values()))
        self.defaults = model_defaults(models.backend.kind, models.preset.size, self.limits)

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
            defaults=dict(self.defaults),
            description=models.preset.description,
        )

    @property
    def concurrency(self) -> int:
        """How many jobs may run at once (one per device)."""
        return len(self.replicas)

    def check(self, image: ImageSource | None, settings: Mapping[str, Any], *, preparing: bool = False) -> Request:
        """The job ``settings`` ask for, over the model's defaults, checked (see :func:`stylizer.serving.jobs.check_job`)."""
        return check_job(image, settings, self.defaults, self.limits, preparing=preparing)

    def run(self, request: Request) -> Iterator[JobUpdate]:
        """Run one Stylize job, yielding an update every step; closing the iterator cancels the job.

        Raises:
            StylizerError: out of memory, over the wall-time limit, or a request the sampler refuses.
        """
        total = request.config.denoise_steps
        ticket = self.pool.join(Priority.STYLIZE)
        try:
            device = self.pool.take(ticket, POLL_S)
            while device is None:
                yield JobUpdate(0, total, queued=True)
                device = self.pool.take(ticket, POLL_S)
        finally:
            self.pool.leave(ticket)
        try:
            yield from self._stream(device, request, save=True)
        finally:
            self.pool.release(device)

    def preview(self, request: Request, cancelled: Callable[[], bool]) -> JobUpdate | None:
        """A live preview of ``request``: the job at ``preview_size`` with ``preview_steps``; its final update, or None if cancelled.

        It waits behind Stylize jobs and steps aside, within one step, when one arrives.

        Args:
            request: the job as checked (its preview's size and steps are applied here).
            cancelled: polled between steps; True ends the preview (a newer one, or Stop).
        """
        device = self._take(Priority.PREVIEW, cancelled)
        if device is None:
            return None
        stop = lambda: cancelled() or self.pool.outranked(Priority.PREVIEW)  # noqa: E731
        try:
            with contextlib.closing(self._stream(device, request.as_preview(), save=False, interrupt=stop)) as updates:
                return next(u for u in updates if u.image is not None and u.step == u.total)
        except JobCancelled:
            return None
        finally:
            self.pool.release(device)

    def prepare(self, request: Request, cancelled: Callable[[], bool], previews: bool = False) -> bool:
        """Prepare the request's picture in the background for its job (and its live preview), at the lowest priority.

        A more urgent job that waits for the device makes the preparation step aside and
        start again afterwards.

        Args:
            request: checked with ``preparing=True`` (the prompt plays no part in a preparation).
            cancelled: polled between steps; True ends the preparation.
            previews: prepare for the live preview too.

        Returns:
            True once prepared (the next job on this picture starts at its first step), False if cancelled.
        """
        configs = [request.config.as_preview(), request.config] if previews else [request.config]
        for config in configs:
            while True:
                device = self._take(Priority.PREPARE, cancelled)
                if device is None:
                    return False
                try:
                    self._prepare_on(device, dataclasses.replace(request, config=config), cancelled)
                    break
                except Preempted:
                    continue
                except JobCancelled:
                    return False
                finally:
                    self.pool.release(device)
        return True

    def _take(self, priority: Priority, cancelled: Callable[[], bool]) -> str | None:
        """A device for a job of ``priority``, or None once ``cancelled()`` while waiting."""
        ticket = self.pool.join(priority)
        try:
            while not cancelled():
                device = self.pool.take(ticket, POLL_S)
                if device is not None:
                    return device
            return None
        finally:
            self.pool.leave(ticket)

    def _prepare_on(self, device: str, request: Request, cancelled: Callable[[], bool]) -> None:
        def check(done: int, total: int) -> None:
            if cancelled():
                raise JobCancelled()
            if self.pool.outranked(Priority.PREPARE):
                raise Preempted()

        models, optimizations = self.replicas[device], self.optimizations[device]
        try:
            prepare_picture(
                models, request.image, request.config, optimize=optimizations, cache=self.caches[device], on_invert=check,
                trajectory=request.mask is not None,
            )  # fmt: skip
        except JobCancelled:
            raise
        except BaseException as exc:
            raise self._user_error(device, exc) from None
        finally:
            release_memory(device)

    def _stream(self, device: str, request: Request, *, save: bool, interrupt: Callable[[], bool] | None = None) -> Iterator[JobUpdate]:
        """Run ``request`` on ``device`` on a thread of its own and stream its updates; closing the stream cancels it.

        Args:
            save: write the result's files (PNG, GIF) and attach a :class:`JobResult` to the last update.
            interrupt: polled between network passes; True cancels the job (:class:`JobCancelled` reaches the consumer).
        """
        messages: queue.Queue[JobMessage] = queue.Queue()
        cancel = threading.Event()
        thread = threading.Thread(
            target=self._job_thread, args=(device, request, messages, cancel, interrupt), name=f"stylizer-job-{device}", daemon=True
        )
        thread.start()
        try:
            yield from self._updates(device, request, messages, save)
        finally:
            cancel.set()
            thread.join()
            release_memory(device)

    def _job_thread(
        self,
        device: str,
        request: Request,
        messages: queue.Queue[JobMessage],
        cancel: threading.Event,
        interrupt: Callable[[], bool] | None,
    ) -> None:
        """The sampler's loop on ``device``, every step, frame and end sent as a message."""
        deadline = time.monotonic() + self.limits.job_timeout_s

        def progress(inverting: bool) -> Callable[[int, int], None]:
            # The sampler's hooks run between network calls, so Stop and the time limit act within one step.
            def report(done: int, total: int) -> None:
                if cancel.is_set() or (interrupt is not None and interrupt()):
                    raise JobCancelled()
                if time.monotonic() > deadline:
                    raise StylizerError(
                        f"the job took longer than the {self.limits.job_timeout_s:g} s limit; use fewer steps or a smaller size"
                    )
                messages.put(StepDone(done, total, inverting))

            return report

        hooks = dict(on_step=progress(False), on_invert=progress(True), on_prepared=lambda reused: messages.put(StartReady(reused)))
        try:
            for frame in stylize(self.replicas[device], request, optimize=self.optimizations[device], cache=self.caches[device], **hooks):
                messages.put(FrameReady(frame))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            messages.put(JobFailed(exc))
        else:
            messages.put(JobEnded())

    def _updates(self, device: str, request: Request, messages: queue.Queue[JobMessage], save: bool) -> Iterator[JobUpdate]:
        """The job's messages as updates, until it ends; a failure is raised as the user should see it."""
        frames: list[Image.Image] = []
        last_losses: dict[str, float] = {}
        started = time.perf_counter()
        while True:
            message = messages.get()
            if isinstance(message, StepDone):
                yield JobUpdate(message.done, message.total, {} if message.inverting else dict(last_losses), inverting=message.inverting)
            elif isinstance(message, StartReady):
                if message.reused:
                    yield JobUpdate(0, request.config.denoise_steps, reused=True)
            elif isinstance(message, FrameReady):
                frame = message.frame
                frames.append(frame.image)
                last_losses = frame.losses
                result = self._finish(frame, request, frames, seconds=time.perf_counter() - started) if frame.final and save else None
                yield JobUpdate(frame.step, frame.total, frame.losses, frame.image, result)
            elif isinstance(message, JobFailed):
                if isinstance(message.error, JobCancelled):
                    raise message.error
                raise self._user_error(device, message.error)
            else:
                return

    def _finish(self, frame: Frame, request: Request, frames: list[Image.Image], *, seconds: float) -> JobResult:
        png, gif = self.outputs.save(frame.image, frames)
        source = request.image.resize(frame.image.size, Image.Resampling.LANCZOS)
        preset = next(iter(self.replicas.values())).preset
        record = request.record(model=preset.name, clip=preset.clip)
        return JobResult(frame.image, source, png, gif, record, frame.losses, seconds, request.notes)

    def _user_error(self, device: str, exc: BaseException) -> BaseException:
        """``exc`` as the user should see it; out of memory also empties the device's cache of prepared pictures."""
        # The memory itself is released by the caller once the job has let go of its tensors.
        if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower():
            self.caches[device].clear()
            return OutOfMemoryError(OOM_MESSAGE)
        return exc
