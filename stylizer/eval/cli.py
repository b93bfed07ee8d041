"""``python -m stylizer.eval``: stylize content images x prompts x settings and write a report.

User errors (bad options, files or settings, missing weights) exit with status 2 and
one line on stderr, before any model loads where possible; an unexpected failure
exits with 1, also on one line unless ``STYLIZER_DEBUG=1`` asks for the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from ..cli.commands import OneLineParser, positive_int, run_command
from ..cli.options import add_knob_options, add_model_options, given_settings
from ..config import Limits
from ..errors import ConfigError

PROG = "python -m stylizer.eval"
DEFAULT_OUT = "report"


def build_parser() -> argparse.ArgumentParser:
    """The evaluation command's argument parser."""
    from ..loading import CLIP_MODELS
    from .dataset import DEFAULT_IMAGES, DEFAULT_PROMPTS

    parser = OneLineParser(
        prog=PROG,
        description="Measure Stylizer like the papers do: CLIP score, directional and patch CLIP similarity "
        "to the prompt, SSIM and a VGG feature distance (LPIPS when installed) to the content image, and seconds "
        "per image, over content images x style prompts x settings. Writes metrics.json, metrics.csv, "
        "style_vs_content.png and an index.html contact sheet.",
    )
    add_model_options(parser)
    parser.add_argument("--metric-clip", choices=list(CLIP_MODELS), help="judge CLIP for the metrics (default: the guide's CLIP)")
    parser.add_argument(
        "--images", default=str(DEFAULT_IMAGES), metavar="DIR", help="folder of content images (default: the repository's assets/)"
    )
    parser.add_argument(
        "--prompts", default=str(DEFAULT_PROMPTS), metavar="FILE", help="style prompts, one a line; # comments (default: the built-in list)"
    )
    parser.add_argument("--limit", type=positive_int, metavar="N", help="use only the first N images and the first N prompts")
    add_knob_options(parser, lambda knob: knob.evaluation)
    parser.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="FIELD=V1,V2,...",
        help="compare values of one StyleConfig field, e.g. w_content=0,50,200; repeat to sweep several fields one at a time",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="fix a StyleConfig field for every job, e.g. strength=0.7 (repeatable)",
    )
    parser.add_argument("--mask", metavar="PATH", help="restyle every image only where this mask is white (it must fit every image)")
    parser.add_argument("--style-image", metavar="PATH", help="take the style (also) from this picture, for every job")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"report folder (default: {DEFAULT_OUT}/)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_command(PROG, lambda: _evaluate(build_parser().parse_args(argv)))


def _evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..loading import load_models, resolve_preset
    from .dataset import find_images, read_prompts
    from .judge import Judge
    from .report import write_report
    from .runner import Grid, run_grid
    from .sweeps import parse_overrides, sweep_settings
    from .tables import SECONDS

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    preset = resolve_preset(args.model, args.clip)
    base = {"size": preset.size, **parse_overrides(args.set), **given_settings(args)}
    images, prompts = find_images(args.images)[: args.limit], read_prompts(args.prompts)[: args.limit]
    pictures = {name: Path(value) if value else None for name, value in (("mask", args.mask), ("style_image", args.style_image))}
    grid = Grid(images, prompts, sweep_settings(args.sweep), base, Limits.from_env(), **pictures)

    models = load_models(args.model, args.device, args.clip)
    if models.untrained:
        print(f"{PROG}: warning: {models.name!r} has random weights; its scores test the harness only", file=sys.stderr)
    judge = Judge.for_models(models, args.metric_clip)
    skipped = judge.lpips_skipped
    if skipped and skipped.failure:
        print(f"{PROG}: warning: {skipped.note}", file=sys.stderr)
    rows = []
    with tqdm(total=len(grid), desc="evaluating", unit="image", file=sys.stderr) as bar:
        for row in run_grid(models, judge, grid, out):
            rows.append(row)
            bar.set_postfix_str(f"{row['setting']} · {row['image']} · {row['prompt']}"[:60], refresh=False)
            bar.update(1)
    meta = {
        "model": models.name,
        "untrained": models.untrained,
        "guide_clip": models.clip.name,
        "judge_clip": judge.clip.name,
        "lpips_skipped": dataclasses.asdict(skipped) if skipped else None,
        "device": str(models.device),
        "base": base,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    print(write_report(rows, meta, [*judge.metric_names, SECONDS], out))
    return 0
