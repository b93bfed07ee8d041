"""The overhead of Ray Serve over the in-process worker for one job: end-to-end seconds, through Serve / in process.

    OMP_NUM_THREADS=1 python -m bench.serve_overhead [--model tiny] [--clip NAME] [--steps 20] [--size 64] [--repeats 5]

Both sides run the same jobs, one after the other, on one CPU replica (a Serve replica reserves one CPU, so
torch gets one thread there; ``OMP_NUM_THREADS=1`` gives the in-process worker the same).
Each repeat uses a new picture, so neither side reuses a prepared one; a warm-up job on
each side comes first. The in-process jobs run first, before Ray is imported; then a
local Ray instance starts, runs the jobs through Serve, and runs the in-process jobs once
more in a plain Ray task (a second baseline: Ray's worker processes may get another share
of a busy machine's CPU than this one).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from stylizer.cli.options import add_model_options
from stylizer.config import Limits
from stylizer.images import synthetic_picture
from stylizer.serving.jobs import JobRunner
from stylizer.serving.worker import Worker


def seconds(jobs: JobRunner, picture: Any, settings: dict[str, Any]) -> float:
    """Wall-clock seconds of one job, from the check to its result."""
    started = time.perf_counter()
    assert any(update.result is not None for update in jobs.run(jobs.check(picture, settings)))
    return time.perf_counter() - started


def timed_jobs(jobs: JobRunner, pictures: list[Any], settings: dict[str, Any]) -> list[float]:
    """Seconds of one job per picture, after a warm-up job on the first."""
    return [seconds(jobs, picture, settings) for picture in pictures][1:]


def in_process(model: str, clip: str | None, limits: Limits, pictures: list[Any], settings: dict[str, Any]) -> list[float]:
    """:func:`timed_jobs` on an in-process worker of ``model`` on the CPU."""
    return timed_jobs(Worker(model, ["cpu"], clip=clip, limits=limits), pictures, settings)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_overhead", description=__doc__.splitlines()[0])
    add_model_options(parser, device=None, model_default="tiny")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    settings = dict(prompt="drawing with black ink", size=args.size, steps=args.steps, strength=1.0, seed=0)
    pictures = [synthetic_picture(80, 60, noise=0.02, seed=i) for i in range(args.repeats + 1)]
    limits = Limits.from_env()
    times = {"in process": in_process(args.model, args.clip, limits, pictures, settings)}
    # Ray is imported only now, as the app imports it only with --ray: the in-process figure is the plain app's.
    import ray
    from ray import serve

    from stylizer.serving.ray_client import connect

    try:
        times["serve"] = timed_jobs(connect(None, args.model, 1, clip=args.clip, limits=limits), pictures, settings)
        # The same in-process jobs in a Ray worker process: what the OS gives Ray's processes, without Serve.
        task = ray.remote(num_cpus=1)(in_process)
        times["in a Ray task"] = ray.get(task.remote(args.model, args.clip, limits, pictures, settings))
    finally:
        serve.shutdown()
        ray.shutdown()
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:>13}: median {medians[name]:.2f} s over {len(values)} jobs ({', '.join(f'{v:.2f}' for v in values)})")
    for baseline in ("in process", "in a Ray task"):
        print(f"serve / {baseline}: {medians['serve'] / medians[baseline]:.2f}x")


if __name__ == "__main__":
    main()
