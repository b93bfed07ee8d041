"""``build_demo(run_fn, info)``: the page's layout with its events wired to the worker's functions.

The page knows nothing of models or tensors. It turns widget values into a settings
dict, hands them to ``run_fn`` (and, where given, ``preview_fn`` and ``prepare_fn``) and
shows the :class:`~stylizer.jobs.JobUpdate` objects that come back. Tests pass fakes;
the app passes the worker's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from ..config import Limits
from ..inputs import PICTURE_INPUTS
from ..jobs import ModelInfo, PrepareFn, PreviewFn, RunFn
from .layout import Page, build_layout
from .requests import PREPARE, PREVIEW, PageRequests
from .settings import apply_settings, page_knobs, settings_from_url, settings_from_values
from .stream import OUTPUTS, PREVIEW_API_OUTPUTS, PREVIEW_OUTPUTS, preparation, preview, stream

# Gradio's own cache of results and uploads is swept at most this often (seconds).
CACHE_SWEEP_S = 600
RANDOMIZE_SEED = "randomize_seed"
# Settings whose change means another prepared picture: the inversion's text, schedule, size and start.
PREPARED_BY = ("reference", "steps", "strength", "size", "start", "preview_size", "preview_steps")
# Background preparations waiting for a device at once, per device (each holds a server thread).
PREPARATIONS_PER_DEVICE = 4

# body(image, settings, progress, request, ticket): a job's page updates, keyed by output name.
Body = Callable[[Any, dict[str, Any], gr.Progress, "gr.Request | None", "int | None"], Any]


def build_demo(
    run_fn: RunFn,
    info: ModelInfo,
    limits: Limits | None = None,
    *,
    preview_fn: PreviewFn | None = None,
    prepare_fn: PrepareFn | None = None,
) -> gr.Blocks:
    """Build the page around ``run_fn``.

    Args:
        run_fn: ``run_fn(image, settings)`` yields :class:`JobUpdate`; closing it cancels the job.
        info: the loaded model's name, backend, devices and defaults, shown on the page.
        limits: caps for the sliders' ranges; :meth:`Limits.from_env` when omitted.
        preview_fn: runs live previews (and the ``/preview`` API); without it the page has none.
        prepare_fn: prepares an uploaded picture in the background; without it Stylize does it.
    """
    limits = limits or Limits.from_env()
    ttl = max(1, int(limits.output_ttl_s))
    # Gradio's copies of results (and uploads) go after the same time as the worker's own files.
    with gr.Blocks(title="Stylizer", delete_cache=(min(CACHE_SWEEP_S, ttl), ttl)) as demo:
        page = build_layout(info, limits, previews=preview_fn is not None)
        requests = PageRequests()
        _wire_runs(demo, page, requests, run_fn, info, limits)
        if preview_fn is not None:
            _wire_previews(page, requests, preview_fn, info)
        if prepare_fn is not None:
            _wire_preparation(page, requests, prepare_fn, info)
    return demo


def _wire_runs(demo: gr.Blocks, page: Page, requests: PageRequests, run_fn: RunFn, info: ModelInfo, limits: Limits) -> None:
    """Connect Stylize, Stop, Apply, the page load and the page close."""
    knob_controls = [page.knobs[name] for name in page_knobs()]
    outputs = [page.outputs[name] for name in OUTPUTS]

    def run(
        image: Any, settings: dict[str, Any], progress: gr.Progress, request: gr.Request | None, ticket: None
    ) -> Iterator[dict[str, Any]]:
        session = _session(request)
        yield from stream(run_fn, image, settings, progress, lambda: requests.requested(session))

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

    handler = api_handler(page, run, OUTPUTS)
    gpu = dict(concurrency_limit=len(info.devices), concurrency_id="gpu", show_progress="minimal")
    # The click arms the Stop button at once (outside the queue), then the run waits its turn.
    page.run_button.click(arm, None, None, queue=False, api_visibility="private").then(
        handler, _inputs(page), outputs, api_name="stylize", **gpu
    )
    # One click reproduces a run: restore every knob, then stylize the current picture with them.
    page.apply_button.click(apply, [page.outputs["settings"]], [*knob_controls, page.randomize], api_visibility="private").success(
        handler, _inputs(page), outputs, api_visibility="private", **gpu
    )
    # The run itself notices the press at its next step and says "Stopped" (see PageRequests).
    page.stop_button.click(stop, None, None, queue=False, api_visibility="private")
    demo.load(from_url, None, knob_controls, api_visibility="private")
    demo.unload(forget)


def _wire_previews(page: Page, requests: PageRequests, preview_fn: PreviewFn, info: ModelInfo) -> None:
    """A preview after each released slider or submitted text while "Live preview" is on, and the ``/preview`` API."""

    def run_preview(
        image: Any, settings: dict[str, Any], progress: gr.Progress, request: gr.Request | None, ticket: int | None
    ) -> dict[str, Any]:
        session = _session(request)
        if ticket is not None and not (requests.live_preview.get(session, info.gpu) and settings["prompt"]):
            return {}  # from the page: only with "Live preview" on and a prompt to preview
        return preview(preview_fn, image, settings, lambda: requests.cancelled(PREVIEW, session, ticket))

    def issue(request: gr.Request) -> int:
        return requests.issue(PREVIEW, request.session_hash)

    def toggle(on: bool, request: gr.Request) -> int:
        requests.live_preview[request.session_hash] = bool(on)
        return issue(request)  # turned on: a preview at once

    queue = dict(concurrency_limit=len(info.devices), concurrency_id="preview", show_progress="hidden")
    # The API returns the preview and its status line (an unseen button carries its endpoint); the page
    # also hides the last full result's extras, and passes the number that lets a newer change supersede it.
    page.preview_button.click(
        api_handler(page, run_preview, PREVIEW_API_OUTPUTS), _inputs(page), [page.outputs[n] for n in PREVIEW_API_OUTPUTS],
        api_name="preview", **queue,
    )  # fmt: skip
    on_page = api_handler(page, run_preview, PREVIEW_OUTPUTS, ticket=True)
    outputs = [page.outputs[name] for name in PREVIEW_OUTPUTS]
    triggers = [(c.release, issue, None) for c in page.knobs.values() if isinstance(c, gr.Slider)]
    triggers += [(c.submit, issue, None) for c in page.knobs.values() if isinstance(c, gr.Textbox)]
    triggers.append((page.live_preview.input, toggle, [page.live_preview]))
    for trigger, numbered, inputs in triggers:
        trigger(numbered, inputs, [page.preview_ticket], queue=False, api_visibility="private").then(
            on_page, [*_inputs(page), page.preview_ticket], outputs, api_visibility="private", trigger_mode="multiple", **queue
        )


def _wire_preparation(page: Page, requests: PageRequests, prepare_fn: PrepareFn, info: ModelInfo) -> None:
    """Prepare the picture in the background after an upload, or a change of what the preparation depends on."""

    def run_preparation(
        image: Any, settings: dict[str, Any], progress: gr.Progress, request: gr.Request | None, ticket: int | None
    ) -> Iterator[dict[str, Any]]:
        session = _session(request)
        previews = requests.live_preview.get(session, info.gpu)
        for line in preparation(prepare_fn, image, settings, lambda: requests.cancelled(PREPARE, session, ticket), previews):
            yield {"prepared": line}

    def issue(request: gr.Request) -> int:
        # Only the handlers write the line: their messages reach the page in the order they are sent.
        return requests.issue(PREPARE, request.session_hash)

    handler = api_handler(page, run_preparation, ("prepared",), ticket=True)
    queue = dict(concurrency_limit=PREPARATIONS_PER_DEVICE * len(info.devices), concurrency_id="prepare", show_progress="hidden")
    # Turning "Live preview" on also prepares the picture at the preview's size.
    triggers = [page.image.change, page.live_preview.input]
    for name in PREPARED_BY:
        control = page.knobs[name]
        triggers += [control.release] if isinstance(control, gr.Slider) else [control.change]
    line = page.outputs["prepared"]
    for trigger in triggers:
        trigger(issue, None, [page.prepare_ticket], queue=False, api_visibility="private").then(
            handler, [*_inputs(page), page.prepare_ticket], [line], api_visibility="private", trigger_mode="multiple", **queue
        )


def api_parameters() -> list[str]:
    """The ``/stylize`` (and ``/preview``) API's parameters in order: ``image``, the page knobs (``randomize_seed`` right after ``seed``), the optional pictures.

    Knobs added to the settings table later come after ``randomize_seed``, so positional
    callers of the earlier parameters are not disturbed.
    """
    names = ["image"]
    for name in page_knobs():
        names.append(name)
        if name == "seed":
            names.append(RANDOMIZE_SEED)
    return [*names, *PICTURE_INPUTS]


def api_handler(page: Page, body: Body, outputs: tuple[str, ...], ticket: bool = False) -> Callable[..., Any]:
    """An event function around ``body(image, settings, progress, request, ticket)`` whose signature names the API's parameters.

    Gradio names an endpoint's parameters after its function's signature, so the handler
    takes :func:`api_parameters` (then, with ``ticket``, the number the page issued the
    request), then Gradio's progress tracker and the request. ``body`` returns (or, as a
    generator, yields) updates keyed by output name; the handler passes on those among
    ``outputs``, keyed by component.
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
    # Parameters before randomize_seed take their controls' values as defaults (Gradio's rule); a
    # signature default must follow a signature default, so the later ones state their controls' values.
    later = names[names.index(RANDOMIZE_SEED) + 1 :]
    defaults = {RANDOMIZE_SEED: False, "ticket": None, **{name: None for name in PICTURE_INPUTS}}
    defaults.update({name: page.knobs[name].value for name in later if name in page.knobs})
    params = [inspect.Parameter(name, positional, default=defaults.get(name, inspect.Parameter.empty)) for name in names]
    params.append(inspect.Parameter("progress", positional, default=gr.Progress()))
    params.append(inspect.Parameter("request", positional, default=None, annotation=gr.Request))
    handler.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    handler.__annotations__ = {"request": gr.Request}
    return handler


def _inputs(page: Page) -> list[gr.components.Component]:
    """The controls of :func:`api_parameters`, in order."""
    controls = {"image": page.image, **page.knobs, RANDOMIZE_SEED: page.randomize, **page.pictures}
    return [controls[name] for name in api_parameters()]


def _session(request: gr.Request | None) -> str:
    return request.session_hash if request else ""
