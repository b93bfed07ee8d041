"""The ZeroGPU path: off Spaces nothing changes; with SPACES_ZERO_GPU the run goes through spaces.GPU."""

import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

from PIL import Image

from stylizer.serving import zerogpu
from stylizer.serving.jobs import JobUpdate
from stylizer.serving.worker import Worker

ROOT = Path(__file__).resolve().parents[1]
# A stand-in for the `spaces` package that fails as the real one does when torch came first.
SPACES_STUB = """
import sys
if "torch" in sys.modules:
    raise RuntimeError("CUDA has been initialized before importing the `spaces` package")
def GPU(duration=None):
    return lambda fn: fn
"""


class FakeWorker:
    def run(self, image, settings):
        yield JobUpdate(1, 2, {"dir": 0.5}, Image.new("RGB", (8, 8)))
        yield JobUpdate(2, 2, {"dir": 0.4}, Image.new("RGB", (8, 8)))

    def preview(self, image, settings, cancelled):
        self.polled = cancelled()
        return JobUpdate(2, 2, {"dir": 0.4}, Image.new("RGB", (8, 8)))


def test_off_zero_gpu_the_run_function_is_the_workers(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    worker = FakeWorker()
    assert zerogpu.gpu_run_fn(worker) == worker.run


def recording_spaces(durations: list) -> types.SimpleNamespace:
    """A ``spaces`` module whose ``GPU(duration=...)`` records the duration each call asks for."""

    def gpu(duration):
        def wrap(fn):
            def wrapped(*args, **kwargs):
                durations.append(duration(*args, **kwargs))
                return fn(*args, **kwargs)

            return wrapped

        return wrap

    return types.SimpleNamespace(GPU=gpu)


def test_on_zero_gpu_the_run_is_wrapped_with_a_duration_from_the_settings(monkeypatch):
    calls = []
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setitem(sys.modules, "spaces", recording_spaces(calls))
    run = zerogpu.gpu_run_fn(FakeWorker())
    updates = list(run("image.png", {"prompt": "ink", "steps": 40}))
    assert [u.step for u in updates] == [1, 2]
    assert calls and calls[0] >= zerogpu.OVERHEAD_S


def test_on_zero_gpu_a_preview_runs_inside_spaces_gpu_for_a_preview_sized_duration(monkeypatch):
    durations = []
    worker = FakeWorker()
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert zerogpu.gpu_preview_fn(worker) == worker.preview
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setitem(sys.modules, "spaces", recording_spaces(durations))
    preview = zerogpu.gpu_preview_fn(worker)
    settings = {"prompt": "ink", "steps": 200, "size": 1024, "preview_size": 256, "preview_steps": 12}
    assert preview("image.png", settings, lambda: True).step == 2
    assert worker.polled is False  # the GPU process cannot poll the page: it is never cancelled there
    assert durations == [zerogpu.estimate_duration(None, {**settings, "size": 256, "steps": 12})]
    assert durations[0] < zerogpu.estimate_duration(None, settings)


def test_on_zero_gpu_prepared_pictures_are_kept_in_cpu_memory(monkeypatch, tmp_path):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    worker = Worker("tiny", ["cpu"], output_dir=tmp_path)
    assert {cache.storage.type for cache in worker.caches.values()} == {"cpu"}
    monkeypatch.delenv("SPACES_ZERO_GPU")
    assert {cache.storage for cache in Worker("tiny", ["cpu"], output_dir=tmp_path).caches.values()} == {None}


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


def test_on_zero_gpu_the_app_imports_spaces_before_torch(tmp_path):
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "__init__.py").write_text(SPACES_STUB)
    env = {**os.environ, "SPACES_ZERO_GPU": "true", "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    code = "import sys, app; assert 'spaces' in sys.modules and 'torch' in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_real_jobs_updates_survive_the_trip_back_from_the_gpu_process(tmp_path, picture_path):
    """ZeroGPU pickles every yielded update in the forked GPU process; nothing in them may be a tensor or unpicklable."""
    worker = Worker("tiny", ["cpu"], output_dir=tmp_path)
    updates = list(worker.run(picture_path, {"prompt": "ink", "size": 64, "steps": 6, "preview_every": 2}))
    copies = pickle.loads(pickle.dumps(updates))
    assert [u.step for u in copies] == [u.step for u in updates]
    assert copies[-1].result is not None and copies[-1].result.png_path == updates[-1].result.png_path
    assert copies[-1].image.tobytes() == updates[-1].image.tobytes()


def test_zero_gpu_never_captures_or_compiles(monkeypatch):
    import torch

    from stylizer.engine.optimization import optimizations_for

    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert optimizations_for(torch.device("cuda"), True, torch.bfloat16).cuda_graphs
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    on_spaces = optimizations_for(torch.device("cuda"), True, torch.bfloat16)
    assert not (on_spaces.cuda_graphs or on_spaces.compile) and on_spaces.autocast == torch.bfloat16
