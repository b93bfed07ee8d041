"""The job runner between the UI and the models.

:class:`Worker` owns one model replica per device and runs one job per device at a
time. A job runs the sampler on a background thread and streams
:class:`JobUpdate` objects back through a queue, so the consumer can stop it
between any two steps: closing the update iterator (what Gradio does on Stop or
when the client goes away) cancels the job, and the thread lets go of the device
before the next step starts. Nothing here imports Gradio.
"""

from __future__ import annotations

import ctypes
import gc
import queue
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from PIL import Image

from .config import Limits, StyleConfig
from .errors import OutOfMemoryError, StylizerError
from .images import ImageSource, save_animation
from .inputs import prepare_job
from .jobs import JobResult, JobUpdate, ModelInfo
from .models import Models, load_models, resolve_device
from .sampler import stylize

POLL_S = 0.1
OOM_MESSAGE = "the GPU ran out of memory: lower the resolution or the number of patches, or use fast mode"


class JobCancelled(Exception):
    """Raised inside a job's thread when its consumer went away."""


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
        self.output_dir = Path(output_dir) if output_dir else Path(tempfile.mkdtemp(prefix="stylizer-outputs-"))
        self.output_dir.mkdir(parents=True, exist_ok=True)

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
        updates: queue.Queue[Any] = queue.Queue()
        cancel = threading.Event()
        deadline = time.monotonic() + self.limits.job_timeout_s
        frames: list[Image.Image] = []
        started = time.perf_counter()

        def progress(kind: str) -> Callable[[int, int], None]:
            # The sampler's hooks run between network calls, so Stop and the time limit act within one step.
            def report(done: int, total: int) -> None:
                if cancel.is_set():
                    raise JobCancelled()
                if time.monotonic() > deadline:
                    raise StylizerError(f"the job took longer than the {self.limits.job_timeout_s:g} s limit; use fewer steps or a smaller size")
                updates.put((kind, done, total))

            return report

        def target() -> None:
            try:
                for frame in stylize(models, picture, config, on_step=progress("step"), on_invert=progress("invert")):
                    updates.put(("frame", frame))
            except BaseException as exc:  # handed to the consumer, which re-raises it
                updates.put(("error", exc))
            else:
                updates.put(("done",))

        thread = threading.Thread(target=target, name=f"stylizer-job-{device}", daemon=True)
        thread.start()
        last_losses: dict[str, float] = {}
        try:
            while True:
                message = updates.get()
                kind = message[0]
                if kind == "step":
                    yield JobUpdate(message[1], message[2], dict(last_losses))
                elif kind == "invert":
                    yield JobUpdate(message[1], message[2], inverting=True)
                elif kind == "frame":
                    frame = message[1]
                    frames.append(frame.image)
                    last_losses = frame.losses
                    if frame.final:
                        result = self._finish(frame, picture, config, frames, notes, time.perf_counter() - started)
                        yield JobUpdate(frame.step, frame.total, frame.losses, frame.image, result)
                    else:
                        yield JobUpdate(frame.step, frame.total, frame.losses, frame.image)
                elif kind == "error":
                    raise _user_error(message[1])
                else:
                    return
        finally:
            cancel.set()
            thread.join()
            _release_memory(device)

    def _finish(
        self, frame: Any, picture: Image.Image, config: StyleConfig, frames: list[Image.Image], notes: list[str], seconds: float
    ) -> JobResult:
        self._delete_old_outputs()
        folder = self.output_dir / f"job-{uuid.uuid4().hex}"
        folder.mkdir()
        png = folder / "stylized.png"
        frame.image.save(png)
        gif = save_animation(frames, folder / "trajectory.gif")
        source = picture.resize(frame.image.size, Image.Resampling.LANCZOS)
        settings = {**config.to_dict(), "model": self.info.name}
        return JobResult(frame.image, source, png, gif, settings, frame.losses, seconds, notes)

    def _delete_old_outputs(self) -> None:
        cutoff = time.time() - self.limits.output_ttl_s
        for folder in self.output_dir.glob("job-*"):
            try:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except FileNotFoundError:
                continue


def default_devices() -> list[str]:
    """Every visible CUDA GPU, or the CPU when there is none."""
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def _user_error(exc: BaseException) -> BaseException:
    # No memory release here: the job's ``finally`` does it once the thread has let go of its tensors.
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return OutOfMemoryError(OOM_MESSAGE)
    return exc


def _release_memory(device: str) -> None:
    gc.collect()
    _TRIM_HOST_HEAP()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def _host_heap_trimmer() -> Callable[[], object]:
    """glibc's ``malloc_trim(0)``, or a no-op where the C library has none (macOS, Windows, musl).

    A job allocates and frees tens of MB of tensors and images from several threads. glibc
    keeps freed pages in its arenas, and fragmentation lets the resident size creep up job
    after job (about 0.3 MB a job, in a 100-job soak); trimming after each job hands them
    back to the system.
    """
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)


_TRIM_HOST_HEAP = _host_heap_trimmer()
