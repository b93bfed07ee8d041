"""Every knob of a stylization job: its default, range, validation, and how each front end shows it.

``StyleConfig`` is the single source of truth. Each field's metadata is a :class:`Knob`
that holds what the command line (flag), the page (label, slider step, group) and the
``/stylize`` API need, so :mod:`stylizer.cli` and :mod:`stylizer.ui` derive their options
and controls from this table: a new setting is one field here. Every front end builds a
``StyleConfig`` and calls :meth:`StyleConfig.validated`. Server-wide caps that a deployer
may lower (resolution, steps, patches, pixels, upload size, wall time) live in
:class:`Limits` and are read from ``STYLIZER_*`` environment variables.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

START_MODES = ("noise", "invert")
GUIDANCE_MODES = ("full", "fast")
# What decodes x̂0 for the losses and the frames: the model's own VAE, or TAESD (a distilled tiny decoder).
GUIDE_DECODERS = ("vae", "taesd")
# Only a guard against abusive payloads: longer texts are accepted and cut to CLIP's context with a note.
MAX_PROMPT_CHARS = 20_000
# The page's sections, in page order: the prompt and loss weights, blended styles, the style picture,
# the region to restyle, and the rest.
MAIN, STYLES, STYLE_PICTURE, REGION, ADVANCED = "main", "styles", "style picture", "region", "advanced"
# The prompts that blend, and their weights (repeated -p and --prompt-weights on the command line).
PROMPT_FIELDS = ("prompt", "prompt_2", "prompt_3", "prompt_4")
WEIGHT_FIELDS = ("weight_1", "weight_2", "weight_3", "weight_4")
# A mask's feather when ``mask_feather`` is automatic (-1): this fraction of the output's long side.
AUTO_FEATHER_FRACTION = 0.02
# A live preview's default working size (long side, px) by backend, unless STYLIZER_PREVIEW_SIZE says otherwise.
PREVIEW_SIZES = {"latent": 256, "pixel": 128}
PREVIEW_SIZE_ENV, PREVIEW_STEPS_ENV = "STYLIZER_PREVIEW_SIZE", "STYLIZER_PREVIEW_STEPS"


@dataclass(frozen=True)
class Knob:
    """How one setting is checked and shown; the metadata of every :class:`StyleConfig` field.

    Attributes:
        help: one line for ``--help`` and the API docs.
        label: the page's label for the control.
        low, high: the allowed range of a number (None: unbounded on that side).
        limit: the :class:`Limits` attribute that caps ``high`` on this server, if any.
        choices: the allowed values of a text setting chosen from a list (a radio on the page).
        flag: the command-line option (default: ``--`` and the name with dashes).
        short: a one-letter command-line alias, e.g. ``-p``.
        required: the command line insists on it, and text must not be empty.
        may_be_empty: text that may be left empty (an unused extra prompt).
        cli: an option of its own on the command line (else another option sets it: repeated
            ``-p`` the extra prompts, ``--prompt-weights`` their weights).
        step: the slider's step; a number without one is a plain number box (the seed).
        group: the page section: :data:`MAIN`, :data:`STYLES`, :data:`STYLE_PICTURE`, :data:`REGION` or :data:`ADVANCED`.
        info: a hint under the page's control.
        placeholder: grey example text in an empty text box.
        api: on the page and a parameter of the ``/stylize`` API (every knob is on the command line).
        preset_default: the default comes from the loaded model (its working size), not from the field.
        latent_only: only latent models use it; the page shows it disabled for pixel models.
    """

    help: str
    label: str
    low: float | None = None
    high: float | None = None
    limit: str | None = None
    choices: tuple[str, ...] | None = None
    flag: str | None = None
    short: str | None = None
    required: bool = False
    may_be_empty: bool = False
    cli: bool = True
    step: float | None = None
    group: str = ADVANCED
    info: str | None = None
    placeholder: str | None = None
    api: bool = True
    preset_default: bool = False
    latent_only: bool = False


def _knob(default: Any, help: str, label: str, **knob: Any) -> Any:
    """A dataclass field whose metadata is its :class:`Knob`."""
    return field(default=default, metadata={"knob": Knob(help, label, **knob)})


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
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
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
    rescaled for per-step diffusion guidance. The field order is the ``/stylize``
    API's parameter order, so new fields go at the end.
    """

    prompt: str = _knob(
        "",
        "the style, e.g. 'drawing with black ink' (repeat -p to blend up to four; optional with a style picture)",
        "Style prompt",
        short="-p",
        group=MAIN,
        placeholder="drawing with black ink",
    )
    reference: str = _knob("a photo", "source text the style direction starts from", "Reference text (what the input is)", group=MAIN)
    w_dir: float = _knob(
        2000.0, "global directional CLIP loss weight", "Directional style (global CLIP)", low=0, high=50_000, group=MAIN, step=1
    )
    w_patch: float = _knob(
        4000.0, "patch directional CLIP loss weight", "Patch style (local CLIP)", low=0, high=100_000, group=MAIN, step=1
    )
    w_content: float = _knob(100.0, "VGG16 content loss weight", "Content (keep structure)", low=0, high=10_000, group=MAIN, step=1)
    w_tv: float = _knob(150.0, "total-variation loss weight", "Smoothness (total variation)", low=0, high=10_000, group=MAIN, step=1)
    steps: int = _knob(50, "DDIM steps over the full schedule", "Steps", low=1, high=1000, limit="max_steps", step=1)
    strength: float = _knob(
        0.6, "how far to noise the input (fraction of the schedule)", "Strength (how far from the input)", low=0.01, high=1.0, step=0.01
    )
    start: str = _knob(
        "invert",
        "start point: 'noise' (SDEdit) or 'invert' (DDIM inversion)",
        "Start from",
        choices=START_MODES,
        info="invert keeps structure best",
    )
    mode: str = _knob(
        "fast",
        "gradient through the UNet ('full') or on the predicted x0 only ('fast')",
        "Guidance gradient",
        choices=GUIDANCE_MODES,
        info="full: through the UNet; fast: on x̂0 only",
    )
    guidance_scale: float = _knob(
        1.0, "multiplies every loss weight", "Guidance scale (multiplies all weights)", low=0, high=100, step=0.05
    )
    cfg_scale: float = _knob(
        7.5,
        "classifier-free guidance (latent backend only; 0 turns it off)",
        "Text guidance (CFG, latent models only)",
        low=0,
        high=30,
        step=0.5,
        latent_only=True,
    )
    n_patches: int = _knob(32, "number of random patch crops", "Patches", low=0, high=512, limit="max_patches", flag="--patches", step=1)
    patch_size: int = _knob(128, "patch crop size in px (clamped to the image's short side)", "Patch size (px)", low=8, high=1024, step=8)
    threshold: float = _knob(0.7, "patch losses below this are ignored", "Patch threshold τ", low=0, high=2, step=0.01)
    size: int = _knob(
        256,
        "working resolution: the long side in px",
        "Resolution (long side, px)",
        low=32,
        high=4096,
        limit="max_size",
        step=8,
        preset_default=True,
    )
    seed: int = _knob(0, "random seed", "Seed", low=0, high=2**32 - 1)
    max_shift: float = _knob(
        0.1,
        "cap on the RMS of the guidance's change to ε per step (0: no cap)",
        "Guidance cap (max shift of ε per step)",
        low=0,
        high=2,
        step=0.01,
    )
    distortion: float = _knob(0.5, "random perspective strength of the crops", "Patch distortion", low=0, high=1, step=0.05)
    preview_every: int = _knob(5, "yield a preview frame every N steps", "Preview every N steps", low=1, high=1000, step=1)
    preview_size: int = _knob(
        256,
        "working resolution of a live preview (long side, px)",
        "Live preview resolution (px)",
        low=32,
        high=4096,
        limit="max_size",
        step=8,
        preset_default=True,
    )
    preview_steps: int = _knob(
        12, "DDIM steps of a live preview over the full schedule", "Live preview steps", low=1, high=1000, limit="max_steps", step=1
    )
    prompt_2: str = _knob("", "a second style to blend in (repeat -p)", "Style 2", group=STYLES, may_be_empty=True, cli=False)
    prompt_3: str = _knob("", "a third style to blend in (repeat -p)", "Style 3", group=STYLES, may_be_empty=True, cli=False)
    prompt_4: str = _knob("", "a fourth style to blend in (repeat -p)", "Style 4", group=STYLES, may_be_empty=True, cli=False)
    weight_1: float = _knob(
        1.0, "weight of the style prompt in a blend", "Weight of the style prompt", low=0, high=10, step=0.05, group=STYLES, cli=False
    )
    weight_2: float = _knob(1.0, "weight of style 2 in a blend", "Weight of style 2", low=0, high=10, step=0.05, group=STYLES, cli=False)
    weight_3: float = _knob(1.0, "weight of style 3 in a blend", "Weight of style 3", low=0, high=10, step=0.05, group=STYLES, cli=False)
    weight_4: float = _knob(1.0, "weight of style 4 in a blend", "Weight of style 4", low=0, high=10, step=0.05, group=STYLES, cli=False)
    style_image_weight: float = _knob(
        0.5,
        "with both a prompt and a style picture: how much the picture's direction counts (0: the text only, 1: the picture only)",
        "Picture against text",
        low=0,
        high=1,
        step=0.05,
        group=STYLE_PICTURE,
    )
    keep_colors: bool = _knob(
        False, "keep the input's colours: the result's luminance with the input's chroma", "Keep the colours", group=MAIN
    )
    invert_mask: bool = _knob(False, "restyle outside the mask instead of inside", "Invert the mask", group=REGION)
    mask_feather: int = _knob(
        -1,
        "soft edge of the mask in px (-1: 2 % of the long side)",
        "Mask feather (px; -1: automatic)",
        low=-1,
        high=512,
        step=1,
        group=REGION,
    )
    guide_start: float = _knob(
        0.0,
        "where guidance starts, as a fraction of the denoising steps (before it: unguided steps)",
        "Guide from (fraction of the steps)",
        low=0,
        high=1,
        step=0.05,
    )
    guide_end: float = _knob(
        1.0,
        "where guidance ends, as a fraction of the denoising steps (after it: unguided steps)",
        "Guide until (fraction of the steps)",
        low=0,
        high=1,
        step=0.05,
    )
    guide_decoder: str = _knob(
        "vae",
        "what decodes the prediction for the losses and the frames: 'vae' (the model's) or 'taesd' (tiny, faster); the result always uses the VAE",
        "Guidance decoder",
        choices=GUIDE_DECODERS,
        info="taesd: a tiny distilled decoder, faster",
        latent_only=True,
    )

    def validated(self, limits: Limits | None = None, *, style_image: bool = False) -> StyleConfig:
        """Return a normalised copy, or raise :class:`ConfigError` naming the bad setting.

        Args:
            limits: server caps; the defaults of :class:`Limits` when omitted.
            style_image: a style picture comes with the job, so the prompt may be empty.
        """
        limits = limits or Limits()
        values = {}
        for f in dataclasses.fields(self):
            may_be_empty = f.metadata["knob"].may_be_empty or (f.name == "prompt" and style_image)
            values[f.name] = _check_field(f, getattr(self, f.name), limits, may_be_empty)
        config = StyleConfig(**values)
        given = [weight for text, weight in config._prompts() if text]
        if given and sum(given) == 0:
            raise ConfigError("the style weights are all 0: give at least one style a weight above 0")
        if config.guide_start >= config.guide_end:
            raise ConfigError(f"guide_start ({config.guide_start:g}) must be below guide_end ({config.guide_end:g})")
        return config

    def guided_at(self, index: int) -> bool:
        """Whether the losses guide the ``index``-th denoising step (0-based) of this job: inside [guide_start, guide_end)."""
        position = index / self.denoise_steps
        return self.guide_start <= position < self.guide_end

    @property
    def styles(self) -> list[tuple[str, float]]:
        """The prompts that take part, with their weights normalised to sum 1 (prompts of weight 0 left out)."""
        chosen = [(text, weight) for text, weight in self._prompts() if text and weight > 0]
        total = sum(weight for _, weight in chosen)
        return [(text, weight / total) for text, weight in chosen]

    def _prompts(self) -> list[tuple[str, float]]:
        return [(getattr(self, text), getattr(self, weight)) for text, weight in zip(PROMPT_FIELDS, WEIGHT_FIELDS, strict=True)]

    def feather_px(self, long_side: int) -> int:
        """The mask's soft edge in px for an output whose long side is ``long_side`` (resolving -1, automatic)."""
        return max(1, round(AUTO_FEATHER_FRACTION * long_side)) if self.mask_feather < 0 else self.mask_feather

    def as_preview(self) -> StyleConfig:
        """These settings as a live preview: at ``preview_size`` with ``preview_steps``, one frame at the end."""
        last = knobs()["preview_every"].high
        return dataclasses.replace(self, size=self.preview_size, steps=self.preview_steps, preview_every=int(last or self.preview_steps))

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
    def from_dict(cls, data: Mapping[str, Any]) -> StyleConfig:
        """Build from a mapping, rejecting unknown keys with a clear message."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**dict(data))

    @classmethod
    def from_json(cls, text: str) -> StyleConfig:
        """Parse settings produced by :meth:`to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"settings are not valid JSON: {exc.msg} (line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise ConfigError("settings must be a JSON object")
        return cls.from_dict(data)


def model_defaults(backend: str, size: int, limits: Limits | None = None, environ: Mapping[str, str] | None = None) -> dict[str, int]:
    """The defaults that depend on the loaded model and the server: working size, and the live preview's size and steps.

    ``STYLIZER_PREVIEW_SIZE`` and ``STYLIZER_PREVIEW_STEPS`` set the preview's; without them it is
    :data:`PREVIEW_SIZES` for the backend (at most the model's own size) and ``preview_steps``' default.

    Args:
        backend: ``"latent"`` or ``"pixel"``.
        size: the model's working resolution.
        limits: server caps the sizes must fit; the defaults of :class:`Limits` when omitted.
        environ: the environment (default: ``os.environ``).
    """
    limits = limits or Limits()
    env = os.environ if environ is None else environ
    values = {
        "size": size,
        "preview_size": min(PREVIEW_SIZES.get(backend, size), size),
        "preview_steps": StyleConfig.preview_steps,
    }
    for name, var in (("preview_size", PREVIEW_SIZE_ENV), ("preview_steps", PREVIEW_STEPS_ENV)):
        values[name] = whole_number_env(var, values[name], env)
    for name, value in values.items():
        low, high = field_range(name, limits)
        values[name] = max(int(low or 1), min(value, int(high or value)))
    return values


def whole_number_env(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    """The environment variable ``name`` as a whole number, ``default`` where it is unset or empty.

    Raises:
        ConfigError: it is set to something else.
    """
    raw = (os.environ if environ is None else environ).get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None


def knobs() -> dict[str, Knob]:
    """Every setting's :class:`Knob`, by field name, in the fields' order (the API's parameter order)."""
    return {f.name: f.metadata["knob"] for f in dataclasses.fields(StyleConfig)}


def field_range(name: str, limits: Limits | None = None) -> tuple[float | None, float | None]:
    """The allowed (low, high) of a numeric setting, with server limits applied."""
    knob = knobs()[name]
    high = knob.high
    if knob.limit and high is not None:
        high = min(high, getattr(limits or Limits(), knob.limit))
    return knob.low, high


def _check_field(f: dataclasses.Field, value: Any, limits: Limits, may_be_empty: bool) -> Any:
    knob: Knob = f.metadata["knob"]
    if isinstance(f.default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{f.name} must be true or false, got {value!r}")
        return value
    if isinstance(f.default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{f.name} must be text, got {type(value).__name__}")
        if knob.choices is None:
            return _check_text(f.name, value, may_be_empty)
        if value not in knob.choices:
            raise ConfigError(f"{f.name} must be one of {', '.join(knob.choices)}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{f.name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{f.name} must be a finite number, got {value!r}")
    if isinstance(f.default, int):
        if value != int(value):
            raise ConfigError(f"{f.name} must be a whole number, got {value!r}")
        value = int(value)
    else:
        value = float(value)
    lo, hi = field_range(f.name, limits)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{f.name} must be between {_fmt(lo)} and {_fmt(hi)}, got {_fmt(value)}")
    return value


def _check_text(name: str, text: str, may_be_empty: bool) -> str:
    # Control characters are invisible in the UI and meaningless to CLIP's tokenizer.
    cleaned = "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)
    cleaned = " ".join(cleaned.split())
    if not cleaned and not may_be_empty:
        hint = ", or give a style picture" if name == "prompt" else ""
        raise ConfigError(f"{name} is empty: describe the style in a few words, e.g. 'drawing with black ink'{hint}")
    if len(cleaned) > MAX_PROMPT_CHARS:
        raise ConfigError(f"{name} is {len(cleaned):,} characters long; the limit is {MAX_PROMPT_CHARS:,}")
    return cleaned


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:g}"
