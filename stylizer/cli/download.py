"""``python -m stylizer download [--model NAME]``: fetch every weight a preset needs ahead of time."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .commands import OneLineParser
from .options import add_model_options


def run(argv: Sequence[str]) -> int:
    """Parse the options, fetch the files and list them; returns the exit status."""
    from ..loading import download

    parser = OneLineParser(
        prog="python -m stylizer download", description="Fetch every weight a preset needs into the local caches (HF_HOME, TORCH_HOME)."
    )
    add_model_options(parser, device=None)
    args = parser.parse_args(argv)
    fetched = download(args.model, args.clip)
    if not fetched:
        print(f"stylizer: {args.model} has nothing to download (random weights or a local folder with everything in it)", file=sys.stderr)
        return 0
    for entry in fetched:
        state = "fetched" if entry.downloaded else "cached "
        print(f"  {state}  {entry.source}  {entry.filename}  {size_text(entry.size)}", file=sys.stderr)
    total = sum(e.size for e in fetched)
    new = sum(e.size for e in fetched if e.downloaded)
    print(
        f"stylizer: {args.model} is ready: {len(fetched)} files, {size_text(total)} in the caches ({size_text(new)} downloaded now)",
        file=sys.stderr,
    )
    return 0


def size_text(n: float) -> str:
    """Bytes in decimal units, as download pages state them."""
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("KB", "MB"):
        n /= 1000
        if n < 1000:
            return f"{n:.2f} {unit}"
    return f"{n / 1000:.2f} GB"
