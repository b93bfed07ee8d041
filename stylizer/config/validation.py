"""Checking one setting's value against its :class:`~stylizer.config.knob.Knob`, with a message that names the setting."""

from __future__ import annotations

import math
import unicodedata
from typing import Any

from ..errors import ConfigError
from .knob import Knob
from .limits import Limits

# Only a guard against abusive payloads: longer texts are accepted and cut to CLIP's context with a note.
MAX_PROMPT_CHARS = 20_000
# A whole number longer than this is named by its length in messages, not written out.
WHOLE_DIGITS_SHOWN = 20


def knob_range(knob: Knob, limits: Limits | None = None) -> tuple[float | None, float | None]:
    """The allowed (low, high) of a numeric knob, with the server's caps applied."""
    high = knob.high
    if knob.limit and high is not None:
        high = min(high, getattr(limits or Limits(), knob.limit))
    return knob.low, high


def check_value(name: str, knob: Knob, default: Any, value: Any, limits: Limits, may_be_empty: bool) -> Any:
    """``value`` for the setting ``name`` (whose default is ``default``), normalised, or a :class:`ConfigError` naming it."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be text, got {type(value).__name__}")
        if knob.choices is None:
            return check_text(name, value, may_be_empty)
        if value not in knob.choices:
            raise ConfigError(f"{name} must be one of {', '.join(knob.choices)}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    # A whole number is always finite (math.isfinite cannot even take one over 308 digits).
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if isinstance(default, int):
        if value != int(value):
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        value = int(value)
    else:
        value = float(value)
    lo, hi = knob_range(knob, limits)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{name} must be between {_shown(lo)} and {_shown(hi)}, got {_shown(value)}")
    return value


def check_text(name: str, text: str, may_be_empty: bool) -> str:
    """A text setting cleaned of control characters and runs of spaces; empty only where ``may_be_empty``."""
    # Control characters are invisible in the UI and meaningless to CLIP's tokenizer.
    cleaned = "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)
    cleaned = " ".join(cleaned.split())
    if not cleaned and not may_be_empty:
        hint = ", or give a style picture" if name == "prompt" else ""
        raise ConfigError(f"{name} is empty: describe the style in a few words, e.g. 'drawing with black ink'{hint}")
    if len(cleaned) > MAX_PROMPT_CHARS:
        raise ConfigError(f"{name} is {len(cleaned):,} characters long; the limit is {MAX_PROMPT_CHARS:,}")
    return cleaned


def _shown(x: float | None) -> str:
    """A bound or a value as a person reads it: whole numbers whole (4294967295, not 4.29497e+09), huge ones by their size."""
    if x is None:
        return "-"
    if isinstance(x, int) or x.is_integer():
        digits = str(abs(int(x)))
        return f"a number of {len(digits)} digits" if len(digits) > WHOLE_DIGITS_SHOWN else str(int(x))
    return f"{x:g}"
