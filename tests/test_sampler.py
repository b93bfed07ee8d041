"""The guided DDIM loop on the tiny preset: frames, determinism, sizes, guidance, inversion."""

import math

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from stylizer.config import StyleConfig
from stylizer.engine.backends import PixelBackend
from stylizer.engine.ddim import clip_range, ddim_move, inversion_times, predicted_clean, sampling_times
from stylizer.engine.models import Models
from stylizer.engine.prepared import ddim_invert
from stylizer.engine.sampler import frame_steps, stylize
from stylizer.engine.tensors import to_tensor
from stylizer.request import Request

from .helpers import CUDA_REPEAT_TOLERANCE, NO_GUIDANCE, AnalyticEps, make_image, pixels, run


@pytest.mark.parametrize("steps, strength, every", [(10, 1.0, 3), (10, 0.5, 5), (8, 1.0, 1), (6, 0.5, 10)])
def test_frames_come_after_step_one_then_every_interval(tiny_models, picture, steps, strength, every):
    frames = run(tiny_models, picture, steps=steps, strength=strength, preview_every=every, **NO_GUIDANCE)
    config = StyleConfig(prompt="x", steps=steps, strength=strength, preview_every=every)
    total = config.denoise_steps
    assert [f.step for f in frames] == frame_steps(config) == sorted({1, *range(every, total, every), total})
    assert frames[0].step == 1  # a picture at once, not a progress bar
    assert frames[-1].final and frames[-1].step == frames[-1].total == total
    assert not any(f.final for f in frames[:-1])


@pytest.mark.parametrize("start", ["noise", "invert"])
def test_same_seed_same_result_other_seed_other_result(tiny_models, picture, start):
    first = run(tiny_models, picture, start=start, seed=7)[-1]
    again = run(tiny_models, picture, start=start, seed=7)[-1]
    other = run(tiny_models, picture, start=start, seed=8)[-1]
    assert np.array_equal(pixels(first), pixels(again))
    assert first.losses == again.losses
    assert not np.array_equal(pixels(first), pixels(other))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_same_seed_on_cuda_agrees_within_tolerance(picture):
    from stylizer.loading import load_models

    models = load_models("tiny", "cuda")
    first, again, other = (pixels(run(models, picture, seed=seed)[-1]) for seed in (7, 7, 8))
    repeat = np.abs(first - again)
    assert repeat.max() <= CUDA_REPEAT_TOLERANCE["max"] and repeat.mean() <= CUDA_REPEAT_TOLERANCE["mean"]
    assert np.abs(first - other).mean() > 4 * CUDA_REPEAT_TOLERANCE["mean"]


@pytest.mark.parametrize("size_in, size_out", [((80, 60), (64, 48)), ((60, 80), (48, 64)), ((100, 37), (64, 24)), ((64, 64), (64, 64))])
def test_output_size_and_aspect_follow_the_input(tiny_models, size_in, size_out):
    frames = run(tiny_models, make_image(*size_in), steps=4, preview_every=1)
    assert all(f.image.size == size_out for f in frames)
    assert all(f.image.mode == "RGB" for f in frames)


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_directional_guidance_lowers_directional_loss(tiny_models, picture, mode):
    unguided = run(tiny_models, picture, mode=mode, **NO_GUIDANCE)[-1].losses["dir"]
    guided = run(tiny_models, picture, mode=mode, **{**NO_GUIDANCE, "w_dir": 20000.0})[-1].losses["dir"]
    assert guided < unguided - 0.05


@pytest.mark.parametrize("mode", ["fast", "full"])
@pytest.mark.parametrize(
    "term, weight, low, high", [("content", "w_content", 0.0, 10000.0), ("tv", "w_tv", 0.0, 10000.0), ("patch", "w_patch", 0.0, 100000.0)]
)
def test_raising_a_weight_lowers_its_loss(tiny_models, picture, mode, term, weight, low, high):
    """Each slider moves the result in its direction, with the other terms at their defaults."""
    weak = run(tiny_models, picture, mode=mode, **{weight: low})[-1].losses[term]
    strong = run(tiny_models, picture, mode=mode, **{weight: high})[-1].losses[term]
    assert strong < weak


def test_frames_carry_the_active_loss_terms(tiny_models, picture):
    frames = run(tiny_models, picture, preview_every=2, w_patch=0.0)
    assert set(frames[0].losses) == {"dir", "content", "tv"}
    assert set(frames[-1].losses) == {"dir", "patch", "content", "tv"}
    assert all(math.isfinite(v) for f in frames for v in f.losses.values())


def test_progress_callback_sees_every_step(tiny_models, picture):
    seen = []
    config = StyleConfig(prompt="ink", size=64, steps=10, strength=0.5, **NO_GUIDANCE).validated()
    list(stylize(tiny_models, Request(picture, config), on_step=lambda done, total: seen.append((done, total))))
    assert seen == [(i, 5) for i in range(1, 6)]


def test_inversion_reports_every_step_and_can_be_aborted(tiny_models, picture):
    config = StyleConfig(prompt="ink", size=64, steps=10, strength=0.5, start="invert", **NO_GUIDANCE).validated()
    seen = []
    list(stylize(tiny_models, Request(picture, config), on_invert=lambda done, total: seen.append((done, total))))
    assert seen == [(i, 5) for i in range(1, 6)]

    class Abort(Exception):
        pass

    def abort(done: int, total: int) -> None:
        if done == 2:
            raise Abort

    frames = []
    with pytest.raises(Abort):
        frames.extend(stylize(tiny_models, Request(picture, config), on_invert=abort, on_step=lambda *_: frames.append("step")))
    assert frames == []


def _scheduler():
    """The tiny preset's linear schedule, without clipping x̂0 to [-1, 1].

    Clipping is not invertible, and with a t-dependent ε the intermediate x̂0 leave that range.
    """
    return DDIMScheduler(beta_schedule="linear", clip_sample=False)


def step_with(eps):
    """An inversion step from ε(x, times)."""
    return lambda x, times: ddim_move(predicted_clean(x, eps(x, times), times), eps(x, times), times)


def test_the_ddim_move_is_the_schedulers_step():
    scheduler = DDIMScheduler(beta_schedule="linear", clip_sample=True, set_alpha_to_one=False)
    scheduler.set_timesteps(20)
    x, eps = torch.randn(2, 1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2
    for times, t in zip(sampling_times(scheduler, scheduler.timesteps, x.device), scheduler.timesteps, strict=True):
        expected = scheduler.step(eps, t, x, eta=0.0).prev_sample
        moved = ddim_move(predicted_clean(x, eps, times), eps, times, clip_range(scheduler))
        assert torch.allclose(moved, expected, atol=1e-6), int(t)
    # Without the clamp the last steps differ: x̂0 of this ε leaves [-1, 1].
    assert not torch.allclose(ddim_move(predicted_clean(x, eps, times), eps, times), expected, atol=1e-3)


def test_ddim_inversion_round_trips_exactly_for_an_analytic_denoiser():
    clean = torch.rand(1, 3, 16, 16) * 2 - 1
    model = AnalyticEps((1, 3, 16, 16))
    scheduler = _scheduler()
    scheduler.set_timesteps(20)
    timesteps = scheduler.timesteps[20 - 14 :]
    noisy = ddim_invert(step_with(lambda x, times: model(x, times.t).sample), clean, inversion_times(scheduler, timesteps, clean.device))
    assert not torch.allclose(noisy, clean, atol=0.1)  # it really went somewhere
    x = noisy
    for t in timesteps:
        x = scheduler.step(model(x, t).sample, t, x, eta=0.0).prev_sample
    assert torch.allclose(x, clean, atol=1e-4)


def test_invert_start_reproduces_the_input_without_guidance(tiny_models):
    """Invert then regenerate through the full sampler: the result equals the input within 2/255."""
    image = make_image(64, 48)
    backend = PixelBackend(AnalyticEps((1, 3, 48, 64)), _scheduler().config, multiple=4)
    analytic = Models(tiny_models.preset, backend, tiny_models.clip, tiny_models.vgg, tiny_models.device)
    result = run(analytic, image, start="invert", steps=20, strength=0.8, **NO_GUIDANCE)[-1]
    assert np.abs(pixels(result) - np.asarray(image, dtype=np.int16)).max() <= 2
    noised = run(analytic, image, start="noise", steps=20, strength=0.8, **NO_GUIDANCE)[-1]
    assert np.abs(pixels(noised) - np.asarray(image, dtype=np.int16)).max() > 2


def test_real_tiny_unet_through_inversion_has_right_shape_and_is_finite(tiny_models, picture):
    backend = tiny_models.backend
    scheduler = backend.new_scheduler()
    scheduler.set_timesteps(10)
    clean = to_tensor(picture, (64, 48))
    eps = lambda x, times: backend.eps(x, times, None)  # noqa: E731
    noisy = ddim_invert(step_with(eps), clean, inversion_times(scheduler, scheduler.timesteps[4:], clean.device))
    assert noisy.shape == clean.shape and torch.isfinite(noisy).all()
    result = run(tiny_models, picture, start="invert", **NO_GUIDANCE)[-1]
    assert result.image.size == (64, 48)
