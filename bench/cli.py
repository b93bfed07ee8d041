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

from stylizer.config import GUIDANCE_MODES, START_MODES, StyleConfig, model_defaults
from stylizer.images import synthetic_picture
from stylizer.loading import PRESETS, Models
from stylizer.loading.presets import TINY, TINY_LATENT
from stylizer.optimization import EAGER, Optimizations, optimizations_for

from .build import bench_models, parameter_counts
from .graphs import graph_breaks
from .measure import machine_info, machine_tag
from .profile import PROFILE_STEPS
from .report import EAGER_PATH, OPTIMISED_PATH, document, table
from .rerun import table as rerun_table
from .rerun import time_reruns
from .run import TAESD, UNGUIDED, WINDOW, time_case

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
BOTH = "both"
TINY_PRESETS = (TINY, TINY_LATENT)
DEFAULT_BACKEND = "latent"
# File-name labels of the real-size architectures.
ARCHITECTURES = {"latent": "sd15", "pixel": "church256"}
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROMPT = "drawing with black ink"


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options; the job settings default to :class:`StyleConfig`'s."""
    job = StyleConfig()
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time Stylizer's guided DDIM step on real-size architectures with random weights (or a tiny preset): "
        "the eager reference and the optimised path, guided and unguided, with memory; writes JSON and prints a table.",
    )
    parser.add_argument(
        "--backend",
        choices=tuple(ARCHITECTURES),
        help="real-size architecture: latent = Stable Diffusion 1.5 (UNet, VAE, text encoder), pixel = DDPM church-256 "
        "(default: latent, or the preset's)",
    )
    parser.add_argument(
        "--preset", choices=TINY_PRESETS, help="time this tiny preset instead of a real-size architecture, for quick CPU runs"
    )
    parser.add_argument(
        "--size", type=int, help="working resolution, long side in px (default: the models' own: 512 latent, 256 pixel, 64 tiny)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=job.steps,
        help=f"DDIM steps over the full schedule; a job runs steps x strength of them (default: {job.steps})",
    )
    parser.add_argument(
        "--strength", type=float, default=job.strength, help=f"fraction of the schedule a job runs (default: {job.strength})"
    )
    parser.add_argument("--patches", type=int, default=job.n_patches, help=f"patch crops per step (default: {job.n_patches})")
    parser.add_argument("--start", choices=START_MODES, default=job.start, help=f"start point (default: {job.start})")
    parser.add_argument(
        "--preview-every", type=int, default=job.preview_every, help=f"a frame every N steps (default: {job.preview_every})"
    )
    parser.add_argument(
        "--dtype",
        choices=tuple(DTYPES),
        help="the latent networks' precision, and the optimised path's autocast on CUDA (default: bf16 on CUDA, fp32 on CPU)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mode", choices=(*GUIDANCE_MODES, BOTH), default=BOTH, help="guidance mode(s) to time (default: both)")
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
    parser.add_argument("--preview-size", type=int, help="--rerun: the preview's resolution (default: the app's for these models)")
    parser.add_argument("--preview-steps", type=int, help="--rerun: the preview's steps (default: the app's)")
    parser.add_argument(
        "--out", type=Path, help=f"JSON file (default: {RESULTS_DIR.name}/<machine>-<models>-<date>.json next to this package)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is available")
    dtype = DTYPES[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    preset_backend = PRESETS[args.preset].backend if args.preset else None
    if args.backend and preset_backend and args.backend != preset_backend:
        parser.error(f"--backend {args.backend} contradicts --preset {args.preset}, which is {preset_backend}")
    args.backend = args.backend or preset_backend or DEFAULT_BACKEND
    optimised = optimizations_for(device, True, dtype)
    if args.compile_mode:
        # On CUDA, torch.compile instead of the CUDA graphs of whole steps, to compare the two (the CPU never compiles).
        compiled = {"cuda_graphs": False, "compile": True} if device.type == "cuda" else {}
        optimised = dataclasses.replace(optimised, compile_mode=args.compile_mode, **compiled)
    paths = {EAGER_PATH: EAGER, OPTIMISED_PATH: _without(optimised, args.without, parser)}

    started = time.perf_counter()
    models = bench_models(args.backend, device, dtype, args.preset)
    load_s = time.perf_counter() - started
    size = args.size or models.preset.size
    defaults = model_defaults(models.backend.kind, size)
    config = StyleConfig(
        prompt=PROMPT,
        size=size,
        steps=args.steps,
        strength=args.strength,
        n_patches=args.patches,
        start=args.start,
        preview_every=args.preview_every,
        preview_size=args.preview_size or defaults["preview_size"],
        preview_steps=args.preview_steps or defaults["preview_steps"],
    ).validated()
    picture = synthetic_picture(config.size, config.size)
    modes = GUIDANCE_MODES if args.mode == BOTH else (args.mode,)
    variants = (WINDOW, TAESD) if models.backend.kind == "latent" else (WINDOW,)
    guidances = (UNGUIDED, *modes, *(variants if "fast" in modes else ()))

    kind = "-rerun" if args.rerun else "-graphs" if args.check_graphs else ""
    args.out = (
        args.out or RESULTS_DIR / f"{machine_tag(device)}-{args.preset or ARCHITECTURES[args.backend]}{kind}-{datetime.date.today()}.json"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {
        **_plain(vars(args)),
        "dtype": str(dtype),
        "config": config.to_dict(),
        "optimizations": {path: _plain(dataclasses.asdict(optimizations)) for path, optimizations in paths.items()},
    }
    machine, described = machine_info(device), _describe(models, load_s)
    if args.check_graphs:
        print(f"bench: tracing the step loop ({models.name}, {config.size} px)", file=sys.stderr, flush=True)
        breaks = graph_breaks(models, picture, config, paths[OPTIMISED_PATH])
        doc = {"schema": 1, "machine": machine, "settings": settings, "models": described, "check_graphs": breaks}
        args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        for name, entry in breaks["callables"].items():
            print(f"{name}: {entry['graph_breaks']} graph breaks {entry['reasons'] or ''}")
        print(f"graph breaks: {breaks['total']}")
        print(f"bench: wrote {args.out}", file=sys.stderr)
        return 0
    if args.rerun:
        print(f"bench: timing cold, warm and preview jobs ({models.name}, {config.size} px)", file=sys.stderr, flush=True)
        reruns = {path: time_reruns(models, picture, config, optimizations, args.repeats) for path, optimizations in paths.items()}
        doc = {"schema": 1, "machine": machine, "settings": settings, "models": described, "rerun": reruns}
        args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(rerun_table(doc))
        print(f"bench: wrote {args.out}", file=sys.stderr)
        return 0
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
            doc = document(machine, settings, described, results)
            args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(table(doc))
    print(f"bench: wrote {args.out}", file=sys.stderr)
    return 0


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
