"""The page's settings as data: widget values to a settings dict, and pasted or linked JSON back to widget values."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Mapping
from typing import Any

import gradio as gr

from ..config import PICTURE_INPUTS, Limits, StyleConfig, field_range, knobs, record_extras
from ..errors import StylizerError, as_sentence

SETTINGS_PARAM = "settings"
# The API's box beside the seed: draw a new one for this job.
RANDOMIZE_SEED = "randomize_seed"
# The settings' text fields: an empty widget sends None, which the settings carry as "".
TEXT_KNOBS = ("prompt", "reference")


def page_knobs() -> tuple[str, ...]:
    """The settings the page shows and the ``/stylize`` API takes, in the API's order."""
    return tuple(name for name, knob in knobs().items() if knob.api)


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


def settings_from_values(values: Mapping[str, Any], randomize_seed: Any) -> dict[str, Any]:
    """The knob widgets' values (and the random-seed box) as the settings a job takes; unset widgets take the defaults."""
    settings = {k: v for k, v in values.items() if v is not None}
    if randomize_seed is not None and not isinstance(randomize_seed, bool):  # "yes" is read as neither: say so, as for every other box
        raise gr.Error(f"{RANDOMIZE_SEED} must be true or false, got {randomize_seed!r}.", print_exception=False)
    if randomize_seed is True:
        low, high = field_range("seed")
        settings["seed"] = random.randint(int(low or 0), int(high or 0))
    settings.setdefault("seed", 0)
    for name in TEXT_KNOBS:
        settings[name] = settings.get(name) or ""
    return settings


def apply_settings(text: str, limits: Limits) -> list[Any]:
    """Settings JSON -> one value per knob widget (in :func:`page_knobs` order), within this server's limits.

    The text may be a settings record (the Settings box, a link) or a report that holds one under
    ``settings`` (the command line's ``--json``, batch's ``NAME.json``). The model set is informational
    and ignored, as are the pictures' hashes (with a warning that the pictures must be added again);
    a blank prompt is kept blank.

    Raises:
        gr.Error: the JSON is malformed or a setting is out of range, in one sentence.
    """
    try:
        data = json.loads(text or "")
    except json.JSONDecodeError as exc:
        raise gr.Error(f"The settings are not valid JSON ({exc.msg}, line {exc.lineno}).", print_exception=False) from None
    if not isinstance(data, dict):
        raise gr.Error("The settings must be a JSON object like the one shown after a run.", print_exception=False)
    extras = record_extras(data)
    used = [name.replace("_", " ") for name in PICTURE_INPUTS if extras.get(name)]
    if used:
        gr.Warning(
            f"These settings were made with a {' and a '.join(used)}, which settings cannot carry: add it again to get the same result."
        )
    try:
        read = StyleConfig.from_record(data)
        prompt = read.prompt or ""
        # Validate every other knob even when the pasted prompt is blank.
        config = dataclasses.replace(read, prompt=prompt or "placeholder").validated(limits)
    except StylizerError as exc:
        raise gr.Error(as_sentence(str(exc)), print_exception=False) from None
    values = {**config.to_dict(), "prompt": prompt}
    return [values[name] for name in page_knobs()]


def settings_from_url(request: gr.Request | None, limits: Limits) -> list[Any]:
    """On page load, fill the knobs from a ``?settings=<json>`` link; leave them alone otherwise."""
    text = request.query_params.get(SETTINGS_PARAM) if request else None
    unchanged = [gr.skip()] * len(page_knobs())
    if not text:
        return unchanged
    try:
        return apply_settings(text, limits)
    except gr.Error as exc:
        gr.Warning(f"The settings in the link were not applied: {exc.message}")
        return unchanged
