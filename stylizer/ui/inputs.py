"""How values reach a handler from Gradio: uploads undecoded, so that the one loader checks them; widget values as sent."""

from __future__ import annotations

import base64
from typing import Any


def upload_payload(payload: Any) -> str | bytes | None:
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


def as_sent(payload: Any) -> Any:
    """Pass a widget's value through unchanged; validation happens once, in :class:`StyleConfig`."""
    return payload
