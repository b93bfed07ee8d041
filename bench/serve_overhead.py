"""The overhead of Ray Serve over the in-process worker for one job: end-to-end seconds, through Serve / in process.

    OMP_NUM_THREADS=1 python -m bench.serve_overhead [--model tiny] [--steps 20] [--size 64] [--repeats 5]

Both sides run the same jobs on one CPU replica (a Serve replica reserves one CPU, so
torch gets one thread there; ``OMP_NUM_THREADS=1`` gives the in-process worker the same).
Each repeat uses a new picture, so neither side reuses a prepared one; a warm-up job on
each side comes first. Starts a local Ray instance and shuts it down.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from stylizer.config import Limits
from stylizer.images import synthetic_picture
from stylizer.jobs import JobUpdate


def seconds(run: Callable[[Any, dict[str, Any]], Iterator[JobUpdate]], picture: Any, settings: dict[str, Any]) -> float:
    """Wall-clock seconds of one job, from the call to its result."""
    started = time.perf_counter()
    assert any(update.result is not None for update in run(picture, settings))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import ray
    from ray import serve

    from stylizer.serve_client import connect
    from stylizer.worker import Worker

    settings = dict(prompt="drawing with black ink", size=args.size, steps=args.steps, strength=1.0, seed=0)
    pictures = [synthetic_picture(80, 60, noise=0.02, seed=i) for i in range(args.repeats + 1)]
    limits = Limits.from_env()
    local = Worker(args.model, ["cpu"], limits=limits)
    try:
        remote = connect("local", args.model, 1, limits=limits)
        times: dict[str, list[float]] = {"in process": [], "serve": []}
        for i, picture in enumerate(pictures):
            for name, run in (("in process", local.run), ("serve", remote.run)):
                elapsed = seconds(run, picture, settings)
                if i:  # the first is the warm-up
                    times[name].append(elapsed)
    finally:
        serve.shutdown()
        ray.shutdown()
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:>10}: median {medians[name]:.2f} s over {len(values)} jobs ({', '.join(f'{v:.2f}' for v in values)})")
    print(f"serve / in process: {medians['serve'] / medians['in process']:.2f}x")


if __name__ == "__main__":
    main()
