"""The optimisation switch and the benchmark: the optimised path's image is the eager one's on the CPU,
the CPU never compiles, ``python -m bench`` writes every figure, and (on a GPU) the loop never synchronises."""

import json

import numpy as np
import pytest
import torch

from bench.build import bench_models
from bench.cli import main as bench_main
from bench.compiled import CompiledOptimizations
from stylizer.config import StyleConfig
from stylizer.engine.optimization import EAGER, Optimizations, optimizations_for, set_layout
from stylizer.engine.sampler import frame_steps, stylize
from stylizer.engine.warmup import warmup
from stylizer.errors import ConfigError
from stylizer.loading import load_models
from stylizer.request import Request
from stylizer.serving.deployment import Deployment
from stylizer.serving.worker import Worker

from .helpers import make_image

# On the CPU the optimised path only batches CLIP's passes, so float32 sums run in another
# order: the result may move by a rounding step, and by no more than this many 0-255 levels.
CPU_TOLERANCE = 2
# The loss terms the frames carry move by no more than float32 rounding through a few steps.
LOSS_TOLERANCE = 1e-4
PATHS = ("eager", "optimised")
GUIDANCES = ("unguided", "fast", "full")
CASE_FIELDS = {
    "path",
    "guidance",
    "step_s",
    "step_intervals_s",
    "first_frame_s",
    "first_frame_step",
    "end_to_end_s",
    "warmup_s",
    "capture_s",
    "peak_memory_mb",
    "memory_kind",
    "memory_before_mb",
    "losses",
    "profile",
}


def pixels(frame) -> np.ndarray:
    return np.asarray(frame.image, dtype=np.int16)


@pytest.fixture(scope="module", params=["tiny", "tiny-latent"])
def models(request):
    return load_models(request.param, "cpu")


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_optimised_path_gives_the_eager_image_on_the_cpu(models, mode):
    config = StyleConfig(prompt="drawing with black ink", size=64, steps=10, mode=mode, preview_every=2, seed=5).validated()
    eager = list(stylize(models, Request(make_image(), config), optimize=False))
    fast = list(stylize(models, Request(make_image(), config), optimize=True))
    assert [f.step for f in fast] == [f.step for f in eager]
    assert np.abs(pixels(fast[-1]) - pixels(eager[-1])).max() <= CPU_TOLERANCE
    for ours, reference in zip(fast, eager):
        assert ours.losses.keys() == reference.losses.keys()
        assert all(isinstance(v, float) and abs(v - reference.losses[k]) <= LOSS_TOLERANCE for k, v in ours.losses.items())


def test_the_cpu_runs_eager_by_default_and_never_compiles_or_autocasts(models):
    cpu = torch.device("cpu")
    assert optimizations_for(cpu) == EAGER
    optimised = optimizations_for(cpu, True)
    assert optimised.batch_clip and optimised.autocast is None and not optimised.channels_last and not optimised.cuda_graphs
    assert warmup(models, optimize=True) == 0.0


def test_the_environment_sets_the_apps_switch(monkeypatch, tmp_path):
    """The engine takes the switch (eager by default); the deployment reads STYLIZER_OPTIMIZE, once, and the worker follows it."""
    assert optimizations_for(torch.device("cuda")) == EAGER  # eager until a GPU run validates the optimised path
    monkeypatch.delenv("STYLIZER_OPTIMIZE", raising=False)
    assert Deployment.from_env().optimize is False
    monkeypatch.setenv("STYLIZER_OPTIMIZE", "0")
    assert Deployment.from_env().optimize is False
    monkeypatch.setenv("STYLIZER_OPTIMIZE", "1")
    deployment = Deployment.from_env()
    assert deployment.optimize is True
    worker = Worker("tiny", ["cpu"], output_dir=tmp_path, deployment=deployment)
    assert worker.optimizations["cpu"] == optimizations_for(torch.device("cpu"), True)
    monkeypatch.setenv("STYLIZER_OPTIMIZE", "yes")
    with pytest.raises(ConfigError, match="STYLIZER_OPTIMIZE"):
        Deployment.from_env()


def test_each_network_compiles_once_per_mode_and_is_kept(monkeypatch):
    compiled = []

    def fake_compile(fn, mode=None):
        compiled.append((fn, mode))
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    net = torch.nn.Linear(2, 2)
    graphs = CompiledOptimizations(compile_mode="reduce-overhead")
    for _ in range(3):
        graphs.network(net)(torch.zeros(1, 2))
    CompiledOptimizations().network(net)(torch.zeros(1, 2))
    assert compiled == [(net, "reduce-overhead"), (net, None)]


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_only_the_step_loop_runs_compiled_networks(monkeypatch, models, mode):
    """Calls made once a job or once a frame (the source's features, the frames' loss readings,
    the previews) run uncompiled: each grad mode and batch size costs a compilation of its own,
    which on a real-size model is a minute, so only the calls that repeat every step compile.
    """
    calls = []

    def recording_compile(fn, mode=None):
        name = type(getattr(fn, "__self__", fn)).__name__

        def call(*args, **kwargs):
            calls.append((name, torch.is_grad_enabled()))
            return fn(*args, **kwargs)

        return call

    monkeypatch.setattr(torch, "compile", recording_compile)
    config = StyleConfig(prompt="ink", size=64, steps=6, strength=1.0, mode=mode, preview_every=2).validated()
    networks = [models.clip.model, models.vgg, *models.backend.networks]
    try:
        list(stylize(models, Request(make_image(), config), optimize=CompiledOptimizations(batch_clip=True)))
    finally:
        for net in networks:
            net.__dict__.pop("_stylizer_compiled", None)  # the recording wrappers must not outlive this test
    guides = {(name, grad) for name, grad in calls if name not in {type(net).__name__ for net in models.backend.networks}}
    assert guides == {(type(models.clip.model).__name__, True), ("VggEncoder", True)}
    # The denoiser runs compiled in the inversion (no gradients) and in each step (with them in full mode only).
    assert {grad for name, grad in calls if name == type(models.backend.unet).__name__} == {False, mode == "full"}


def test_layout_switch_keeps_the_output_and_round_trips_the_weights():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1))
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    before = net(x)
    set_layout([net], channels_last=True)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(net(x), before, atol=1e-6)
    set_layout([net], channels_last=False)
    assert net[0].weight.is_contiguous()


@pytest.mark.parametrize("backend", ["pixel", "latent"])
def test_real_size_models_are_built_on_the_asked_device(backend):
    """Every network of a real-size benchmark sits on the device asked for (meta: no memory, no time).

    open_clip builds on the CPU whatever torch's default device, which once left CLIP on
    the CPU in a CUDA benchmark.
    """
    models = bench_models(backend, torch.device("meta"), torch.float32)
    networks = [models.clip, models.vgg, *models.backend.networks]
    assert {t.device.type for net in networks for t in [*net.parameters(), *net.buffers()]} == {"meta"}


def test_bench_runs_on_the_cpu_and_its_json_has_every_figure(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = [
        "--model",
        "tiny",
        "--device",
        "cpu",
        "--size",
        "32",
        "--steps",
        "8",
        "--strength",
        "0.5",
        "--patches",
        "2",
        "--repeats",
        "1",
        "--profile",
        "--compile-mode",
        "reduce-overhead",
        "--out",
        str(out),
    ]
    assert bench_main(argv) == 0
    doc = json.loads(out.read_text())
    assert set(doc) == {"schema", "machine", "settings", "models", "cases", "ratios"}
    assert {"torch", "device", "device_name", "cpu", "cpu_count", "torch_threads", "libraries"} <= set(doc["machine"])
    assert doc["settings"]["config"]["size"] == 32 and doc["settings"]["backend"] == "pixel"
    assert set(doc["settings"]["optimizations"]) == set(PATHS)
    assert doc["settings"]["compile_mode"] == "reduce-overhead"  # recorded on every device; it compiles on CUDA only
    assert {"name", "backend", "parameters", "load_s"} <= set(doc["models"])
    assert {(c["path"], c["guidance"]) for c in doc["cases"]} == {(p, g) for p in PATHS for g in (*GUIDANCES, "fast-window")}
    for case in doc["cases"]:
        assert set(case) == CASE_FIELDS
        assert case["memory_kind"].startswith("cpu_")
        numbers = [case[name] for name in ("step_s", "first_frame_s", "end_to_end_s", "warmup_s", "peak_memory_mb")]
        assert all(isinstance(n, float) for n in numbers) and case["step_intervals_s"]
        profile = case["profile"]
        assert profile["device_busy_fraction"] is None and profile["operator_calls_per_step"] > 0
        assert profile["top"] and all(op["calls"] > 0 and op["self_ms"] > 0 for op in profile["top"])
    ratios = doc["ratios"]
    assert set(ratios["guided_over_unguided"]) == {f"{p}/{m}" for p in PATHS for m in ("fast", "full")}
    for name in ("optimised_speedup_step", "optimised_speedup_end_to_end", "optimised_vs_eager_image"):
        assert set(ratios[name]) == set(GUIDANCES)
    assert all(diff["max"] <= CPU_TOLERANCE for diff in ratios["optimised_vs_eager_image"].values())
    assert set(ratios["window_over_fast"]) == set(PATHS) and all(0 < r < 1.5 for r in ratios["window_over_fast"].values())
    printed = capsys.readouterr().out
    assert "optimised_speedup_step" in printed and "profile optimised/full:" in printed


def test_bench_prices_the_window_and_taesd_on_a_latent_model(tmp_path):
    out = tmp_path / "latent.json"
    argv = ["--model", "tiny-latent", "--device", "cpu", "--steps", "5", "--strength", "1", "--patches", "2", "--mode", "fast"]
    assert bench_main([*argv, "--repeats", "1", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert {c["guidance"] for c in doc["cases"]} == {"unguided", "fast", "fast-window", "fast-taesd"}
    assert set(doc["ratios"]["taesd_over_fast"]) == set(doc["ratios"]["window_over_fast"]) == set(PATHS)


def test_bench_rerun_times_cold_warm_and_preview_jobs(tmp_path, capsys):
    out = tmp_path / "rerun.json"
    argv = ["--model", "tiny-latent", "--device", "cpu", "--steps", "6", "--strength", "1", "--patches", "2"]
    assert bench_main([*argv, "--rerun", "--preview-size", "32", "--preview-steps", "4", "--repeats", "2", "--out", str(out)]) == 0
    reruns = json.loads(out.read_text())["rerun"]
    assert set(reruns) == set(PATHS)
    rerun = reruns["eager"]
    cases = rerun["cases"]
    assert list(cases) == ["cold", "warm", "preview"] and rerun["preview"] == {"size": 32, "steps": 4}
    assert cases["cold"]["inversion_hits"] == 0 and cases["warm"]["inversion_hits"] == cases["preview"]["inversion_hits"] == 2
    assert all(c["first_frame_step"] == 1 and 0 < c["first_frame_s"] <= c["end_to_end_s"] for c in cases.values())
    assert rerun["ratios"]["warm_end_to_end_over_cold"] == cases["warm"]["end_to_end_s"] / cases["cold"]["end_to_end_s"]
    assert "warm_first_frame_over_cold" in capsys.readouterr().out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("preset", ["tiny", "tiny-latent"])
@pytest.mark.parametrize(
    "optimize",
    [
        False,
        Optimizations(batch_clip=True, autocast=torch.bfloat16, channels_last=True),
        Optimizations(batch_clip=True, autocast=torch.bfloat16, channels_last=True, cuda_graphs=True),
    ],
    ids=["eager", "optimised", "graphs"],
)
def test_the_guided_loop_never_waits_for_the_gpu(preset, optimize):
    """From the end of the first step to the end of the loop, any host-device synchronisation raises.

    No preview frame falls inside the loop, since frames are where it synchronises on purpose.
    Compilation is left out: compiling may synchronise, and the first step does it anyway.
    """
    models = load_models(preset, "cuda")
    config = StyleConfig(prompt="drawing with black ink", size=64, steps=10, preview_every=100).validated()

    framed = frame_steps(config)

    def on_step(done: int, total: int) -> None:
        # A frame (after steps 1 and 10) reads its image; every other step must not wait for the GPU.
        torch.cuda.set_sync_debug_mode("default" if done in framed else "error")

    try:
        frames = list(stylize(models, Request(make_image(), config), on_step=on_step, optimize=optimize))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert [f.step for f in frames] == framed == [1, 10] and frames[-1].final
