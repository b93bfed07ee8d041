"""One gate for every request: the image, the settings and the prompt, checked the same way for CLI, API and UI."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import open_clip
from PIL import Image

from .config import Limits, StyleConfig
from .encoders import CLIP_CONTEXT_TOKENS, TEXT_TEMPLATES
from .errors import InputError
from .images import ImageSource, load_image


@dataclass
class CheckedRequest:
    """A request that passed every check.

    Attributes:
        image: the decoded RGB picture.
        config: validated settings.
        notes: things the user should be told (first frame of an animation used, prompt truncated, ...).
    """

    image: Image.Image
    config: StyleConfig
    notes: list[str] = field(default_factory=list)


def check_request(image: ImageSource | None, settings: Mapping[str, Any], limits: Limits) -> CheckedRequest:
    """Validate settings, then decode the image; raise a :class:`StylizerError` with a user message otherwise.

    Args:
        image: a path, encoded bytes, a PIL image, or ``None`` (an error).
        settings: :class:`StyleConfig` fields; missing ones take their defaults.
        limits: server caps.
    """
    if image is None:
        raise InputError("no image: upload, paste or take a picture first")
    config = StyleConfig.from_dict(settings).validated(limits)
    loaded = load_image(image, limits)
    return CheckedRequest(loaded.image, config, loaded.notes + prompt_notes(config))


def prompt_notes(config: StyleConfig) -> list[str]:
    """A note for each text too long for CLIP's context (it is truncated, not rejected)."""
    notes = []
    for name in ("prompt", "reference"):
        text = getattr(config, name)
        tokens = len(_tokenizer().encode(text)) + _template_overhead()
        if tokens > CLIP_CONTEXT_TOKENS:
            notes.append(
                f"the {name} is too long for CLIP ({tokens} of {CLIP_CONTEXT_TOKENS} tokens with its template); the end was cut off"
            )
    return notes


@functools.lru_cache(maxsize=1)
def _tokenizer() -> Any:
    return open_clip.get_tokenizer("ViT-B-32")


@functools.lru_cache(maxsize=1)
def _template_overhead() -> int:
    """Tokens the longest prompt template adds, start and end tokens included."""
    return 2 + max(len(_tokenizer().encode(t.replace("{}", ""))) for t in TEXT_TEMPLATES)
