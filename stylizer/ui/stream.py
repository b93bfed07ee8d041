"""Jobs on the page: a run's updates, a live preview and a background preparation, turned into page updates.

Page updates are dicts keyed by output name (:data:`OUTPUTS`); a name left out keeps its
value. Nothing here builds a component, so it is testable without a page.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import gradio as gr

from ..errors import StylizerError, as_sentence
from ..jobs import JobResult, JobUpdate, PrepareFn, PreviewFn, RunFn
from .settings import SETTINGS_PARAM

log = logging.getLogger(__name__)

# The run's outputs, in the order of the /stylize API's return tuple.
OUTPUTS = ("result", "status", "comparison", "trajectory", "downloads", "settings", "seed")
# A live preview's: the /preview API returns the first two; on the page it also hides the last result's extras.
PREVIEW_API_OUTPUTS = ("result", "status")
PREVIEW_OUTPUTS = (*PREVIEW_API_OUTPUTS, "comparison", "trajectory", "downloads")
INVERTING = "Inverting the picture (DDIM)"
REUSING = "Reusing the prepared picture…"
PREPARING = "Preparing the picture…"
READY = "**Ready**: the picture is prepared, so **Stylize** starts at its first step."
RESULT_LABEL, PREVIEW_LABEL = "Result", "Preview"
STOPPED = "**Stopped.** Press **Stylize** to run again."
TERM_NAMES = {"dir": "directional", "patch": "patch", "content": "content", "tv": "TV"}

PageUpdate = dict[str, Any]


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
    cleared = gr.update(value=None, label=RESULT_LABEL)
    yield {"result": cleared, "status": starting, "comparison": hidden, "trajectory": hidden, "downloads": hidden, **used_seed}
    with _user_errors("stylizing"), contextlib.closing(run_fn(image, settings)) as updates:
        for update in _page_updates(updates, progress, stop_requested):
            yield {**update, **used_seed}


def preview(preview_fn: PreviewFn, image: Any, settings: dict[str, Any], cancelled: Callable[[], bool]) -> PageUpdate:
    """A live preview's page update: its image in the Result area, marked "Preview"; nothing when there is no picture or it was cancelled."""
    if image is None:
        return {}
    started = time.perf_counter()
    with _user_errors("previewing"):
        update = preview_fn(image, settings, cancelled)
    if update is None or update.image is None:
        return {}
    width, height = update.image.size
    status = (
        f"**Preview** at {width}×{height} px, {update.total} steps, in {time.perf_counter() - started:.1f} s"
        f"{_losses_text(update.losses)} · press **Stylize** for the full result"
    )
    hidden = gr.update(visible=False)  # the last full result's extras no longer match what the Result area shows
    preview_image = gr.update(value=update.image, label=PREVIEW_LABEL)
    return {"result": preview_image, "status": status, "comparison": hidden, "trajectory": hidden, "downloads": hidden}


def preparation(
    prepare_fn: PrepareFn, image: Any, settings: dict[str, Any], cancelled: Callable[[], bool], previews: bool
) -> Iterator[str]:
    """The preparation line under the picture: "Preparing…", then "Ready" (or why not); nothing more if superseded."""
    if image is None:
        yield ""
        return
    yield PREPARING
    try:
        ready = prepare_fn(image, settings, cancelled, previews)
    except StylizerError as exc:
        yield f"Could not prepare the picture: {as_sentence(str(exc))}"
        return
    except Exception:
        log.exception("preparing a picture failed")
        yield "Could not prepare the picture; **Stylize** will try again."
        return
    if ready and not cancelled():  # a newer request may have come while the last, cached, part took no step
        yield READY


@contextlib.contextmanager
def _user_errors(doing: str) -> Iterator[None]:
    """User errors become ``gr.Error`` with their message; anything else is logged and reported in one sentence."""
    try:
        yield
    except StylizerError as exc:
        raise gr.Error(as_sentence(str(exc)), print_exception=False) from None
    except gr.Error:
        raise
    except Exception:
        log.exception("%s failed", doing)
        raise gr.Error(
            f"Something went wrong on the server while {doing}; the error was logged. Please try again.", print_exception=False
        ) from None


def _page_updates(updates: Iterator[JobUpdate], progress: gr.Progress, stop_requested: Callable[[], bool]) -> Iterator[PageUpdate]:
    """One page update per job update, until the job ends or Stop is pressed."""
    for update in updates:
        if stop_requested():
            yield {"status": STOPPED}
            return
        if update.queued:
            yield {"status": "Waiting for a free GPU…"}
        elif update.reused:
            yield {"status": REUSING}
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
        "result": gr.update(value=done.image, label=RESULT_LABEL),
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
