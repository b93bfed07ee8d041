"""The page's side of a job: each :class:`~stylizer.ui.follow.View` as a page update, the preview, and the preparation line.

Page updates are dicts keyed by output name (:data:`OUTPUTS`); a name left out keeps its
value. Nothing here builds a component, so it is testable without a page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import gradio as gr

from ..errors import StylizerError, as_sentence
from ..serving.jobs import JobResult, JobRunner
from . import follow
from .follow import View, user_errors
from .settings import SETTINGS_PARAM

log = logging.getLogger(__name__)

# The run's outputs on the page.
OUTPUTS = ("result", "status", "comparison", "trajectory", "downloads", "settings", "seed")
# A live preview's: on the page it also hides the last result's extras.
PREVIEW_OUTPUTS = ("result", "status", "comparison", "trajectory", "downloads")
PREPARING = "Preparing the picture…"
READY = "**Ready**: the picture is prepared, so **Stylize** starts at its first step."
RESULT_LABEL, PREVIEW_LABEL = "Result", "Preview"

PageUpdate = dict[str, Any]


def stream(
    jobs: JobRunner, image: Any, settings: dict[str, Any], progress: gr.Progress, stop_requested: Callable[[], bool]
) -> Iterator[PageUpdate]:
    """A Stylize job's page updates; user errors become ``gr.Error``.

    Every update carries the seed the job uses, so a drawn random seed shows at once; the first
    one clears the previous run's result, so nothing stale sits beside the new frames.
    """
    used_seed = {"seed": settings["seed"]}
    with user_errors("stylizing"):
        for view in follow.follow(jobs, image, settings, stop_requested):
            yield {**page_update(view, progress), **used_seed}


def page_update(view: View, progress: gr.Progress) -> PageUpdate:
    """One view on the page: the status line (with a progress bar while steps run), and any new picture."""
    if view.phase is not None:
        progress((view.done, view.total), desc=view.phase, unit="steps")
    if view.result is not None:
        return _finished(view.result, view.status)
    if view.first:
        hidden = gr.update(visible=False)
        cleared = gr.update(value=None, label=RESULT_LABEL)
        return {"result": cleared, "status": view.status, "comparison": hidden, "trajectory": hidden, "downloads": hidden}
    line = view.status if view.phase is None else f"{view.status}{_bar(view.done, view.total)}"
    return {"status": line} if view.image is None else {"result": view.image, "status": line}


def preview(jobs: JobRunner, image: Any, settings: dict[str, Any], cancelled: Callable[[], bool]) -> PageUpdate:
    """A live preview's page update: its image in the Result area, marked "Preview"; nothing when there is no picture or it was cancelled."""
    if image is None:
        return {}
    with user_errors("previewing"):
        view = follow.preview(jobs, image, settings, cancelled)
    if view is None:
        return {}
    hidden = gr.update(visible=False)  # the last full result's extras no longer match what the Result area shows
    preview_image = gr.update(value=view.image, label=PREVIEW_LABEL)
    return {"result": preview_image, "status": view.status, "comparison": hidden, "trajectory": hidden, "downloads": hidden}


def preparation(jobs: JobRunner, image: Any, settings: dict[str, Any], cancelled: Callable[[], bool], previews: bool) -> Iterator[str]:
    """The preparation line under the picture: "Preparing…", then "Ready" (or why not); nothing more if superseded."""
    if image is None:
        yield ""
        return
    yield PREPARING
    try:
        ready = jobs.prepare(jobs.check(image, settings, preparing=True), cancelled, previews)
    except StylizerError as exc:
        yield f"Could not prepare the picture: {as_sentence(str(exc))}"
        return
    except Exception:
        log.exception("preparing a picture failed")
        yield "Could not prepare the picture; **Stylize** will try again."
        return
    if ready and not cancelled():  # a newer request may have come while the last, cached, part took no step
        yield READY


def _finished(done: JobResult, line: str) -> PageUpdate:
    """The page once a job is done: result, before/after, files, settings and a link to them."""
    link = "?" + urlencode({SETTINGS_PARAM: json.dumps(done.settings, separators=(",", ":"))})
    return {
        "result": gr.update(value=done.image, label=RESULT_LABEL),
        "status": f"{line} · [link to these settings]({link})",
        "comparison": gr.ImageSlider(value=(done.source, done.image), visible=True),
        "trajectory": gr.Image(value=str(done.gif_path), visible=True),
        "downloads": gr.File(value=[str(done.png_path), str(done.gif_path)], visible=True),
        "settings": json.dumps(done.settings, indent=1, ensure_ascii=False),
    }


def _bar(done: int, total: int) -> str:
    """A progress bar under the status line (Gradio's own shows only until the first streamed frame)."""
    return f'\n\n<progress value="{done}" max="{max(total, 1)}"></progress>'
