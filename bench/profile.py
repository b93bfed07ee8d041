"""A profile of one job, to explain a step time: how busy the device was, and the costliest operators.

A launch-bound loop shows as a low device-busy fraction (the GPU waits on Python and
kernel launches) and a large count of kernel launches per step; a compute-bound one as
a fraction near 1 with convolutions and matrix products at the top.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch
from PIL import Image
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from stylizer.config import StyleConfig
from stylizer.engine.models import Models
from stylizer.engine.optimization import Optimizations
from stylizer.engine.sampler import stylize
from stylizer.request import Request

US = 1e-6
# The profiled job's schedule: a 50-step job holds millions of profiler events (minutes of
# Python to summarise on a real-size model), and per-step figures need only a few steps.
PROFILE_STEPS = 10
# Operators listed per case, costliest first.
TOP_OPERATORS = 12


def profile_job(models: Models, picture: Image.Image, config: StyleConfig, optimizations: Optimizations) -> dict[str, Any]:
    """Run one short job of ``config`` (at most :data:`PROFILE_STEPS` steps) under the PyTorch profiler and summarise it.

    Returns:
        ``wall_s`` (the job, profiler overhead included), ``device_busy_s`` and
        ``device_busy_fraction`` (summed device kernel time, CUDA only), operator calls per
        step (every dispatcher level, so ``conv2d`` and the kernels under it each count) and
        device kernels per step, and ``top``: the operators with the most self time over the
        job on the device (CUDA) or the CPU, with their call counts. An operator's device
        time is that of the kernels it launched itself.
    """
    cuda = models.device.type == "cuda"
    config = dataclasses.replace(config, steps=min(config.steps, PROFILE_STEPS))
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        started = time.perf_counter()
        for _ in stylize(models, Request(picture, config), optimize=optimizations):
            pass
        if cuda:
            torch.cuda.synchronize()
        wall_s = time.perf_counter() - started
    averages = prof.key_averages()
    steps = max(config.denoise_steps, 1)
    operators = [e for e in averages if e.device_type == DeviceType.CPU]
    kernels = [e for e in averages if e.device_type == DeviceType.CUDA]
    busy_s = sum(e.device_time_total for e in kernels) * US
    cost = (lambda e: e.self_device_time_total) if cuda else (lambda e: e.self_cpu_time_total)
    top = sorted((e for e in operators if cost(e) > 0), key=cost, reverse=True)[:TOP_OPERATORS]
    return {
        "wall_s": wall_s,
        "device_busy_s": busy_s,
        "device_busy_fraction": busy_s / wall_s if cuda else None,
        "operator_calls_per_step": sum(e.count for e in operators) / steps,
        "device_kernels_per_step": sum(e.count for e in kernels) / steps,
        "top": [
            {"name": e.key, "calls": e.count, "self_ms": cost(e) * US * 1000, "self_cpu_ms": e.self_cpu_time_total * US * 1000} for e in top
        ],
    }
