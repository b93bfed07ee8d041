"""``python -m stylizer batch``: many pictures, one setting; the command, the per-picture work and the run.

The plan (:mod:`stylizer.cli.batch_plan`) is made once, up front. Each picture left then goes through a
:class:`PictureWorker`, in this process (:func:`local_outcomes`) or on Ray actors
(:mod:`stylizer.cli.ray_batch`); either way it writes ``NAME.png`` and ``NAME.json`` (and ``NAME.gif``
with frames), each under a temporary name first and then moved into place, so an interrupted run
leaves whole files only. :func:`run_batch` shows the progress, logs each failure and sums up.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import Limits
from ..errors import ConfigError
from ..images import IMAGE_SUFFIXES
from .batch_plan import BatchSpec, Outcomes, Plan, batch_spec, is_finished, plan_batch
from .batch_work import local_outcomes
from .commands import EXIT_INTERRUPTED, OneLineParser, positive_int
from .options import LOCAL_RAY, add_job_options, job_settings
from .stylize import UNTRAINED_WARNING

# Exit status when some pictures failed (the others are written).
EXIT_SOME_FAILED = 3


def build_parser() -> argparse.ArgumentParser:
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


def run(args: argparse.Namespace) -> int:
    """Check the options, plan the batch and run it, here or on Ray Data; returns the exit status."""
    from ..loading import resolve_preset

    if args.ray is None and args.actors is not None:
        raise ConfigError("--actors needs --ray")
    address = None if args.ray in (None, LOCAL_RAY) else ray_address(args.ray)
    if args.ray is not None:
        from .ray_batch import import_ray

        import_ray()  # now: a missing Ray is a bad option, found before any work
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"-o {out_dir} exists and is not a folder")
    preset = resolve_preset(args.model, args.clip)
    limits = Limits.from_env()
    settings = job_settings(args, preset.backend, preset.size, limits)
    pictures = dict(mask=args.mask, style_image=args.style_image)
    options = dict(clip=args.clip, device=args.device, preview=args.preview, optimize=args.optimize, frames=args.frames)
    spec, notes = batch_spec(out_dir, args.model, settings, limits, **pictures, **options)
    plan = plan_batch(args.inputs, spec, overwrite=args.overwrite)
    for note in notes:
        print(f"stylizer: note: {note}", file=sys.stderr)
    if preset.untrained:
        print(UNTRAINED_WARNING.format(preset.name), file=sys.stderr)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.ray is None:
        outcomes = local_outcomes(spec, plan.todo)
    else:
        from .ray_batch import ray_outcomes

        outcomes = ray_outcomes(spec, plan.todo, address, args.actors)
    return run_batch(plan, outcomes, spec, report_json=args.json)


def ray_address(text: str) -> str:
    """``--ray ADDRESS`` checked: ``auto``, or one with a port, so that an input given right after ``--ray`` is not taken for one."""
    if text != "auto" and ":" not in text:
        raise ConfigError(f"--ray {text}: give auto, HOST:PORT or ray://HOST:PORT, or put --ray after the inputs")
    return text


def run_batch(plan: Plan, outcomes: Outcomes, spec: BatchSpec, *, prog: str = "stylizer", report_json: bool = False) -> int:
    """Drive a batch: a progress bar over pictures, a line per failure, then the summary.

    Args:
        plan: the inputs, as :func:`plan_batch` sorted them.
        outcomes: the outcomes of ``plan.todo``, as the pictures finish; closed when the run ends.
        spec: the batch's shared settings.
        prog: the prefix of every message.
        report_json: also print the summary as JSON on stdout.

    Returns:
        The exit status: 0 all done, 3 some failed, 130 interrupted (Ctrl-C; what is written is whole).
    """
    from tqdm import tqdm

    def log(line: str) -> None:
        tqdm.write(f"{prog}: {line}", file=sys.stderr)

    for path in plan.skipped:
        log(f"note: skipped {path}: not an image file ({', '.join(IMAGE_SUFFIXES)})")
    if plan.finished:
        log(f"{len(plan.finished)} picture(s) finished earlier with these settings are left as they are (--overwrite redoes them)")
    for outcome in plan.failed:
        log(f"failed: {outcome.path}: {outcome.reason}")
    done, failed, interrupted = [], list(plan.failed), False
    with tqdm(total=len(plan.todo), desc="pictures", unit="picture", file=sys.stderr, dynamic_ncols=True) as bar:
        try:
            for outcome in outcomes:
                for note in outcome.notes:
                    log(f"note: {outcome.path}: {note}")
                if outcome.ok:
                    done.append(outcome.path)
                else:
                    failed.append(outcome)
                    log(f"failed: {outcome.path}: {outcome.reason}")
                bar.update(1)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            outcomes.close()
    if interrupted:
        # Workers elsewhere (Ray actors) may have finished pictures whose outcome never arrived.
        reported = set(done) | {outcome.path for outcome in failed}
        done += [item.path for item in plan.todo if item.path not in reported and is_finished(item, spec)]
    left = len(plan.todo) - len(done) - (len(failed) - len(plan.failed))
    finished = len(done) + len(plan.finished)
    summary = f"batch: {finished} done ({len(done)} now, {len(plan.finished)} earlier), {len(plan.skipped)} skipped, {len(failed)} failed"
    log(summary + (f", {left} left: interrupted; run the same command again to finish" if interrupted else ""))
    for outcome in failed:
        log(f"failed: {outcome.path}: {outcome.reason}")
    if report_json:
        report = {
            "done": done,
            "earlier": [item.path for item in plan.finished],
            "skipped": [str(path) for path in plan.skipped],
            "failed": [{"input": outcome.path, "reason": outcome.reason} for outcome in failed],
            "left": left,
        }
        print(json.dumps(report, ensure_ascii=False))
    return EXIT_INTERRUPTED if interrupted else EXIT_SOME_FAILED if failed else 0
