"""Every knob of a stylization job, its default, its range and its validation.

``StyleConfig`` is the single source of truth: the CLI, the app's sliders and the
API all build one and call :meth:`StyleConfig.validated`. Server-wide caps that a
deployer may lower (resolution, steps, patches, pixels, upload size, wall time)
live in :class:`Limits` and are read from ``STYLIZER_*`` environment variables.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ConfigError

START_MODES = ("noise", "invert")
GUIDANCE_MODES = ("full", "fast")
MAX_PROMPT_CHARS = 1000


def _knob(default: Any, lo: float | None = None, hi: float | None = None, help: str = "", limit: str | None = None):
    """A dataclass field carrying its range, help text and optional server limit name."""
    return field(default=default, metadata={"range": (lo, hi), "help": help, "limit": limit})


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

    max_size: int = 1024
    max_steps: int = 500
    max_patches: int = 128
    max_pixels: int = 40_000_000
    max_upload_mb: float = 20.0
    job_timeout_s: float = 600.0
    output_ttl_s: float = 3600.0

    @property
    def max_upload_bytes(self) -> int:
        """``max_upload_mb`` in bytes (MB = 2**20 bytes), as the loader and the web server enforce it."""
        return int(self.max_upload_mb * 2**20)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Limits":
        """Build limits from ``STYLIZER_*`` variables, falling back to the defaults."""
        env = os.environ if environ is None else environ
        names = {
            "max_size": "STYLIZER_MAX_SIZE",
            "max_steps": "STYLIZER_MAX_STEPS",
            "max_patches": "STYLIZER_MAX_PATCHES",
            "max_pixels": "STYLIZER_MAX_PIXELS",
            "max_upload_mb": "STYLIZER_MAX_UPLOAD_MB",
            "job_timeout_s": "STYLIZER_JOB_TIMEOUT",
            "output_ttl_s": "STYLIZER_OUTPUT_TTL",
        }
        values: dict[str, Any] = {}
        for attr, var in names.items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            kind = type(getattr(cls, attr))
            try:
                value = kind(float(raw)) if kind is int else kind(raw)
            except ValueError:
                raise ConfigError(f"{var}={raw!r} is not a number") from None
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{var} must be a positive number, got {raw!r}")
            values[attr] = value
        return cls(**values)


@dataclass(frozen=True)
class StyleConfig:
    """The settings of one stylization job.

    Loss weights multiply the four guidance terms; ``guidance_scale`` multiplies
    them all. Defaults follow CLIPstyler's ratios (directional : patch : content)
    rescaled for per-step diffusion guidance.
    """

    prompt: str = ""
    reference: str = _knob("a photo", help="source text the style direction starts from")
    w_dir: float = _knob(2000.0, 0, 50_000, "global directional CLIP loss weight")
    w_patch: float = _knob(4000.0, 0, 100_000, "patch directional CLIP loss weight")
    w_content: float = _knob(100.0, 0, 10_000, "VGG16 content loss weight")
    w_tv: float = _knob(150.0, 0, 10_000, "total-variation loss weight")
    guidance_scale: float = _knob(1.0, 0, 100, "multiplies every loss weight")
    max_shift: float = _knob(0.1, 0, 2, "cap on the RMS of the guidance's change to ε per step (0: no cap)")
    cfg_scale: float = _knob(7.5, 0, 30, "classifier-free guidance (latent backend only; 0 turns it off)")
    steps: int = _knob(50, 1, 1000, "DDIM steps over the full schedule", limit="max_steps")
    strength: float = _knob(0.6, 0.01, 1.0, "how far to noise the input (fraction of the schedule)")
    start: str = _knob("invert", help="start point: 'noise' (SDEdit) or 'invert' (DDIM inversion)")
    mode: str = _knob("fast", help="gradient through the UNet ('full') or on the predicted x0 only ('fast')")
    n_patches: int = _knob(32, 0, 512, "number of random patch crops", limit="max_patches")
    patch_size: int = _knob(128, 8, 1024, "patch crop size in px (clamped to the image's short side)")
    threshold: float = _knob(0.7, 0, 2, "patch losses below this are ignored")
    distortion: float = _knob(0.5, 0, 1, "random perspective strength of the crops")
    size: int = _knob(256, 32, 4096, "working resolution: the long side in px", limit="max_size")
    seed: int = _knob(0, 0, 2**32 - 1, "random seed")
    preview_every: int = _knob(5, 1, 1000, "yield a preview frame every N steps")

    def validated(self, limits: Limits | None = None) -> "StyleConfig":
        """Return a normalised copy, or raise :class:`ConfigError` naming the bad setting.

        Args:
            limits: server caps; the defaults of :class:`Limits` when omitted.
        """
        limits = limits or Limits()
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            values[f.name] = _check_field(f, getattr(self, f.name), limits)
        values["prompt"] = _check_text("prompt", values["prompt"], allow_empty=False)
        values["reference"] = _check_text("reference", values["reference"], allow_empty=False)
        if values["start"] not in START_MODES:
            raise ConfigError(f"start must be one of {', '.join(START_MODES)}, got {values['start']!r}")
        if values["mode"] not in GUIDANCE_MODES:
            raise ConfigError(f"mode must be one of {', '.join(GUIDANCE_MODES)}, got {values['mode']!r}")
        return StyleConfig(**values)

    @property
    def denoise_steps(self) -> int:
        """Number of DDIM steps actually run: the last ``strength`` of the schedule."""
        return max(1, round(self.steps * self.strength))

    @property
    def weights(self) -> dict[str, float]:
        """Effective loss weights (user weight times the overall guidance scale)."""
        return {
            "dir": self.w_dir * self.guidance_scale,
            "patch": self.w_patch * self.guidance_scale,
            "content": self.w_content * self.guidance_scale,
            "tv": self.w_tv * self.guidance_scale,
        }

    def to_dict(self) -> dict[str, Any]:
        """All settings as plain JSON-able values."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Settings as a compact, copyable JSON string."""
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StyleConfig":
        """Build from a mapping, rejecting unknown keys with a clear message."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**dict(data))

    @classmethod
    def from_json(cls, text: str) -> "StyleConfig":
        """Parse settings produced by :meth:`to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"settings are not valid JSON: {exc.msg} (line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise ConfigError("settings must be a JSON object")
        return cls.from_dict(data)


def field_range(name: str, limits: Limits | None = None) -> tuple[float | None, float | None]:
    """The allowed (low, high) of a numeric setting, with server limits applied."""
    f = {f.name: f for f in dataclasses.fields(StyleConfig)}[name]
    lo, hi = f.metadata.get("range", (None, None))
    limit = f.metadata.get("limit")
    if limit and hi is not None:
        hi = min(hi, getattr(limits or Limits(), limit))
    return lo, hi


def _check_field(f: dataclasses.Field, value: Any, limits: Limits) -> Any:
    default = f.default
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{f.name} must be text, got {type(value).__name__}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{f.name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{f.name} must be a finite number, got {value!r}")
    if isinstance(default, int):
        if value != int(value):
            raise ConfigError(f"{f.name} must be a whole number, got {value!r}")
        value = int(value)
    else:
        value = float(value)
    lo, hi = field_range(f.name, limits)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{f.name} must be between {_fmt(lo)} and {_fmt(hi)}, got {_fmt(value)}")
    return value


def _check_text(name: str, text: str, allow_empty: bool) -> str:
    # Control characters are invisible in the UI and meaningless to CLIP's tokenizer.
    cleaned = "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)
    cleaned = " ".join(cleaned.split())
    if not cleaned and not allow_empty:
        raise ConfigError(f"{name} is empty: describe the style in a few words, e.g. 'drawing with black ink'")
    if len(cleaned) > MAX_PROMPT_CHARS:
        raise ConfigError(f"{name} is {len(cleaned)} characters long; the limit is {MAX_PROMPT_CHARS}")
    return cleaned


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:g}"
