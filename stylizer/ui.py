"""The Gradio page: ``build_demo(run_fn, info)`` -> ``gr.Blocks``.

The page knows nothing of models or tensors. It turns widget values into a
settings dict, hands them to ``run_fn`` and shows the :class:`JobUpdate` objects
that come back. Tests pass a fake ``run_fn``; the app passes the worker's.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import random
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlencode

import gradio as gr

from .config import GUIDANCE_MODES, START_MODES, Limits, StyleConfig, field_range
from .errors import StylizerError
from .jobs import JobUpdate, ModelInfo, RunFn

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SEED_MAX = 2**32 - 1
SETTINGS_PARAM = "settings"
CACHE_SWEEP_S = 600
INVERTING = "Inverting the picture (DDIM)"
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

# Widget order of the run event (after the image): also the API's parameter order.
KNOBS = (
    "prompt", "reference", "w_dir", "w_patch", "w_content", "w_tv",
    "steps", "strength", "start", "mode", "guidance_scale", "cfg_scale",
    "n_patches", "patch_size", "threshold", "size", "seed",
)
LABELS = {
    "w_dir": "Directional style (global CLIP)",
    "w_patch": "Patch style (local CLIP)",
    "w_content": "Content (keep structure)",
    "w_tv": "Smoothness (total variation)",
    "steps": "Steps",
    "strength": "Strength (how far from the input)",
    "start": "Start from",
    "mode": "Guidance gradient",
    "guidance_scale": "Guidance scale (multiplies all weights)",
    "cfg_scale": "Text guidance (CFG, latent models only)",
    "n_patches": "Patches",
    "patch_size": "Patch size (px)",
    "threshold": "Patch threshold τ",
    "size": "Resolution (long side, px)",
    "seed": "Seed",
}
TERM_NAMES = {"dir": "directional", "patch": "patch", "content": "content", "tv": "TV"}


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


def _upload_payload(payload: Any) -> str | bytes | None:
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


def _as_sent(payload: Any) -> Any:
    """Pass a widget's value through unchanged; validation happens once, in :class:`StyleConfig`."""
    return payload


def build_demo(run_fn: RunFn, info: ModelInfo, limits: Limits | None = None) -> gr.Blocks:
    """Build the page around ``run_fn``.

    Args:
        run_fn: ``run_fn(image, settings)`` yields :class:`JobUpdate`; closing it cancels the job.
        info: the loaded model's name, backend and devices, shown on the page.
        limits: caps for the sliders' ranges; :meth:`Limits.from_env` when omitted.
    """
    limits = limits or Limits.from_env()
    defaults = StyleConfig(size=min(info.default_size, limits.max_size))
    ttl = max(1, int(limits.output_ttl_s))
    # Gradio's copies of results (and uploads) go after the same time as the worker's own files.
    with gr.Blocks(title="Stylizer", delete_cache=(min(CACHE_SWEEP_S, ttl), ttl)) as demo:
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
                image.preprocess = _upload_payload  # type: ignore[method-assign]
                widgets: dict[str, gr.components.Component] = {}
                widgets["prompt"] = gr.Textbox(label="Style prompt", placeholder="drawing with black ink", max_lines=2)
                widgets["reference"] = gr.Textbox(label="Reference text (what the input is)", value=defaults.reference, max_lines=1)
                for name in ("w_dir", "w_patch", "w_content", "w_tv"):
                    widgets[name] = _slider(name, defaults, limits)
                with gr.Accordion("Advanced", open=False):
                    with gr.Row():
                        widgets["steps"] = _slider("steps", defaults, limits, step=1)
                        widgets["strength"] = _slider("strength", defaults, limits, step=0.01)
                    with gr.Row():
                        widgets["start"] = gr.Radio(list(START_MODES), value=defaults.start, label=LABELS["start"], info="invert keeps structure best")
                        widgets["mode"] = gr.Radio(list(GUIDANCE_MODES), value=defaults.mode, label=LABELS["mode"], info="full: through the UNet; fast: on x̂0 only")
                    with gr.Row():
                        widgets["guidance_scale"] = _slider("guidance_scale", defaults, limits, step=0.05)
                        widgets["cfg_scale"] = _slider("cfg_scale", defaults, limits, step=0.5, interactive=info.backend == "latent")
                    with gr.Row():
                        widgets["n_patches"] = _slider("n_patches", defaults, limits, step=1)
                        widgets["patch_size"] = _slider("patch_size", defaults, limits, step=8)
                    with gr.Row():
                        widgets["threshold"] = _slider("threshold", defaults, limits, step=0.01)
                        widgets["size"] = _slider("size", defaults, limits, step=8)
                    with gr.Row():
                        widgets["seed"] = gr.Number(value=defaults.seed, label=LABELS["seed"], precision=0, minimum=0, maximum=SEED_MAX)
                        randomize = gr.Checkbox(value=False, label="Random seed each run")
                with gr.Row():
                    run_button = gr.Button("Stylize", variant="primary")
                    stop_button = gr.Button("Stop", variant="stop")
            with gr.Column(scale=1):
                result = gr.Image(label="Result", elem_id="result", type="pil", format="png", interactive=False, height=420, buttons=["download", "fullscreen"])
                status = gr.Markdown("Upload a picture, describe a style and press **Stylize**.", label="Status", elem_id="status", elem_classes="stylizer-status")
                comparison = gr.ImageSlider(label="Before / after", type="pil", format="png", visible=False, buttons=["fullscreen"])
                with gr.Row():
                    trajectory = gr.Image(label="Denoising trajectory", type="filepath", interactive=False, visible=False, height=200)
                    downloads = gr.File(elem_id="downloads", label="Downloads (PNG, GIF)", file_count="multiple", interactive=False, visible=False)
                settings_box = gr.Code(elem_id="settings", label="Settings (copy to share; paste and press Apply & stylize to re-run)", language="json", interactive=True, lines=4)
                apply_button = gr.Button("Apply & stylize", size="sm")
        examples = _examples()
        if examples:
            gr.Examples(examples, inputs=[image, widgets["prompt"], widgets["reference"]], label="Examples")

        for widget in (*widgets.values(), randomize):
            # Values reach StyleConfig as sent, so API callers get the same setting-named messages as the CLI.
            widget.preprocess = _as_sent  # type: ignore[method-assign]
        inputs = [image, *(widgets[name] for name in KNOBS), randomize]
        outputs = [result, status, comparison, trajectory, downloads, settings_box, widgets["seed"]]

        stops = StopRequests()

        def stylize(image, prompt, reference, w_dir, w_patch, w_content, w_tv, steps, strength, start, mode,
                    guidance_scale, cfg_scale, n_patches, patch_size, threshold, size, seed,
                    randomize_seed=False, progress=gr.Progress(), request: gr.Request = None):
            values = dict(zip(KNOBS, (prompt, reference, w_dir, w_patch, w_content, w_tv, steps, strength, start, mode,
                                      guidance_scale, cfg_scale, n_patches, patch_size, threshold, size, seed)))
            settings = _settings_from_widgets(values, randomize_seed)
            session = request.session_hash if request else ""
            yield from _stream(run_fn, image, settings, progress, lambda: stops.requested(session))

        def arm(request: gr.Request):
            stops.arm(request.session_hash)

        def stop(request: gr.Request):
            stops.stop(request.session_hash)

        def forget(request: gr.Request):
            stops.forget(request.session_hash)

        gpu = dict(concurrency_limit=len(info.devices), concurrency_id="gpu", show_progress="minimal")
        # The click arms the Stop button at once (outside the queue), then the run waits its turn.
        run_button.click(arm, None, None, queue=False, api_visibility="private").then(
            stylize, inputs, outputs, api_name="stylize", **gpu
        )
        knob_widgets = [widgets[name] for name in KNOBS]

        def apply_settings(text: str, request: gr.Request):
            stops.arm(request.session_hash)
            # The settings' own seed, not a new random one: the point is to get the same picture again.
            return [*_apply_settings(text, limits), False]

        def settings_from_url(request: gr.Request):
            return _settings_from_url(request, limits)

        # One click reproduces a run: restore every knob, then stylize the current picture with them.
        apply_button.click(apply_settings, [settings_box], [*knob_widgets, randomize], api_visibility="private").success(
            stylize, inputs, outputs, api_visibility="private", **gpu
        )
        # The run itself notices the press at its next step and says "Stopped" (see StopRequests).
        stop_button.click(stop, None, None, queue=False, api_visibility="private")
        demo.load(settings_from_url, None, knob_widgets, api_visibility="private")
        demo.unload(forget)
    return demo


def _stream(run_fn: RunFn, image: Any, settings: dict[str, Any], progress: gr.Progress, stop_requested: Callable[[], bool]):
    """Turn job updates into page updates; user errors become ``gr.Error``.

    ``stop_requested`` is polled before every update: once it is true the job is closed
    (which cancels it between two network passes) and the status says "Stopped".
    """
    skip = gr.skip()
    used_seed = settings["seed"]
    if stop_requested():  # pressed while the run waited in the queue
        yield skip, _stopped(), skip, skip, skip, skip, used_seed
        return
    hidden = gr.update(visible=False)
    # Clear the previous run's result so nothing stale sits beside the new previews.
    starting = f"{INVERTING}…" if settings.get("start", "invert") == "invert" else "Starting…"
    yield None, starting, hidden, hidden, hidden, skip, used_seed
    try:
        with contextlib.closing(run_fn(image, settings)) as updates:
            yield from _page_updates(updates, progress, stop_requested, used_seed)
    except StylizerError as exc:
        raise gr.Error(_sentence(str(exc)), print_exception=False) from None
    except gr.Error:
        raise
    except Exception:
        log.exception("stylize job failed")
        raise gr.Error("Something went wrong on the server while stylizing; the error was logged. Please try again.", print_exception=False) from None


def _page_updates(updates: Iterator[JobUpdate], progress: gr.Progress, stop_requested: Callable[[], bool], used_seed: Any):
    """One page update per job update, until the job ends or Stop is pressed."""
    skip = gr.skip()
    for update in updates:
        if stop_requested():
            yield skip, _stopped(), skip, skip, skip, skip, used_seed
            return
        if update.queued:
            yield skip, "Waiting for a free GPU…", skip, skip, skip, skip, used_seed
            continue
        if update.inverting:
            progress((update.step, update.total), desc="Inverting", unit="steps")
            text = f"**{INVERTING}** {update.step} / {update.total}{_bar(update.step, update.total)}"
            yield skip, text, skip, skip, skip, skip, used_seed
            continue
        progress((update.step, update.total), desc="Stylizing", unit="steps")
        if update.result is None:
            text = f"**Step {update.step} / {update.total}**{_losses_text(update.losses)}{_bar(update.step, update.total)}"
            yield (update.image if update.image is not None else skip), text, skip, skip, skip, skip, used_seed
            continue
        done = update.result
        notes = "".join(f"\n\n_Note: {n}._" for n in done.notes)
        link = "?" + urlencode({SETTINGS_PARAM: json.dumps(done.settings, separators=(",", ":"))})
        text = (f"**Done** in {done.seconds:.1f} s · {update.total} steps{_losses_text(done.losses)} · "
                f"[link to these settings]({link}){notes}")
        yield (
            done.image,
            text,
            gr.ImageSlider(value=(done.source, done.image), visible=True),
            gr.Image(value=str(done.gif_path), visible=True),
            gr.File(value=[str(done.png_path), str(done.gif_path)], visible=True),
            json.dumps(done.settings, indent=1, ensure_ascii=False),
            used_seed,
        )


def _stopped() -> str:
    return "**Stopped.** Press **Stylize** to run again."


def _settings_from_widgets(values: dict[str, Any], randomize_seed: Any) -> dict[str, Any]:
    settings = {k: v for k, v in values.items() if v is not None}
    if randomize_seed is True:
        settings["seed"] = random.randint(0, SEED_MAX)
    settings.setdefault("seed", 0)
    for name in ("prompt", "reference"):
        settings[name] = settings.get(name) or ""
    return settings


def _settings_from_url(request: gr.Request, limits: Limits):
    """On page load, fill the knobs from a ``?settings=<json>`` link; leave them alone otherwise."""
    text = request.query_params.get(SETTINGS_PARAM) if request else None
    if not text:
        return [gr.skip()] * len(KNOBS)
    try:
        return _apply_settings(text, limits)
    except gr.Error as exc:
        gr.Warning(f"The settings in the link were not applied: {exc.message}")
        return [gr.skip()] * len(KNOBS)


def _apply_settings(text: str, limits: Limits):
    """Settings JSON -> one update per knob widget, within this server's limits (``model`` is informational)."""
    try:
        data = json.loads(text or "")
    except json.JSONDecodeError as exc:
        raise gr.Error(f"The settings are not valid JSON ({exc.msg}, line {exc.lineno}).", print_exception=False) from None
    if not isinstance(data, dict):
        raise gr.Error("The settings must be a JSON object like the one shown after a run.", print_exception=False)
    data.pop("model", None)
    prompt = data.pop("prompt", "") or ""
    try:
        # Validate every other knob even when the pasted prompt is blank.
        config = StyleConfig.from_dict({**data, "prompt": prompt or "placeholder"}).validated(limits)
    except StylizerError as exc:
        raise gr.Error(_sentence(str(exc)), print_exception=False) from None
    values = {**config.to_dict(), "prompt": prompt}
    return [values[name] for name in KNOBS]


def _slider(name: str, defaults: StyleConfig, limits: Limits, step: float | None = None, interactive: bool = True) -> gr.Slider:
    lo, hi = field_range(name, limits)
    return gr.Slider(lo, hi, value=getattr(defaults, name), step=step, label=LABELS[name], interactive=interactive)


def _bar(done: int, total: int) -> str:
    """A progress bar under the status line (Gradio's own shows only until the first streamed frame)."""
    return f'\n\n<progress value="{done}" max="{max(total, 1)}"></progress>'


def _losses_text(losses: dict[str, float]) -> str:
    if not losses:
        return ""
    return " · " + " · ".join(f"{TERM_NAMES.get(k, k)} {v:.3f}" for k, v in losses.items())


def _model_line(info: ModelInfo) -> str:
    devices = ", ".join(info.devices)
    return f"**Model:** `{info.name}` ({info.backend} backend; {info.description}) · **guide:** CLIP {info.clip} · **device:** {devices}"


def _sentence(message: str) -> str:
    message = message.strip()
    first = message.split(" ", 1)[0]
    if first.isalpha():  # leave setting names such as w_dir as they are
        message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


def _examples() -> list[list[str]]:
    index = ASSETS / "examples.json"
    if not index.is_file():
        return []
    rows = json.loads(index.read_text())
    return [[str(ASSETS / row["image"]), row["prompt"], row["reference"]] for row in rows if (ASSETS / row["image"]).is_file()]
