"""The server's caps: the largest job and upload a deployer allows, each from an environment variable."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from . import environment


def _cap(default: float, variable: str) -> Any:
    """A :class:`Limits` field read from ``variable`` (see :mod:`stylizer.config.environment`)."""
    return field(default=default, metadata={"env": variable})


@dataclass(frozen=True)
class Limits:
    """Server-wide caps. Each can be lowered (or raised) with an environment variable.

    Attributes:
        max_size: largest working resolution (long side, px). ``STYLIZER_MAX_SIZE``.
        max_steps: largest number of DDIM steps. ``STYLIZER_MAX_STEPS``.
        max_patches: largest number of patch crops. ``STYLIZER_MAX_PATCHES``.
        max_pixels: largest decoded upload (width x height). ``STYLIZER_MAX_PIXELS``.
        max_upload_mb: largest upload in megabytes. ``STYLIZER_MAX_UPLOAD_MB``.
        job_timeout_s: wall-clock limit per job in seconds. ``STYLIZER_JOB_TIMEOUT``.
        output_ttl_s: seconds a job's files (PNG, GIF) are kept. ``STYLIZER_OUTPUT_TTL``.
    """

    max_size: int = _cap(1024, "STYLIZER_MAX_SIZE")
    max_steps: int = _cap(500, "STYLIZER_MAX_STEPS")
    max_patches: int = _cap(128, "STYLIZER_MAX_PATCHES")
    max_pixels: int = _cap(40_000_000, "STYLIZER_MAX_PIXELS")
    max_upload_mb: float = _cap(20.0, "STYLIZER_MAX_UPLOAD_MB")
    job_timeout_s: float = _cap(600.0, "STYLIZER_JOB_TIMEOUT")
    output_ttl_s: float = _cap(3600.0, "STYLIZER_OUTPUT_TTL")

    @property
    def max_upload_bytes(self) -> int:
        """``max_upload_mb`` in bytes (MB = 2**20 bytes), as the loader and the web server enforce it."""
        return int(self.max_upload_mb * 2**20)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """Build limits from ``STYLIZER_*`` variables, falling back to the defaults."""
        values: dict[str, Any] = {}
        for cap in dataclasses.fields(cls):
            variable = cap.metadata["env"]
            raw = environment.read(variable, environ)
            if not raw:
                continue
            kind = type(cap.default)
            try:
                value = kind(float(raw)) if kind is int else kind(raw)
            except (ValueError, OverflowError):
                raise ConfigError(f"{variable}={raw!r} is not a number") from None
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{variable} must be a positive number, got {raw!r}")
            values[cap.name] = value
        return cls(**values)
