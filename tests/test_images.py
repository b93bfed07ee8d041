"""Decoding every kind of upload to clean RGB, and the size arithmetic."""

import io

import numpy as np
import pytest
from PIL import Image

from stylizer.config import Limits
from stylizer.engine.tensors import to_pil, to_tensor
from stylizer.errors import InputError
from stylizer.images import load_image, output_size, save_animation, working_size

from .helpers import make_image, swapped_primaries_profile


def _encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "L", "1", "I;16", "I", "F", "YCbCr", "RGB"])
def test_every_mode_becomes_rgb(mode):
    base = make_image(40, 30)
    if mode in ("I;16", "I"):
        arr = (np.asarray(base.convert("L"), dtype=np.uint16) * 257).astype(np.uint16 if mode == "I;16" else np.int32)
        img = Image.fromarray(arr, mode=mode)
    elif mode == "F":
        img = Image.fromarray(np.asarray(base.convert("L"), dtype=np.float32) / 255.0, mode="F")
    else:
        img = base.convert(mode)
    loaded = load_image(img).image
    assert loaded.mode == "RGB" and loaded.size == (40, 30)
    # High-depth images must be rescaled, not clipped to white.
    if mode in ("I;16", "I", "F"):
        grey = np.asarray(base.convert("L"), dtype=np.float32)
        assert np.abs(np.asarray(loaded, dtype=np.float32)[..., 0] - grey).max() <= 2


def test_sixteen_bit_png_file_round_trip(tmp_path):
    arr = np.linspace(0, 65535, 32 * 24).reshape(24, 32).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr, mode="I;16").save(path)
    out = np.asarray(load_image(str(path)).image)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255


def test_transparency_is_composited_on_white():
    img = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    assert load_image(img).image.getpixel((5, 5)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    img = make_image(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    loaded = load_image(_encode(img, "JPEG", exif=exif.tobytes())).image
    assert loaded.size == (20, 40)


def test_animation_uses_first_frame_and_says_so():
    frames = [Image.new("RGB", (24, 24), c) for c in ((255, 0, 0), (0, 255, 0))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    loaded = load_image(data)
    assert loaded.image.getpixel((3, 3))[0] > 200
    assert any("first frame" in note for note in loaded.notes)


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"", "empty"),
        (b"this is not an image at all", "not an image"),
        (_encode(make_image(40, 40))[:200], "truncated or corrupt"),
        (_encode(Image.new("RGB", (1, 1))), "at least 16 px"),
        (_encode(Image.new("RGB", (800, 20))), "aspect ratio"),
    ],
    ids=["empty", "not-image", "truncated", "one-pixel", "extreme-aspect"],
)
def test_bad_files_raise_clear_errors(data, fragment):
    """One case per kind of broken upload (ids keep the test names short)."""
    with pytest.raises(InputError, match=fragment):
        load_image(data)


@pytest.mark.parametrize("seed", range(40))
def test_garbage_after_a_jpeg_header_always_reads_as_corrupt(seed):
    """Garbage fails in different places inside PIL (open, load, transpose); the message must not depend on where."""
    data = _encode(make_image(64, 64), "JPEG")[:200] + np.random.default_rng(seed).bytes(300)
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_image(data)


def test_an_embedded_colour_profile_is_converted_to_srgb():
    red = _encode(Image.new("RGB", (32, 32), (220, 30, 30)), "PNG", icc_profile=swapped_primaries_profile())
    r, g, b = load_image(red).image.getpixel((0, 0))
    assert b > 150 and r < 80, "the profile (red and blue primaries swapped) was not applied"


def test_pixel_and_byte_caps():
    big = _encode(Image.new("RGB", (300, 300)))
    with pytest.raises(InputError, match="pixels; the limit is"):
        load_image(big, Limits(max_pixels=200 * 200))
    with pytest.raises(InputError, match="MB; the limit is"):
        load_image(big, Limits(max_upload_mb=0.0001))


def test_sizes_keep_aspect_and_snap_to_the_model_multiple():
    assert working_size(640, 480, 256, 8) == (256, 192)
    w, h = working_size(300, 200, 256, 8)
    assert w == 256 and h % 8 == 0 and abs(h - 170.7) < 8
    assert output_size(300, 200, 256) == (256, 171)
    assert output_size(100, 37, 64) == (64, 24)


def test_tensor_round_trip_is_lossless_at_same_size():
    img = make_image(32, 24)
    x = to_tensor(img, (32, 24))
    assert x.shape == (1, 3, 24, 32) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(np.asarray(to_pil(x)), np.asarray(img))


def test_animation_file(tmp_path):
    frames = [make_image(32, 24, seed=s) for s in range(3)]
    path = save_animation(frames, tmp_path / "t.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == 3
