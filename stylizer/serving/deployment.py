"""Where the app runs, decided once at start-up and passed down: the engine never asks.

A :class:`Deployment` says what kind of host serves the jobs (this process's GPUs or CPU, a
Hugging Face ZeroGPU Space, or a Ray Serve replica) and the server-wide switches that follow
from it or from the environment: the optimised step, how many CUDA graphs and prepared pictures
are kept, where the prepared pictures live, and whether pictures are prepared in the background.
No torch here: the app reads it before anything imports torch (ZeroGPU needs ``spaces`` first).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..config import environment

LOCAL, ZERO_GPU, RAY_REPLICA = "local", "zerogpu", "ray-replica"


@dataclass(frozen=True)
class Deployment:
    """The deployment profile.

    Attributes:
        kind: :data:`LOCAL` (this process's GPUs, or its CPU), :data:`ZERO_GPU` or :data:`RAY_REPLICA`.
        optimize: run the optimised guided step (``STYLIZER_OPTIMIZE``).
        cache_entries: prepared pictures kept per device (``STYLIZER_CACHE_ENTRIES``; None: the engine's default).
        max_graphs: CUDA graphs kept per model set (``STYLIZER_GRAPHS``; None: the engine's default).
    """

    kind: str = LOCAL
    optimize: bool = False
    cache_entries: int | None = None
    max_graphs: int | None = None

    @classmethod
    def from_env(cls, kind: str | None = None, environ: Mapping[str, str] | None = None) -> Deployment:
        """The profile of this process: ``kind`` where the caller knows it (a Ray replica), else ZeroGPU where
        ``SPACES_ZERO_GPU`` is set, else local; the switches from their variables."""
        return cls(
            kind=kind or host_kind(environ),
            optimize=environment.switch("STYLIZER_OPTIMIZE", False, environ),
            cache_entries=environment.whole_number("STYLIZER_CACHE_ENTRIES", None, environ),
            max_graphs=environment.whole_number("STYLIZER_GRAPHS", None, environ),
        )

    @property
    def zero_gpu(self) -> bool:
        """On a ZeroGPU Space: every job runs in a GPU process forked for it, through ``spaces.GPU``."""
        return self.kind == ZERO_GPU

    @property
    def cuda_graphs(self) -> bool:
        """Whether a CUDA graph captured in one job can serve the next (not on ZeroGPU, whose process ends with the job)."""
        return not self.zero_gpu

    @property
    def cache_storage(self) -> str | None:
        """Where prepared pictures are kept: in CPU memory on ZeroGPU (the GPU exists only inside a job), else where computed."""
        return "cpu" if self.zero_gpu else None

    @property
    def prepares_in_background(self) -> bool:
        """Whether an uploaded picture is prepared before Stylize asks for it (on ZeroGPU that would spend the visitor's quota)."""
        return not self.zero_gpu


def host_kind(environ: Mapping[str, str] | None = None) -> str:
    """What hosts this process, as the platform says: :data:`ZERO_GPU` where ``SPACES_ZERO_GPU`` is set, else :data:`LOCAL`.

    The one place that asks; the app asks it before torch is imported (ZeroGPU needs ``spaces`` first).
    """
    return ZERO_GPU if environment.is_set("SPACES_ZERO_GPU", environ) else LOCAL
