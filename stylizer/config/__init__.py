"""Configuration without torch: the knob table (:mod:`.style`), each knob's metadata (:mod:`.knob`), the
server's caps (:mod:`.limits`), checking a value (:mod:`.validation`), the loss terms (:mod:`.terms`)
and every environment variable (:mod:`.environment`)."""

from .knob import ADVANCED, INVERSION, MAIN, PICTURE, PREVIEW, REGION, STYLE_PICTURE, STYLES, Knob
from .limits import Limits
from .style import (
    GUIDANCE_MODES,
    GUIDE_DECODERS,
    PICTURE_INPUTS,
    PROMPT_FIELDS,
    RECORD_EXTRAS,
    START_MODES,
    WEIGHT_FIELDS,
    StyleConfig,
    field_range,
    knobs,
    model_defaults,
    prepared_by,
    record_extras,
    settings_of,
)
from .validation import MAX_PROMPT_CHARS

__all__ = [
    "ADVANCED",
    "GUIDANCE_MODES",
    "GUIDE_DECODERS",
    "INVERSION",
    "MAIN",
    "MAX_PROMPT_CHARS",
    "PICTURE",
    "PICTURE_INPUTS",
    "PREVIEW",
    "PROMPT_FIELDS",
    "RECORD_EXTRAS",
    "REGION",
    "START_MODES",
    "STYLES",
    "STYLE_PICTURE",
    "WEIGHT_FIELDS",
    "Knob",
    "Limits",
    "StyleConfig",
    "field_range",
    "knobs",
    "model_defaults",
    "prepared_by",
    "record_extras",
    "settings_of",
]
