"""How values reach a handler from Gradio: uploads checked to be uploads and passed on undecoded, widget values as sent.

Every picture the page or the API takes must have come with the request: a file a client uploaded
(which Gradio keeps in its upload folder), or a ``data:`` URL. A path anywhere else is refused with one
message that says nothing about that path (whether anything is there, what, or how big), for Gradio
checks the folder only for payloads that carry ``meta``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

# Each picture parameter's name in messages.
PICTURE_NAMES = {"image": "picture", "mask": "mask", "style_image": "style picture"}
NOT_UPLOADED = "The {what} must come with the request: upload the file, or send it as a data: URL. A path on the server is not read."
NOT_BASE64 = "The {what} is a data: URL without base64 image data."


def accept_upload(what: str) -> Callable[[Any], str | bytes | None]:
    """The ``preprocess`` of a picture input: the uploaded file's path (or a data URL's bytes), undecoded.

    It replaces ``gr.Image.preprocess``, so one loader (:func:`stylizer.images.load_image`) checks every
    file with its own messages; Gradio's preprocessing would open, and for some modes decode and convert,
    the image before the handler runs.

    Args:
        what: the picture's name in messages ("picture", "mask", "style picture").
    """

    def payload_of(payload: Any) -> str | bytes | None:
        if payload is None:
            return None
        if payload.path and not payload.path.startswith("data:"):
            if not uploaded(payload.path):
                raise gr.Error(NOT_UPLOADED.format(what=what), print_exception=False)
            return payload.path
        url = payload.url or payload.path
        if url and url.startswith("data:"):
            return data_url_bytes(url, what)
        return None

    return payload_of


def uploaded(path: str) -> bool:
    """Whether ``path`` (symbolic links and ``..`` resolved) lies in Gradio's upload folder, where client uploads are kept."""
    folder = Path(get_upload_folder()).resolve()
    return Path(path).resolve().is_relative_to(folder)


def data_url_bytes(url: str, what: str) -> bytes:
    """The bytes of a base64 ``data:`` URL, or one line saying it is not one."""
    header, _, data = url.partition(",")
    try:
        if not header.endswith(";base64"):
            raise ValueError(header)
        return base64.b64decode(data, validate=True)
    except (ValueError, binascii.Error):
        raise gr.Error(NOT_BASE64.format(what=what), print_exception=False) from None


def as_sent(payload: Any) -> Any:
    """Pass a widget's value through unchanged; validation happens once, in :class:`~stylizer.config.StyleConfig`."""
    return payload
