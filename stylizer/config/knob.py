"""What one setting of the knob table carries: how it is checked, and how each front end shows it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The page's sections, in page order: the prompt and loss weights, blended styles, the style picture,
# the region to restyle, and the rest.
MAIN, STYLES, STYLE_PICTURE, REGION, ADVANCED = "main", "styles", "style picture", "region", "advanced"
# What of the prepared picture a setting changes: the picture's entry (its encoding and features, at the
# working size), its DDIM inversion, or the live preview's preparation (through its own size and steps).
PICTURE, INVERSION, PREVIEW = "picture", "inversion", "preview"


@dataclass(frozen=True)
class Knob:
    """How one setting is checked and shown; the metadata of every :class:`~stylizer.config.StyleConfig` field.

    Attributes:
        help: one line for ``--help``, the API docs and the MCP tools' parameter descriptions.
        label: the page's label for the control.
        low, high: the allowed range of a number (None: unbounded on that side).
        limit: the :class:`~stylizer.config.Limits` attribute that caps ``high`` on this server, if any.
        choices: the allowed values of a text setting chosen from a list (a radio on the page).
        flag: the command-line option (default: ``--`` and the name with dashes).
        short: a one-letter command-line alias, e.g. ``-p``.
        required: the command line insists on it, and text must not be empty.
        may_be_empty: text that may be left empty (an unused extra prompt).
        cli: an option of its own on the command line (else another option sets it: repeated
            ``-p`` the extra prompts, ``--prompt-weights`` their weights).
        step: the slider's step; a number without one is a plain number box (the seed).
        group: the page section: :data:`MAIN`, :data:`STYLES`, :data:`STYLE_PICTURE`, :data:`REGION` or :data:`ADVANCED`.
        info: a hint under the page's control.
        placeholder: grey example text in an empty text box.
        api: on the page and a parameter of the ``/stylize`` API (every knob is on the command line).
        preset_default: the default comes from the loaded model (its working size), not from the field.
        latent_only: only latent models use it; the page shows it disabled for pixel models.
        prepares: what of the prepared picture depends on it (:data:`PICTURE`, :data:`INVERSION` or
            :data:`PREVIEW`; None: nothing): it is part of that cache key, and changing it on the page
            prepares the picture again.
        bench: an option of the benchmark too (``python -m bench``).
        evaluation: an option of the evaluation too (``python -m stylizer.eval``).
    """

    help: str
    label: str
    low: float | None = None
    high: float | None = None
    limit: str | None = None
    choices: tuple[str, ...] | None = None
    flag: str | None = None
    short: str | None = None
    required: bool = False
    may_be_empty: bool = False
    cli: bool = True
    step: float | None = None
    group: str = ADVANCED
    info: str | None = None
    placeholder: str | None = None
    api: bool = True
    preset_default: bool = False
    latent_only: bool = False
    prepares: str | None = None
    bench: bool = False
    evaluation: bool = False

    def flags(self, name: str) -> tuple[str, ...]:
        """The command-line option strings of the setting ``name``: its short alias, if any, and its long flag."""
        flag = self.flag or "--" + name.replace("_", "-")
        return (self.short, flag) if self.short else (flag,)


def knob(default: Any, help: str, label: str, **options: Any) -> Any:
    """A dataclass field whose metadata is its :class:`Knob`."""
    return field(default=default, metadata={"knob": Knob(help, label, **options)})
