"""``build_demo(run_fn, info)``: the page's layout with its events wired to a run function.

The page knows nothing of models or tensors. It turns widget values into a settings
dict, hands them to ``run_fn`` and shows the :class:`~stylizer.jobs.JobUpdate` objects
that come back. Tests pass a fake ``run_fn``; the app passes the worker's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from ..config import Limits
from ..jobs import ModelInfo, RunFn
from .layout import Page, build_layout
from .settings import apply_settings, page_knobs, settings_from_url, settings_from_values
from .stream import OUTPUTS, StopRequests, stream

# Gradio's own cache of results and uploads is swept at most this often (seconds).
CACHE_SWEEP_S = 600
RANDOMIZE_SEED = "randomize_seed"


def build_demo(run_fn: RunFn, info: ModelInfo, limits: Limits | None = None) -> gr.Blocks:
    """Build the page around ``run_fn``.

    Args:
        run_fn: ``run_fn(image, settings)`` yields :class:`JobUpdate`; closing it cancels the job.
        info: the loaded model's name, backend and devices, shown on the page.
        limits: caps for the sliders' ranges; :meth:`Limits.from_env` when omitted.
    """
    limits = limits or Limits.from_env()
    ttl = max(1, int(limits.output_ttl_s))
    # Gradio's copies of results (and uploads) go after the same time as the worker's own files.
    with gr.Blocks(title="Stylizer", delete_cache=(min(CACHE_SWEEP_S, ttl), ttl)) as demo:
        page = build_layout(info, limits)
        _wire(demo, page, run_fn, info, limits)
    return demo


def _wire(demo: gr.Blocks, page: Page, run_fn: RunFn, info: ModelInfo, limits: Limits) -> None:
    """Connect the buttons, the page load and the page close to the run and the Stop state."""
    stops = StopRequests()
    knob_controls = [page.knobs[name] for name in page_knobs()]
    controls = {"image": page.image, **page.knobs, RANDOMIZE_SEED: page.randomize}
    inputs = [controls[name] for name in api_parameters()]
    outputs = [page.outputs[name] for name in OUTPUTS]
    run = run_handler(run_fn, page, stops)
    gpu = dict(concurrency_limit=len(info.devices), concurrency_id="gpu", show_progress="minimal")

    def arm(request: gr.Request) -> None:
        stops.arm(request.session_hash)

    def stop(request: gr.Request) -> None:
        stops.stop(request.session_hash)

    def forget(request: gr.Request) -> None:
        stops.forget(request.session_hash)

    def apply(text: str, request: gr.Request) -> list[Any]:
        stops.arm(request.session_hash)
        # The settings' own seed, not a new random one: the point is to get the same picture again.
        return [*apply_settings(text, limits), False]

    def from_url(request: gr.Request) -> list[Any]:
        return settings_from_url(request, limits)

    # The click arms the Stop button at once (outside the queue), then the run waits its turn.
    page.run_button.click(arm, None, None, queue=False, api_visibility="private").then(run, inputs, outputs, api_name="stylize", **gpu)
    # One click reproduces a run: restore every knob, then stylize the current picture with them.
    page.apply_button.click(apply, [page.outputs["settings"]], [*knob_controls, page.randomize], api_visibility="private").success(
        run, inputs, outputs, api_visibility="private", **gpu
    )
    # The run itself notices the press at its next step and says "Stopped" (see StopRequests).
    page.stop_button.click(stop, None, None, queue=False, api_visibility="private")
    demo.load(from_url, None, knob_controls, api_visibility="private")
    demo.unload(forget)


def run_handler(run_fn: RunFn, page: Page, stops: StopRequests) -> Callable[..., Iterator[dict[Any, Any]]]:
    """The run event's function, whose signature names the ``/stylize`` API's parameters.

    Gradio names an endpoint's parameters after its function's signature, so the handler
    takes :func:`api_parameters`, then Gradio's progress tracker and the request. It yields
    page updates keyed by component.
    """
    names = api_parameters()
    by_name = {name: page.outputs[name] for name in OUTPUTS}

    def handler(*args: Any) -> Iterator[dict[Any, Any]]:
        *values, progress, request = args
        sent = dict(zip(names, values, strict=True))
        image, randomize_seed = sent.pop("image"), sent.pop(RANDOMIZE_SEED)
        settings = settings_from_values(sent, randomize_seed)
        session = request.session_hash if request else ""
        for update in stream(run_fn, image, settings, progress, lambda: stops.requested(session)):
            yield {by_name[name]: value for name, value in update.items()}

    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    # Parameters before randomize_seed take their controls' values as defaults (Gradio's rule); a
    # signature default must follow a signature default, so the later ones state their controls' values.
    later = names[names.index(RANDOMIZE_SEED) + 1 :]
    defaults = {RANDOMIZE_SEED: False, **{name: page.knobs[name].value for name in later}}
    params = [inspect.Parameter(name, positional, default=defaults.get(name, inspect.Parameter.empty)) for name in names]
    params.append(inspect.Parameter("progress", positional, default=gr.Progress()))
    params.append(inspect.Parameter("request", positional, default=None, annotation=gr.Request))
    handler.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    handler.__annotations__ = {"request": gr.Request}
    return handler


def api_parameters() -> list[str]:
    """The ``/stylize`` API's parameters in order: ``image``, the page knobs, and ``randomize_seed`` right after ``seed``.

    The knobs without a default in the signature take their controls' values as defaults.
    Knobs added to the settings table later come after ``randomize_seed``, so positional
    callers of the earlier parameters are not disturbed.
    """
    names = ["image"]
    for name in page_knobs():
        names.append(name)
        if name == "seed":
            names.append(RANDOMIZE_SEED)
    return names
