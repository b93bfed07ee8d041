"""What every frame goes through after decoding: keep the input's colours, and keep the input outside the mask."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from .colors import keep_colors
from .mask import composite


@dataclass(frozen=True)
class Finish:
    """The finishing of a job's frames, at the output size.

    Attributes:
        source: the input picture at the output size.
        keep_colors: take the chroma from ``source`` (see :mod:`stylizer.engine.colors`).
        weights: the feathered mask (white: restyled) at the output size, or None.
    """

    source: Image.Image
    keep_colors: bool = False
    weights: Image.Image | None = None

    @property
    def changes_pixels(self) -> bool:
        """Whether a frame comes out different from the decoded one."""
        return self.keep_colors or self.weights is not None

    def __call__(self, frame: Image.Image) -> Image.Image:
        """``frame`` (at the output size) finished."""
        if self.keep_colors:
            frame = keep_colors(frame, self.source)
        if self.weights is not None:
            frame = composite(frame, self.source, self.weights)
        return frame
