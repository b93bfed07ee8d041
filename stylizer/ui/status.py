"""What a job says about itself, as plain text: the API's status output, and the page's status line before markup.

Nothing here builds a component or writes markup, so the API hands clients exactly these lines.
"""

from __future__ import annotations

from ..config.terms import SHOWN
from ..serving.jobs import JobResult

INVERTING = "Inverting the picture (DDIM)"
REUSING = "Reusing the prepared picture…"
STARTING = "Starting…"
STOPPED = "Stopped. Press Stylize to run again."
QUEUED = "Waiting for a free GPU…"
# A preview that ended before its picture: a Stylize job took the device first.
PREVIEW_GAVE_WAY = "The preview gave way to a Stylize job that was waiting; ask for it again."


def starting(start: str) -> str:
    """The line before the first update: the inversion comes first when the job starts from one."""
    return f"{INVERTING}…" if start == "invert" else STARTING


def inverting(done: int, total: int) -> str:
    """A DDIM inversion step done."""
    return f"{INVERTING} {done} / {total}"


def stepping(done: int, total: int, losses: dict[str, float]) -> str:
    """A guided step done, with the latest frame's loss readings."""
    return f"Step {done} / {total}{losses_text(losses)}"


def finished(result: JobResult, total: int) -> str:
    """A finished job: its time, steps and final losses, and the notes the user should read."""
    notes = "".join(f" Note: {note}." for note in result.notes)
    return f"Done in {result.seconds:.1f} s · {total} steps{losses_text(result.losses)}.{notes}"


def previewed(width: int, height: int, steps: int, seconds: float, losses: dict[str, float]) -> str:
    """A live preview's line: its size, steps and time, and what to press for the full result."""
    return f"Preview at {width}×{height} px, {steps} steps, in {seconds:.1f} s{losses_text(losses)} · press Stylize for the full result"


def losses_text(losses: dict[str, float]) -> str:
    """The loss readings, each under its name on screen (see :data:`stylizer.config.terms.SHOWN`)."""
    if not losses:
        return ""
    return " · " + " · ".join(f"{SHOWN.get(k, k)} {v:.3f}" for k, v in losses.items())
