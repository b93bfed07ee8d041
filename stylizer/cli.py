"""Command line: ``python -m stylizer INPUT -p PROMPT -o OUTPUT``, ``python -m stylizer batch`` and ``python -m stylizer download``.

Errors are reported as :mod:`stylizer.commands` describes: exit status 2 and one line
for user errors, 1 for anything unexpected.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .commands import OneLineParser, positive_int, run_command
from .config import PROMPT_FIELDS, WEIGHT_FIELDS, ConfigError, Knob, Limits, StyleConfig, knobs, model_defaults

SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
METAVARS = {int: "N", float: "F", str: "TEXT"}
# ``--ray`` given without an address: start a local Ray instance.
LOCAL_RAY = "local"


def build_parser() -> argparse.ArgumentParser:
    """The stylize command's argument parser: fixed options, then one option per :class:`StyleConfig` knob."""
    parser = OneLineParser(
        prog="python -m stylizer",
        description="Restyle an image from a text prompt with CLIP-guided DDIM diffusion. "
        "Also: `python -m stylizer batch INPUT... -o OUT_DIR` restyles many pictures, and "
        "`python -m stylizer download [--model NAME]` fetches weights ahead of time.",
    )
    parser.add_argument("input", help="input image (PNG, JPEG, WebP, GIF, BMP, TIFF)")
    parser.add_argument("-o", "--output", required=True, help="output image path (.png, .jpg, .webp, ...)")
    parser.add_argument("--frames", metavar="GIF", help="also write the denoising trajectory as an animated GIF")
    parser.add_argument("--json", action="store_true", help="print the output path, settings and final losses as JSON")
    add_job_options(parser)
    return parser


def build_batch_parser() -> argparse.ArgumentParser:
    """The batch command's argument parser: the stylize command's options for many inputs and an output folder."""
    parser = OneLineParser(
        prog="python -m stylizer batch",
        description="Restyle many pictures with one setting into a folder: NAME.png and NAME.json (settings, model, "
        "device, losses, seconds) per input. A rerun skips what is finished with the same settings. Exit status: 0 all "
        "done, 3 some failed, 2 bad options, 130 interrupted.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (the images directly inside) or glob patterns")
    parser.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output folder (made if missing)")
    parser.add_argument("--frames", action="store_true", help="also write each denoising trajectory as NAME.gif")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON: done, earlier, skipped, failed, left")
    parser.add_argument("--overwrite", action="store_true", help="redo every input, also those finished earlier with these settings")
    parser.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL_RAY,
        metavar="ADDRESS",
        help="run on Ray Data: alone, a local Ray instance; with auto, HOST:PORT or ray://HOST:PORT, that cluster "
        "(needs pip install -r requirements-ray.txt)",
    )
    parser.add_argument(
        "--actors",
        type=positive_int,
        metavar="N",
        help="with --ray: the actors, each with its own models (default: one per GPU, else per node)",
    )
    add_job_options(parser)
    return parser


def add_job_options(parser: argparse.ArgumentParser) -> None:
    """The options the stylize and batch commands share: the model, the device, the extra pictures and every knob."""
    from .loading import CLIP_MODELS, DEFAULT_PRESET, PRESETS

    parser.add_argument(
        "--model", default=DEFAULT_PRESET, help=f"preset ({', '.join(PRESETS)}), diffusers folder or repo id (default: {DEFAULT_PRESET})"
    )
    parser.add_argument("--clip", choices=list(CLIP_MODELS), help="guidance CLIP (default: the preset's)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument(
        "--preview", action="store_true", help="a quick look: run at --preview-size with --preview-steps, as the app's live preview does"
    )
    # Off by default: on CUDA the optimised step compiles on its first call, which a single job rarely repays.
    parser.add_argument(
        "--optimize",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="run the optimised guided step (on CUDA: bf16 autocast, channels_last and torch.compile, whose "
        "kernels are cached on disk for the next run) instead of the eager reference (default: eager)",
    )
    parser.add_argument("--mask", metavar="PATH", help="restyle only where this picture is white (black: keep; grey: partly)")
    parser.add_argument("--style-image", metavar="PATH", help="take the style from this picture (with or without a prompt)")
    parser.add_argument("--prompt-weights", metavar="W1,W2,...", help="one weight per -p, for a blend (default: equal weights)")
    for f in dataclasses.fields(StyleConfig):
        if f.metadata["knob"].cli:
            add_knob_option(parser, f.name, f.metadata["knob"], f.default)


def knob_flags(name: str, knob: Knob) -> tuple[str, ...]:
    """The command-line option strings of a setting: its short alias, if any, and its long flag."""
    flag = knob.flag or "--" + name.replace("_", "-")
    return (knob.short, flag) if knob.short else (flag,)


def add_knob_option(parser: argparse.ArgumentParser, name: str, knob: Knob, default: Any) -> None:
    """One option for one setting; left unset it stays ``None``, so the config's (or the preset's) default applies."""
    kind = type(default)
    shown = "the preset's" if knob.preset_default else default
    # argparse formats help with %: a literal one ("2 % of the long side") must be doubled.
    text = knob.help.replace("%", "%%")
    if kind is bool:
        flags = knob_flags(name, knob)
        parser.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None, help=f"{text} (default: off)")
        return
    if name == PROMPT_FIELDS[0]:
        # Repeated, it blends styles: the extra prompts and their weights have no options of their own.
        parser.add_argument(*knob_flags(name, knob), dest=name, action="append", metavar=METAVARS[str], help=text)
        return
    parser.add_argument(
        *knob_flags(name, knob),
        dest=name,
        type=kind,
        choices=knob.choices,
        required=knob.required,
        default=None,
        metavar=None if knob.choices else METAVARS[kind],
        help=text if knob.required else f"{text} (default: {shown})",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["download"]:
        return run_command("stylizer", lambda: _download(argv[1:]))
    if argv[:1] == ["batch"]:
        return run_command("stylizer", lambda: _batch(build_batch_parser().parse_args(argv[1:])))
    return run_command("stylizer", lambda: _stylize(build_parser().parse_args(argv)))


def _stylize(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .images import save_animation
    from .inputs import check_request
    from .loading import load_models, resolve_preset
    from .sampler import stylize
    from .warmup import persist_compile_cache

    output = _writable_path(args.output, tuple(SAVE_FORMATS), "output")
    if args.frames:
        _writable_path(args.frames, (".gif",), "--frames")
    preset = resolve_preset(args.model, args.clip)
    limits = Limits.from_env()
    pictures = {"mask": args.mask, "style_image": args.style_image}
    job = check_request(args.input, job_settings(args, preset.backend, preset.size, limits), limits, **pictures)
    config = job.config.as_preview() if args.preview else job.config
    for note in job.notes:
        print(f"stylizer: note: {note}", file=sys.stderr)

    models = load_models(args.model, args.device, args.clip)
    if args.optimize:
        persist_compile_cache()
    if models.untrained:
        print(f"stylizer: warning: the {models.name!r} preset has random weights; its output is noise, for testing only", file=sys.stderr)
    started = time.perf_counter()
    frames = []
    # One bar over every network pass: the inversion's (start "invert") and then the guided steps.
    inversion = config.denoise_steps if config.start == "invert" else 0
    with tqdm(
        total=inversion + config.denoise_steps, desc="inverting" if inversion else "stylizing", unit="step", file=sys.stderr, leave=False
    ) as bar:

        def guided_step(done: int, total: int) -> None:
            bar.set_description("stylizing", refresh=False)
            bar.update(1)

        hooks = dict(on_step=guided_step, on_invert=lambda done, total: bar.update(1))
        for frame in stylize(models, job.image, config, optimize=args.optimize, mask=job.mask, style_image=job.style_image, **hooks):
            frames.append(frame)
    seconds = time.perf_counter() - started
    result = frames[-1]
    result.image.save(output, format=SAVE_FORMATS[output.suffix.lower()])
    if args.frames:
        save_animation([f.image for f in frames], args.frames)
    if args.json:
        report = {
            "output": str(output),
            "model": models.name,
            "device": str(models.device),
            "settings": {**config.to_dict(), "clip": models.clip.name, **job.pictures_used()},
            "losses": result.losses,
            "seconds": round(seconds, 3),
        }
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(f"stylizer: wrote {output} ({result.image.width}x{result.image.height}) in {seconds:.1f} s", file=sys.stderr)
    return 0


def _batch(args: argparse.Namespace) -> int:
    from .batch import batch_spec, local_outcomes, plan_batch, run_batch
    from .loading import resolve_preset

    if args.ray is None and args.actors is not None:
        raise ConfigError("--actors needs --ray")
    address = None if args.ray in (None, LOCAL_RAY) else _ray_address(args.ray)
    if args.ray is not None:
        from .ray_batch import import_ray

        import_ray()  # now: a missing Ray is a bad option, found before any work
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"-o {out_dir} exists and is not a folder")
    preset = resolve_preset(args.model, args.clip)
    limits = Limits.from_env()
    spec, notes = batch_spec(
        out_dir,
        args.model,
        job_settings(args, preset.backend, preset.size, limits),
        limits,
        clip=args.clip,
        device=args.device,
        mask=args.mask,
        style_image=args.style_image,
        preview=args.preview,
        optimize=args.optimize,
        frames=args.frames,
    )
    plan = plan_batch(args.inputs, spec, overwrite=args.overwrite)
    for note in notes:
        print(f"stylizer: note: {note}", file=sys.stderr)
    if preset.untrained:
        print(f"stylizer: warning: the {preset.name!r} preset has random weights; its output is noise, for testing only", file=sys.stderr)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.ray is None:
        outcomes = local_outcomes(spec, plan.todo)
    else:
        from .ray_batch import ray_outcomes

        outcomes = ray_outcomes(spec, plan.todo, address, args.actors)
    return run_batch(plan, outcomes, spec, report_json=args.json)


def _ray_address(text: str) -> str:
    """``--ray ADDRESS`` checked: ``auto``, or one with a port, so that an input given right after ``--ray`` is not taken for one."""
    if text != "auto" and ":" not in text:
        raise ConfigError(f"--ray {text}: give auto, HOST:PORT or ray://HOST:PORT, or put --ray after the inputs")
    return text


def job_settings(args: argparse.Namespace, backend: str, size: int, limits: Limits) -> dict[str, Any]:
    """The settings the options give, over the model's defaults (working and preview size)."""
    given = {name: getattr(args, name) for name in knobs() if getattr(args, name, None) is not None}
    given.update(blend_settings(given.pop("prompt", None), args.prompt_weights))
    return {**model_defaults(backend, size, limits), **given}


def _download(argv: Sequence[str]) -> int:
    from .loading import CLIP_MODELS, DEFAULT_PRESET, PRESETS, download

    parser = OneLineParser(
        prog="python -m stylizer download", description="Fetch every weight a preset needs into the local caches (HF_HOME, TORCH_HOME)."
    )
    parser.add_argument(
        "--model", default=DEFAULT_PRESET, help=f"preset ({', '.join(PRESETS)}), diffusers folder or repo id (default: {DEFAULT_PRESET})"
    )
    parser.add_argument("--clip", choices=list(CLIP_MODELS), help="guidance CLIP (default: the preset's)")
    args = parser.parse_args(argv)
    fetched = download(args.model, args.clip)
    if not fetched:
        print(f"stylizer: {args.model} has nothing to download (random weights or a local folder with everything in it)", file=sys.stderr)
        return 0
    for entry in fetched:
        state = "fetched" if entry.downloaded else "cached "
        print(f"  {state}  {entry.source}  {entry.filename}  {_size(entry.size)}", file=sys.stderr)
    total = sum(e.size for e in fetched)
    new = sum(e.size for e in fetched if e.downloaded)
    print(
        f"stylizer: {args.model} is ready: {len(fetched)} files, {_size(total)} in the caches ({_size(new)} downloaded now)",
        file=sys.stderr,
    )
    return 0


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


def _writable_path(text: str, suffixes: tuple[str, ...], what: str) -> Path:
    """``text`` as a path to write, checked before any work: a known suffix and an existing folder."""
    path = Path(text)
    if path.suffix.lower() not in suffixes:
        allowed = suffixes[0] if len(suffixes) == 1 else "one of " + ", ".join(suffixes)
        raise ConfigError(f"{what} {path} must end in {allowed}")
    if not path.parent.exists():
        raise ConfigError(f"{what} folder {path.parent} does not exist")
    return path


def _size(n: float) -> str:
    """Bytes in decimal units, as download pages state them."""
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("KB", "MB"):
        n /= 1000
        if n < 1000:
            return f"{n:.2f} {unit}"
    return f"{n / 1000:.2f} GB"
