"""One gate for every request: the pictures, the settings and the prompt, checked the same way for the CLI, batch,
the API, the page and the evaluation, into the one :class:`Request` that the sampler, the worker and Ray take."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from .config import PROMPT_FIELDS, Limits, StyleConfig
from .errors import InputError
from .images import ImageSource, check_mask, check_working_side, load_image, load_mask
from .prompts import CLIP_CONTEXT_TOKENS, TEXT_TEMPLATES


@dataclass
class Request:
    """A job that passed every check: plain pictures and settings, no tensors (it travels to Ray replicas and ZeroGPU).

    Attributes:
        image: the decoded RGB picture.
        config: validated settings.
        notes: things the user should be told (first frame of an animation used, prompt truncated, ...).
        mask: the region to restyle, as loaded (greyscale; it fits the picture), or None.
        style_image: the style picture (RGB), or None.
    """

    image: Image.Image
    config: StyleConfig
    notes: list[str] = field(default_factory=list)
    mask: Image.Image | None = None
    style_image: Image.Image | None = None

    def pictures_used(self) -> dict[str, str]:
        """Which of ``mask`` and ``style_image`` came with the job, by a hash of their pixels.

        A picture cannot travel in a settings link; its hash tells whether a rerun uses the same one.
        """
        return picture_hashes(mask=self.mask, style_image=self.style_image)

    def record(self, *, model: str, clip: str) -> dict[str, Any]:
        """This job's settings record (see :meth:`stylizer.config.StyleConfig.record`)."""
        return self.config.record(model=model, clip=clip, pictures=self.pictures_used())

    def as_preview(self) -> Request:
        """The same job as a live preview (see :meth:`stylizer.config.StyleConfig.as_preview`).

        Raises:
            InputError: the picture is too thin for the preview's size.
        """
        check_working_side(self.image.size, self.config.preview_size, "preview_size")
        return dataclasses.replace(self, config=self.config.as_preview())


def picture_hashes(**pictures: Image.Image | None) -> dict[str, str]:
    """A short hash of each given picture's pixels, by name (``"sha256:..."``); None leaves the name out."""
    return {
        name: "sha256:" + hashlib.sha256(picture.tobytes()).hexdigest()[:16] for name, picture in pictures.items() if picture is not None
    }


def check_request(
    image: ImageSource | None,
    settings: Mapping[str, Any],
    limits: Limits | None = None,
    *,
    mask: ImageSource | None = None,
    style_image: ImageSource | None = None,
) -> Request:
    """Validate settings, then decode the pictures; raise a :class:`~stylizer.errors.StylizerError` with a user message otherwise.

    Args:
        image: a path, encoded bytes, a PIL image, or ``None`` (an error).
        settings: :class:`StyleConfig` fields; missing ones take their defaults.
        limits: server caps (default: :meth:`Limits.from_env`).
        mask: the region to restyle (white), through the same checks as the image, or None.
        style_image: a style picture, through the same checks, or None.
    """
    if image is None:
        raise InputError("no image: upload, paste or take a picture first")
    limits = limits or Limits.from_env()
    config = StyleConfig.from_dict(settings).validated(limits, style_image=style_image is not None)
    loaded = load_image(image, limits)
    check_working_side(loaded.image.size, config.size)
    notes = loaded.notes + prompt_notes(config)
    checked_mask = None
    if mask is not None:
        checked_mask = named_picture("mask", lambda: load_mask(mask, limits).image)
        check_mask(checked_mask, loaded.image, config.invert_mask)
    style = None if style_image is None else named_picture("style picture", lambda: load_image(style_image, limits).image)
    return Request(loaded.image, config, notes, checked_mask, style)


def named_picture(what: str, load: Callable[[], Image.Image]) -> Image.Image:
    """``load()``, its messages saying which picture they are about."""
    try:
        return load()
    except InputError as exc:
        raise InputError(f"the {what}: {exc}") from None


def prompt_notes(config: StyleConfig) -> list[str]:
    """A note for each text too long for CLIP's context (it is truncated, not rejected)."""
    notes = []
    for name in (*PROMPT_FIELDS, "reference"):
        text = getattr(config, name)
        if not text:
            continue
        tokens = len(_tokenizer().encode(text)) + _template_overhead()
        if tokens > CLIP_CONTEXT_TOKENS:
            notes.append(
                f"the {name} is too long for CLIP ({tokens} of {CLIP_CONTEXT_TOKENS} tokens with its template); the end was cut off"
            )
    return notes


@functools.lru_cache(maxsize=1)
def _tokenizer() -> Any:
    # open_clip imports torch: only a request that is checked pays for it, not an import of this module.
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


@functools.lru_cache(maxsize=1)
def _template_overhead() -> int:
    """Tokens the longest prompt template adds, start and end tokens included."""
    return 2 + max(len(_tokenizer().encode(t.replace("{}", ""))) for t in TEXT_TEMPLATES)
