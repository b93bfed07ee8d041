"""The knob table: every setting of a stylization job, its default and range, and how each front end shows it.

``StyleConfig`` is the single source of truth. Each field's metadata is a :class:`~stylizer.config.knob.Knob`
that holds what the command line (flag), the page (label, slider step, group), the ``/stylize``
API and MCP tools (help), the benchmark and the evaluation (their flags) and the prepared-picture
cache (what it depends on) need, so every front end derives its options and controls from this
table: a new setting is one field here. Every front end builds a ``StyleConfig`` and calls
:meth:`StyleConfig.validated`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from . import environment
from .knob import INVERSION, MAIN, PICTURE, PREVIEW, REGION, STYLE_PICTURE, STYLES, Knob, knob
from .limits import Limits
from .terms import LOSS_TERMS
from .validation import check_value, knob_range

START_MODES = ("noise", "invert")
GUIDANCE_MODES = ("full", "fast")
# What decodes x̂0 for the losses and the frames: the model's own VAE, or TAESD (a distilled tiny decoder).
GUIDE_DECODERS = ("vae", "taesd")
# The prompts that blend, and their weights (repeated -p and --prompt-weights on the command line).
PROMPT_FIELDS = ("prompt", "prompt_2", "prompt_3", "prompt_4")
WEIGHT_FIELDS = ("weight_1", "weight_2", "weight_3", "weight_4")
# The optional pictures a request may carry beside its settings (the API's parameters of these names).
PICTURE_INPUTS = ("mask", "style_image")
# What a settings record holds beside the settings: the model set, and a hash of each picture that came with the job.
RECORD_EXTRAS = ("model", "clip", *PICTURE_INPUTS)
# A mask's feather when ``mask_feather`` is automatic (-1): this fraction of the output's long side.
AUTO_FEATHER_FRACTION = 0.02
# A live preview's default working size (long side, px) by backend, unless STYLIZER_PREVIEW_SIZE says otherwise.
PREVIEW_SIZES = {"latent": 256, "pixel": 128}
PREVIEW_SIZE_ENV, PREVIEW_STEPS_ENV = "STYLIZER_PREVIEW_SIZE", "STYLIZER_PREVIEW_STEPS"


@dataclass(frozen=True)
class StyleConfig:
    """The settings of one stylization job.

    Loss weights multiply the four guidance terms; ``guidance_scale`` multiplies
    them all. Defaults follow CLIPstyler's ratios (directional : patch : content)
    rescaled for per-step diffusion guidance. The field order is the ``/stylize``
    API's parameter order, so new fields go at the end.
    """

    prompt: str = knob(
        "",
        "the style, e.g. 'drawing with black ink' (repeat -p to blend up to four; optional with a style picture)",
        "Style prompt",
        short="-p",
        group=MAIN,
        placeholder="drawing with black ink",
    )
    reference: str = knob(
        "a photo", "source text the style direction starts from", "Reference text (what the input is)", group=MAIN, prepares=INVERSION
    )
    w_dir: float = knob(
        2000.0, "global directional CLIP loss weight", "Directional style (global CLIP)", low=0, high=50_000, group=MAIN, step=1
    )
    w_patch: float = knob(4000.0, "patch directional CLIP loss weight", "Patch style (local CLIP)", low=0, high=100_000, group=MAIN, step=1)
    w_content: float = knob(100.0, "VGG16 content loss weight", "Content (keep structure)", low=0, high=10_000, group=MAIN, step=1)
    w_tv: float = knob(150.0, "total-variation loss weight", "Smoothness (total variation)", low=0, high=10_000, group=MAIN, step=1)
    steps: int = knob(
        50,
        "DDIM steps over the full schedule",
        "Steps",
        low=1,
        high=1000,
        limit="max_steps",
        step=1,
        prepares=INVERSION,
        bench=True,
        evaluation=True,
    )
    strength: float = knob(
        0.6,
        "how far to noise the input (fraction of the schedule)",
        "Strength (how far from the input)",
        low=0.01,
        high=1.0,
        step=0.01,
        prepares=INVERSION,
        bench=True,
    )
    start: str = knob(
        "invert",
        "start point: 'noise' (SDEdit) or 'invert' (DDIM inversion)",
        "Start from",
        choices=START_MODES,
        info="invert keeps structure best",
        prepares=INVERSION,
        bench=True,
    )
    mode: str = knob(
        "fast",
        "gradient through the UNet ('full') or on the predicted x0 only ('fast')",
        "Guidance gradient",
        choices=GUIDANCE_MODES,
        info="full: through the UNet; fast: on x̂0 only",
        bench=True,
    )
    guidance_scale: float = knob(1.0, "multiplies every loss weight", "Guidance scale (multiplies all weights)", low=0, high=100, step=0.05)
    cfg_scale: float = knob(
        7.5,
        "classifier-free guidance (latent backend only; 0 turns it off)",
        "Text guidance (CFG, latent models only)",
        low=0,
        high=30,
        step=0.5,
        latent_only=True,
    )
    n_patches: int = knob(
        32, "number of random patch crops", "Patches", low=0, high=512, limit="max_patches", flag="--patches", step=1, bench=True
    )
    patch_size: int = knob(128, "patch crop size in px (clamped to the image's short side)", "Patch size (px)", low=8, high=1024, step=8)
    threshold: float = knob(0.7, "patch losses below this are ignored", "Patch threshold τ", low=0, high=2, step=0.01)
    size: int = knob(
        256,
        "working resolution: the long side in px",
        "Resolution (long side, px)",
        low=32,
        high=4096,
        limit="max_size",
        step=8,
        preset_default=True,
        prepares=PICTURE,
        bench=True,
        evaluation=True,
    )
    seed: int = knob(0, "random seed", "Seed", low=0, high=2**32 - 1, evaluation=True)
    max_shift: float = knob(
        0.1,
        "cap on the RMS of the guidance's change to ε per step (0: no cap)",
        "Guidance cap (max shift of ε per step)",
        low=0,
        high=2,
        step=0.01,
    )
    distortion: float = knob(0.5, "random perspective strength of the crops", "Patch distortion", low=0, high=1, step=0.05)
    preview_every: int = knob(5, "yield a preview frame every N steps", "Preview every N steps", low=1, high=1000, step=1, bench=True)
    preview_size: int = knob(
        256,
        "working resolution of a live preview (long side, px)",
        "Live preview resolution (px)",
        low=32,
        high=4096,
        limit="max_size",
        step=8,
        preset_default=True,
        prepares=PREVIEW,
        bench=True,
    )
    preview_steps: int = knob(
        12,
        "DDIM steps of a live preview over the full schedule",
        "Live preview steps",
        low=1,
        high=1000,
        limit="max_steps",
        step=1,
        prepares=PREVIEW,
        bench=True,
    )
    prompt_2: str = knob("", "a second style to blend in (repeat -p)", "Style 2", group=STYLES, may_be_empty=True, cli=False)
    prompt_3: str = knob("", "a third style to blend in (repeat -p)", "Style 3", group=STYLES, may_be_empty=True, cli=False)
    prompt_4: str = knob("", "a fourth style to blend in (repeat -p)", "Style 4", group=STYLES, may_be_empty=True, cli=False)
    weight_1: float = knob(
        1.0, "weight of the style prompt in a blend", "Weight of the style prompt", low=0, high=10, step=0.05, group=STYLES, cli=False
    )
    weight_2: float = knob(1.0, "weight of style 2 in a blend", "Weight of style 2", low=0, high=10, step=0.05, group=STYLES, cli=False)
    weight_3: float = knob(1.0, "weight of style 3 in a blend", "Weight of style 3", low=0, high=10, step=0.05, group=STYLES, cli=False)
    weight_4: float = knob(1.0, "weight of style 4 in a blend", "Weight of style 4", low=0, high=10, step=0.05, group=STYLES, cli=False)
    style_image_weight: float = knob(
        0.5,
        "with both a prompt and a style picture: how much the picture's direction counts (0: the text only, 1: the picture only)",
        "Picture against text",
        low=0,
        high=1,
        step=0.05,
        group=STYLE_PICTURE,
    )
    keep_colors: bool = knob(
        False, "keep the input's colours: the result's luminance with the input's chroma", "Keep the colours", group=MAIN
    )
    invert_mask: bool = knob(False, "restyle outside the mask instead of inside", "Invert the mask", group=REGION)
    mask_feather: int = knob(
        -1,
        "soft edge of the mask in px (-1: 2 % of the long side)",
        "Mask feather (px; -1: automatic)",
        low=-1,
        high=512,
        step=1,
        group=REGION,
    )
    guide_start: float = knob(
        0.0,
        "where guidance starts, as a fraction of the denoising steps (before it: unguided steps)",
        "Guide from (fraction of the steps)",
        low=0,
        high=1,
        step=0.05,
    )
    guide_end: float = knob(
        1.0,
        "where guidance ends, as a fraction of the denoising steps (after it: unguided steps)",
        "Guide until (fraction of the steps)",
        low=0,
        high=1,
        step=0.05,
    )
    guide_decoder: str = knob(
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
            values[f.name] = check_value(f.name, f.metadata["knob"], f.default, getattr(self, f.name), limits, may_be_empty)
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
        return {term.key: getattr(self, term.weight) * self.guidance_scale for term in LOSS_TERMS}

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

    def record(self, *, model: str, clip: str, pictures: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The settings record every front end writes: every setting, the model set, and the pictures' hashes.

        The command line's ``--json``, batch's ``NAME.json``, the page's Settings box and the evaluation
        all carry it; :meth:`from_record` reads any of them back.

        Args:
            model: the preset name or model path.
            clip: the guidance CLIP.
            pictures: a hash of each of :data:`PICTURE_INPUTS` that came with the job.
        """
        return {**self.to_dict(), "model": model, "clip": clip, **(pictures or {})}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> StyleConfig:
        """The settings of a record: one :meth:`record` made, or a report that holds one under ``settings``
        (``--json``, ``NAME.json``); the model set and the pictures' hashes are left out (see :func:`record_extras`)."""
        settings = settings_of(record)
        return cls.from_dict({name: value for name, value in settings.items() if name not in RECORD_EXTRAS})

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
    values = {
        "size": size,
        "preview_size": min(PREVIEW_SIZES.get(backend, size), size),
        "preview_steps": StyleConfig.preview_steps,
    }
    for name, var in (("preview_size", PREVIEW_SIZE_ENV), ("preview_steps", PREVIEW_STEPS_ENV)):
        values[name] = environment.whole_number(var, values[name], environ)
    for name, value in values.items():
        low, high = field_range(name, limits)
        values[name] = max(int(low or 1), min(value, int(high or value)))
    return values


def knobs() -> dict[str, Knob]:
    """Every setting's :class:`Knob`, by field name, in the fields' order (the API's parameter order)."""
    return {f.name: f.metadata["knob"] for f in dataclasses.fields(StyleConfig)}


def field_range(name: str, limits: Limits | None = None) -> tuple[float | None, float | None]:
    """The allowed (low, high) of a numeric setting, with server limits applied."""
    return knob_range(knobs()[name], limits)


def prepared_by(*kinds: str) -> tuple[str, ...]:
    """The settings the prepared picture depends on (their knobs say ``prepares``), in the table's order.

    Args:
        kinds: only those of these kinds (:data:`~stylizer.config.knob.PICTURE`, ``INVERSION``, ``PREVIEW``); all when none are given.
    """
    return tuple(name for name, entry in knobs().items() if entry.prepares and (not kinds or entry.prepares in kinds))


def settings_of(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The settings record inside a report that nests it under ``settings`` (``--json``, ``NAME.json``), or the record itself."""
    nested = record.get("settings")
    return nested if isinstance(nested, Mapping) else record


def record_extras(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a record (see :meth:`StyleConfig.record`) holds beside the settings: the model set and the pictures' hashes."""
    settings = settings_of(record)
    return {name: settings[name] for name in RECORD_EXTRAS if name in settings}
