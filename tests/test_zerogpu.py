"""The ZeroGPU path: off Spaces nothing changes; with SPACES_ZERO_GPU the run goes through spaces.GPU."""

import sys
import types

from PIL import Image

from stylizer import zerogpu
from stylizer.jobs import JobUpdate


class FakeWorker:
    def run(self, image, settings):
        yield JobUpdate(1, 2, {"dir": 0.5}, Image.new("RGB", (8, 8)))
        yield JobUpdate(2, 2, {"dir": 0.4}, Image.new("RGB", (8, 8)))


def test_off_zero_gpu_the_run_function_is_the_workers(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    worker = FakeWorker()
    assert zerogpu.gpu_run_fn(worker) == worker.run


def test_on_zero_gpu_the_run_is_wrapped_with_a_duration_from_the_settings(monkeypatch):
    calls = []

    def gpu(duration):
        def wrap(fn):
            def wrapped(*args, **kwargs):
                calls.append(duration(*args, **kwargs))
                return fn(*args, **kwargs)

            return wrapped

        return wrap

    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu))
    run = zerogpu.gpu_run_fn(FakeWorker())
    updates = list(run("image.png", {"prompt": "ink", "steps": 40}))
    assert [u.step for u in updates] == [1, 2]
    assert all(isinstance(u.image, Image.Image) for u in updates)  # CPU PIL images cross the process boundary
    assert calls and calls[0] >= zerogpu.OVERHEAD_S


def test_duration_grows_with_steps_size_and_full_mode():
    base = {"prompt": "ink", "steps": 20, "size": 512, "mode": "fast"}
    short = zerogpu.estimate_duration(None, base)
    assert zerogpu.estimate_duration(None, {**base, "steps": 80}) > short
    assert zerogpu.estimate_duration(None, {**base, "size": 1024}) > short
    assert zerogpu.estimate_duration(None, {**base, "mode": "full"}) > short
    assert zerogpu.estimate_duration(None, {**base, "steps": 10**6}) == zerogpu.MAX_DURATION_S


def test_duration_of_malformed_settings_is_short_and_never_raises():
    for bad in ({"steps": "many"}, {"size": None}, {"strength": float("nan")}):
        assert zerogpu.estimate_duration(None, {"prompt": "ink", **bad}) == zerogpu.OVERHEAD_S
