"""The options every command shares: the model group (``--model``, ``--clip``, ``--device``) and one option per knob.

The stylize and batch commands, the app, the evaluation and the benchmark all take their model
options from :func:`add_model_options` and their job settings from :func:`add_knob_options`, so
a new setting (one field of the knob table) reaches each of them without a line here.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from ..config import PROMPT_FIELDS, WEIGHT_FIELDS, Knob, Limits, StyleConfig, environment, knobs, model_defaults
from ..errors import ConfigError

METAVARS = {int: "N", float: "F", str: "TEXT"}
# ``--ray`` given without an address: start a local Ray instance.
LOCAL_RAY = "local"
# --device: one device, several (the app serves from each), or none (download).
ONE, MANY = "one", "many"


def add_model_options(
    parser: argparse.ArgumentParser,
    *,
    device: str | None = ONE,
    from_environment: bool = False,
    model_default: str | None = None,
    model_default_text: str | None = None,
) -> None:
    """``--model``, ``--clip`` and ``--device``, the same for every command.

    Args:
        device: :data:`ONE`, :data:`MANY` (repeatable) or None (no ``--device``).
        from_environment: default to ``STYLIZER_MODEL``, ``STYLIZER_CLIP`` and ``STYLIZER_DEVICES`` (the app).
        model_default: ``--model`` when not given (default: the default preset; None with ``model_default_text``).
        model_default_text: how ``--help`` names that default, when it is not a preset.
    """
    from ..loading.presets import CLIP_MODELS, DEFAULT_PRESET, PRESETS

    def env(name: str) -> str:
        return environment.read(name) if from_environment else ""

    def note(name: str) -> str:
        return f" (env {name})" if from_environment else ""

    model = model_default if model_default_text else (model_default or DEFAULT_PRESET)
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=env("STYLIZER_MODEL") or model,
        help=f"preset ({', '.join(PRESETS)}), diffusers folder or repo id (default: {model_default_text or model}){note('STYLIZER_MODEL')}",
    )
    group.add_argument(
        "--clip",
        choices=list(CLIP_MODELS),
        default=env("STYLIZER_CLIP") or None,
        help=f"guidance CLIP (default: the preset's){note('STYLIZER_CLIP')}",
    )
    if device == ONE:
        group.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    elif device == MANY:
        devices = [d.strip() for d in env("STYLIZER_DEVICES").split(",") if d.strip()]
        group.add_argument(
            "--device",
            action="append",
            default=devices or None,
            help="cpu, cuda or cuda:N; repeat for several GPUs (env STYLIZER_DEVICES, comma-separated; default: every GPU, else CPU)",
        )


def add_knob_options(parser: argparse.ArgumentParser, chosen: Callable[[Knob], bool], shown_defaults: dict[str, str] | None = None) -> None:
    """One option per knob that ``chosen`` picks; left unset, each stays ``None`` so the config's (or the preset's) default applies.

    Args:
        chosen: picks the knobs, e.g. ``lambda knob: knob.cli``.
        shown_defaults: how ``--help`` states some defaults, by setting (a command that reads an unset option its own way).
    """
    for field in dataclasses.fields(StyleConfig):
        knob = field.metadata["knob"]
        if chosen(knob):
            add_knob_option(parser, field.name, knob, field.default, (shown_defaults or {}).get(field.name))


def add_knob_option(parser: argparse.ArgumentParser, name: str, knob: Knob, default: Any, shown: str | None = None) -> None:
    """One option for one setting (see :func:`add_knob_options`)."""
    kind = type(default)
    shown = shown or ("the preset's" if knob.preset_default else str(default))
    # argparse formats help with %: a literal one ("2 % of the long side") must be doubled.
    text = knob.help.replace("%", "%%")
    if kind is bool:
        parser.add_argument(
            *knob.flags(name), dest=name, action=argparse.BooleanOptionalAction, default=None, help=f"{text} (default: off)"
        )
        return
    if name == PROMPT_FIELDS[0]:
        # Repeated, it blends styles: the extra prompts and their weights have no options of their own.
        parser.add_argument(*knob.flags(name), dest=name, action="append", metavar=METAVARS[str], help=text)
        return
    parser.add_argument(
        *knob.flags(name),
        dest=name,
        type=kind,
        choices=knob.choices,
        required=knob.required,
        default=None,
        metavar=None if knob.choices else METAVARS[kind],
        help=text if knob.required else f"{text} (default: {shown})",
    )


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the knob options were given (unset ones left out)."""
    return {name: getattr(args, name) for name in knobs() if getattr(args, name, None) is not None}


def job_settings(args: argparse.Namespace, backend: str, size: int, limits: Limits) -> dict[str, Any]:
    """The settings the options give, over the model's defaults (working and preview size); repeated ``-p`` blends."""
    given = given_settings(args)
    given.update(blend_settings(given.pop("prompt", None), args.prompt_weights))
    return {**model_defaults(backend, size, limits), **given}


def blend_settings(prompts: list[str] | None, weights: str | None) -> dict[str, Any]:
    """Repeated ``-p`` and ``--prompt-weights`` as the settings ``prompt``, ``prompt_2``, ... and ``weight_1``, ..."""
    prompts = prompts or []
    if len(prompts) > len(PROMPT_FIELDS):
        raise ConfigError(f"-p was given {len(prompts)} times; at most {len(PROMPT_FIELDS)} styles blend")
    settings: dict[str, Any] = dict(zip(PROMPT_FIELDS, prompts))
    if weights is not None:
        try:
            values = [float(w) for w in weights.split(",")]
        except ValueError:
            raise ConfigError(f"--prompt-weights {weights!r}: give numbers separated by commas, e.g. 0.7,0.3") from None
        if len(values) != max(len(prompts), 1):
            raise ConfigError(f"--prompt-weights has {len(values)} weights for {len(prompts)} prompts: give one per -p")
        settings.update(zip(WEIGHT_FIELDS, values))
    return settings


def add_job_options(parser: argparse.ArgumentParser) -> None:
    """The options the stylize and batch commands share: the model group, the extra pictures and every knob."""
    add_model_options(parser)
    parser.add_argument(
        "--preview", action="store_true", help="a quick look: run at --preview-size with --preview-steps, as the app's live preview does"
    )
    # Off by default: on CUDA the optimised step captures its CUDA graphs on first use, which a single job rarely repays.
    parser.add_argument(
        "--optimize",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="run the optimised guided step (batched CLIP; on CUDA also bf16 autocast, channels_last and every step "
        "replayed as a CUDA graph, captured on first use) instead of the eager reference (default: eager)",
    )
    parser.add_argument("--mask", metavar="PATH", help="restyle only where this picture is white (black: keep; grey: partly)")
    parser.add_argument("--style-image", metavar="PATH", help="take the style from this picture (with or without a prompt)")
    parser.add_argument("--prompt-weights", metavar="W1,W2,...", help="one weight per -p, for a blend (default: equal weights)")
    add_knob_options(parser, lambda knob: knob.cli)
