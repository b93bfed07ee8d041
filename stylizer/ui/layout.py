"""The page's components: a header, the inputs column (one control per knob of the settings table) and the outputs column.

The layout knows nothing of runs; :mod:`stylizer.ui.page` wires the events.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from ..config import ADVANCED, MAIN, Knob, Limits, StyleConfig, field_range, knobs
from ..jobs import ModelInfo
from .settings import page_knobs
from .stream import RESULT_LABEL

ASSETS = Path(__file__).resolve().parent.parent.parent / "assets"
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="slate")
CSS = """
.stylizer-banner {border-left: 4px solid #d97706; padding: 0.4em 0.8em; background: #fffbeb; color: #78350f;}
.stylizer-status {min-height: 2.6em; font-variant-numeric: tabular-nums;}
.stylizer-status progress {appearance: none; width: 100%; height: 0.5em; border: none; border-radius: 4px; background: #e0e7ff;}
.stylizer-status progress::-webkit-progress-bar {background: #e0e7ff; border-radius: 4px;}
.stylizer-status progress::-webkit-progress-value {background: #4f46e5; border-radius: 4px;}
.stylizer-status progress::-moz-progress-bar {background: #4f46e5; border-radius: 4px;}
#result img {width: 100%; height: 100%; object-fit: contain;}
footer {display: none !important;}
"""
# Controls per row in the Advanced section.
ROW_WIDTH = 2


@dataclass
class Page:
    """The components the events read and write.

    Attributes:
        image: the upload.
        knobs: one control per setting in :func:`~stylizer.ui.settings.page_knobs`, by name.
        randomize: "Random seed each run".
        live_preview: "Live preview": a quick preview after each change.
        preview_button: never shown; it carries the ``/preview`` API endpoint.
        preview_ticket, prepare_ticket: never shown; the number the page issued its latest preview or preparation.
        outputs: what jobs write, by name: the run's outputs (see :data:`stylizer.ui.stream.OUTPUTS`;
            ``seed`` is the knob's control) and ``prepared``, the line under the picture.
    """

    image: gr.Image
    knobs: dict[str, gr.components.Component]
    randomize: gr.Checkbox
    live_preview: gr.Checkbox
    preview_button: gr.Button
    preview_ticket: gr.Number
    prepare_ticket: gr.Number
    run_button: gr.Button
    stop_button: gr.Button
    apply_button: gr.Button
    outputs: dict[str, gr.components.Component]


def build_layout(info: ModelInfo, limits: Limits, previews: bool = True) -> Page:
    """Create every component of the page, inside the caller's ``gr.Blocks``.

    Args:
        previews: show the "Live preview" box (the server runs previews).
    """
    gr.Markdown("# Stylizer\nRestyle a picture from a text prompt. It keeps the picture's structure and takes on the style you describe.")
    gr.Markdown(_model_line(info))
    if info.untrained:
        gr.Markdown(
            "**Test models.** This server runs the untrained `tiny` models: the output is noise, for testing only. "
            "Start it with a real model (`python app.py --model sd15`) for real results.",
            elem_classes="stylizer-banner",
        )
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            image = gr.Image(label="Input image", type="filepath", image_mode=None, sources=["upload", "clipboard", "webcam"], height=320)
            image.preprocess = upload_payload  # type: ignore[method-assign]
            prepared = gr.Markdown("", elem_id="prepared")
            controls, randomize = _knob_controls(info, limits)
            with gr.Row():
                run_button = gr.Button("Stylize", variant="primary")
                stop_button = gr.Button("Stop", variant="stop")
            live_preview = gr.Checkbox(
                value=info.gpu,
                label="Live preview",
                info="a quick, small preview after each change (on by default with a GPU)",
                visible=previews,
            )
        with gr.Column(scale=1):
            outputs, apply_button = _output_column()
    outputs["seed"], outputs["prepared"] = controls["seed"], prepared
    examples = _examples()
    if examples:
        gr.Examples(examples, inputs=[image, controls["prompt"], controls["reference"]], label="Examples")
    hidden = [gr.Button(visible=False), gr.Number(visible=False, precision=0), gr.Number(visible=False, precision=0)]
    return Page(image, controls, randomize, live_preview, *hidden, run_button, stop_button, apply_button, outputs)


def _knob_controls(info: ModelInfo, limits: Limits) -> tuple[dict[str, gr.components.Component], gr.Checkbox]:
    """One control per page knob: the main ones in the column, the rest in *Advanced*, in rows."""
    defaults = StyleConfig(**info.defaults)
    table = knobs()
    names = page_knobs()
    controls: dict[str, gr.components.Component] = {}
    for name in (n for n in names if table[n].group == MAIN):
        controls[name] = knob_control(name, table[name], getattr(defaults, name), limits, info)
    randomize = None
    with gr.Accordion("Advanced", open=False):
        for row in _rows([n for n in names if table[n].group == ADVANCED]):
            with gr.Row():
                for name in row:
                    controls[name] = knob_control(name, table[name], getattr(defaults, name), limits, info)
                if row == ["seed"]:
                    randomize = gr.Checkbox(value=False, label="Random seed each run")
    assert randomize is not None, "the settings table has no seed"
    for control in (*controls.values(), randomize):
        # Values reach StyleConfig as sent, so API callers get the same setting-named messages as the CLI.
        control.preprocess = as_sent  # type: ignore[method-assign]
    return controls, randomize


def _rows(names: list[str]) -> Iterator[list[str]]:
    """Advanced controls in rows of :data:`ROW_WIDTH`; the seed gets a row of its own, beside its random-seed box."""
    row: list[str] = []
    for name in names:
        if name == "seed":
            if row:
                yield row
            yield [name]
            row = []
            continue
        row.append(name)
        if len(row) == ROW_WIDTH:
            yield row
            row = []
    if row:
        yield row


def knob_control(name: str, knob: Knob, value: Any, limits: Limits, info: ModelInfo) -> gr.components.Component:
    """The control for one setting: radio for choices, text box for text, slider for a number with a step, else a number box."""
    if knob.choices:
        return gr.Radio(list(knob.choices), value=value, label=knob.label, info=knob.info)
    if isinstance(value, str):
        return gr.Textbox(label=knob.label, value=value, placeholder=knob.placeholder, max_lines=2)
    low, high = field_range(name, limits)
    if knob.step is None:
        return gr.Number(value=value, label=knob.label, precision=0 if isinstance(value, int) else None, minimum=low, maximum=high)
    interactive = info.backend == "latent" or not knob.latent_only
    return gr.Slider(low, high, value=value, step=knob.step, label=knob.label, info=knob.info, interactive=interactive)


def _output_column() -> tuple[dict[str, gr.components.Component], gr.Button]:
    """The result, status, before/after, files and settings; returns them by output name, and the Apply button."""
    outputs: dict[str, gr.components.Component] = {
        "result": gr.Image(
            label=RESULT_LABEL,
            elem_id="result",
            type="pil",
            format="png",
            interactive=False,
            height=420,
            buttons=["download", "fullscreen"],
        ),
        "status": gr.Markdown(
            "Upload a picture, describe a style and press **Stylize**.", label="Status", elem_id="status", elem_classes="stylizer-status"
        ),
        "comparison": gr.ImageSlider(label="Before / after", type="pil", format="png", visible=False, buttons=["fullscreen"]),
    }
    with gr.Row():
        outputs["trajectory"] = gr.Image(label="Denoising trajectory", type="filepath", interactive=False, visible=False, height=200)
        outputs["downloads"] = gr.File(
            elem_id="downloads", label="Downloads (PNG, GIF)", file_count="multiple", interactive=False, visible=False
        )
    outputs["settings"] = gr.Code(
        elem_id="settings",
        label="Settings (copy to share; paste and press Apply & stylize to re-run)",
        language="json",
        interactive=True,
        lines=4,
    )
    apply_button = gr.Button("Apply & stylize", size="sm")
    return outputs, apply_button


def upload_payload(payload: Any) -> str | bytes | None:
    """The uploaded file's path (or a pasted data URL's bytes), undecoded.

    Replaces ``gr.Image.preprocess`` on the input widget, so one loader
    (:func:`stylizer.images.load_image`) checks every file with its own messages;
    Gradio's preprocessing would open, and for some modes decode and convert, the
    image before the handler runs.
    """
    if payload is None:
        return None
    if payload.path:
        return payload.path
    if payload.url and payload.url.startswith("data:"):
        return base64.b64decode(payload.url.split(",", 1)[1])
    return None


def as_sent(payload: Any) -> Any:
    """Pass a widget's value through unchanged; validation happens once, in :class:`StyleConfig`."""
    return payload


def _model_line(info: ModelInfo) -> str:
    devices = ", ".join(info.devices)
    return f"**Model:** `{info.name}` ({info.backend} backend; {info.description}) · **guide:** CLIP {info.clip} · **device:** {devices}"


def _examples() -> list[list[str]]:
    index = ASSETS / "examples.json"
    if not index.is_file():
        return []
    rows = json.loads(index.read_text())
    return [[str(ASSETS / row["image"]), row["prompt"], row["reference"]] for row in rows if (ASSETS / row["image"]).is_file()]
