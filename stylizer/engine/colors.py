"""Keep the photo's colours: the result's luminance with the input's chroma.

neural-style's recipe (its issue #316): in YCbCr (ITU-R BT.601, the JPEG variant PIL uses)
take Y from the stylized result, Cb and Cr from the input at the same size. It leaves the
structure and strokes the style put in the luminance. Where the result is so bright or dark
that the input's chroma cannot be shown in 8-bit RGB at that luminance, the luminance is
moved to the nearest level that can show it, so the chroma is always the input's.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# RGB = Y + CHROMA_TO_RGB @ (Cb - 128, Cr - 128), per BT.601 (JPEG's full-range YCbCr).
CHROMA_TO_RGB = np.array([[0.0, 1.402], [-0.344136, -0.714136], [1.772, 0.0]])


def keep_colors(result: Image.Image, source: Image.Image) -> Image.Image:
    """``result``'s luminance with ``source``'s chroma, as RGB.

    Args:
        result: the stylized picture.
        source: the input; resized to ``result``'s size if it differs.
    """
    if source.size != result.size:
        source = source.resize(result.size, Image.Resampling.LANCZOS)
    luminance = np.asarray(result.convert("YCbCr"), dtype=np.float64)[..., 0]
    chroma = np.asarray(source.convert("YCbCr"), dtype=np.float64)[..., 1:] - 128
    offsets = chroma @ CHROMA_TO_RGB.T  # (H, W, 3): what each RGB channel adds to Y
    # The luminance range in which every channel stays within [0, 255] for this chroma.
    lowest, highest = (-offsets).max(axis=-1), (255 - offsets).min(axis=-1)
    shown = np.clip(luminance, lowest, np.maximum(lowest, highest))
    rgb = np.clip(np.rint(shown[..., None] + offsets), 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, mode="RGB")
