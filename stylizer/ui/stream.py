"""A run on the page: the Stop button's state, and job updates turned into page updates.

Page updates are dicts keyed by output name (:data:`OUTPUTS`); a name left out keeps its
value. Nothing here builds a component, so it is testable without a page.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import gradio as gr

from ..errors import StylizerError, as_sentence
from ..jobs import JobResult, JobUpdate, RunFn
from .settings import SETTINGS_PARAM

log = logging.getLogger(__name__)

# The run's outputs, in the order of the /stylize API's return tuple.
OUTPUTS = ("result", "status", "comparison", "trajectory", "downloads", "settings", "seed")
INVERTING = "Inverting the picture (DDIM)"
STOPPED = "**Stopped.** Press **Stylize** to run again."
TERM_NAMES = {"dir": "directional", "patch": "patch", "content": "content", "tv": "TV"}

PageUpdate = dict[str, Any]


class StopRequests:
    """The Stop button's presses, per page session, for the running (or queued) run to poll.

    A run ends itself at its next update once Stop was pressed after its Stylize click,
    so it finishes as a normal event. (Gradio's own ``cancels`` on a running generator
    now and then leaves the outputs marked "Error".) Clicks and presses are numbered from
    one counter, so their order is exact.
    """

    def __init__(self) -> None:
        self._order = itertools.count()
        self._armed: dict[str, int] = {}
        self._stopped: dict[str, int] = {}

    def arm(self, session: str) -> None:
        """A run was asked for (Stylize clicked): earlier presses of Stop no longer apply."""
        self._armed[session] = next(self._order)

    def stop(self, session: str) -> None:
        """Stop was pressed: every run of ``session`` armed before now should end."""
        self._stopped[session] = next(self._order)

    def requested(self, session: str) -> bool:
        """Whether Stop was pressed since the latest Stylize click (never, for API calls that pressed nothing)."""
        stopped = self._stopped.get(session)
        return stopped is not None and stopped > self._armed.get(session, -1)

    def forget(self, session: str) -> None:
        """Drop a closed page's entries."""
        self._armed.pop(session, None)
        self._stopped.pop(session, None)


def stream(
    run_fn: RunFn, image: Any, settings: dict[str, Any], progress: gr.Progress, stop_requested: Callable[[], bool]
) -> Iterator[PageUpdate]:
    """Turn a job's updates into page updates; user errors become ``gr.Error``.

    ``stop_requested`` is polled before every update: once it is true the job is closed
    (which cancels it between two network passes) and the status says "Stopped". Every
    update carries the seed the job uses, so a drawn random seed shows at once.
    """
    used_seed = {"seed": settings["seed"]}
    if stop_requested():  # pressed while the run waited in the queue
        yield {"status": STOPPED, **used_seed}
        return
    hidden = gr.update(visible=False)
    # Clear the previous run's result so nothing stale sits beside the new previews.
    starting = f"{INVERTING}…" if settings.get("start", "invert") == "invert" else "Starting…"
    yield {"result": None, "status": starting, "comparison": hidden, "trajectory": hidden, "downloads": hidden, **used_seed}
    try:
        with contextlib.closing(run_fn(image, settings)) as updates:
            for update in _page_updates(updates, progress, stop_requested):
                yield {**update, **used_seed}
    except StylizerError as exc:
        raise gr.Error(as_sentence(str(exc)), print_exception=False) from None
    except gr.Error:
        raise
    except Exception:
        log.exception("stylize job failed")
        raise gr.Error(
            "Something went wrong on the server while stylizing; the error was logged. Please try again.", print_exception=False
        ) from None


def _page_updates(updates: Iterator[JobUpdate], progress: gr.Progress, stop_requested: Callable[[], bool]) -> Iterator[PageUpdate]:
    """One page update per job update, until the job ends or Stop is pressed."""
    for update in updates:
        if stop_requested():
            yield {"status": STOPPED}
            return
        if update.queued:
            yield {"status": "Waiting for a free GPU…"}
        elif update.inverting:
            progress((update.step, update.total), desc="Inverting", unit="steps")
            yield {"status": f"**{INVERTING}** {update.step} / {update.total}{_bar(update.step, update.total)}"}
        elif update.result is None:
            progress((update.step, update.total), desc="Stylizing", unit="steps")
            status = f"**Step {update.step} / {update.total}**{_losses_text(update.losses)}{_bar(update.step, update.total)}"
            yield {"status": status} if update.image is None else {"result": update.image, "status": status}
        else:
            progress((update.step, update.total), desc="Stylizing", unit="steps")
            yield _finished(update.result, update.total)


def _finished(done: JobResult, total: int) -> PageUpdate:
    """The page once a job is done: result, before/after, files, settings and a link to them."""
    notes = "".join(f"\n\n_Note: {n}._" for n in done.notes)
    link = "?" + urlencode({SETTINGS_PARAM: json.dumps(done.settings, separators=(",", ":"))})
    status = f"**Done** in {done.seconds:.1f} s · {total} steps{_losses_text(done.losses)} · [link to these settings]({link}){notes}"
    return {
        "result": done.image,
        "status": status,
        "comparison": gr.ImageSlider(value=(done.source, done.image), visible=True),
        "trajectory": gr.Image(value=str(done.gif_path), visible=True),
        "downloads": gr.File(value=[str(done.png_path), str(done.gif_path)], visible=True),
        "settings": json.dumps(done.settings, indent=1, ensure_ascii=False),
    }


def _bar(done: int, total: int) -> str:
    """A progress bar under the status line (Gradio's own shows only until the first streamed frame)."""
    return f'\n\n<progress value="{done}" max="{max(total, 1)}"></progress>'


def _losses_text(losses: dict[str, float]) -> str:
    if not losses:
        return ""
    return " · " + " · ".join(f"{TERM_NAMES.get(k, k)} {v:.3f}" for k, v in losses.items())
