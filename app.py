"""Launch the Stylizer web app.

    python app.py [--model PRESET|PATH] [--device cuda|cpu] [--port N] [--host H] [--share] [--auth USER:PASS]
    python app.py --ray [ADDRESS] [--replicas N]

Models load once at start-up; the page streams frames from a worker that owns them: in this
process, or with ``--ray`` on Ray Serve replicas (one per GPU) of a local or joined Ray cluster.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
if os.environ.get("SPACES_ZERO_GPU"):
    # ZeroGPU patches torch's CUDA entry points when it is imported, so it must come before torch:
    # then the models load onto "cuda" here and every job runs on the GPU slice that spaces.GPU lends.
    importlib.import_module("spaces")

from stylizer.cli import LOCAL_RAY  # noqa: E402
from stylizer.commands import run_command  # noqa: E402
from stylizer.config import Limits  # noqa: E402
from stylizer.errors import ConfigError, ModelLoadError  # noqa: E402
from stylizer.loading import CLIP_MODELS, DEFAULT_PRESET, PRESETS  # noqa: E402

NO_DOWNLOAD_HINT = "to try the app without any download: python app.py --model tiny (untrained test models)"
RAY_MISSING = "--ray needs Ray Serve: pip install -r requirements-ray.txt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; each falls back to a ``STYLIZER_*`` environment variable."""
    env = os.environ
    parser = argparse.ArgumentParser(prog="python app.py", description="Launch the Stylizer web app.")
    parser.add_argument(
        "--model",
        default=env.get("STYLIZER_MODEL", DEFAULT_PRESET),
        help=f"preset ({', '.join(PRESETS)}), diffusers folder or repo id (env STYLIZER_MODEL; default {DEFAULT_PRESET})",
    )
    parser.add_argument(
        "--clip", choices=list(CLIP_MODELS), default=env.get("STYLIZER_CLIP") or None, help="guidance CLIP (env STYLIZER_CLIP)"
    )
    parser.add_argument(
        "--device",
        action="append",
        default=None,
        help="cpu, cuda or cuda:N; repeat for several GPUs (env STYLIZER_DEVICES, comma-separated; default: every GPU, else CPU)",
    )
    parser.add_argument("--host", default=env.get("GRADIO_SERVER_NAME", "127.0.0.1"), help="address to listen on (env GRADIO_SERVER_NAME)")
    parser.add_argument(
        "--port", type=int, default=int(env.get("GRADIO_SERVER_PORT", "7860")), help="port (env GRADIO_SERVER_PORT; default 7860)"
    )
    parser.add_argument(
        "--share",
        action="store_true",
        default=env.get("STYLIZER_SHARE", "") == "1",
        help="create a public Gradio share link (env STYLIZER_SHARE=1)",
    )
    parser.add_argument("--auth", default=env.get("STYLIZER_AUTH"), metavar="USER:PASS", help="require a login (env STYLIZER_AUTH)")
    parser.add_argument(
        "--queue-size",
        type=int,
        default=int(env.get("STYLIZER_QUEUE_SIZE", "32")),
        help="most jobs waiting at once (env STYLIZER_QUEUE_SIZE)",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL_RAY,
        default=env.get("STYLIZER_RAY") or None,
        metavar="ADDRESS",
        help="run jobs on Ray Serve replicas; no ADDRESS starts Ray here, 'auto' or HOST:PORT joins a cluster (env STYLIZER_RAY)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=int(env.get("STYLIZER_REPLICAS", "1")),
        help="with --ray: Serve replicas, one GPU each (CPU replicas without GPUs) (env STYLIZER_REPLICAS; default 1)",
    )
    parser.add_argument(
        "--ray-app",
        default=env.get("STYLIZER_RAY_APP", "stylizer"),
        help="with --ray: the Serve application's name; a running one is used as it is (env STYLIZER_RAY_APP)",
    )
    args = parser.parse_args(argv)
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    if args.device is None and env.get("STYLIZER_DEVICES"):
        args.device = [d.strip() for d in env["STYLIZER_DEVICES"].split(",") if d.strip()]
    if args.auth is not None and ":" not in args.auth:
        parser.error("--auth must look like USER:PASS")
    return args


def create_app(args: argparse.Namespace):
    """Load the models, build the worker and the page; returns (demo, worker).

    With ``--ray`` the worker is a :class:`~stylizer.serve_client.RemoteWorker` on Ray Serve replicas.
    """
    if args.ray is not None:
        return create_ray_app(args)
    from stylizer.ui import build_demo
    from stylizer.warmup import warmup
    from stylizer.worker import Worker
    from stylizer.zerogpu import gpu_preview_fn, gpu_run_fn, on_zero_gpu

    limits = Limits.from_env()
    print(f"Loading {args.model} …", file=sys.stderr, flush=True)
    worker = Worker(args.model, args.device, clip=args.clip, limits=limits)
    info = worker.info
    print(f"Loaded {info.name} ({info.backend}, guide CLIP {info.clip}) on {', '.join(info.devices)}", file=sys.stderr, flush=True)
    if info.untrained:
        print("Warning: the 'tiny' preset has random weights; its output is noise, for testing only", file=sys.stderr)
    for models in worker.replicas.values():
        warmup(models)  # CUDA: compile the optimised guided step now, not in the first user's job; CPU: no-op
    # On ZeroGPU every GPU call costs the visitor's quota, so pictures are prepared by Stylize itself there.
    prepare_fn = None if on_zero_gpu() else worker.prepare
    demo = build_demo(gpu_run_fn(worker), info, limits, preview_fn=gpu_preview_fn(worker), prepare_fn=prepare_fn)
    demo.queue(max_size=args.queue_size, default_concurrency_limit=worker.concurrency)
    return demo, worker


def create_ray_app(args: argparse.Namespace):
    """The page in front of Ray Serve replicas; returns (demo, remote worker).

    Live previews and background preparation need a cancellation callback the replicas cannot
    poll, so this page has neither: Stylize prepares the picture itself.
    """
    try:
        importlib.import_module("ray.serve")
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    from stylizer.serve_client import connect
    from stylizer.ui import build_demo

    limits = Limits.from_env()
    print(f"Connecting to Ray ({args.ray}) for the Serve application {args.ray_app!r} …", file=sys.stderr, flush=True)
    remote = connect(args.ray, args.model, args.replicas, clip=args.clip, limits=limits, app_name=args.ray_app)
    info = remote.info
    print(f"Serving {info.name} ({info.backend}) on Ray Serve replicas: {', '.join(info.devices)}", file=sys.stderr)
    demo = build_demo(remote.run, info, limits)
    demo.queue(max_size=args.queue_size, default_concurrency_limit=remote.concurrency)
    return demo, remote


def launch_options(args: argparse.Namespace, limits: Limits) -> dict[str, Any]:
    """The ``demo.launch`` arguments that the flags and the server limits decide."""
    return {
        "server_name": args.host,
        "server_port": args.port,
        "share": args.share,
        "auth": tuple(args.auth.split(":", 1)) if args.auth else None,
        # Gradio refuses a larger upload before it reaches the worker, with its own clear message.
        "max_file_size": limits.max_upload_bytes,
        "show_error": True,
        "run_history": False,  # the page has its own reproducible settings; history only grows server memory
    }


def share_message(share_url: str | None, local_url: str, on_spaces: bool) -> str:
    """What ``--share`` led to, in one line for the log."""
    if share_url:
        return f"Public link (valid for a week): {share_url}"
    if on_spaces:
        return "Share links are not used on Hugging Face Spaces: the Space's own address is the public link"
    return f"Could not create a public share link (Gradio's share servers cannot be reached); serving locally only at {local_url}"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 with one line for a bad flag or missing weights)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    return run_command("stylizer", lambda: serve(args), hints={ModelLoadError: NO_DOWNLOAD_HINT})


def serve(args: argparse.Namespace) -> int:
    """Build the app and serve it until the process is stopped."""
    from stylizer.ui import CSS, THEME

    demo, worker = create_app(args)
    demo.launch(**launch_options(args, worker.limits), theme=THEME, css=CSS, prevent_thread_lock=True)
    if args.share:
        print(share_message(demo.share_url, demo.local_url, on_spaces=bool(os.environ.get("SPACE_ID"))), file=sys.stderr, flush=True)
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
