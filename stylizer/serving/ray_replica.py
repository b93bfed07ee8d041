"""Ray Serve: the worker as a Serve deployment, one replica per GPU (or CPU replicas without GPUs).

Each replica owns a :class:`~stylizer.serving.worker.Worker` on its one device and runs one
job at a time. A job streams :class:`Shipped` updates back through a Serve streaming
handle; when the caller cancels the request, the job stops at its next step. The page's
side is :mod:`stylizer.serving.ray_client`; ``deploy/serve_config.yaml`` deploys
:func:`app_builder` with ``serve run``. Importing this module imports Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import ray
from ray import serve
from ray.serve import Application

from ..config import Limits
from ..loading import DEFAULT_PRESET
from ..request import Request
from .jobs import JobUpdate, ModelInfo

APP_NAME = "stylizer"
DEPLOYMENT_NAME = "StylizerReplica"

T = TypeVar("T")


@dataclass(frozen=True)
class Shipped:
    """A job update from a replica; the last one carries the result's files as (name, bytes), PNG then GIF.

    The replica's file paths mean nothing on the page's host, so the files travel as bytes.
    """

    update: JobUpdate
    files: tuple[tuple[str, bytes], ...] = ()


@serve.deployment(name=DEPLOYMENT_NAME, max_ongoing_requests=1)
class StylizerReplica:
    """A Serve replica: one worker on the device Ray gave it, one job at a time.

    Args:
        model: preset name, diffusers folder or repo id.
        clip: override the preset's guidance CLIP.
        limits: server caps; :meth:`Limits.from_env` in the replica when omitted.
    """

    def __init__(self, model: str, clip: str | None = None, limits: Limits | None = None) -> None:
        from ..engine.warmup import warmup
        from .deployment import RAY_REPLICA, Deployment
        from .worker import Worker

        # Ray shows a replica only the GPU it reserved, so "every GPU" is that one (or the CPU).
        self.worker = Worker(model, clip=clip, limits=limits, deployment=Deployment.from_env(RAY_REPLICA))
        for device, models in self.worker.replicas.items():
            warmup(models, optimize=self.worker.optimizations[device])

    def info(self) -> ModelInfo:
        """Name, backend and device of the replica's models."""
        return self.worker.info

    async def run(self, request: Request) -> AsyncIterator[Shipped]:
        """Stream one Stylize job's updates (the request was checked on the page's host); cancelling the request
        stops the job at its next step.

        An async generator, because Serve runs a sync generator method to its end on a thread
        even after the request is cancelled; here the cancellation reaches :func:`in_thread`.
        """
        async for update in in_thread(self.worker.run(request)):
            yield ship(update)


def ship(update: JobUpdate) -> Shipped:
    """``update`` ready to leave the replica: a result's files as bytes, and the replica's copies deleted."""
    result = update.result
    if result is None:
        return Shipped(update)
    files = tuple((path.name, path.read_bytes()) for path in (result.png_path, result.gif_path))
    shutil.rmtree(result.png_path.parent, ignore_errors=True)
    return Shipped(update, files)


async def in_thread(items: Iterator[T]) -> AsyncIterator[T]:
    """Iterate a blocking iterator on a thread of its own; when the consumer stops, the iterator is closed there.

    Closing happens after the item being produced, so a worker job stops within one step;
    the consumer's cleanup waits for it, so the replica is free once the request has ended.
    """
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue()
    stop = threading.Event()
    done = (True, None)

    def pump() -> None:
        try:
            with contextlib.closing(items):  # type: ignore[type-var]
                for item in items:
                    if stop.is_set():
                        return
                    loop.call_soon_threadsafe(inbox.put_nowait, (False, item))
        except BaseException as exc:  # re-raised in the consumer
            loop.call_soon_threadsafe(inbox.put_nowait, (True, exc))
        else:
            loop.call_soon_threadsafe(inbox.put_nowait, done)

    thread = threading.Thread(target=pump, name="stylizer-serve-job", daemon=True)
    thread.start()
    try:
        while True:
            ended, value = await inbox.get()
            if ended:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        await asyncio.to_thread(thread.join)


def replica_options(gpus: float) -> dict[str, Any]:
    """Ray resources of one replica: ``gpus`` GPUs (normally 1), or one CPU when 0."""
    return {"num_gpus": gpus} if gpus else {"num_cpus": 1}


def cluster_gpus() -> float:
    """GPUs in the connected Ray cluster (0 when none, or when Ray is not initialised)."""
    return float(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0.0


def build(model: str, replicas: int, clip: str | None = None, limits: Limits | None = None, gpus: float | None = None) -> Application:
    """The Serve application: ``replicas`` replicas of ``model``, each on one GPU when the cluster has GPUs.

    Args:
        gpus: GPUs per replica; by default 1 when the cluster has GPUs, else 0 (CPU replicas).
    """
    gpus = (1.0 if cluster_gpus() else 0.0) if gpus is None else gpus
    deployment = StylizerReplica.options(num_replicas=replicas, ray_actor_options=replica_options(gpus))
    return deployment.bind(model, clip, limits)


def app_builder(args: dict[str, Any]) -> Application:
    """Serve's application builder (``import_path: stylizer.serving.ray_replica:app_builder``).

    Args:
        args: ``model`` (default the default preset), ``replicas`` (default 1), ``clip`` and
            ``gpus`` per replica (default: 1 when the cluster has GPUs, else 0), as in the config file.
    """
    gpus = args.get("gpus")
    return build(
        str(args.get("model", DEFAULT_PRESET)),
        int(args.get("replicas", 1)),
        clip=args.get("clip"),
        gpus=None if gpus is None else float(gpus),
    )
