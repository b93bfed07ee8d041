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

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from diffusers import DDIMScheduler
from PIL import Image

from . import optimization
from .backends import Condition, DiffusionBackend
from .config import StyleConfig
from .images import output_size, to_pil, to_tensor, working_size
from .loading import Models
from .objective import StyleObjective
from .optimization import EAGER, Optimizations

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
) -> Iterator[Frame]:
    """Restyle ``image`` according to ``config``, yielding preview frames and then the result.

    A frame comes every ``config.preview_every`` steps and the last one has
    ``final=True``, so a job yields ``ceil(total / preview_every)`` frames.
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
    """
    backend, device = models.backend, models.device
    optimizations = optimization.resolve(device, optimize)
    optimization.set_layout((*backend.networks, models.vgg), optimizations.channels_last)
    work = working_size(*image.size, config.size, backend.multiple)
    out = output_size(*image.size, config.size)
    source = to_tensor(image, work).to(device)
    objective = StyleObjective(models.clip, models.vgg, (source + 1) / 2, config, optimizations)
    scheduler = backend.new_scheduler()
    # Host timesteps: the scheduler's lookups then never wait for the GPU, and the backends
    # find each one's device copy without a transfer (see DiffusionBackend.net_timestep).
    scheduler.set_timesteps(config.steps)
    total = config.denoise_steps
    timesteps = scheduler.timesteps[config.steps - total :]
    cond = backend.condition(config.prompt, config.cfg_scale)

    with torch.no_grad():
        clean = backend.encode(source)
        if config.start == "invert":
            inv_cond = backend.inversion_condition(config.reference)
            sample = ddim_invert(lambda x, t: backend.eps(x, t, inv_cond, optimizations), clean, timesteps, scheduler, on_invert)
        else:
            generator = torch.Generator(device=device).manual_seed(config.seed)
            noise = torch.randn(clean.shape, generator=generator, device=device, dtype=clean.dtype)
            sample = scheduler.add_noise(clean, noise, timesteps[:1])

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
        done = index + 1
        if on_step is not None:
            on_step(done, total)
        if done < total and done % config.preview_every == 0:
            losses = {name: float(value) for name, value in terms.items()}
            yield Frame(done, total, to_pil(backend.preview(pred_clean), out), losses)

    with torch.no_grad():
        result = backend.decode(sample).clamp(-1, 1)
        final_terms = objective.measure((result + 1) / 2)
    yield Frame(total, total, to_pil(result, out), final_terms, final=True)


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


def ddim_invert(
    eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    clean: torch.Tensor,
    timesteps: torch.Tensor,
    scheduler: DDIMScheduler,
    on_step: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Deterministic DDIM inversion: run the eta=0 update backwards from ``clean`` to ``timesteps[0]``.

    Mirrors ``DDIMScheduler.step`` exactly (same ᾱ for the previous step, same
    final ᾱ), evaluating ε at the target timestep as in null-text inversion.

    Args:
        eps_fn: ε(x, t).
        clean: x at the end of the schedule (the encoded input).
        timesteps: the descending timesteps the sampler will run.
        scheduler: a scheduler after ``set_timesteps``.
        on_step: called as ``on_step(done, total)`` after every inversion step.
    """
    stride = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    x = clean
    for done, t in enumerate(reversed(timesteps), start=1):
        prev = int(t) - stride
        alpha_cur = scheduler.alphas_cumprod[prev] if prev >= 0 else scheduler.final_alpha_cumprod
        alpha_next = scheduler.alphas_cumprod[int(t)]
        # CPU scalars, as in guided_eps: no copy to the device to wait for.
        alpha_cur, alpha_next = alpha_cur.to(dtype=x.dtype), alpha_next.to(dtype=x.dtype)
        eps = eps_fn(x, t)
        pred_clean = (x - (1 - alpha_cur).sqrt() * eps) / alpha_cur.sqrt()
        x = alpha_next.sqrt() * pred_clean + (1 - alpha_next).sqrt() * eps
        if on_step is not None:
            on_step(done, len(timesteps))
    return x


def frame_count(config: StyleConfig) -> int:
    """How many frames :func:`stylize` yields for ``config``."""
    return math.ceil(config.denoise_steps / config.preview_every)
