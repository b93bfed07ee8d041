"""The step loop as CUDA graphs: nothing in it breaks a graph (CPU), the guidance window, and (CUDA only) the
captured path gives the eager image, and one capture serves later jobs with other settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.cli import main as bench_main
from bench.compiled import CompiledOptimizations
from bench.graphs import graph_breaks
from stylizer.config import StyleConfig
from stylizer.engine import losses, sampler
from stylizer.engine.graphs import CapturedCall, graphs_of
from stylizer.engine.optimization import EAGER, Optimizations, optimizations_for
from stylizer.engine.sampler import stylize
from stylizer.engine.step import UNGUIDED
from stylizer.errors import ConfigError
from stylizer.loading import load_models
from stylizer.request import Request

from .helpers import make_image, pixels, run

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
# The captured step runs the eager step's kernels in the same order, so only the atomics of some
# backward passes (see helpers.CUDA_REPEAT_TOLERANCE) can move a level.
GRAPH_TOLERANCE = 2
SHORT = {"size": 64, "steps": 8, "strength": 1.0, "n_patches": 8, "patch_size": 32}


@pytest.mark.parametrize("preset", ["tiny", "tiny-latent"])
def test_nothing_in_the_step_loop_breaks_a_graph(preset, tmp_path, capsys):
    out = tmp_path / "graphs.json"
    assert bench_main(["--model", preset, "--check-graphs", "--patches", "8", "--out", str(out)]) == 0
    assert "graph breaks: 0" in capsys.readouterr().out
    found = json.loads(out.read_text())["check_graphs"]
    assert found["total"] == 0
    assert set(found["callables"]) == {"inversion step", "unguided step", "fast loss", "full loss", "guided move"}
    assert all(entry["graphs"] >= 1 for entry in found["callables"].values())  # each was really traced


def test_the_check_finds_a_host_synchronisation(monkeypatch, tiny_models):
    total_variation = losses.total_variation

    def synchronising(image: torch.Tensor) -> torch.Tensor:
        """The same loss after a read on the host, as a careless edit might add."""
        return total_variation(image) * (1.0 if float(image.mean()) < 10 else 0.0)

    monkeypatch.setattr(losses, "total_variation", synchronising)
    config = StyleConfig(prompt="ink", **SHORT).validated()
    found = graph_breaks(tiny_models, make_image(), config, EAGER)
    assert found["callables"]["fast loss"]["graph_breaks"] >= 1 and found["callables"]["full loss"]["graph_breaks"] >= 1
    assert found["callables"]["unguided step"]["graph_breaks"] == 0


def test_the_guidance_window_guides_only_its_steps(monkeypatch, tiny_models, picture):
    modes = []
    run_step = sampler.run_step

    def recording(models, plan, *args):
        modes.append(plan.mode)
        return run_step(models, plan, *args)

    monkeypatch.setattr(sampler, "run_step", recording)
    run(tiny_models, picture, steps=10, strength=1.0, guide_start=0.2, guide_end=0.6)
    assert modes == [UNGUIDED] * 2 + ["fast"] * 4 + [UNGUIDED] * 4


def test_a_window_over_every_step_is_the_default_and_a_shorter_one_guides_less(tiny_models, picture):
    default = run(tiny_models, picture, w_dir=20000.0)[-1]
    whole = run(tiny_models, picture, w_dir=20000.0, guide_start=0.0, guide_end=1.0)[-1]
    assert np.array_equal(pixels(default), pixels(whole))
    unguided = run(tiny_models, picture, w_dir=0.0, w_patch=0.0, w_content=0.0, w_tv=0.0)[-1]
    early = run(tiny_models, picture, w_dir=20000.0, guide_end=0.5)[-1]
    assert not np.array_equal(pixels(early), pixels(default)) and not np.array_equal(pixels(early), pixels(unguided))


@pytest.mark.parametrize("start, end", [(0.5, 0.5), (0.8, 0.2)])
def test_an_empty_window_is_refused(start, end):
    with pytest.raises(ConfigError, match="guide_start .* must be below guide_end"):
        StyleConfig(prompt="ink", guide_start=start, guide_end=end).validated()


def test_graphs_and_compile_exclude_each_other():
    with pytest.raises(ValueError, match="exclude each other"):
        CompiledOptimizations(cuda_graphs=True)


def test_the_cpu_never_captures(tiny_models, picture):
    assert not optimizations_for(torch.device("cpu"), True).cuda_graphs
    list(stylize(tiny_models, Request(picture, StyleConfig(prompt="ink", **SHORT).validated()), optimize=True))
    assert len(graphs_of(tiny_models.backend)) == 0


@pytest.fixture(scope="module", params=["tiny", "tiny-latent"])
def cuda_models(request):
    return load_models(request.param, "cuda")


@pytest.mark.gpu
@cuda
def test_a_captured_call_replays_forward_and_backward():
    weight = torch.randn(8, 8, device="cuda")

    def step(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad((leaf @ weight).square().sum() * scale, leaf)
        return x - grad

    x, scale = torch.randn(4, 8, device="cuda"), torch.tensor(0.5, device="cuda")
    captured = CapturedCall(step, (x, scale))
    assert torch.allclose(captured.outputs, step(x, scale), atol=1e-5)
    other, other_scale = torch.randn(4, 8, device="cuda"), torch.tensor(2.0, device="cuda")
    assert torch.allclose(captured(other, other_scale), step(other, other_scale), atol=1e-5)


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("mode", ["fast", "full"])
def test_the_captured_path_gives_the_eager_image(cuda_models, mode):
    graphs = Optimizations(batch_clip=True, cuda_graphs=True)
    config = StyleConfig(prompt="drawing with black ink", mode=mode, guide_end=0.75, **SHORT).validated()
    eager = list(stylize(cuda_models, Request(make_image(), config), optimize=Optimizations(batch_clip=True)))
    captured = list(stylize(cuda_models, Request(make_image(), config), optimize=graphs))
    assert len(graphs_of(cuda_models.backend)) >= 3  # inversion, unguided and guided steps
    assert np.abs(pixels(captured[-1]) - pixels(eager[-1])).max() <= GRAPH_TOLERANCE
    assert captured[-1].losses == pytest.approx(eager[-1].losses, rel=1e-2, abs=1e-3)


@pytest.mark.gpu
@cuda
def test_one_capture_serves_later_jobs_with_other_settings(cuda_models):
    graphs = Optimizations(batch_clip=True, cuda_graphs=True)
    first = StyleConfig(prompt="drawing with black ink", **SHORT).validated()
    list(stylize(cuda_models, Request(make_image(), first), optimize=graphs))
    cache = graphs_of(cuda_models.backend)
    captures = cache.captures
    # Other weights, prompt, threshold, distortion, seed and picture: the same shapes, so no new capture,
    # and the captured step must read every one of them (a baked-in value would differ from eager).
    second = StyleConfig(
        prompt="oil painting", w_dir=9000.0, w_tv=10.0, threshold=0.3, distortion=0.1, seed=7, max_shift=0.05, cfg_scale=3.0, **SHORT
    ).validated()
    picture = make_image(seed=3)
    captured = list(stylize(cuda_models, Request(picture, second), optimize=graphs))
    assert cache.captures == captures
    eager = list(stylize(cuda_models, Request(picture, second), optimize=Optimizations(batch_clip=True)))
    assert np.abs(pixels(captured[-1]) - pixels(eager[-1])).max() <= GRAPH_TOLERANCE
