"""Nothing a job leaves behind accumulates: after N jobs and again after 2N, the same count of everything a leak would keep alive.

The resident-memory soak (bench/soak.py) is a coarse guard: allocators step, and a slow leak hides in
their noise. This check is exact: it counts, in the serving process, the live tensors and their bytes,
the live pictures, what the worker keeps (prepared pictures and their inversions, the device pool's
queue, job threads), open file descriptors, threads, job folders kept past their time to live, and
Gradio's sessions. One job's frames deliberately kept alive make it fail.
"""

import gc
import threading
import time

import psutil
import pytest
import torch
from gradio_client import Client, handle_file
from PIL import Image

from stylizer.config import Limits
from stylizer.serving import worker as worker_module
from stylizer.serving.worker import Worker
from stylizer.ui import build_demo

from .apphelpers import served, wait_until_idle

JOBS = 6
JOB = {"prompt": "ink", "size": 64, "steps": 4, "strength": 1.0}
# Short enough that job folders expire during the test, so that keeping them past it would show; long enough
# that Gradio's own sweep of its copies (at the same time to live) leaves a job's files there until the client has them.
TTL_S = 5.0
SELF_SIZING_POOLS = ("AnyIO worker thread", "ThreadPoolExecutor-")


def census(worker: Worker, demo) -> dict[str, int]:
    """Everything that a leak would make grow, counted now."""
    cutoff = time.time() - TTL_S  # before the count, which takes a while
    gc.collect()
    objects = gc.get_objects()
    tensors = [o for o in objects if isinstance(o, torch.Tensor)]
    return {
        "tensors": len(tensors),
        "tensor bytes": sum(t.untyped_storage().nbytes() for t in tensors if t.device.type != "meta"),
        "pictures": sum(isinstance(o, Image.Image) for o in objects),
        "prepared pictures": sum(len(cache) for cache in worker.caches.values()),
        "inversions": sum(len(entry.inversions) for cache in worker.caches.values() for entry in cache._entries.values()),
        "waiting for a device": len(worker.pool._waiting),
        "devices taken": len(worker.pool.devices) - len(worker.pool._free),
        "open files": psutil.Process().num_fds(),
        # Thread pools that size themselves, within their own bounds (anyio's for Gradio's handlers, the client's) aside.
        "threads": sum(not t.name.startswith(SELF_SIZING_POOLS) for t in threading.enumerate()),
        "expired job folders": sum(folder.stat().st_mtime < cutoff for folder in worker.outputs.root.glob("job-*")),
        "gradio sessions": len(demo.state_holder.session_data),
    }


def counts_after(jobs: int, picture_path: str, tmp_path) -> tuple[dict[str, int], dict[str, int]]:
    """The census after ``jobs`` jobs through the API, and again after as many more."""
    worker = Worker("tiny", ["cpu"], limits=Limits(output_ttl_s=TTL_S), output_dir=tmp_path / "outputs")
    demo = build_demo(worker, worker.limits, previews=True, preparation=True)
    counts = []
    with served(demo) as url:
        client = Client(url, verbose=False)
        for _ in range(2):
            for seed in range(jobs):
                client.predict(image=handle_file(picture_path), **JOB, seed=seed, api_name="/stylize")
            assert wait_until_idle(worker)
            time.sleep(TTL_S)  # every job folder but the newest is now past its time to live
            client.predict(image=handle_file(picture_path), **JOB, seed=jobs, api_name="/stylize")  # which deletes them
            assert wait_until_idle(worker)
            counts.append(census(worker, demo))
    return counts[0], counts[1]


def grown(first: dict[str, int], second: dict[str, int]) -> dict[str, tuple[int, int]]:
    return {name: (first[name], second[name]) for name in first if second[name] > first[name]}


def test_nothing_a_job_leaves_behind_grows_between_n_and_2n_jobs(picture_path, tmp_path):
    first, second = counts_after(JOBS, picture_path, tmp_path)
    print("census after N and 2N jobs:", first, second)
    assert first["prepared pictures"] == 1 and first["expired job folders"] == 0  # the counts see what they count
    assert grown(first, second) == {}


@pytest.fixture
def leaking(monkeypatch):
    """The worker's sampler, keeping every frame of every job alive."""
    kept = []
    real = worker_module.stylize

    def stylize(*args, **kwargs):
        for frame in real(*args, **kwargs):
            kept.append(frame)
            yield frame

    monkeypatch.setattr(worker_module, "stylize", stylize)
    return kept


def test_the_census_finds_one_jobs_frames_kept_alive(leaking, picture_path, tmp_path):
    first, second = counts_after(JOBS, picture_path, tmp_path)
    growth = grown(first, second)
    assert leaking and "pictures" in growth, growth
    assert growth["pictures"][1] - growth["pictures"][0] >= JOBS  # a frame a job at least
