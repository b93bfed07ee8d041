"""Settings of the grid: ``FIELD=V1,V2,...`` sweeps and ``FIELD=VALUE`` overrides of :class:`StyleConfig`.

Values are parsed with the field's own type; ranges are checked later, when the
grid builds each job's validated config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import StyleConfig
from ..errors import ConfigError

DEFAULT_LABEL = "default"
# The prompt is an axis of the grid (--prompts), not a setting.
GRID_AXES = ("prompt",)
_KIND_NAMES = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}
_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


@dataclass(frozen=True)
class Setting:
    """One column of the sweep: a label and the config fields it changes.

    Attributes:
        label: shown in the report, e.g. ``"w_content=50"``.
        overrides: StyleConfig fields and their values for this setting.
        swept: the field this setting varies; ``""`` for the base setting.
    """

    label: str = DEFAULT_LABEL
    overrides: Mapping[str, Any] = field(default_factory=dict)
    swept: str = ""


def settable_fields() -> dict[str, dataclasses.Field]:
    """StyleConfig fields a sweep or override may set, by name."""
    return {f.name: f for f in dataclasses.fields(StyleConfig) if f.name not in GRID_AXES}


def parse_assignment(text: str, option: str, many: bool = True) -> tuple[str, list[tuple[str, Any]]]:
    """Split ``FIELD=V1,V2`` into the field name and its (raw text, typed value) pairs.

    Args:
        text: what the user typed.
        option: the flag, for messages (``"--sweep"``).
        many: split the value on commas; off for a single value that may contain commas.

    Raises:
        ConfigError: no ``=``, no value, unknown field, or a value of the wrong type.
    """
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not raw.strip():
        raise ConfigError(f"{option} {text!r}: expected FIELD=VALUE[,VALUE...], e.g. w_content=0,50,200")
    fields = settable_fields()
    if name not in fields:
        raise ConfigError(f"{option} {text!r}: unknown setting {name!r}; choose one of {', '.join(fields)}")
    kind = type(fields[name].default)
    values = []
    for item in raw.split(",") if many else [raw]:
        item = item.strip()
        try:
            values.append((item, _BOOLEANS[item.lower()] if kind is bool else kind(item)))
        except (ValueError, KeyError):
            raise ConfigError(f"{option} {name}: {item!r} is not {_KIND_NAMES[kind]}") from None
    return name, values


def sweep_settings(sweeps: Sequence[str]) -> list[Setting]:
    """The settings to run: each sweep's values, one field at a time (the others stay at the base).

    Args:
        sweeps: ``FIELD=V1,V2,...`` strings; none gives the single base setting.

    Raises:
        ConfigError: a malformed sweep, or one that repeats a setting.
    """
    if not sweeps:
        return [Setting()]
    settings: list[Setting] = []
    for text in sweeps:
        name, values = parse_assignment(text, "--sweep")
        settings += [Setting(f"{name}={raw}", {name: value}, name) for raw, value in values]
    labels = [s.label for s in settings]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(f"--sweep repeats {', '.join(repeated)}")
    return settings


def parse_overrides(assignments: Sequence[str]) -> dict[str, Any]:
    """``FIELD=VALUE`` strings (``--set``) as a dict of typed values.

    Raises:
        ConfigError: a malformed assignment.
    """
    overrides: dict[str, Any] = {}
    for text in assignments:
        name, [(_, value)] = parse_assignment(text, "--set", many=False)
        overrides[name] = value
    return overrides
