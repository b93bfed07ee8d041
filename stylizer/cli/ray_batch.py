"""``python -m stylizer batch --ray``: the same batch on Ray Data, one model set per actor.

The inputs become the rows of a Ray Dataset (``ray.data.from_items``, a block each, so that
every actor gets work); ``map_batches`` sends them to a fixed pool of actors, each a
:class:`~stylizer.cli.batch.PictureWorker` that loaded the models once, and the actors write the
same files a local run writes. Input paths, the output folder and the weights' caches must
therefore be the same on every node (a shared volume). Ray is imported only here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError, StylizerError
from ..serving.ray_cluster import start_or_join
from .batch_plan import BatchItem, BatchSpec, Outcome, Outcomes, clear_partial_files
from .batch_work import PictureWorker

RAY_MISSING = "--ray needs Ray, which is not installed: pip install -r requirements-ray.txt"


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or a :class:`ConfigError` saying what to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra that --ray needs)
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


@dataclasses.dataclass(frozen=True)
class ActorPlan:
    """The actor pool: how many actors, and the CPUs and GPUs each reserves."""

    actors: int
    cpus: int
    gpus: int


def plan_actors(nodes: Sequence[Mapping[str, Any]], actors: int | None, device: str | None) -> ActorPlan:
    """Size the actor pool from the cluster's nodes (as ``ray.nodes()`` lists them).

    Where the cluster has GPUs (and ``device`` does not say ``cpu``), one GPU per actor and by
    default an actor per GPU. Otherwise CPU actors, by default one per node, the CPUs shared out
    evenly but never more than the smallest node has, so that every actor can be placed.

    Raises:
        ConfigError: ``device`` asks for CUDA and the cluster has no GPU.
    """
    resources = [node["Resources"] for node in nodes if node.get("Alive")]
    gpus = int(sum(r.get("GPU", 0) for r in resources))
    wants_cuda = device is not None and device.startswith("cuda")
    if wants_cuda and not gpus:
        raise ConfigError(f"--device {device}: the Ray cluster has no GPU")
    if gpus and (device is None or wants_cuda):
        return ActorPlan(actors or gpus, 1, 1)
    cpus = [int(r.get("CPU", 0)) for r in resources]
    count = actors or len(cpus)
    return ActorPlan(count, max(1, min(sum(cpus) // count, min(cpus))), 0)


class RayPictures:
    """``map_batches``' callable class: a :class:`PictureWorker` per actor; rows of inputs in, outcomes out.

    Each row out is one JSON text (an outcome's notes are a list, which a table column would not
    keep as is): an :class:`Outcome`, or ``{"error": ...}`` when the actor could not load its models.
    """

    def __init__(self, spec: BatchSpec, threads: int | None) -> None:
        try:
            self.worker: PictureWorker | None = PictureWorker(spec, threads)
            self.error = ""
        except StylizerError as exc:
            # Raised, it would come back as pages of actor-death tracebacks; sent back, it ends the run in one line.
            self.worker, self.error = None, str(exc)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[str]]:
        items = [BatchItem(str(p), str(n), str(h)) for p, n, h in zip(batch["path"], batch["name"], batch["sha256"], strict=True)]
        if self.worker is None:
            return {"outcome": [json.dumps({"error": self.error})] * len(items)}
        return {"outcome": [json.dumps(dataclasses.asdict(self.worker(item))) for item in items]}


def ray_outcomes(spec: BatchSpec, items: Sequence[BatchItem], address: str | None, actors: int | None) -> Outcomes:
    """Each item's outcome from a pool of Ray actors, as the pictures finish.

    Args:
        spec: the batch's shared settings.
        items: the inputs to stylize.
        address: the cluster to join (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``), or None for a
            local Ray instance; an instance this process started already is used as it is.
        actors: the pool's size (default: see :func:`plan_actors`).
    """
    if not items:
        return
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        start_or_join(ray, address)
    try:
        pool = plan_actors(ray.nodes(), actors, spec.device)
        # A GPU actor sees only its own GPU, as cuda:0.
        worker_spec = dataclasses.replace(spec, device="cuda") if pool.gpus else spec
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the command's own bar counts the pictures
        rows = ray.data.from_items([dataclasses.asdict(item) for item in items], override_num_blocks=len(items))
        results = rows.map_batches(
            RayPictures,
            fn_constructor_kwargs={"spec": worker_spec, "threads": None if pool.gpus else pool.cpus},
            batch_size=1,
            # One picture in flight per actor: a second queued behind a slow one would wait while another actor idles.
            compute=ray.data.ActorPoolStrategy(size=pool.actors, max_tasks_in_flight_per_actor=1),
            num_cpus=pool.cpus,
            num_gpus=pool.gpus,
        )
        for row in results.iter_rows():
            outcome = json.loads(row["outcome"])
            if "error" in outcome:
                raise StylizerError(outcome["error"])
            yield Outcome(**outcome)
    finally:
        if started_here:
            ray.shutdown()
        clear_partial_files(spec)
