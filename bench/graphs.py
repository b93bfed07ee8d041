"""``python -m bench --check-graphs``: whether anything in the step loop would stop a graph capture.

Each callable of the loop runs once under ``torch._dynamo.explain``, which traces it and
reports every graph break: a host synchronisation, a CPU random draw, data-dependent control
flow or an operation it cannot trace. Those same things stop a CUDA graph capture, so 0
breaks is the precondition of :mod:`stylizer.graphs`. The backward pass between the loss and
the move is autograd's own and is not a dynamo callable; the capture includes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from stylizer.config import StyleConfig
from stylizer.engine.models import Models
from stylizer.engine.optimization import Optimizations
from stylizer.engine.sampler import ready_job
from stylizer.engine.step import denoise_step, fast_loss, full_loss, guided_move, inversion_step, predict_eps
from stylizer.request import Request


def graph_breaks(models: Models, picture: Image.Image, config: StyleConfig, optimizations: Optimizations) -> dict[str, Any]:
    """Graph breaks of every step-loop callable at ``config``'s size: ``{"total": N, "callables": {name: {...}}}``."""
    # The step's own callables, traced as a capture would see them: uncompiled, outside any graph.
    optimizations = dataclasses.replace(optimizations.single_call(), cuda_graphs=False)
    ready = ready_job(models, Request(picture, config), optimize=optimizations)
    if ready.guided is None:
        raise ValueError("--check-graphs needs a guided job: give a loss a weight above 0")
    times, sample, job = ready.times[0], ready.trajectory[0], ready.guided_job
    draws = ready.objective.crop_draws(ready.guided.loss)
    eps = predict_eps(models, optimizations, sample, times, job)
    callables: dict[str, tuple[Callable, tuple]] = {
        "inversion step": (inversion_step, (models, optimizations, sample, times, job.cond)),
        "unguided step": (denoise_step, (models, ready.unguided, optimizations, sample, times, None, ready.unguided_job)),
        "fast loss": (fast_loss, (models, ready.guided, optimizations, sample.detach().requires_grad_(True), draws, job)),
        "full loss": (full_loss, (models, ready.guided, optimizations, sample.detach().requires_grad_(True), times, draws, job)),
        "guided move": (guided_move, (ready.guided, sample, eps, torch.ones_like(sample), times, job)),
    }
    found = {}
    for name, (fn, args) in callables.items():
        torch._dynamo.reset()
        with torch.enable_grad():
            explained = torch._dynamo.explain(fn)(*args)
        found[name] = {
            "graph_breaks": explained.graph_break_count,
            "graphs": explained.graph_count,
            "reasons": [str(reason.reason) for reason in explained.break_reasons],
        }
    torch._dynamo.reset()
    return {"total": sum(entry["graph_breaks"] for entry in found.values()), "callables": found}
