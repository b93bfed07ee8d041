"""One denoising step as a pure function of device tensors: the eager reference and what a CUDA graph captures.

A step predicts ε, forms x̂0, and (when guided) decodes x̂0, evaluates the style loss, takes
its gradient (through the UNet in ``full`` mode, on x̂0 alone in ``fast`` mode), shifts ε by
√(1-ᾱ_t)·g and moves to the previous timestep (:mod:`stylizer.engine.ddim`). Everything that may
change between steps or jobs arrives as a tensor (:class:`JobTensors`, :class:`StepTimes`,
the crop draws); everything that shapes the work is in a :class:`StepPlan`, so one capture
serves every step and job of that plan (see :mod:`stylizer.engine.graphs`). Nothing in a step waits
for the host or draws random numbers of its own.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .backends import Condition
from .ddim import StepTimes, ddim_move, predicted_clean
from .graphs import graphs_of
from .models import Models
from .objective import LossPlan, LossTensors, loss_terms, weighted_sum
from .optimization import Optimizations

UNGUIDED = "unguided"


@dataclass(frozen=True)
class StepPlan:
    """What shapes a step's work; a captured graph is specialised on it (and on its inputs' shapes).

    Attributes:
        mode: ``"full"``, ``"fast"`` or :data:`UNGUIDED` (ε and the DDIM move alone).
        loss: the loss's plan (None when unguided).
        gain: scales the gradient into pixel-equivalent units at this resolution.
        capped: the RMS of the ε shift is capped (``max_shift`` > 0).
        clip: the range x̂0 is clamped to in the DDIM move (the scheduler's ``clip_sample``), or None.
        decoder: what decodes x̂0 for the loss (``guide_decoder``: the VAE or TAESD).
    """

    mode: str
    loss: LossPlan | None
    gain: float
    capped: bool
    clip: float | None
    decoder: str


class JobTensors(NamedTuple):
    """What a step reads that belongs to the job: the UNet's conditioning, the loss's tensors and the shift cap."""

    cond: Condition
    loss: LossTensors | None
    max_shift: torch.Tensor


class StepOutput(NamedTuple):
    """A step's results: x at the previous timestep, x̂0 from the unguided ε (for frames), and the unweighted loss terms."""

    sample: torch.Tensor
    pred_clean: torch.Tensor
    terms: dict[str, torch.Tensor]


def denoise_step(
    models: Models,
    plan: StepPlan,
    optimizations: Optimizations,
    sample: torch.Tensor,
    times: StepTimes,
    crop_draws: torch.Tensor | None,
    job: JobTensors,
) -> StepOutput:
    """One DDIM step, guided as ``plan`` says: ε′ = ε + √(1-ᾱ_t)·g, then the move to the previous timestep."""
    if plan.loss is None:
        eps = predict_eps(models, optimizations, sample, times, job)
        pred_clean = predicted_clean(sample, eps, times)
        return StepOutput(ddim_move(pred_clean, eps, times, plan.clip), pred_clean, {})
    with torch.enable_grad():
        if plan.mode == "full":
            x = sample.detach().requires_grad_(True)
            loss, terms, eps, pred_clean = full_loss(models, plan, optimizations, x, times, crop_draws, job)
            (grad,) = torch.autograd.grad(loss, x)
        else:
            eps = predict_eps(models, optimizations, sample, times, job)
            pred_clean = predicted_clean(sample, eps, times).detach().requires_grad_(True)
            loss, terms = fast_loss(models, plan, optimizations, pred_clean, crop_draws, job)
            (grad,) = torch.autograd.grad(loss, pred_clean)
            # ∂x̂0/∂x_t without the UNet's Jacobian is 1/√ᾱ_t.
            grad = grad / times.start[0]
    moved = guided_move(plan, sample, eps.detach(), grad, times, job)
    return StepOutput(moved, pred_clean.detach(), {name: value.detach() for name, value in terms.items()})


def predict_eps(models: Models, optimizations: Optimizations, sample: torch.Tensor, times: StepTimes, job: JobTensors) -> torch.Tensor:
    """ε(x_t, t) without a gradient (classifier-free guidance included on text models)."""
    with torch.no_grad():
        return models.backend.eps(sample, times, job.cond, optimizations)


def full_loss(
    models: Models,
    plan: StepPlan,
    optimizations: Optimizations,
    x: torch.Tensor,
    times: StepTimes,
    crop_draws: torch.Tensor | None,
    job: JobTensors,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """``full`` mode's forward pass from x_t (a leaf that requires grad): (weighted loss, terms, ε, x̂0)."""
    eps = models.backend.eps(x, times, job.cond, optimizations)
    pred_clean = predicted_clean(x, eps, times)
    loss, terms = fast_loss(models, plan, optimizations, pred_clean, crop_draws, job)
    return loss, terms, eps, pred_clean


def fast_loss(
    models: Models,
    plan: StepPlan,
    optimizations: Optimizations,
    pred_clean: torch.Tensor,
    crop_draws: torch.Tensor | None,
    job: JobTensors,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted style loss of x̂0 and its unweighted terms: decode, then :func:`stylizer.engine.objective.loss_terms`."""
    assert plan.loss is not None and job.loss is not None
    image = (models.backend.decode(pred_clean, optimizations, plan.decoder) + 1) / 2
    terms = loss_terms(models.clip, models.vgg, image, plan.loss, job.loss, crop_draws, optimizations)
    return weighted_sum(terms, job.loss.weights), terms


def guided_move(
    plan: StepPlan, sample: torch.Tensor, eps: torch.Tensor, grad: torch.Tensor, times: StepTimes, job: JobTensors
) -> torch.Tensor:
    """Shift ε by √(1-ᾱ_t)·gain·g (capped in RMS), then take the DDIM move with the shifted ε."""
    shift = times.start[1] * (grad * plan.gain)
    if plan.capped:
        # Trust region (as Disco Diffusion's clamp_grad): cap the RMS of the ε shift so that
        # large weights saturate instead of blowing the sample out of range.
        rms = shift.square().mean().sqrt()
        shift = shift * (job.max_shift / torch.maximum(rms, job.max_shift))
    guided = eps + shift
    return ddim_move(predicted_clean(sample, guided, times), guided, times, plan.clip)


def run_step(
    models: Models,
    plan: StepPlan,
    optimizations: Optimizations,
    sample: torch.Tensor,
    times: StepTimes,
    crop_draws: torch.Tensor | None,
    job: JobTensors,
) -> StepOutput:
    """:func:`denoise_step`, replayed from a CUDA graph where ``optimizations.cuda_graphs`` is on and the models are on CUDA.

    A graph's outputs are its own buffers, valid until its next replay: callers read them before the next step.
    """
    if not uses_graphs(models, optimizations):
        return denoise_step(models, plan, optimizations, sample, times, crop_draws, job)
    step = functools.partial(denoise_step, models, plan, optimizations)
    return graphs_of(models.backend).call(("step", plan, optimizations), step, sample, times, crop_draws, job)


def inversion_step(models: Models, optimizations: Optimizations, x: torch.Tensor, times: StepTimes, cond: Condition) -> torch.Tensor:
    """One DDIM inversion step: ε at the later timestep, then the move there (see :func:`stylizer.engine.ddim.inversion_times`)."""
    with torch.no_grad():
        eps = models.backend.eps(x, times, cond, optimizations)
        return ddim_move(predicted_clean(x, eps, times), eps, times)


def run_inversion_step(models: Models, optimizations: Optimizations, x: torch.Tensor, times: StepTimes, cond: Condition) -> torch.Tensor:
    """:func:`inversion_step`, from a CUDA graph where :func:`run_step` would use one; the result is the caller's own tensor."""
    if not uses_graphs(models, optimizations):
        return inversion_step(models, optimizations, x, times, cond)
    step = functools.partial(inversion_step, models, optimizations)
    return graphs_of(models.backend).call(("invert", optimizations), step, x, times, cond).clone()


def uses_graphs(models: Models, optimizations: Optimizations) -> bool:
    """Whether the step loop replays CUDA graphs for these models and optimisations."""
    return optimizations.cuda_graphs and models.device.type == "cuda"
