"""The command line: ``python -m stylizer INPUT -p PROMPT -o OUTPUT`` (:mod:`.stylize`), ``python -m stylizer batch``
(:mod:`.batch`, on Ray Data with :mod:`.ray_batch`) and ``python -m stylizer download`` (:mod:`.download`); the options
they share (:mod:`.options`) and their one-line errors (:mod:`.commands`).

Errors are reported as :mod:`stylizer.cli.commands` describes: exit status 2 and one line
for user errors, 1 for anything unexpected.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .commands import run_command


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["download"]:
        from . import download

        return run_command("stylizer", lambda: download.run(argv[1:]))
    if argv[:1] == ["batch"]:
        from . import batch

        return run_command("stylizer", lambda: batch.run(batch.build_parser().parse_args(argv[1:])))
    from . import stylize

    return run_command("stylizer", lambda: stylize.run(stylize.build_parser().parse_args(argv)))
