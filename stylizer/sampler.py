"""The guided DDIM loop, as a generator of :class:`Frame` objects.

For each step: predict ε, form x̂0, decode it to pixels, evaluate the style
objective, take its gradient (through the UNet in ``full`` mode, on x̂0 alone in
``fast`` mode), shift ε by √(1-ᾱ_t)·g and let diffusers' ``DDIMScheduler`` step.
The loop knows nothing of the UI: callers iterate it and may stop at any frame.

Inside the loop nothing waits for the GPU except a frame (its image and its loss
values): timesteps stay on the host, the loss terms stay tensors between frames.
``optimize`` picks the eager reference or the optimised step (see :mod:`stylizer.optimization`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from diffusers import DDIMScheduler
from PIL import Image

from .backends import Condition, DiffusionBackend
from .config import StyleConfig
from .errors import ConfigError
from .finish import Finish
from .images import to_pil, to_tensor
from .loading import Models
from .mask import as_tensor, at_latent, check_mask, feathered
from .objective import StyleObjective, source_features
from .optimization import EAGER, Optimizations
from .prepared import Prepared, PreparedCache, prepare_picture

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
    image: Image.Image,
    config: StyleConfig,
    *,
    on_step: Callable[[int, int], None] | None = None,
    optimize: bool | Optimizations | None = None,
    on_invert: Callable[[int, int], None] | None = None,
    cache: PreparedCache | None = None,
    on_prepared: Callable[[bool], None] | None = None,
    mask: Image.Image | None = None,
    style_image: Image.Image | None = None,
) -> Iterator[Frame]:
    """Restyle ``image`` according to ``config``, yielding preview frames and then the result.

    A frame comes after the first step (so a picture shows at once), then every
    ``config.preview_every`` steps, and the last one has ``final=True`` (see :func:`frame_steps`).
    Deterministic for a given seed on the CPU; on CUDA, to within the rounding of atomic adds
    in some backward passes (see README, *Python*).

    Args:
        models: loaded models (see :func:`stylizer.models.load_models`).
        image: RGB input picture.
        config: validated settings.
        on_step: called as ``on_step(done, total)`` after every step, for progress bars.
        optimize: True runs the optimised guided step, False the eager reference; None (the
            default) follows ``STYLIZER_OPTIMIZE``, else eager. Explicit :class:`Optimizations` are for benchmarks.
        on_invert: called as ``on_invert(done, total)`` after every DDIM inversion step (start
            ``invert`` only), which yields no frame; like ``on_step``, it may raise to abort the job.
        cache: keeps what depends on the picture alone (its encoding, features and inversion)
            for later jobs on the same picture; see :class:`stylizer.prepared.PreparedCache`.
        on_prepared: called once the start point is ready, with True when it came from ``cache``.
        mask: restyle only where this greyscale picture is white (see :mod:`stylizer.mask`);
            ``config.invert_mask`` and ``config.mask_feather`` apply.
        style_image: take the style (also) from this picture (see :func:`stylizer.objective.style_direction`).

    Raises:
        ConfigError: neither a prompt nor a style picture; InputError: a mask that does not fit.
    """
    if not config.styles and style_image is None:
        raise ConfigError("prompt is empty: describe the style in a few words, or give a style picture")
    region = None if mask is None else check_mask(mask, image, config.invert_mask)
    backend, device = models.backend, models.device
    prepared = prepare_picture(models, image, config, optimize=optimize, cache=cache, on_invert=on_invert, trajectory=region is not None)
    if on_prepared is not None:
        on_prepared(prepared.reused)
    optimizations, scheduler, timesteps, work = prepared.optimizations, prepared.scheduler, prepared.timesteps, prepared.work
    total = len(timesteps)
    source01 = (prepared.source + 1) / 2
    out_source = image.resize(prepared.out, Image.Resampling.LANCZOS)
    weights = None if region is None else feathered(region, prepared.out, config.feather_px(max(prepared.out)))
    finish = Finish(out_source, config.keep_colors, weights)
    weights_work = None if weights is None else as_tensor(weights, work, device)
    objective = StyleObjective(
        models.clip,
        models.vgg,
        source01,
        config,
        optimizations,
        prepared.features,
        region=weights_work,
        style_embed=None if style_image is None else _style_embedding(models, style_image, work, optimizations),
    )
    cond = backend.condition(config.styles, config.cfg_scale)
    trajectory = _source_trajectory(prepared, config.seed, keep=weights_work is not None)
    sample = trajectory[0]
    blend = None if weights_work is None else at_latent(weights_work, sample.shape)

    area_gain = backend.grad_gain * (work[0] * work[1]) / REFERENCE_AREA
    for index, t in enumerate(timesteps):
        if optimizations.compile and optimizations.compile_mode == "reduce-overhead":
            # CUDA graphs reuse their output buffers: mark where the last step's outputs stop being needed.
            torch.compiler.cudagraph_mark_step_begin()
        eps, pred_clean, terms = guided_eps(
            backend,
            objective,
            sample,
            t,
            cond,
            scheduler,
            mode=config.mode,
            gain=area_gain,
            max_shift=config.max_shift,
            optimizations=optimizations,
        )
        sample = scheduler.step(eps, t, sample, eta=0.0).prev_sample.detach()
        if blend is not None:
            # Blended Latent Diffusion: outside the mask the sample follows the input's own trajectory.
            sample = blend * sample + (1 - blend) * trajectory[index + 1]
        done = index + 1
        if on_step is not None:
            on_step(done, total)
        if done < total and (done == 1 or done % config.preview_every == 0):
            losses = {name: float(value) for name, value in terms.items()}
            yield Frame(done, total, finish(to_pil(backend.preview(pred_clean), prepared.out)), losses)

    with torch.no_grad():
        result = backend.decode(sample).clamp(-1, 1)
        final = finish(to_pil(result, prepared.out))
        # The losses of what is shown: the finished picture when finishing changed it.
        measured = (to_tensor(final, work).to(device) + 1) / 2 if finish.changes_pixels else (result + 1) / 2
        final_terms = objective.measure(measured)
    yield Frame(total, total, final, final_terms, final=True)


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


def guided_eps(
    backend: DiffusionBackend,
    objective: StyleObjective,
    sample: torch.Tensor,
    t: torch.Tensor,
    cond: Condition,
    scheduler: DDIMScheduler,
    *,
    mode: str,
    gain: float,
    max_shift: float = 0.0,
    optimizations: Optimizations = EAGER,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """ε′ = ε + √(1-ᾱ_t)·g for one step, with g the gradient of the weighted style loss.

    Args:
        backend: the diffusion model.
        objective: the job's style loss.
        sample: x_t.
        t: the timestep, on the host (a device one makes every lookup wait for the GPU).
        cond: the backend's conditioning for the style prompt.
        scheduler: the job's scheduler (for ᾱ_t).
        mode: ``"full"`` (gradient through the UNet) or ``"fast"`` (on x̂0 alone).
        gain: scales the gradient into pixel-equivalent units at this resolution.
        max_shift: cap on the RMS of the shift of ε (0: no cap).
        optimizations: how the networks run.

    Returns:
        (ε′, x̂0 computed from the unguided ε, the unweighted loss terms as 0-dim tensors:
        reading them is a host-device synchronisation, so callers do it only when they must).
    """
    # ᾱ stays where the scheduler keeps it: as a CPU scalar, CUDA kernels take it as an argument.
    alpha_bar = scheduler.alphas_cumprod[int(t)].to(dtype=sample.dtype)
    sqrt_ab, sqrt_1mab = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    active = objective.active
    if not active:
        with torch.no_grad():
            eps = backend.eps(sample, t, cond, optimizations)
        return eps, (sample - sqrt_1mab * eps) / sqrt_ab, {}

    with torch.enable_grad():
        if mode == "full":
            x = sample.detach().requires_grad_(True)
            eps = backend.eps(x, t, cond, optimizations)
            pred_clean = (x - sqrt_1mab * eps) / sqrt_ab
            wrt, chain = x, 1.0
        else:
            with torch.no_grad():
                eps = backend.eps(sample, t, cond, optimizations)
            pred_clean = ((sample - sqrt_1mab * eps) / sqrt_ab).detach().requires_grad_(True)
            # ∂x̂0/∂x_t without the UNet's Jacobian is 1/√ᾱ_t.
            wrt, chain = pred_clean, 1.0 / sqrt_ab
        terms = objective.terms((backend.decode(pred_clean, optimizations) + 1) / 2, active)
        (grad,) = torch.autograd.grad(objective.weighted_sum(terms), wrt)
    shift = sqrt_1mab * (grad * chain * gain)
    if max_shift > 0:
        # Trust region (as Disco Diffusion's clamp_grad): cap the RMS of the ε shift so that
        # large weights saturate instead of blowing the sample out of range.
        rms = shift.square().mean().sqrt()
        shift = shift * (max_shift / rms.clamp(min=max_shift))
    guided = eps.detach() + shift
    return guided, pred_clean.detach(), {name: value.detach() for name, value in terms.items()}


def frame_steps(config: StyleConfig) -> list[int]:
    """The steps :func:`stylize` yields a frame after: the first, every ``preview_every``-th, and the last."""
    total = config.denoise_steps
    return [step for step in range(1, total + 1) if step in (1, total) or step % config.preview_every == 0]
