"""The style objective's four loss terms, in one table: their keys, the settings that weigh them and their names on screen."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LossTerm:
    """One term of the objective.

    Attributes:
        key: the term's name in loss readings (``Frame.losses``, records, the API's status).
        weight: the :class:`~stylizer.config.StyleConfig` field that weighs it.
        shown: its name on the page's status line.
        directional: a CLIP direction term, which needs a style direction to guide.
    """

    key: str
    weight: str
    shown: str
    directional: bool = False


LOSS_TERMS = (
    LossTerm("dir", "w_dir", "directional", directional=True),
    LossTerm("patch", "w_patch", "patch", directional=True),
    LossTerm("content", "w_content", "content"),
    LossTerm("tv", "w_tv", "TV"),
)
# The terms' keys in table order: the order of the loss tensors' weights and of every reading.
TERMS = tuple(term.key for term in LOSS_TERMS)
DIRECTIONAL = tuple(term.key for term in LOSS_TERMS if term.directional)
SHOWN = {term.key: term.shown for term in LOSS_TERMS}
