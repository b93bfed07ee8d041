"""``python -m bench``: time the guided step, eager and optimised, guided and unguided, in one run."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from stylizer.cli.options import add_knob_options, add_model_options, given_settings
from stylizer.config import GUIDANCE_MODES, StyleConfig, model_defaults
from stylizer.engine.models import Models
from stylizer.engine.optimization import EAGER, Optimizations, optimizations_for
from stylizer.errors import ConfigError
from stylizer.images import synthetic_picture
from stylizer.loading import resolve_device, resolve_preset

from .build import bench_models, parameter_counts
from .compiled import MODES as COMPILE_MODES
from .compiled import compiled
from .graphs import graph_breaks
from .measure import machine_info, machine_tag
from .profile import PROFILE_STEPS
from .report import EAGER_PATH, OPTIMISED_PATH, document, table
from .rerun import table as rerun_table
from .rerun import time_reruns
from .run import TAESD, UNGUIDED, WINDOW, time_case

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT_BACKEND = "latent"
# File-name labels of the real-size architectures.
ARCHITECTURES = {"latent": "sd15", "pixel": "church256"}
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROMPT = "drawing with black ink"


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options: the shared model group, the job settings from the knob table, and the benchmark's own."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time Stylizer's guided DDIM step on real-size architectures with random weights (or any model): "
        "the eager reference and the optimised path, guided and unguided, with memory; writes JSON and prints a table.",
    )
    add_model_options(parser, model_default_text="a real-size architecture with random weights, see --backend")
    parser.add_argument(
        "--backend",
        choices=tuple(ARCHITECTURES),
        help="real-size architecture with random weights: latent = Stable Diffusion 1.5 (UNet, VAE, text encoder), "
        "pixel = DDPM church-256 (default: latent; with --model, the model's own)",
    )
    # The job's settings, as the command line names them; --mode left out times both guidance modes.
    add_knob_options(
        parser, lambda knob: knob.bench, shown_defaults={"mode": "both", "size": "the models' own: 512 latent, 256 pixel, 64 tiny"}
    )
    parser.add_argument(
        "--dtype",
        choices=tuple(DTYPES),
        help="the latent networks' precision, and the optimised path's autocast on CUDA (default: bf16 on CUDA, fp32 on CPU)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed jobs per case, after one warm-up job (default: 3)")
    parser.add_argument(
        "--without",
        default="",
        metavar="NAMES",
        help=f"comma-separated optimizations to leave out of the optimised path, to see what each buys: "
        f"{', '.join(f.name for f in dataclasses.fields(Optimizations))}",
    )
    parser.add_argument(
        "--compile-mode",
        choices=COMPILE_MODES,
        help="time torch.compile of each network in this mode as the optimised path on CUDA, instead of the CUDA graphs "
        "of whole steps (reduce-overhead: compiled networks replayed as CUDA graphs)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help=f"after each case's timed jobs, profile one more, short job (at most {PROFILE_STEPS} steps): device-busy fraction, kernel launches per step "
        "and the costliest operators (in the JSON, and summarised in the table)",
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="instead of the cases above: time each path cold (a new picture), warm (the picture prepared, one loss weight "
        "changed) and as a live preview, with their ratios",
    )
    parser.add_argument(
        "--check-graphs",
        action="store_true",
        help="instead of timing: trace every step-loop callable with torch._dynamo.explain and print 'graph breaks: N' "
        "(0 means nothing stops a CUDA graph capture)",
    )
    parser.add_argument(
        "--out", type=Path, help=f"JSON file (default: {RESULTS_DIR.name}/<machine>-<models>-<date>.json next to this package)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    device = resolve(args.device, parser)
    dtype = DTYPES[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    args.backend = _backend(args, parser)
    optimised = optimizations_for(device, True, dtype)
    if args.compile_mode and device.type == "cuda":
        # On CUDA, torch.compile instead of the CUDA graphs of whole steps, to compare the two (the CPU never compiles).
        optimised = compiled(optimised, args.compile_mode)
    paths = {EAGER_PATH: EAGER, OPTIMISED_PATH: _without(optimised, args.without, parser)}

    started = time.perf_counter()
    models = bench_models(args.backend, device, dtype, args.model, args.clip)
    load_s = time.perf_counter() - started
    config = _job_config(args, models)
    picture = synthetic_picture(config.size, config.size)
    kind = "-rerun" if args.rerun else "-graphs" if args.check_graphs else ""
    label = _label(args.model) if args.model else ARCHITECTURES[args.backend]
    args.out = args.out or RESULTS_DIR / f"{machine_tag(device)}-{label}{kind}-{datetime.date.today()}.json"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {
        **_plain(vars(args)),
        "dtype": str(dtype),
        "config": config.to_dict(),
        "optimizations": {path: _plain(dataclasses.asdict(optimizations)) for path, optimizations in paths.items()},
    }
    head = {"schema": 1, "machine": machine_info(device), "settings": settings, "models": _describe(models, load_s)}
    if args.check_graphs:
        return _check_graphs(head, models, picture, config, paths[OPTIMISED_PATH], args.out)
    if args.rerun:
        print(f"bench: timing cold, warm and preview jobs ({models.name}, {config.size} px)", file=sys.stderr, flush=True)
        reruns = {path: time_reruns(models, picture, config, optimizations, args.repeats) for path, optimizations in paths.items()}
        return _write({**head, "rerun": reruns}, args.out, rerun_table)
    modes = GUIDANCE_MODES if args.mode is None else (args.mode,)
    variants = (WINDOW, TAESD) if models.backend.kind == "latent" else (WINDOW,)
    guidances = (UNGUIDED, *modes, *(variants if "fast" in modes else ()))
    results = []
    for path, optimizations in paths.items():  # eager first: the optimised path leaves the weights channels_last
        for guidance in guidances:
            print(
                f"bench: timing {path} {guidance} ({models.name}, {config.size} px, {config.denoise_steps} steps)",
                file=sys.stderr,
                flush=True,
            )
            results.append(time_case(models, picture, config, path, guidance, optimizations, args.repeats, args.profile))
            # Rewritten after every case, so a run cut short still leaves what it measured.
            doc = document(head["machine"], settings, head["models"], results)
            args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return _write(doc, args.out, table)


def resolve(requested: str | None, parser: argparse.ArgumentParser) -> torch.device:
    """``--device`` as a torch device (CUDA where available by default), or an error naming the flag."""
    try:
        return resolve_device(requested)
    except ConfigError as exc:
        parser.error(f"--device: {exc}")
        raise


def _backend(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """The backend the models have: ``--backend``, or the model's own, which ``--backend`` may not contradict."""
    if args.model is None:
        return args.backend or DEFAULT_BACKEND
    own = resolve_preset(args.model, args.clip).backend
    if args.backend and args.backend != own:
        parser.error(f"--backend {args.backend} contradicts --model {args.model}, which is {own}")
    return own


def _job_config(args: argparse.Namespace, models: Models) -> StyleConfig:
    """The timed job's settings: the knob options given, over the models' defaults, with the benchmark's prompt."""
    given = {name: value for name, value in given_settings(args).items() if name != "mode"}
    size = given.get("size") or models.preset.size
    return StyleConfig(**{**model_defaults(models.backend.kind, size), "prompt": PROMPT, **given}).validated()


def _check_graphs(head: dict[str, Any], models: Models, picture: Any, config: StyleConfig, optimizations: Optimizations, out: Path) -> int:
    print(f"bench: tracing the step loop ({models.name}, {config.size} px)", file=sys.stderr, flush=True)
    breaks = graph_breaks(models, picture, config, optimizations)
    out.write_text(json.dumps({**head, "check_graphs": breaks}, indent=2) + "\n", encoding="utf-8")
    for name, entry in breaks["callables"].items():
        print(f"{name}: {entry['graph_breaks']} graph breaks {entry['reasons'] or ''}")
    print(f"graph breaks: {breaks['total']}")
    print(f"bench: wrote {out}", file=sys.stderr)
    return 0


def _write(doc: dict[str, Any], out: Path, tabulate: Any) -> int:
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(tabulate(doc))
    print(f"bench: wrote {out}", file=sys.stderr)
    return 0


def _label(model: str) -> str:
    """A file-name label for a model given by name, folder or repo id."""
    return Path(model).name.replace("/", "-") or "model"


def _without(optimizations: Optimizations, names: str, parser: argparse.ArgumentParser) -> Optimizations:
    """``optimizations`` with the named optimizations turned off."""
    chosen = [name.strip() for name in names.split(",") if name.strip()]
    known = {f.name for f in dataclasses.fields(Optimizations)}
    unknown = sorted(set(chosen) - known)
    if unknown:
        parser.error(f"--without: unknown speedup(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    return dataclasses.replace(optimizations, **{name: getattr(EAGER, name) for name in chosen})


def _describe(models: Models, load_s: float) -> dict[str, Any]:
    backend = models.backend
    return {
        "name": models.name,
        "description": models.preset.description,
        "backend": backend.kind,
        "unet_dtype": str(next(backend.unet.parameters()).dtype),
        "clip": models.clip.name,
        "parameters": parameter_counts(models),
        "load_s": load_s,
    }


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready: dtypes and paths as text."""
    return {key: str(value) if isinstance(value, (torch.dtype, Path)) else value for key, value in values.items()}
