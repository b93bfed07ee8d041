"""The public API and MCP tools: ``/stylize`` and ``/preview``, functions of their own on components of their own.

They are a contract with clients, apart from the page: the page's events are private, and nothing the
page shows (labels, visibility, badges) reaches a client. Clients send the settings by name (the knob
table's, in :func:`~stylizer.ui.settings.api_parameters` order) and get plain values back:

``/stylize`` streams, per update, then returns once more at the end (:data:`STYLIZE_OUTPUTS`):

* ``result``: the current frame, then the result, as an image file path (None before the first frame);
* ``status``: the status line, plain text;
* ``comparison``: the before/after pair of image paths (None until done);
* ``trajectory``: the animated GIF of the frames (None until done);
* ``downloads``: the result's PNG and the GIF (None until done);
* ``settings``: the settings record as JSON (None until done);
* ``seed``: the seed the job uses, a whole number (a drawn one with ``randomize_seed``).

``/preview`` returns ``result`` (the preview's image path, None when nothing was previewed) and ``status``.

With the MCP server on, each is a tool of the same name whose parameters are described by the knob
table's help texts; a picture goes in as an http(s) or ``data:`` URL, and the result comes back as an
image with its URL.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from ..config import PICTURE_INPUTS, Limits, StyleConfig, knobs
from ..serving.jobs import JobRunner, ModelInfo
from . import follow, status
from .follow import View, user_errors
from .inputs import PICTURE_NAMES, accept_upload, as_sent
from .layout import knob_control
from .settings import RANDOMIZE_SEED, api_parameters, settings_from_values

STYLIZE_OUTPUTS = ("result", "status", "comparison", "trajectory", "downloads", "settings", "seed")
PREVIEW_OUTPUTS = ("result", "status")
PICTURE_HELP = {
    "image": "the picture to restyle (PNG, JPEG, WebP, GIF, BMP or TIFF): a file, or for MCP an http(s) or data: URL",
    "mask": "optional: restyle only where this picture is white (black: keep; grey: partly); same formats as image",
    "style_image": "optional: take the style from this picture (with or without a prompt); same formats as image",
}
RANDOMIZE_HELP = "draw a new random seed for this job instead of using seed (the seed used is returned)"
STYLIZE_DOC = """Restyle a picture from a text prompt (or a style picture), keeping its structure: CLIP-guided DDIM diffusion.

Streams the frames as it denoises, then returns the result."""
PREVIEW_DOC = "A quick, small preview of what stylize would give with these settings (at preview_size, with preview_steps)."
RETURNS = {
    "stylize": [
        "result: the result image (while running: the current frame)",
        "status: what the job did, plain text",
        "comparison: the input and the result, a pair of images",
        "trajectory: an animated GIF of the frames",
        "downloads: the result as PNG and the GIF",
        "settings: the settings record, JSON",
        "seed: the seed used",
    ],
    "preview": ["result: the preview image", "status: what the preview did, plain text"],
}


def add_api(jobs: JobRunner, limits: Limits, *, previews: bool) -> None:
    """Add the ``/stylize`` (and, with ``previews``, ``/preview``) endpoints inside the caller's ``gr.Blocks``.

    Their components are never shown; they exist so that Gradio types, uploads and serves the values.
    """
    info = jobs.info
    inputs = _input_components(info, limits)
    outputs = _output_components()
    gpu = dict(concurrency_limit=len(info.devices), concurrency_id="gpu", show_progress="hidden")
    trigger = gr.Button(visible=False)
    trigger.click(
        _endpoint("stylize", _stylize_body(jobs), inputs, STYLIZE_DOC),
        inputs,
        [outputs[n] for n in STYLIZE_OUTPUTS],
        api_name="stylize",
        **gpu,
    )
    if previews:
        queue = dict(concurrency_limit=len(info.devices), concurrency_id="preview", show_progress="hidden")
        preview_trigger = gr.Button(visible=False)
        preview_trigger.click(
            _endpoint("preview", _preview_body(jobs), inputs, PREVIEW_DOC), inputs, [outputs[n] for n in PREVIEW_OUTPUTS],
            api_name="preview", **queue,
        )  # fmt: skip


def _stylize_body(jobs: JobRunner) -> Callable[[Any, dict[str, Any], gr.Progress], Iterator[tuple]]:
    def stylize(image: Any, settings: dict[str, Any], progress: gr.Progress) -> Iterator[tuple]:
        seed = settings["seed"]
        frame = None
        with user_errors("stylizing"):
            for view in follow.follow(jobs, image, settings, lambda: False):
                if view.phase is not None:
                    progress((view.done, view.total), desc=view.phase, unit="steps")
                frame = view.image if view.image is not None else frame
                yield _stylize_outputs(view, frame, seed)

    return stylize


def _preview_body(jobs: JobRunner) -> Callable[[Any, dict[str, Any], gr.Progress], tuple]:
    def preview(image: Any, settings: dict[str, Any], progress: gr.Progress) -> tuple:
        with user_errors("previewing"):
            view = follow.preview(jobs, image, settings, lambda: False)
        return (None, status.PREVIEW_GAVE_WAY) if view is None else (view.image, view.status)

    return preview


def _stylize_outputs(view: View, frame: Any, seed: int) -> tuple:
    """One update of ``/stylize`` as plain values, in :data:`STYLIZE_OUTPUTS` order."""
    done = view.result
    if done is None:
        return frame, view.status, None, None, None, None, seed
    files = [str(done.png_path), str(done.gif_path)]
    return (
        str(done.png_path),
        view.status,
        (done.source, done.image),
        str(done.gif_path),
        files,
        json.dumps(done.settings, ensure_ascii=False),
        seed,
    )


def _endpoint(name: str, body: Callable[..., Any], inputs: list[gr.components.Component], doc: str) -> Callable[..., Any]:
    """The event function ``name`` around ``body(image, settings, progress)``, whose signature names the API's parameters.

    Gradio names an endpoint's parameters after its function's signature, and the MCP server takes the
    tool's name from the function's name and each parameter's description from its docstring's ``Args:``.
    """
    names = api_parameters()

    def parse(args: tuple[Any, ...]) -> tuple[Any, dict[str, Any], gr.Progress]:
        *values, progress = args
        sent = dict(zip(names, values, strict=True))
        image, randomize_seed = sent.pop("image"), sent.pop(RANDOMIZE_SEED)
        return image, settings_from_values(sent, randomize_seed), progress

    if inspect.isgeneratorfunction(body):

        def handler(*args: Any) -> Any:
            yield from body(*parse(args))

    else:

        def handler(*args: Any) -> Any:
            return body(*parse(args))

    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    # Every parameter but the picture has a default: its component's value (Gradio's rule for a signature default).
    params = [inspect.Parameter(n, positional, default=inspect.Parameter.empty if n == "image" else c.value) for n, c in zip(names, inputs)]
    params.append(inspect.Parameter("progress", positional, default=gr.Progress()))
    handler.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    handler.__name__ = handler.__qualname__ = name
    handler.__doc__ = _docstring(doc, name)
    return handler


def _docstring(doc: str, name: str) -> str:
    """``doc`` with an ``Args:`` line per parameter (the knob table's help) and a ``Returns:`` block."""
    table = knobs()
    helps = {**PICTURE_HELP, RANDOMIZE_SEED: RANDOMIZE_HELP, **{n: knob.help for n, knob in table.items()}}
    args = "\n".join(f"    {n}: {helps[n]}" for n in api_parameters())
    returns = "\n".join(f"    {line}" for line in RETURNS[name])
    return f"{doc}\n\nArgs:\n{args}\n\nReturns:\n{returns}\n"


def _input_components(info: ModelInfo, limits: Limits) -> list[gr.components.Component]:
    """One never-shown component per API parameter, in order: values pass through as sent, pictures undecoded."""
    defaults = StyleConfig(**info.defaults)
    table = knobs()
    components = []
    for name in api_parameters():
        if name == "image" or name in PICTURE_INPUTS:
            component = gr.Image(type="filepath", image_mode=None, visible=False, label=name)
            component.preprocess = accept_upload(PICTURE_NAMES[name])  # type: ignore[method-assign]
        else:
            component = (
                gr.Checkbox(value=False, visible=False, label=name)
                if name == RANDOMIZE_SEED
                else knob_control(name, table[name], getattr(defaults, name), limits, info, visible=False)
            )
            component.preprocess = as_sent  # type: ignore[method-assign]
        components.append(component)
    return components


def _output_components() -> dict[str, gr.components.Component]:
    """The never-shown components that type and serve the API's outputs."""
    return {
        "result": gr.Image(type="filepath", format="png", visible=False, label="result"),
        "status": gr.Textbox(visible=False, label="status"),
        "comparison": gr.ImageSlider(type="filepath", format="png", visible=False, label="comparison"),
        "trajectory": gr.File(visible=False, label="trajectory"),
        "downloads": gr.File(file_count="multiple", visible=False, label="downloads"),
        "settings": gr.Textbox(visible=False, label="settings"),
        "seed": gr.Number(precision=0, visible=False, label="seed"),
    }
