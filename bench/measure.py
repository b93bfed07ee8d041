"""Clocks, memory gauges and machine facts that do not disturb what they measure."""

from __future__ import annotations

import gc
import importlib.metadata
import itertools
import os
import platform
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

from stylizer.serving.memory import trim_host_heap

MB = 2**20
# Libraries whose versions change the timings, by distribution name.
LIBRARIES = ("torch", "torchvision", "diffusers", "transformers", "open_clip_torch")
_PROC_STATUS = Path("/proc/self/status")
# Writing "5" here resets the process's resident-set high-water mark (VmHWM); Linux only.
_PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


class StepClock:
    """Marks the end of every guided step, as ``stylize``'s ``on_step`` hook.

    On CUDA it records an event in the stream, which does not synchronise, so the loop
    runs as it does in production; the intervals are read once the job is over.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = []

    def __call__(self, done: int, total: int) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def intervals(self) -> list[float]:
        """Seconds between consecutive step ends: one per step after the first."""
        if self.cuda:
            torch.cuda.synchronize()
            return [start.elapsed_time(end) / 1000 for start, end in itertools.pairwise(self.marks)]
        return [end - start for start, end in itertools.pairwise(self.marks)]


class PeakMemory:
    """The peak memory of a block, in MB, and what kind of figure it is.

    * ``cuda_max_memory_allocated``: the most memory tensors held on the GPU (weights
      included; the caching allocator's slack is not).
    * ``cpu_rss_peak_delta``: how far the resident set rose above its size on entry
      (Linux, whose high-water mark is reset on entry, after the C heap has handed its
      free memory back, so that the figure is what the block needed rather than what
      the allocator had to add to its earlier leftovers).
    * ``cpu_maxrss_rise``: elsewhere, how far the process's lifetime peak rose during the
      block; a block that stays under an earlier peak shows 0.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = ""
        self.before_mb = 0.0
        self.peak_mb = 0.0

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind, self.before_mb = "cuda_max_memory_allocated", torch.cuda.memory_allocated(self.device) / MB
        else:
            trim_host_heap()
            if _reset_rss_peak():
                self.kind, self.before_mb = "cpu_rss_peak_delta", _proc_status_kb("VmRSS") * 1024 / MB
            else:
                self.kind, self.before_mb = "cpu_maxrss_rise", _maxrss_bytes() / MB
        return self

    def __exit__(self, *exc: object) -> None:
        if self.kind == "cuda_max_memory_allocated":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / MB
        elif self.kind == "cpu_rss_peak_delta":
            self.peak_mb = _proc_status_kb("VmHWM") * 1024 / MB - self.before_mb
        else:
            self.peak_mb = _maxrss_bytes() / MB - self.before_mb


def machine_info(device: torch.device) -> dict[str, Any]:
    """What ran the benchmark: hardware, threads, and the versions of everything timed."""
    cuda = device.type == "cuda"
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else _cpu_model(),
        "device_memory_mb": torch.cuda.get_device_properties(device).total_memory / MB if cuda else None,
        "libraries": {name: _version(name) for name in LIBRARIES},
    }


def machine_tag(device: torch.device) -> str:
    """A short file-name-safe name of the machine: the GPU's name, or ``cpu-<N>core``."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu-{os.cpu_count()}core"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _reset_rss_peak() -> bool:
    try:
        _PROC_CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _proc_status_kb(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", _PROC_STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{_PROC_STATUS} has no {field}")
    return int(match.group(1))


def _maxrss_bytes() -> int:
    # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _cpu_model() -> str:
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        match = None
    return match.group(1).strip() if match else platform.processor() or platform.machine()


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
