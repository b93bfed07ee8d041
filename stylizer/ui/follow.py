"""Following a job from the upload to its result, as :class:`View` objects that the page and the API each present their way.

A job is checked first (a refused one ends before anything changes), then run; each of its updates
becomes one :class:`View`: plain text and pictures, nothing of the page. Stop is polled before every
update: once it is pressed the job is closed, which cancels it between two network passes.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr
from PIL import Image

from ..errors import StylizerError, as_sentence
from ..serving.jobs import JobResult, JobRunner, JobUpdate
from . import status

log = logging.getLogger(__name__)

# What a view shows while the job runs: the inversion, the guided steps, or neither yet.
INVERTING, STYLIZING = "Inverting", "Stylizing"


@dataclass(frozen=True)
class View:
    """One moment of a job, as a person or a client sees it.

    Attributes:
        status: the status line, plain text.
        done, total: progress, in the steps of ``phase``.
        phase: :data:`INVERTING`, :data:`STYLIZING`, or None before either (queued, starting, stopped).
        image: a new picture (a frame, a preview or the result), or None.
        result: the finished job, on the last view.
        stopped: Stop ended the job.
        first: the job's first view, once its request was accepted.
    """

    status: str
    done: int = 0
    total: int = 0
    phase: str | None = None
    image: Image.Image | None = None
    result: JobResult | None = None
    stopped: bool = False
    first: bool = False


def follow(jobs: JobRunner, image: Any, settings: dict[str, Any], stop_requested: Callable[[], bool]) -> Iterator[View]:
    """The views of one Stylize job: checked, then every update until it ends or Stop is pressed.

    Raises:
        StylizerError: the request was refused, or the job failed as a user should hear.
    """
    if stop_requested():  # pressed while the run waited in the queue
        yield View(status.STOPPED, stopped=True)
        return
    request = jobs.check(image, settings)
    yield View(status.starting(settings.get("start", "invert")), first=True)
    with contextlib.closing(jobs.run(request)) as updates:
        for update in updates:
            if stop_requested():
                yield View(status.STOPPED, stopped=True)
                return
            yield view_of(update)


def view_of(update: JobUpdate) -> View:
    """One job update as a view."""
    if update.queued:
        return View(status.QUEUED, total=update.total)
    if update.reused:
        return View(status.REUSING, total=update.total)
    if update.inverting:
        return View(status.inverting(update.step, update.total), update.step, update.total, INVERTING)
    if update.result is not None:
        return View(status.finished(update.result, update.total), update.step, update.total, STYLIZING, update.image, update.result)
    line = status.stepping(update.step, update.total, update.losses)
    return View(line, update.step, update.total, STYLIZING, update.image)


def preview(jobs: JobRunner, image: Any, settings: dict[str, Any], cancelled: Callable[[], bool]) -> View | None:
    """A live preview's view (its picture and line), or None when it was cancelled.

    Raises:
        StylizerError: the request was refused.
    """
    request = jobs.check(image, settings)
    started = time.perf_counter()
    update = jobs.preview(request, cancelled)
    if update is None or update.image is None:
        return None
    width, height = update.image.size
    line = status.previewed(width, height, update.total, time.perf_counter() - started, update.losses)
    return View(line, update.step, update.total, STYLIZING, update.image)


@contextlib.contextmanager
def user_errors(doing: str) -> Iterator[None]:
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
