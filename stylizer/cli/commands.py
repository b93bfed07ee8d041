"""Plumbing shared by the command-line entry points: one-line errors and exit codes.

User errors (:class:`StylizerError`: bad files, bad options, missing weights) exit
with status 2 and one line on stderr; an unexpected failure exits with 1, also on
one line unless ``STYLIZER_DEBUG=1`` asks for the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping

from ..config import environment
from ..errors import ConfigError, StylizerError

# Exit statuses: a user error (bad file, bad option, missing weights), and Ctrl-C (128 + SIGINT, as shells report it).
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """argparse, but option errors become a :class:`ConfigError` (one line, exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def positive_int(text: str) -> int:
    """An option's value as a whole number of at least 1 (argparse's ``type=``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def run_command(prog: str, body: Callable[[], int], hints: Mapping[type[StylizerError], str] | None = None) -> int:
    """Run ``body`` and turn every failure into an exit status and one line on stderr.

    Args:
        prog: the command's name, used as the message prefix.
        body: does the work and returns the exit status.
        hints: a second line for errors of these types (e.g. what to try instead).
    """
    try:
        return body()
    except StylizerError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        for kind, hint in (hints or {}).items():
            if isinstance(exc, kind):
                print(f"{prog}: {hint}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the last line of defence: one line, not a traceback
        if environment.is_set("STYLIZER_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(exc).__name__}: {exc} (set STYLIZER_DEBUG=1 for details)", file=sys.stderr)
        return 1
