"""Image I/O without torch: any upload to a clean RGB picture, working and output sizes, frames to GIF.

All decoding goes through :func:`load_image`, so the CLI, the API and the UI share
one set of checks and one set of messages.
"""

from __future__ import annotations

import glob
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageCms, ImageOps, ImageSequence, UnidentifiedImageError

from .config import Limits
from .errors import InputError

ImageSource = str | os.PathLike | bytes | Image.Image

# Leading bytes of the formats we accept, to tell a broken image from a non-image.
IMAGE_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"RIFF", b"BM", b"II*\x00", b"MM\x00*")
# What a file found in a folder or by a pattern must be named to be taken as a picture.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
MIN_SIDE = 16
MAX_ASPECT = 8.0
# The shortest side a job may work at: VGG16's conv5_2, behind four 2x poolings, needs 16 px.
MIN_WORKING_SIDE = 16
_SRGB = ImageCms.createProfile("sRGB")
# Mask and picture may differ this much in aspect ratio (rounding when a mask was resized).
ASPECT_TOLERANCE = 0.02
# A mask whose brightest pixel is darker than this selects nothing.
SELECTED = 128


@dataclass
class LoadedImage:
    """A decoded upload.

    Attributes:
        image: RGB picture, EXIF orientation applied, colour converted to sRGB.
        notes: things the user should know (first frame of an animation used, ...).
    """

    image: Image.Image
    notes: list[str] = field(default_factory=list)


def load_image(source: ImageSource, limits: Limits | None = None) -> LoadedImage:
    """Decode and normalise an image from a path, raw bytes or a PIL image.

    Args:
        source: file path, encoded bytes, or an already opened PIL image.
        limits: byte and pixel caps; :meth:`Limits.from_env` when omitted.

    Raises:
        InputError: with a message that says what is wrong with the file.
    """
    limits = limits or Limits.from_env()
    img = source if isinstance(source, Image.Image) else _open(source, limits)
    return _normalise(img, limits, _to_rgb)


def find_images(*sources: str | os.PathLike, on_other: Callable[[Path], None] | None = None) -> list[Path]:
    """The image files (by name) among files, folders and glob patterns, each once, in order.

    A folder gives the files directly inside it, sorted by name; a pattern its matching files,
    sorted (``**`` descends into folders); sources are taken in the order given. Whether a file
    really is a picture is :func:`load_image`'s business.

    Args:
        sources: paths of files or folders, or glob patterns.
        on_other: called with each file passed over because its name is not an image's (``notes.txt``).

    Raises:
        InputError: a source is no file, folder or pattern with a match; or nothing found is an image.
    """
    found: dict[Path, Path] = {}
    for source in sources:
        text = os.fspath(source)
        path = Path(text)
        if path.is_dir():
            candidates = sorted(p for p in path.iterdir() if p.is_file())
        elif path.is_file():
            candidates = [path]
        elif any(c in text for c in "*?["):
            candidates = sorted(p for p in map(Path, glob.glob(text, recursive=True)) if p.is_file())
            if not candidates:
                raise InputError(f"no file matches {text}")
        else:
            raise InputError(f"{text} does not exist")
        for candidate in candidates:
            if candidate.suffix.lower() not in IMAGE_SUFFIXES:
                if on_other is not None:
                    on_other(candidate)
                continue
            # The same file reached twice (a folder and a pattern, or two spellings of one path) counts once.
            found.setdefault(candidate.resolve(), candidate)
    if not found:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(os.fspath, sources))}")
    return list(found.values())


def load_mask(source: ImageSource, limits: Limits | None = None) -> LoadedImage:
    """Decode a mask through the same checks as :func:`load_image`: 8-bit greyscale, white = selected.

    A mask with transparency is its alpha channel (strokes painted on a transparent layer);
    any other is its luminance.
    """
    limits = limits or Limits.from_env()
    img = source if isinstance(source, Image.Image) else _open(source, limits)
    return _normalise(img, limits, _to_mask)


def check_mask(mask: Image.Image, picture: Image.Image, invert: bool) -> Image.Image:
    """The mask at the picture's size, white where to restyle, or a clear error.

    Args:
        mask: 8-bit greyscale (see :func:`stylizer.images.load_mask`).
        picture: the picture it belongs to.
        invert: restyle outside the white instead.

    Raises:
        InputError: the aspect ratios differ, or the mask selects nothing.
    """
    (mw, mh), (pw, ph) = mask.size, picture.size
    if abs((mw / mh) / (pw / ph) - 1) > ASPECT_TOLERANCE:
        raise InputError(f"the mask is {mw}x{mh} px but the picture is {pw}x{ph} px: the mask must have the picture's aspect ratio")
    sized = mask.convert("L").resize(picture.size, Image.Resampling.BILINEAR)
    if invert:
        sized = ImageChops.invert(sized)
    if sized.getextrema()[1] < SELECTED:
        inside = "outside it (the mask is inverted)" if invert else "in white"
        raise InputError(f"the mask selects nothing: paint the region to restyle {inside}")
    return sized


def _open(source: str | os.PathLike | bytes, limits: Limits) -> Image.Image:
    """The file's image, opened lazily (nothing decoded yet), or the reason it cannot be."""
    data = _read_bytes(source, limits)
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        if data.startswith(IMAGE_SIGNATURES):
            raise InputError("the image file is truncated or corrupt (its header could not be read)") from None
        raise InputError("the file is not an image that can be read (expected PNG, JPEG, WebP, GIF, BMP or TIFF)") from None
    except Image.DecompressionBombError:
        raise InputError(f"the image claims more pixels than the limit of {limits.max_pixels:,}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"the image file is truncated or corrupt ({exc})") from None
    return img


def _read_bytes(source: ImageSource, limits: Limits) -> bytes:
    cap = limits.max_upload_bytes
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        if not path.exists():
            raise InputError(f"no such image file: {path}")
        if not path.is_file():  # a folder, a device (/dev/zero), a pipe: nothing to read whole
            raise InputError(f"{path} is not a regular file")
        if path.stat().st_size > cap:
            raise InputError(f"the file is {path.stat().st_size / 2**20:.1f} MB; the limit is {limits.max_upload_mb:g} MB")
        data = path.read_bytes()
    if not data:
        raise InputError("the image file is empty (0 bytes)")
    if len(data) > cap:
        raise InputError(f"the file is {len(data) / 2**20:.1f} MB; the limit is {limits.max_upload_mb:g} MB")
    return data


def _normalise(img: Image.Image, limits: Limits, convert: Callable[[Image.Image, list[str]], Image.Image]) -> LoadedImage:
    notes: list[str] = []
    width, height = img.size
    # Checked on the header, before any pixel is decoded: this is what stops decompression bombs.
    if width * height > limits.max_pixels:
        raise InputError(f"the image is {width}x{height} = {width * height:,} pixels; the limit is {limits.max_pixels:,}")
    if min(width, height) < MIN_SIDE:
        raise InputError(f"the image is {width}x{height} px; each side needs at least {MIN_SIDE} px")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise InputError(f"the image is {width}x{height} px, an aspect ratio over {MAX_ASPECT:g}:1; crop it to something less extreme")
    if getattr(img, "n_frames", 1) > 1:
        notes.append(f"the image is animated ({img.n_frames} frames); the first frame was used")
        img = next(iter(ImageSequence.Iterator(img)))
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
        converted = convert(img, notes)
    except InputError:  # already the message to give (an image without a finite pixel, an unsupported mode)
        raise
    except Image.DecompressionBombError:
        raise InputError(f"the image claims more pixels than the limit of {limits.max_pixels:,}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"the image file is truncated or corrupt ({exc})") from None
    return LoadedImage(converted, notes)


def _to_mask(img: Image.Image, notes: list[str]) -> Image.Image:
    """Any PIL mode to an 8-bit mask: the alpha channel where it holds transparency, else the luminance."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        alpha = img.getchannel("A")
        if alpha.getextrema()[0] < 255:
            return alpha
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _high_depth_to_l(img)
    try:
        return img.convert("L")
    except ValueError:
        raise InputError(f"images in colour mode {img.mode!r} are not supported; save it as RGB PNG or JPEG") from None


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    """Convert any PIL mode to 8-bit sRGB, compositing transparency onto white."""
    icc = img.info.get("icc_profile")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = _high_depth_to_l(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if icc and img.mode in ("RGB", "RGBA", "CMYK", "L"):
        try:
            source_profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(img, source_profile, _SRGB, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            notes.append("the embedded colour profile could not be read; colours were used as stored")
    try:
        return img.convert("RGB")
    except ValueError:
        raise InputError(f"images in colour mode {img.mode!r} are not supported; save it as RGB PNG or JPEG") from None


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit integer and float images to 8-bit greyscale."""
    arr = np.asarray(img, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        raise InputError("the image holds no finite pixel values")
    if img.mode == "F":
        lo, hi = (0.0, 1.0) if finite.min() >= 0 and finite.max() <= 1 else (finite.min(), finite.max())
    else:
        lo, hi = 0.0, 255.0 if finite.max() <= 255 else 65535.0
    scaled = np.clip((np.nan_to_num(arr, nan=lo) - lo) / max(hi - lo, 1e-12), 0, 1)
    return Image.fromarray((scaled * 255 + 0.5).astype(np.uint8), mode="L")


def check_working_side(size: tuple[int, int], long_side: int, setting: str = "size") -> None:
    """Refuse a job whose picture, at ``long_side`` px, would be under :data:`MIN_WORKING_SIDE` on its short side.

    Args:
        size: the picture's (W, H).
        long_side: the job's working resolution (its long side).
        setting: the setting that gave it, for the message.

    Raises:
        InputError: naming the limit and the smallest ``setting`` that works.
    """
    short, long = min(size), max(size)
    if round(short * long_side / long) >= MIN_WORKING_SIDE:
        return
    needed = math.ceil((MIN_WORKING_SIDE - 0.5) * long / short)
    raise InputError(
        f"at {setting} {long_side} this {size[0]}x{size[1]} px picture would be {round(short * long_side / long)} px on its short side; "
        f"it needs at least {MIN_WORKING_SIDE} px: set {setting} to {needed} or more, or crop the picture to a less extreme aspect ratio"
    )


def working_size(width: int, height: int, long_side: int, multiple: int) -> tuple[int, int]:
    """The model's input size: long side = ``long_side``, both sides multiples of ``multiple``.

    Args:
        width, height: the picture's size.
        long_side: target for the longer side (rounded down to ``multiple``).
        multiple: the model's total downsampling factor.
    """
    scale = long_side / max(width, height)

    def snap(x: float) -> int:
        return max(multiple, int(round(x / multiple)) * multiple)

    return snap(width * scale), snap(height * scale)


def output_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """The result's size: long side ``long_side`` with the input's exact aspect ratio."""
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def save_animation(frames: Sequence[Image.Image], path: str | os.PathLike, seconds_per_frame: float = 0.25) -> Path:
    """Write frames as a looping animated GIF (the last frame held a little longer)."""
    if not frames:
        raise ValueError("no frames to animate")
    path = Path(path)
    size = frames[-1].size
    same = [f if f.size == size else f.resize(size, Image.Resampling.LANCZOS) for f in frames]
    durations = [int(seconds_per_frame * 1000)] * (len(same) - 1) + [int(seconds_per_frame * 4000)]
    same[0].save(path, save_all=True, append_images=list(same[1:]), duration=durations, loop=0, optimize=False)
    return path


def synthetic_picture(width: int, height: int, noise: float = 0.0, seed: int = 0) -> Image.Image:
    """A smooth, structured RGB picture with no file behind it: red and green ramps and a disc.

    For benchmarks (the content does not change the timings) and tests (it has edges and
    gradients for the losses to see).

    Args:
        width, height: its size in px.
        noise: standard deviation of added Gaussian noise, in [0, 1] units.
        seed: seeds the noise.
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = ((x - width * 0.6) ** 2 + (y - height * 0.4) ** 2 < (min(width, height) * 0.25) ** 2).astype(np.float32)
    rgb = np.stack([x / max(width - 1, 1), y / max(height - 1, 1), 0.3 + 0.6 * disc], axis=-1)
    if noise:
        rgb = rgb + np.random.RandomState(seed).normal(0, noise, rgb.shape)
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), mode="RGB")
