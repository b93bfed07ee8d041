"""The page's components: a header, the inputs column (one control per knob of the settings table) and the outputs column.

The layout knows nothing of runs; :mod:`stylizer.ui.page` wires the events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image, ImageChops

from ..config import (
    ADVANCED,
    MAIN,
    PICTURE_INPUTS,
    PROMPT_FIELDS,
    REGION,
    STYLE_PICTURE,
    WEIGHT_FIELDS,
    Knob,
    Limits,
    StyleConfig,
    field_range,
    knobs,
)
from ..errors import StylizerError
from ..images import load_image
from ..serving.jobs import ModelInfo
from .inputs import PICTURE_NAMES, accept_upload, as_sent
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
# The examples table's columns after the picture: these settings, then the optional pictures.
EXAMPLE_KNOBS = ("prompt", "reference", "prompt_2", "weight_1", "weight_2")
STYLE_PICTURE_HELP = (
    "Take the style from a picture: its CLIP embedding's direction from yours guides the result. With a prompt too, "
    "both count (the slider sets how much); without one, the prompt is optional and text guidance (CFG) is skipped."
)
REGION_HELP = (
    "Paint where to restyle (or upload a mask, white = restyle); outside it the picture stays as it is. The feather softens the edge."
)


@dataclass
class Page:
    """The components the events read and write.

    Attributes:
        image: the upload.
        knobs: one control per setting in :func:`~stylizer.ui.settings.page_knobs`, by name.
        pictures: the optional pictures beside the settings, by :data:`~stylizer.request.PICTURE_INPUTS` name
            (``mask``: white where to restyle, painted or uploaded; ``style_image``).
        randomize: "Random seed each run".
        live_preview: "Live preview": a quick preview after each change.
        preview_ticket, prepare_ticket: never shown; the number the page issued its latest preview or preparation.
        outputs: what jobs write, by name: the run's outputs (see :data:`stylizer.ui.stream.OUTPUTS`;
            ``seed`` is the knob's control) and ``prepared``, the line under the picture.
    """

    image: gr.Image
    knobs: dict[str, gr.components.Component]
    pictures: dict[str, gr.Image]
    randomize: gr.Checkbox
    live_preview: gr.Checkbox
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
            image.preprocess = accept_upload(PICTURE_NAMES["image"])  # type: ignore[method-assign]
            prepared = gr.Markdown("", elem_id="prepared")
            controls, pictures, randomize = _knob_controls(info, limits, image)
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
        columns = [image, *(controls[name] for name in EXAMPLE_KNOBS), *(pictures[name] for name in PICTURE_INPUTS)]
        gr.Examples(examples, inputs=columns, label="Examples")
    hidden = [gr.Number(visible=False, precision=0), gr.Number(visible=False, precision=0)]
    return Page(image, controls, pictures, randomize, live_preview, *hidden, run_button, stop_button, apply_button, outputs)


def _knob_controls(
    info: ModelInfo, limits: Limits, image: gr.Image
) -> tuple[dict[str, gr.components.Component], dict[str, gr.Image], gr.Checkbox]:
    """One control per page knob, section by section, and the optional pictures in theirs."""
    defaults = StyleConfig(**info.defaults)
    table = knobs()
    names = page_knobs()
    in_group = {group: [n for n in names if table[n].group == group] for group in (MAIN, STYLE_PICTURE, REGION, ADVANCED)}

    def control(name: str) -> gr.components.Component:
        controls[name] = knob_control(name, table[name], getattr(defaults, name), limits, info)
        return controls[name]

    controls: dict[str, gr.components.Component] = {}
    pictures: dict[str, gr.Image] = {}
    for name in in_group[MAIN]:
        control(name)
        if name == "prompt":
            with gr.Accordion("+ Add a style (blend up to four prompts, each with a weight)", open=False):
                # The style prompt's weight, then each further style beside its weight.
                for row in [[WEIGHT_FIELDS[0]], *zip(PROMPT_FIELDS[1:], WEIGHT_FIELDS[1:], strict=True)]:
                    with gr.Row():
                        for styled in row:
                            control(styled)
    with gr.Accordion("Style picture (optional)", open=False):
        gr.Markdown(STYLE_PICTURE_HELP)
        pictures["style_image"] = _picture_input("style_image", "Style picture", "style-picture")
        for name in in_group[STYLE_PICTURE]:
            control(name)
    with gr.Accordion("Region to restyle (optional)", open=False):
        gr.Markdown(REGION_HELP)
        painter = gr.ImageEditor(
            label="Paint the region to restyle", type="pil", image_mode="RGBA", sources=[], layers=False,
            brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"), eraser=gr.Eraser(), transforms=(), elem_id="painter",
        )  # fmt: skip
        pictures["mask"] = _picture_input("mask", "…or upload a mask (white: restyle, black: keep)", "mask")
        for row in _rows(in_group[REGION]):
            with gr.Row():
                for name in row:
                    control(name)
    randomize = None
    with gr.Accordion("Advanced", open=False):
        for row in _rows(in_group[ADVANCED]):
            with gr.Row():
                for name in row:
                    control(name)
                if row == ["seed"]:
                    randomize = gr.Checkbox(value=False, label="Random seed each run")
    assert randomize is not None, "the settings table has no seed"
    for sent in (*controls.values(), randomize):
        # Values reach StyleConfig as sent, so API callers get the same setting-named messages as the CLI.
        sent.preprocess = as_sent  # type: ignore[method-assign]
    # The painting canvas shows the picture; what is painted (a user's input, not a new background) becomes the mask.
    image.change(painting_canvas, image, painter, queue=False, api_visibility="private")
    painter.input(painted_mask, painter, pictures["mask"], queue=False, api_visibility="private")
    return controls, pictures, randomize


def _picture_input(name: str, label: str, elem_id: str) -> gr.Image:
    """An optional picture, passed on undecoded, so the one loader checks it (see :func:`~stylizer.ui.inputs.accept_upload`)."""
    picture = gr.Image(label=label, type="filepath", image_mode=None, sources=["upload", "clipboard"], height=200, elem_id=elem_id)
    picture.preprocess = accept_upload(PICTURE_NAMES[name])  # type: ignore[method-assign]
    return picture


def painting_canvas(upload: Any) -> Any:
    """The editor's value for a new upload: the picture as the background, nothing painted yet."""
    if upload is None:
        return None
    try:
        background = load_image(upload).image
    except StylizerError:
        return None  # the run reports what is wrong with the upload
    return {"background": background, "layers": [], "composite": None}


def painted_mask(value: Any) -> Image.Image | None:
    """What was painted on the canvas as a mask: white where any stroke is, black elsewhere; None if nothing is."""
    if not value or value.get("background") is None:
        return None
    strokes = [layer.getchannel("A") for layer in value.get("layers") or [] if layer is not None and "A" in layer.getbands()]
    if not strokes:
        return None
    painted = strokes[0]
    for stroke in strokes[1:]:
        painted = ImageChops.lighter(painted, stroke)
    if painted.getextrema()[1] == 0:
        return None
    return painted.point(lambda alpha: 255 if alpha else 0).resize(value["background"].size)


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


def knob_control(name: str, knob: Knob, value: Any, limits: Limits, info: ModelInfo, visible: bool = True) -> gr.components.Component:
    """The control for one setting: a checkbox, a radio for choices, a text box, a slider for a number with a step, else a number box.

    A latent-only checkbox, radio or slider is disabled for pixel models.
    """
    interactive = info.backend == "latent" or not knob.latent_only
    shown = dict(label=knob.label, visible=visible)
    if isinstance(value, bool):
        return gr.Checkbox(value=value, info=knob.info, interactive=interactive, **shown)
    if knob.choices:
        return gr.Radio(list(knob.choices), value=value, info=knob.info, interactive=interactive, **shown)
    if isinstance(value, str):
        return gr.Textbox(value=value, placeholder=knob.placeholder, max_lines=2, **shown)
    low, high = field_range(name, limits)
    if knob.step is None:
        return gr.Number(value=value, precision=0 if isinstance(value, int) else None, minimum=low, maximum=high, **shown)
    return gr.Slider(low, high, value=value, step=knob.step, info=knob.info, interactive=interactive, **shown)


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
        "comparison": gr.ImageSlider(
            label="Before / after", type="pil", format="png", visible=False, buttons=["fullscreen"], elem_id="comparison"
        ),
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


def _model_line(info: ModelInfo) -> str:
    devices = ", ".join(info.devices)
    return f"**Model:** `{info.name}` ({info.backend} backend; {info.description}) · **guide:** CLIP {info.clip} · **device:** {devices}"


def _examples() -> list[list[Any]]:
    """The examples table's rows (see :data:`EXAMPLE_KNOBS`), from ``assets/examples.json``; pictures that are missing leave their row out."""
    index = ASSETS / "examples.json"
    if not index.is_file():
        return []
    defaults = StyleConfig()
    rows = []
    for row in json.loads(index.read_text()):
        pictures = [row["image"], *(row.get(name) for name in PICTURE_INPUTS)]
        if not all((ASSETS / name).is_file() for name in pictures if name):
            continue
        knobs_ = [row.get(name, getattr(defaults, name)) for name in EXAMPLE_KNOBS]
        rows.append([str(ASSETS / pictures[0]), *knobs_, *(str(ASSETS / name) if name else None for name in pictures[1:])])
    return rows
