"""The guided DDIM loop, as a generator of :class:`Frame` objects.

Each step is :func:`stylizer.engine.step.denoise_step`: predict ε, form x̂0, decode it to pixels,
evaluate the style objective, take its gradient (through the UNet in ``full`` mode, on x̂0
alone in ``fast`` mode), shift ε by √(1-ᾱ_t)·g and take the DDIM move. Steps outside the
guidance window (``guide_start``, ``guide_end``) are unguided. The loop knows nothing of the
UI: callers iterate it and may stop at any frame.

Inside the loop nothing waits for the GPU except a frame (its image and its loss values):
the steps' coefficients are read from a device table, the loss terms stay tensors between
frames. ``optimize`` picks the eager reference or the optimised step, which replays each step
as a CUDA graph on a GPU (see :mod:`stylizer.engine.optimization` and :mod:`stylizer.engine.graphs`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from PIL import Image

from ..config import StyleConfig
from ..errors import ConfigError
from ..images import check_mask
from ..request import Request
from .backends import DiffusionBackend
from .ddim import StepTimes, clip_range, sampling_times
from .finish import Finish
from .mask import as_tensor, at_latent, feathered
from .models import Models
from .objective import StyleObjective, source_features
from .optimization import Optimizations
from .prepared import Prepared, PreparedCache, prepare_picture
from .step import UNGUIDED, JobTensors, StepPlan, run_step
from .tensors import to_pil, to_tensor

# Guidance gradients of mean-type losses shrink with the pixel count; rescaling to this
# reference area keeps a slider's meaning the same at every resolution.
REFERENCE_AREA = 256 * 256


@dataclass
class Frame:
    """One streamed update of a job.

    Attributes:
        step: DDIM steps done so far (1..total).
        total: DDIM steps this job runs.
        image: the current prediction of the clean image, at the output size.
        losses: unweighted loss terms (on the final frame: all terms, measured on the final image).
        final: True for the last frame, whose image is the result.
    """

    step: int
    total: int
    image: Image.Image
    losses: dict[str, float] = field(default_factory=dict)
    final: bool = False


def stylize(
    models: Models,
    request: Request,
    *,
    on_step: Callable[[int, int], None] | None = None,
    optimize: bool | Optimizations = False,
    on_invert: Callable[[int, int], None] | None = None,
    cache: PreparedCache | None = None,
    on_prepared: Callable[[bool], None] | None = None,
) -> Iterator[Frame]:
    """Restyle the request's picture as its settings say, yielding preview frames and then the result.

    A frame comes after the first step (so a picture shows at once), then every
    ``config.preview_every`` steps, and the last one has ``final=True`` (see :func:`frame_steps`).
    Deterministic for a given seed on the CPU; on CUDA, to within the rounding of atomic adds
    in some backward passes (see README, *Python*).

    Args:
        models: loaded models (see :func:`stylizer.loading.load_models`).
        request: the checked job (see :func:`stylizer.request.check_request`): the picture, the settings,
            and optionally a mask (restyle only where it is white, see :mod:`stylizer.engine.mask`) and a
            style picture (see :func:`stylizer.engine.objective.style_direction`).
        on_step: called as ``on_step(done, total)`` after every step, for progress bars.
        optimize: True runs the optimised guided step, False (the default) the eager reference; explicit
            :class:`Optimizations` are for the serving layer (which decides about CUDA graphs) and benchmarks.
        on_invert: called as ``on_invert(done, total)`` after every DDIM inversion step (start
            ``invert`` only), which yields no frame; like ``on_step``, it may raise to abort the job.
        cache: keeps what depends on the picture alone (its encoding, features and inversion)
            for later jobs on the same picture; see :class:`stylizer.engine.prepared.PreparedCache`.
        on_prepared: called once the start point is ready, with True when it came from ``cache``.

    Raises:
        ConfigError: neither a prompt nor a style picture; InputError: a mask that does not fit.
    """
    config = request.config
    ready = ready_job(models, request, optimize=optimize, cache=cache, on_invert=on_invert)
    if on_prepared is not None:
        on_prepared(ready.prepared.reused)
    backend, prepared = models.backend, ready.prepared
    total = len(ready.times)
    sample = ready.trajectory[0]
    for index, times in enumerate(ready.times):
        plan, job = ready.step_at(index, config)
        step = run_step(models, plan, prepared.optimizations, sample, times, ready.objective.crop_draws(plan.loss), job)
        sample = step.sample
        if ready.blend is not None:
            # Blended Latent Diffusion: outside the mask the sample follows the input's own trajectory.
            sample = ready.blend * sample + (1 - ready.blend) * ready.trajectory[index + 1]
        done = index + 1
        if on_step is not None:
            on_step(done, total)
        if done < total and (done == 1 or done % config.preview_every == 0):
            losses = {name: float(value) for name, value in step.terms.items()}
            yield Frame(done, total, ready.finish(to_pil(backend.preview(step.pred_clean, config.guide_decoder), prepared.out)), losses)
    yield final_frame(models, ready, sample)


def final_frame(models: Models, ready: ReadyJob, sample: torch.Tensor) -> Frame:
    """The result: the last sample decoded by the VAE, finished, with every loss term measured on what is shown."""
    prepared, total = ready.prepared, len(ready.times)
    with torch.no_grad():
        result = models.backend.decode(sample).clamp(-1, 1)
        final = ready.finish(to_pil(result, prepared.out))
        # The losses of what is shown: the finished picture when finishing changed it.
        measured = (to_tensor(final, prepared.work).to(models.device) + 1) / 2 if ready.finish.changes_pixels else (result + 1) / 2
        return Frame(total, total, final, ready.objective.measure(measured), final=True)


@dataclass
class ReadyJob:
    """A job ready for its first step: the prepared picture, the objective, the step plans with their tensors, and where it starts.

    Attributes:
        prepared: the picture, encoded and (start ``invert``) inverted.
        objective: the job's loss.
        finish: what every frame's picture goes through (mask composite, kept colours).
        guided, unguided: the step plans inside and outside the guidance window (``guided`` None: nothing guides).
        guided_job, unguided_job: the tensors each plan's steps read.
        times: each step's timestep and coefficients.
        trajectory: the start point, then (with a mask) the input at each later timestep.
        blend: the mask at the sample's size, or None.
    """

    prepared: Prepared
    objective: StyleObjective
    finish: Finish
    guided: StepPlan | None
    unguided: StepPlan
    guided_job: JobTensors
    unguided_job: JobTensors
    times: list[StepTimes]
    trajectory: list[torch.Tensor]
    blend: torch.Tensor | None

    def step_at(self, index: int, config: StyleConfig) -> tuple[StepPlan, JobTensors]:
        """The plan and tensors of step ``index``: outside the guidance window [guide_start, guide_end), the unguided step."""
        if self.guided is not None and config.guided_at(index):
            return self.guided, self.guided_job
        return self.unguided, self.unguided_job


def ready_job(
    models: Models,
    request: Request,
    *,
    optimize: bool | Optimizations = False,
    cache: PreparedCache | None = None,
    on_invert: Callable[[int, int], None] | None = None,
) -> ReadyJob:
    """Everything :func:`stylize` does before its first step (the arguments are its own).

    Raises:
        ConfigError: neither a prompt nor a style picture; InputError: a mask that does not fit.
    """
    image, config, mask, style_image = request.image, request.config, request.mask, request.style_image
    if not config.styles and style_image is None:
        raise ConfigError("prompt is empty: describe the style in a few words, or give a style picture")
    region = None if mask is None else check_mask(mask, image, config.invert_mask)
    backend, device = models.backend, models.device
    prepared = prepare_picture(models, image, config, optimize=optimize, cache=cache, on_invert=on_invert, trajectory=region is not None)
    optimizations, work = prepared.optimizations, prepared.work
    out_source = image.resize(prepared.out, Image.Resampling.LANCZOS)
    weights = None if region is None else feathered(region, prepared.out, config.feather_px(max(prepared.out)))
    weights_work = None if weights is None else as_tensor(weights, work, device)
    objective = StyleObjective(
        models.clip,
        models.vgg,
        (prepared.source + 1) / 2,
        config,
        optimizations,
        prepared.features,
        region=weights_work,
        style_embed=None if style_image is None else _style_embedding(models, style_image, work, optimizations),
    )
    cond = backend.condition(config.styles, config.cfg_scale)
    trajectory = _source_trajectory(prepared, config.seed, keep=weights_work is not None)
    guided, unguided = step_plans(backend, objective, config, work, clip_range(prepared.scheduler))
    max_shift = torch.tensor(config.max_shift, dtype=torch.float32, device=device)
    return ReadyJob(
        prepared=prepared,
        objective=objective,
        finish=Finish(out_source, config.keep_colors, weights),
        guided=guided,
        unguided=unguided,
        guided_job=JobTensors(cond, objective.tensors, max_shift),
        unguided_job=JobTensors(cond, None, max_shift),
        times=sampling_times(prepared.scheduler, prepared.timesteps, device),
        trajectory=trajectory,
        blend=None if weights_work is None else at_latent(weights_work, trajectory[0].shape),
    )


def _source_trajectory(prepared: Prepared, seed: int, keep: bool) -> list[torch.Tensor]:
    """Where the loop starts, then (``keep``) the input itself at each later timestep and at the end, for a mask to blend with.

    From a DDIM inversion that is the inversion's own trajectory; from noise (SDEdit), the
    input noised with the same noise to each timestep.
    """
    if prepared.inversion is not None:
        return [*prepared.inversion.trajectory, prepared.clean] if keep else [prepared.inversion.start]
    clean, timesteps, scheduler = prepared.clean, prepared.timesteps, prepared.scheduler
    generator = torch.Generator(device=clean.device).manual_seed(seed)
    noise = torch.randn(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype)
    if not keep:
        return [scheduler.add_noise(clean, noise, timesteps[:1])]
    return [*(scheduler.add_noise(clean, noise, timesteps[i : i + 1]) for i in range(len(timesteps))), clean]


def _style_embedding(models: Models, style_image: Image.Image, work: tuple[int, int], optimizations: Optimizations) -> torch.Tensor:
    """The style picture's CLIP embedding, read exactly as the input's is (at the working size), so that the same picture gives the same embedding."""
    style = (to_tensor(style_image.convert("RGB"), work).to(models.device) + 1) / 2
    return source_features(models.clip, models.vgg, style, optimizations).embed


def step_plans(
    backend: DiffusionBackend, objective: StyleObjective, config: StyleConfig, work: tuple[int, int], clip: float | None
) -> tuple[StepPlan | None, StepPlan]:
    """The job's guided step plan (None when no loss can guide) and its unguided one."""
    gain = backend.grad_gain * (work[0] * work[1]) / REFERENCE_AREA
    unguided = StepPlan(UNGUIDED, None, gain, capped=False, clip=clip, decoder=config.guide_decoder)
    active = objective.active
    if not active:
        return None, unguided
    plan = StepPlan(config.mode, objective.plan(active), gain, capped=config.max_shift > 0, clip=clip, decoder=config.guide_decoder)
    return plan, unguided


def frame_steps(config: StyleConfig) -> list[int]:
    """The steps :func:`stylize` yields a frame after: the first, every ``preview_every``-th, and the last."""
    total = config.denoise_steps
    return [step for step in range(1, total + 1) if step in (1, total) or step % config.preview_every == 0]
