"""``build_demo(jobs)``: the page's layout with its events wired to a job runner, and the public API beside it.

The page knows nothing of models or tensors. It turns widget values into a settings dict,
hands them to the runner (:class:`~stylizer.serving.jobs.JobRunner`: check, run, and where
asked for, preview and prepare) and shows the :class:`~stylizer.serving.jobs.JobUpdate` objects
that come back. Every page event is private: clients use the API of :mod:`stylizer.ui.api`,
which the page can change around freely. Tests pass fakes; the app passes the worker.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from ..config import Limits, prepared_by
from ..serving.jobs import JobRunner
from .api import add_api
from .layout import Page, build_layout
from .requests import PREPARE, PREVIEW, PageRequests
from .settings import RANDOMIZE_SEED, api_parameters, apply_settings, page_knobs, settings_from_url, settings_from_values
from .stream import OUTPUTS, PREVIEW_OUTPUTS, preparation, preview, stream

# Gradio's own cache of results and uploads is swept at most this often (seconds).
CACHE_SWEEP_S = 600
# Background preparations waiting for a device at once, per device (each holds a server thread).
PREPARATIONS_PER_DEVICE = 4
PRIVATE = dict(api_visibility="private")

# body(image, settings, progress, request, ticket): a job's page updates, keyed by output name.
Body = Callable[[Any, dict[str, Any], gr.Progress, "gr.Request | None", "int | None"], Any]


def build_demo(jobs: JobRunner, limits: Limits | None = None, *, previews: bool = False, preparation: bool = False) -> gr.Blocks:
    """Build the page and the API around ``jobs``.

    Args:
        jobs: checks and runs jobs (see :class:`~stylizer.serving.jobs.JobRunner`).
        limits: caps for the sliders' ranges; :meth:`Limits.from_env` when omitted.
        previews: the runner has live previews (the page's *Live preview* and the ``/preview`` API).
        preparation: the runner prepares an uploaded picture in the background; without it Stylize does it.
    """
    limits = limits or Limits.from_env()
    ttl = max(1, int(limits.output_ttl_s))
    info = jobs.info
    # Gradio's copies of results (and uploads) go after the same time as the worker's own files.
    with gr.Blocks(title="Stylizer", delete_cache=(min(CACHE_SWEEP_S, ttl), ttl)) as demo:
        page = build_layout(info, limits, previews=previews)
        requests = PageRequests()
        _wire_runs(demo, page, requests, jobs, limits)
        if previews:
            _wire_previews(page, requests, jobs)
        if preparation:
            _wire_preparation(page, requests, jobs)
        add_api(jobs, limits, previews=previews)
    return demo


def _wire_runs(demo: gr.Blocks, page: Page, requests: PageRequests, jobs: JobRunner, limits: Limits) -> None:
    """Connect Stylize, Stop, Apply, the page load and the page close."""
    knob_controls = [page.knobs[name] for name in page_knobs()]
    outputs = [page.outputs[name] for name in OUTPUTS]

    def run(
        image: Any, settings: dict[str, Any], progress: gr.Progress, request: gr.Request | None, ticket: None
    ) -> Iterator[dict[str, Any]]:
        session = _session(request)
        yield from stream(jobs, image, settings, progress, lambda: requests.requested(session))

    def arm(request: gr.Request) -> None:
        requests.arm(request.session_hash)

    def stop(request: gr.Request) -> None:
        requests.stop(request.session_hash)

    def forget(request: gr.Request) -> None:
        requests.forget(request.session_hash)

    def apply(text: str, request: gr.Request) -> list[Any]:
        requests.arm(request.session_hash)
        # The settings' own seed, not a new random one: the point is to get the same picture again.
        return [*apply_settings(text, limits), False]

    def from_url(request: gr.Request) -> list[Any]:
        return settings_from_url(request, limits)

    handler = page_handler(page, run, OUTPUTS)
    gpu = dict(concurrency_limit=len(jobs.info.devices), concurrency_id="gpu", show_progress="minimal", **PRIVATE)
    # The click arms the Stop button at once (outside the queue), then the run waits its turn.
    page.run_button.click(arm, None, None, queue=False, **PRIVATE).then(handler, _inputs(page), outputs, **gpu)
    # One click reproduces a run: restore every knob, then stylize the current picture with them.
    page.apply_button.click(apply, [page.outputs["settings"]], [*knob_controls, page.randomize], **PRIVATE).success(
        handler, _inputs(page), outputs, **gpu
    )
    # The run itself notices the press at its next step and says "Stopped" (see PageRequests).
    page.stop_button.click(stop, None, None, queue=False, **PRIVATE)
    demo.load(from_url, None, knob_controls, **PRIVATE)
    demo.unload(forget)


def _wire_previews(page: Page, requests: PageRequests, jobs: JobRunner) -> None:
    """A preview after each released slider or submitted text while "Live preview" is on."""
    gpu = jobs.info.gpu

    def run_preview(
        image: Any, settings: dict[str, Any], progress: gr.Progress, request: gr.Request | None, ticket: int | None
    ) -> dict[str, Any]:
        session = _session(request)
        if not (requests.live_preview.get(session, gpu) and settings["prompt"]):
            return {}  # only with "Live preview" on and a prompt to preview
        return preview(jobs, image, settings, lambda: requests.cancelled(PREVIEW, session, ticket))

    def issue(request: gr.Request) -> int:
        return requests.issue(PREVIEW, request.session_hash)

    def toggle(on: bool, request: gr.Request) -> int:
        requests.live_preview[request.session_hash] = bool(on)
        return issue(request)  # turned on: a preview at once

    queue = dict(concurrency_limit=len(jobs.info.devices), concurrency_id="preview", show_progress="hidden", **PRIVATE)
    # The page hides the last full result's extras, and passes the number that lets a newer change supersede it.
    on_page = page_handler(page, run_preview, PREVIEW_OUTPUTS, ticket=True)
    outputs = [page.outputs[name] for name in PREVIEW_OUTPUTS]
    triggers = [(c.release, issue, None) for c in page.knobs.values() if isinstance(c, gr.Slider)]
    triggers += [(c.submit, issue, None) for c in page.knobs.values() if isinstance(c, gr.Textbox)]
    triggers.append((page.live_preview.input, toggle, [page.live_preview]))
    for trigger, numbered, inputs in triggers:
        trigger(numbered, inputs, [page.preview_ticket], queue=False, **PRIVATE).then(
            on_page, [*_inputs(page), page.preview_ticket], outputs, trigger_mode="multiple", **queue
        )


def _wire_preparation(page: Page, requests: PageRequests, jobs: JobRunner) -> None:
    """Prepare the picture in the background after an upload, or a change of what the preparation depends on."""
    gpu = jobs.info.gpu

    def run_preparation(
        image: Any, settings: dict[str, Any], progress: gr.Progress, request: gr.Request | None, ticket: int | None
    ) -> Iterator[dict[str, Any]]:
        session = _session(request)
        previews = requests.live_preview.get(session, gpu)
        for line in preparation(jobs, image, settings, lambda: requests.cancelled(PREPARE, session, ticket), previews):
            yield {"prepared": line}

    def issue(request: gr.Request) -> int:
        # Only the handlers write the line: their messages reach the page in the order they are sent.
        return requests.issue(PREPARE, request.session_hash)

    handler = page_handler(page, run_preparation, ("prepared",), ticket=True)
    limit = PREPARATIONS_PER_DEVICE * len(jobs.info.devices)
    queue = dict(concurrency_limit=limit, concurrency_id="prepare", show_progress="hidden", **PRIVATE)
    # Turning "Live preview" on also prepares the picture at the preview's size.
    triggers = [page.image.change, page.live_preview.input]
    for name in prepared_by():
        control = page.knobs[name]
        triggers += [control.release] if isinstance(control, gr.Slider) else [control.change]
    line = page.outputs["prepared"]
    for trigger in triggers:
        trigger(issue, None, [page.prepare_ticket], queue=False, **PRIVATE).then(
            handler, [*_inputs(page), page.prepare_ticket], [line], trigger_mode="multiple", **queue
        )


def page_handler(page: Page, body: Body, outputs: tuple[str, ...], ticket: bool = False) -> Callable[..., Any]:
    """A page event function around ``body(image, settings, progress, request, ticket)``.

    It takes the controls of :func:`_inputs` (then, with ``ticket``, the number the page issued the
    request), Gradio's progress tracker and the request. ``body`` returns (or, as a generator, yields)
    updates keyed by output name; the handler passes on those among ``outputs``, keyed by component.
    """
    names = [*api_parameters(), *(["ticket"] if ticket else [])]
    components = {name: page.outputs[name] for name in outputs}

    def parse(args: tuple[Any, ...]) -> tuple[Any, dict[str, Any], gr.Progress, gr.Request | None, int | None]:
        *values, progress, request = args
        sent = dict(zip(names, values, strict=True))
        image, randomize_seed, number = sent.pop("image"), sent.pop(RANDOMIZE_SEED), sent.pop("ticket", None)
        return image, settings_from_values(sent, randomize_seed), progress, request, None if number is None else int(number)

    def keyed(update: dict[str, Any]) -> dict[Any, Any]:
        # An empty dict would reach Gradio as one value; every output unchanged is said explicitly.
        return {component: update.get(name, gr.skip()) for name, component in components.items()}

    if inspect.isgeneratorfunction(body):

        def handler(*args: Any) -> Any:
            for update in body(*parse(args)):
                yield keyed(update)

    else:

        def handler(*args: Any) -> Any:
            return keyed(body(*parse(args)))

    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter(name, positional) for name in names]
    params.append(inspect.Parameter("progress", positional, default=gr.Progress()))
    params.append(inspect.Parameter("request", positional, default=None, annotation=gr.Request))
    handler.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    handler.__annotations__ = {"request": gr.Request}
    return handler


def _inputs(page: Page) -> list[gr.components.Component]:
    """The page's controls in :func:`~stylizer.ui.settings.api_parameters` order."""
    controls = {"image": page.image, **page.knobs, RANDOMIZE_SEED: page.randomize, **page.pictures}
    return [controls[name] for name in api_parameters()]


def _session(request: gr.Request | None) -> str:
    return request.session_hash if request else ""
