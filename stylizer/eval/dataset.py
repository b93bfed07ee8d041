"""The evaluation set: content images from a folder and style prompts from a text file."""

from __future__ import annotations

from pathlib import Path

from .. import images
from ..errors import InputError

# The repository's example pictures (see assets/LICENSES.md).
DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "assets"
DEFAULT_PROMPTS = Path(__file__).with_name("prompts.txt")
COMMENT = "#"


def find_images(folder: str | Path = DEFAULT_IMAGES) -> list[Path]:
    """The image files directly inside ``folder`` (default: the example pictures), sorted by name.

    Raises:
        InputError: the folder is missing or holds no image.
    """
    return images.find_images(folder)


def read_prompts(path: str | Path = DEFAULT_PROMPTS) -> list[str]:
    """Prompts from a UTF-8 text file, one a line; blank lines, ``#`` comment lines and repeats are skipped.

    Raises:
        InputError: the file cannot be read or holds no prompt.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read prompts file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"prompts file {path} is not UTF-8 text") from None
    lines = (line.strip() for line in text.splitlines())
    prompts = list(dict.fromkeys(line for line in lines if line and not line.startswith(COMMENT)))
    if not prompts:
        raise InputError(f"prompts file {path} holds no prompt (one a line; # starts a comment)")
    return prompts
