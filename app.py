"""Launch the Stylizer web app: the page, its API and MCP tools.

    python app.py [--model PRESET|PATH] [--device cuda|cpu] [--port N] [--host H] [--share] [--auth USER:PASS] [--no-mcp]
    python app.py --ray [ADDRESS] [--replicas N]

Models load once at start-up; the page streams frames from a worker that owns them: in this
process, or with ``--ray`` on Ray Serve replicas (one per GPU) of a local or joined Ray cluster.
Where it runs (this machine, a ZeroGPU Space, Ray) is decided here, once, and passed down.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from stylizer.serving.deployment import ZERO_GPU, host_kind  # noqa: E402  (torch-free, read before torch)

if host_kind() == ZERO_GPU:
    # ZeroGPU patches torch's CUDA entry points when it is imported, so it must come before torch:
    # then the models load onto "cuda" here and every job runs on the GPU slice that spaces.GPU lends.
    importlib.import_module("spaces")

from stylizer.cli.commands import OneLineParser, positive_int, run_command  # noqa: E402
from stylizer.cli.options import LOCAL_RAY, MANY, add_model_options  # noqa: E402
from stylizer.config import Limits, environment  # noqa: E402
from stylizer.errors import ConfigError, ModelLoadError  # noqa: E402

NO_DOWNLOAD_HINT = "to try the app without any download: python app.py --model tiny (untrained test models)"
RAY_MISSING = "--ray needs Ray Serve: pip install -r requirements-ray.txt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; each falls back to an environment variable (see :mod:`stylizer.config.environment`)."""
    parser = OneLineParser(prog="python app.py", description="Launch the Stylizer web app, its API and its MCP tools.")
    add_model_options(parser, device=MANY, from_environment=True)
    server = parser.add_argument_group("server")
    server.add_argument(
        "--host", default=environment.read("GRADIO_SERVER_NAME") or "127.0.0.1", help="address to listen on (env GRADIO_SERVER_NAME)"
    )
    server.add_argument(
        "--port", type=int, default=environment.whole_number("GRADIO_SERVER_PORT", 7860), help="port (env GRADIO_SERVER_PORT; default 7860)"
    )
    server.add_argument(
        "--share",
        action="store_true",
        default=environment.switch("STYLIZER_SHARE", False),
        help="create a public Gradio share link (env STYLIZER_SHARE=1)",
    )
    server.add_argument(
        "--auth", default=environment.read("STYLIZER_AUTH") or None, metavar="USER:PASS", help="require a login (env STYLIZER_AUTH)"
    )
    server.add_argument(
        "--queue-size",
        type=positive_int,
        default=environment.whole_number("STYLIZER_QUEUE_SIZE", 32),
        help="most jobs waiting at once (env STYLIZER_QUEUE_SIZE)",
    )
    server.add_argument(
        "--mcp",
        action=argparse.BooleanOptionalAction,
        default=environment.switch("STYLIZER_MCP", True),
        help="serve the stylize and preview tools over MCP at /gradio_api/mcp/ (env STYLIZER_MCP=0 turns it off; default on)",
    )
    ray = parser.add_argument_group("Ray Serve")
    ray.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL_RAY,
        default=environment.read("STYLIZER_RAY") or None,
        metavar="ADDRESS",
        help="run jobs on Ray Serve replicas; no ADDRESS starts Ray here, 'auto' or HOST:PORT joins a cluster (env STYLIZER_RAY)",
    )
    ray.add_argument(
        "--replicas",
        type=positive_int,
        default=environment.whole_number("STYLIZER_REPLICAS", 1),
        help="with --ray: Serve replicas, one GPU each (CPU replicas without GPUs) (env STYLIZER_REPLICAS; default 1)",
    )
    ray.add_argument(
        "--ray-app",
        default=environment.read("STYLIZER_RAY_APP") or "stylizer",
        help="with --ray: the Serve application's name; a running one is used as it is (env STYLIZER_RAY_APP)",
    )
    args = parser.parse_args(argv)
    if args.auth is not None and ":" not in args.auth:
        parser.error("--auth must look like USER:PASS")
    return args


def create_app(args: argparse.Namespace):
    """Load the models, build the worker and the page; returns (demo, job runner).

    With ``--ray`` the runner is a :class:`~stylizer.serving.ray_client.RemoteWorker` on Ray Serve replicas.
    """
    if args.ray is not None:
        return create_ray_app(args)
    from stylizer.engine.warmup import warmup
    from stylizer.serving.deployment import Deployment
    from stylizer.serving.worker import Worker
    from stylizer.ui import build_demo

    limits, deployment = Limits.from_env(), Deployment.from_env()
    print(f"Loading {args.model} …", file=sys.stderr, flush=True)
    worker = Worker(args.model, args.device, clip=args.clip, limits=limits, deployment=deployment)
    info = worker.info
    print(f"Loaded {info.name} ({info.backend}, guide CLIP {info.clip}) on {', '.join(info.devices)}", file=sys.stderr, flush=True)
    if info.untrained:
        print(f"Warning: the {info.name!r} preset has random weights; its output is noise, for testing only", file=sys.stderr)
    for device, models in worker.replicas.items():
        warmup(models, optimize=worker.optimizations[device])  # CUDA: capture the optimised step now, not in a user's job
    jobs = worker
    if deployment.zero_gpu:
        from stylizer.serving.zerogpu import ZeroGpuJobs

        jobs = ZeroGpuJobs(worker)
    demo = build_demo(jobs, limits, previews=True, preparation=deployment.prepares_in_background)
    demo.queue(max_size=args.queue_size, default_concurrency_limit=worker.concurrency)
    return demo, jobs


def create_ray_app(args: argparse.Namespace):
    """The page in front of Ray Serve replicas; returns (demo, remote worker).

    Live previews and background preparation need a cancellation callback the replicas cannot
    poll, so this page has neither: Stylize prepares the picture itself.
    """
    try:
        importlib.import_module("ray.serve")
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    from stylizer.serving.ray_client import connect
    from stylizer.ui import build_demo

    limits = Limits.from_env()
    print(f"Connecting to Ray ({args.ray}) for the Serve application {args.ray_app!r} …", file=sys.stderr, flush=True)
    address = None if args.ray == LOCAL_RAY else args.ray
    remote = connect(address, args.model, args.replicas, clip=args.clip, limits=limits, app_name=args.ray_app)
    info = remote.info
    print(f"Serving {info.name} ({info.backend}) on Ray Serve replicas: {', '.join(info.devices)}", file=sys.stderr)
    demo = build_demo(remote, limits)
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
        "mcp_server": args.mcp,
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
    return run_command("stylizer", lambda: serve(parse_args(argv)), hints={ModelLoadError: NO_DOWNLOAD_HINT})


def serve(args: argparse.Namespace) -> int:
    """Build the app and serve it until the process is stopped."""
    from stylizer.ui import CSS, THEME
    from stylizer.ui.mcp import return_every_output

    demo, jobs = create_app(args)
    demo.launch(**launch_options(args, jobs.limits), theme=THEME, css=CSS, prevent_thread_lock=True)
    return_every_output(demo)
    if args.share:
        print(share_message(demo.share_url, demo.local_url, on_spaces=environment.is_set("SPACE_ID")), file=sys.stderr, flush=True)
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
