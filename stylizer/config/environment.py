"""Every environment variable that changes what Stylizer does, in one table, and the one way to read them.

README's *Environment variables* table is this table (``tests/test_environment.py`` compares
them), and no module of the package reads ``os.environ`` but this one: a variable not in the table
cannot be read. ``HF_HOME`` and ``TORCH_HOME`` are read by the libraries themselves; they are here
because a deployer sets them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, its default as README states it, and what it does."""

    name: str
    default: str
    meaning: str


VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in (
        Variable("STYLIZER_MODEL", "`sd15`", "preset, folder or repo id the app loads"),
        Variable("STYLIZER_CLIP", "preset's", "guidance CLIP (`ViT-B-32`, `ViT-B-16`, `ViT-L-14`)"),
        Variable("STYLIZER_DEVICES", "every GPU, else CPU", "comma-separated devices, e.g. `cuda:0,cuda:1`"),
        Variable("STYLIZER_AUTH", "none", "`USER:PASS` login"),
        Variable("STYLIZER_SHARE", "`0`", "`1` creates a public share link"),
        Variable("STYLIZER_MCP", "`1`", "`0` turns the MCP server (`/gradio_api/mcp/`) off"),
        Variable("STYLIZER_QUEUE_SIZE", "32", "most jobs waiting at once"),
        Variable("STYLIZER_MAX_SIZE", "1024", "largest working resolution (px, long side)"),
        Variable("STYLIZER_MAX_STEPS", "500", "most DDIM steps"),
        Variable("STYLIZER_MAX_PATCHES", "128", "most patch crops"),
        Variable("STYLIZER_MAX_PIXELS", "40000000", "largest upload in pixels, checked before decoding"),
        Variable("STYLIZER_MAX_UPLOAD_MB", "20", "largest upload in MB"),
        Variable("STYLIZER_JOB_TIMEOUT", "600", "seconds a job may run"),
        Variable("STYLIZER_OUTPUT_TTL", "3600", "seconds results (PNG, GIF) are kept on the server"),
        Variable("STYLIZER_CACHE_ENTRIES", "8", "prepared pictures (encoding, features, inversions) kept per device"),
        Variable("STYLIZER_PREVIEW_SIZE", "256 latent, 128 pixel", "live preview resolution (long side, px; at most the model's own)"),
        Variable("STYLIZER_PREVIEW_STEPS", "12", "live preview DDIM steps over the full schedule"),
        Variable("STYLIZER_RAY", "unset", "as `--ray ADDRESS`: `local` starts Ray here, `auto` or `HOST:PORT` joins a cluster"),
        Variable("STYLIZER_REPLICAS", "1", "with `--ray`: Serve replicas (one GPU each; CPU replicas without GPUs)"),
        Variable("STYLIZER_RAY_APP", "`stylizer`", "with `--ray`: the Serve application's name"),
        Variable(
            "STYLIZER_OPTIMIZE",
            "`0`",
            "`1` runs the optimised guided step (on CUDA: each step replayed as a CUDA graph, captured at start-up)",
        ),
        Variable(
            "STYLIZER_GRAPHS", "8", "CUDA graphs kept per model set (per step kind, mode and shape), least recently used dropped first"
        ),
        Variable("STYLIZER_DEBUG", "unset", "`1` shows tracebacks from the command-line tools"),
        Variable("GRADIO_SERVER_NAME", "`127.0.0.1`", "the address the app listens on"),
        Variable("GRADIO_SERVER_PORT", "7860", "the port the app listens on"),
        Variable("HF_HOME", "library default", "where Hugging Face weights are cached"),
        Variable("TORCH_HOME", "library default", "where torchvision weights (VGG16) are cached"),
        Variable("HF_HUB_OFFLINE", "unset", "`1` never touches the network: weights come from the caches only"),
        Variable("SPACES_ZERO_GPU", "set by Spaces", "present on a ZeroGPU Space: jobs run through `spaces.GPU`"),
        Variable("SPACE_ID", "set by Spaces", "present on any Hugging Face Space: share links are not made there"),
    )
}


def read(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The variable ``name`` (one of :data:`VARIABLES`), stripped; ``""`` where it is unset.

    Args:
        environ: the environment (default: ``os.environ``).
    """
    if name not in VARIABLES:
        raise KeyError(f"{name} is not in stylizer.config.environment.VARIABLES")
    return (os.environ if environ is None else environ).get(name, "").strip()


def whole_number(name: str, default: int | None, environ: Mapping[str, str] | None = None) -> int | None:
    """The variable ``name`` as a whole number, ``default`` where it is unset or empty.

    Raises:
        ConfigError: it is set to something else.
    """
    raw = read(name, environ)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None


def switch(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    """The variable ``name`` as 1 (on) or 0 (off), ``default`` where it is unset or empty.

    Raises:
        ConfigError: it is set to something else.
    """
    raw = read(name, environ)
    if raw not in ("", "0", "1"):
        raise ConfigError(f"{name}={raw!r}: use 1 (on) or 0 (off)")
    return default if raw == "" else raw == "1"


def is_set(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the variable ``name`` is set to anything but the empty string."""
    return bool(read(name, environ))
