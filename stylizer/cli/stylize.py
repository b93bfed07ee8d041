"""``python -m stylizer INPUT -p PROMPT -o OUTPUT``: restyle one picture."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..config import Limits, StyleConfig
from ..errors import ConfigError
from .commands import OneLineParser
from .options import add_job_options, job_settings

SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
UNTRAINED_WARNING = "stylizer: warning: the {!r} preset has random weights; its output is noise, for testing only"


def build_parser() -> argparse.ArgumentParser:
    """The stylize command's argument parser: fixed options, then the model group and one option per knob."""
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
    parser.add_argument("--overwrite", action="store_true", help="allow -o (or --frames) to name the input itself, which is then replaced")
    add_job_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Check everything, load the models, stylize with a progress bar, write the files; returns the exit status."""
    from ..engine.sampler import stylize
    from ..images import save_animation
    from ..loading import load_models, resolve_preset
    from ..request import check_request

    output = writable_path(args.output, tuple(SAVE_FORMATS), "output")
    written = [output, *([writable_path(args.frames, (".gif",), "--frames")] if args.frames else [])]
    for path in written:
        if not args.overwrite and same_file(path, args.input):
            raise ConfigError(f"{path} is the input: the result would replace it; write elsewhere, or give --overwrite")
    preset = resolve_preset(args.model, args.clip)
    limits = Limits.from_env()
    pictures = {"mask": args.mask, "style_image": args.style_image}
    request = check_request(args.input, job_settings(args, preset.backend, preset.size, limits), limits, **pictures)
    request = request.as_preview() if args.preview else request
    for note in request.notes:
        print(f"stylizer: note: {note}", file=sys.stderr)

    models = load_models(args.model, args.device, args.clip)
    if models.untrained:
        print(UNTRAINED_WARNING.format(models.name), file=sys.stderr)
    started = time.perf_counter()
    with step_bar(request.config) as hooks:
        frames = list(stylize(models, request, optimize=args.optimize, **hooks))
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
            "settings": request.record(model=models.name, clip=models.preset.clip),
            "losses": result.losses,
            "seconds": round(seconds, 3),
        }
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(f"stylizer: wrote {output} ({result.image.width}x{result.image.height}) in {seconds:.1f} s", file=sys.stderr)
    return 0


@contextlib.contextmanager
def step_bar(config: StyleConfig) -> Iterator[dict[str, Callable[[int, int], None]]]:
    """One progress bar over every network pass of a job: the inversion's (start ``invert``), then the guided steps.

    Yields the sampler's hooks (``on_step``, ``on_invert``) that move it.
    """
    from tqdm import tqdm

    inversion = config.denoise_steps if config.start == "invert" else 0
    total = inversion + config.denoise_steps
    with tqdm(total=total, desc="inverting" if inversion else "stylizing", unit="step", file=sys.stderr, leave=False) as bar:

        def guided_step(done: int, total: int) -> None:
            bar.set_description("stylizing", refresh=False)
            bar.update(1)

        yield dict(on_step=guided_step, on_invert=lambda done, total: bar.update(1))


def writable_path(text: str, suffixes: tuple[str, ...], what: str) -> Path:
    """``text`` as a path to write, checked before any work: a known suffix, an existing folder, and not a folder itself."""
    path = Path(text)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder: name the file to write, e.g. {path / ('result' + suffixes[0])}")
    if path.suffix.lower() not in suffixes:
        allowed = suffixes[0] if len(suffixes) == 1 else "one of " + ", ".join(suffixes)
        raise ConfigError(f"{what} {path} must end in {allowed}")
    if not path.parent.exists():
        raise ConfigError(f"{what} folder {path.parent} does not exist")
    return path


def same_file(path: Path, other: str) -> bool:
    """Whether ``path`` and ``other`` name one existing file (links and spellings resolved)."""
    try:
        return path.exists() and Path(other).exists() and path.samefile(other)
    except OSError:
        return False
