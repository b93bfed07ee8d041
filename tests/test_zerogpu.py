"""The ZeroGPU path: decided once from SPACES_ZERO_GPU; there the jobs run inside spaces.GPU for a duration from their settings."""

import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import torch
from PIL import Image

from stylizer.config import StyleConfig
from stylizer.engine.optimization import optimizations_for
from stylizer.request import Request
from stylizer.serving import zerogpu
from stylizer.serving.deployment import LOCAL, ZERO_GPU, Deployment
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
    info, limits, concurrency = "info", "limits", 1

    def check(self, image, settings, *, preparing=False):
        return Request(Image.new("RGB", (8, 8)), StyleConfig(**settings).validated())

    def run(self, request):
        yield JobUpdate(1, 2, {"dir": 0.5}, Image.new("RGB", (8, 8)))
        yield JobUpdate(2, 2, {"dir": 0.4}, Image.new("RGB", (8, 8)))

    def preview(self, request, cancelled):
        self.polled = cancelled()
        return JobUpdate(2, 2, {"dir": 0.4}, Image.new("RGB", (8, 8)))


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


def config(**settings) -> StyleConfig:
    return StyleConfig(**{"prompt": "ink", **settings}).validated()


def test_the_deployment_says_zero_gpu_only_where_spaces_says_so():
    assert Deployment.from_env(environ={}).kind == LOCAL
    on_spaces = Deployment.from_env(environ={"SPACES_ZERO_GPU": "true"})
    assert on_spaces.kind == ZERO_GPU and on_spaces.zero_gpu
    assert not on_spaces.cuda_graphs and on_spaces.cache_storage == "cpu" and not on_spaces.prepares_in_background
    local = Deployment()
    assert local.cuda_graphs and local.cache_storage is None and local.prepares_in_background


def test_on_zero_gpu_the_run_is_wrapped_with_a_duration_from_the_settings(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "spaces", recording_spaces(calls))
    jobs = zerogpu.ZeroGpuJobs(FakeWorker())
    request = jobs.check("image.png", {"prompt": "ink", "steps": 40})
    updates = list(jobs.run(request))
    assert [u.step for u in updates] == [1, 2]
    assert calls == [zerogpu.estimate_duration(request.config)] and calls[0] >= zerogpu.OVERHEAD_S


def test_on_zero_gpu_a_preview_runs_inside_spaces_gpu_for_a_preview_sized_duration(monkeypatch):
    durations = []
    worker = FakeWorker()
    monkeypatch.setitem(sys.modules, "spaces", recording_spaces(durations))
    jobs = zerogpu.ZeroGpuJobs(worker)
    request = jobs.check("image.png", {"prompt": "ink", "steps": 200, "size": 1024, "preview_size": 256, "preview_steps": 12})
    assert jobs.preview(request, lambda: True).step == 2
    assert worker.polled is False  # the GPU process cannot poll the page: it is never cancelled there
    assert durations == [zerogpu.estimate_duration(request.config.as_preview())]
    assert durations[0] < zerogpu.estimate_duration(request.config)


def test_on_zero_gpu_prepared_pictures_are_kept_in_cpu_memory_and_nothing_is_captured(tmp_path):
    worker = Worker("tiny", ["cpu"], output_dir=tmp_path, deployment=Deployment(ZERO_GPU))
    assert {cache.storage.type for cache in worker.caches.values()} == {"cpu"}
    assert {cache.storage for cache in Worker("tiny", ["cpu"], output_dir=tmp_path).caches.values()} == {None}


def test_duration_grows_with_steps_size_and_full_mode():
    base = dict(steps=20, size=512, mode="fast")
    short = zerogpu.estimate_duration(config(**base))
    assert zerogpu.estimate_duration(config(**{**base, "steps": 80})) > short
    assert zerogpu.estimate_duration(config(**{**base, "size": 1024})) > short
    assert zerogpu.estimate_duration(config(**{**base, "mode": "full"})) > short
    assert zerogpu.estimate_duration(config(**{**base, "steps": 500, "strength": 1.0, "size": 1024})) == zerogpu.MAX_DURATION_S


def test_duration_reads_the_steps_a_job_really_runs():
    """steps x strength, as StyleConfig.denoise_steps says: a job at strength 0.5 runs half the steps."""
    assert zerogpu.estimate_duration(config(steps=80, strength=0.5)) == zerogpu.estimate_duration(config(steps=40, strength=1.0))


def test_on_zero_gpu_the_app_imports_spaces_before_torch(tmp_path):
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "__init__.py").write_text(SPACES_STUB)
    env = {**os.environ, "SPACES_ZERO_GPU": "true", "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    # The app imports spaces and nothing that needs torch; torch comes with the worker, after spaces.
    code = "import sys, app; assert 'spaces' in sys.modules and 'torch' not in sys.modules; import stylizer.serving.worker"
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_real_jobs_updates_survive_the_trip_back_from_the_gpu_process(tmp_path, picture_path):
    """ZeroGPU pickles the request into the forked GPU process and every yielded update back; nothing may be a tensor or unpicklable."""
    worker = Worker("tiny", ["cpu"], output_dir=tmp_path)
    request = pickle.loads(pickle.dumps(worker.check(picture_path, {"prompt": "ink", "size": 64, "steps": 6, "preview_every": 2})))
    updates = list(worker.run(request))
    copies = pickle.loads(pickle.dumps(updates))
    assert [u.step for u in copies] == [u.step for u in updates]
    assert copies[-1].result is not None and copies[-1].result.png_path == updates[-1].result.png_path
    assert copies[-1].image.tobytes() == updates[-1].image.tobytes()


def test_zero_gpu_never_captures():
    local, spaces = Deployment(), Deployment(ZERO_GPU)
    assert optimizations_for(torch.device("cuda"), True, torch.bfloat16, graphs=local.cuda_graphs).cuda_graphs
    on_spaces = optimizations_for(torch.device("cuda"), True, torch.bfloat16, graphs=spaces.cuda_graphs)
    assert not on_spaces.cuda_graphs and on_spaces.autocast == torch.bfloat16
